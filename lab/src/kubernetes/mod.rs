//! A fake Kubernetes API server, for the engine's lab (`infraflux lab`) and for users who
//! want a cluster API without a cluster: plain HTTP on 127.0.0.1
//! ([`FakeApiServer::start`]), or HTTPS on a given loopback address with a server
//! certificate and, optionally, client certificates verified against a CA, as a
//! cluster's real endpoint serves ([`FakeApiServer::start_tls`]); objects kept in memory.
//!
//! It serves what the Kubernetes provider and the `kube` client use — discovery (`/api`,
//! `/apis`, resource lists, including kinds of CRDs applied at run time), GET (also of
//! the `status` subresource), LIST, DELETE and server-side apply (`PATCH` with
//! `application/apply-patch+yaml`, `fieldManager`, `force`) — and answers as kube-apiserver
//! v1.34 does: status codes, `Status` reasons and messages, field ownership and
//! conflicts, generations, resource versions, namespaces and finalizers. The Kubernetes
//! provider's tests run against a real control plane; lab/tests/kubernetes_differential.rs
//! sends the same requests to this fake and to that control plane and fails where they
//! answer differently.
//!
//! Modules: [`kinds`] (what is served), [`apply`] (server-side apply), [`schema`]
//! (undeclared fields refused), [`lifecycle`] (namespaces, finalizers, deletion), [`tls`],
//! [`simulated_argocd`] (ArgoCD's kinds for a lab without its release manifest).
//!
//! Nothing runs the workload controllers: tests drive status with
//! [`FakeApiServer::set_status`], or install a [`Reactor`] that is called on every applied
//! object (e.g. [`ready_reactor`], which makes workloads available, CRDs Established and
//! Applications Synced and Healthy). Without one, a CRD is not Established (its kinds are
//! not served) until [`FakeApiServer::establish`]: where the fake does less than a
//! cluster it refuses or waits, never the other way round.
//! [`FakeApiServer::simulate_argocd`] serves ArgoCD's kinds without its CRDs, for a lab
//! that has no copy of ArgoCD's release manifest.

mod apply;
mod kinds;
mod lifecycle;
mod schema;
mod simulated_argocd;
mod tls;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use kinds::Kind;
use tls::tls_config;

/// Called with every object after an apply, to play a controller's part.
pub type Reactor = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// The time the fake stamps on what it creates, deletes or records.
const TIMESTAMP: &str = "2025-01-01T00:00:00Z";

/// (group, plural, namespace, name).
type Key = (String, String, Option<String>, String);

struct Stored {
    object: Value,
    /// Leaf paths (JSON pointers) each manager applied, with the value it applied.
    owned: BTreeMap<String, BTreeMap<String, Value>>,
    /// `managedFields` entries of writers other than apply (controllers).
    updates: Vec<Value>,
    /// Finalizers the server itself put on the object (a CRD's cleanup).
    server_finalizers: Vec<String>,
}

impl Stored {
    fn new(object: Value) -> Self {
        Stored {
            object,
            owned: BTreeMap::new(),
            updates: Vec::new(),
            server_finalizers: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    kinds: Vec<Kind>,
    objects: BTreeMap<Key, Stored>,
    requests: Vec<(String, String)>,
    revision: u64,
    reactor: Option<Reactor>,
    /// What `kube-root-ca.crt` holds: the serving certificate's chain with TLS.
    ca_pem: String,
}

/// A running fake API server; stopped when dropped.
pub struct FakeApiServer {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The namespaces a new cluster has.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// How long one connection may stay open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

impl FakeApiServer {
    /// Start on 127.0.0.1 with an ephemeral port, with the namespaces a new cluster has
    /// (`default`, `kube-node-lease`, `kube-public`, `kube-system`).
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve_on(listener, None, String::new())
    }

    /// Start with TLS on `address` (a loopback address; port 0 picks one), serving
    /// `cert_pem` (chain) with `key_pem`. With `client_ca_pem`, every connection must
    /// present a client certificate issued by that CA, as with a kubeconfig's admin
    /// certificate.
    pub async fn start_tls(
        address: SocketAddr,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
    ) -> std::io::Result<Self> {
        if !address.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the fake API server listens on loopback addresses only",
            ));
        }
        let config = tls_config(cert_pem, key_pem, client_ca_pem)?;
        let listener = TcpListener::bind(address).await?;
        Self::serve_on(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            cert_pem.to_string(),
        )
    }

    fn serve_on(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ca_pem: String,
    ) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let mut state = State {
            kinds: kinds::builtin(),
            ca_pem,
            ..State::default()
        };
        let namespace = state
            .kinds
            .iter()
            .find(|k| k.kind == "Namespace")
            .cloned()
            .expect("Namespace is built in");
        for name in SYSTEM_NAMESPACES {
            apply::apply(
                &mut state,
                apply::Apply {
                    kind: &namespace,
                    namespace: None,
                    name: name.to_string(),
                    manager: "kube-apiserver".into(),
                    force: true,
                    manifest: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                },
            );
        }
        let state = Arc::new(Mutex::new(state));
        Ok(FakeApiServer {
            address,
            state: state.clone(),
            task: tokio::spawn(serve(listener, tls, state)),
        })
    }

    /// `http://…` (or `https://…` when started with TLS; the kubeconfig below is then
    /// not usable: use the cluster's own).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A kubeconfig for this server (plain HTTP, a token user).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.url()
        )
    }

    /// Call `reactor` on every object after it is applied.
    pub fn set_reactor(&self, reactor: Reactor) {
        self.state.lock().unwrap().reactor = Some(reactor);
    }

    /// Store an object as it is, bypassing apply (a pre-existing object).
    pub fn insert(&self, object: Value) {
        let mut state = self.state.lock().unwrap();
        if let Some(key) = key_of(&state, &object) {
            state.revision += 1;
            state.objects.insert(key, Stored::new(object));
        }
    }

    /// The stored object.
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let state = self.state.lock().unwrap();
        let key = key_for(&state, api_version, kind, namespace, name)?;
        state.objects.get(&key).map(|s| s.object.clone())
    }

    /// Replace an object's status, as its controller would.
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> bool {
        let mut state = self.state.lock().unwrap();
        let Some(key) = key_for(&state, api_version, kind, namespace, name) else {
            return false;
        };
        state.revision += 1;
        let revision = state.revision;
        match state.objects.get_mut(&key) {
            Some(stored) => {
                stored.object["status"] = status;
                stored.object["metadata"]["resourceVersion"] = json!(revision.to_string());
                true
            }
            None => false,
        }
    }

    /// Every object of a kind.
    pub fn objects_of(&self, kind: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .values()
            .filter(|s| s.object["kind"] == kind)
            .map(|s| s.object.clone())
            .collect()
    }

    /// `(method, path)` of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many PATCH (apply) requests were made.
    pub fn patch_count(&self) -> usize {
        self.requests().iter().filter(|(m, _)| m == "PATCH").count()
    }
}

/// A reactor that plays every controller as if all went well: workloads available,
/// Jobs complete, CRDs Established, Applications Synced and Healthy at their target
/// revision after a successful sync.
pub fn ready_reactor() -> Reactor {
    Arc::new(|object: &mut Value| make_ready(object))
}

/// Give an object the status of a healthy, reconciled object of its kind.
pub fn make_ready(object: &mut Value) {
    let generation = object["metadata"]["generation"].clone();
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = match object["kind"].as_str().unwrap_or("") {
        "Deployment" => json!({"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}),
        "StatefulSet" => json!({"observedGeneration": generation, "replicas": replicas,
            "readyReplicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas,
            "currentRevision": "r1", "updateRevision": "r1"}),
        "DaemonSet" => json!({"observedGeneration": generation, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3,
            "numberReady": 3}),
        "Job" => json!({"startTime": "2025-01-01T00:00:00Z", "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]}),
        "CustomResourceDefinition" => json!({"conditions": [
            {"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]}),
        "Application" => {
            let target = object["spec"]["source"]["targetRevision"].clone();
            json!({
                "sync": {"status": "Synced", "revision": "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e",
                    "comparedTo": {"source": object["spec"]["source"].clone()}},
                "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded", "message": "successfully synced",
                    "syncResult": {"revision": "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e",
                        "source": {"targetRevision": target}}},
            })
        }
        _ => return,
    };
    object["status"] = status;
}

// ---- keys and kinds ------------------------------------------------------------------------

fn find_kind<'a>(state: &'a State, api_version: &str, kind: &str) -> Option<&'a Kind> {
    state
        .kinds
        .iter()
        .find(|k| k.api_version() == api_version && k.kind == kind)
}

fn key_for(
    state: &State,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<Key> {
    let kind = find_kind(state, api_version, kind)?;
    Some((
        kind.group.clone(),
        kind.plural.clone(),
        if kind.namespaced {
            Some(namespace.unwrap_or("default").to_string())
        } else {
            None
        },
        name.to_string(),
    ))
}

fn key_of(state: &State, object: &Value) -> Option<Key> {
    key_for(
        state,
        object["apiVersion"].as_str()?,
        object["kind"].as_str()?,
        object["metadata"]["namespace"].as_str(),
        object["metadata"]["name"].as_str()?,
    )
}

/// What the apiextensions controllers do once a CRD is Established: serve its kinds,
/// and hold the CRD with the cleanup finalizer (its custom resources go first).
fn crd_established(state: &mut State, key: &Key) {
    let Some(stored) = state.objects.get_mut(key) else {
        return;
    };
    lifecycle::hold_crd(stored);
    for kind in kinds::of_crd(&stored.object) {
        if !state.kinds.contains(&kind) {
            state.kinds.push(kind);
        }
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<Mutex<State>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let builder = http1::Builder::new();
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
                }
            }
        });
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// A `Status` failure; `reason` left out when empty, as the API server leaves it out of
/// errors it has no reason for.
fn failure(status: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "code": status.as_u16()});
    if !reason.is_empty() {
        body["reason"] = json!(reason);
    }
    respond(status, &body)
}

/// A path under a served group version that names no resource of it.
fn no_resource() -> Response<Full<Bytes>> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// A path the API server's router does not know (an unserved group version): Go's
/// plain-text 404, not a `Status`.
fn page_not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from("404 page not found\n")))
        .expect("a valid response")
}

/// A parsed resource path.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name, subresource) = match rest {
        [] => (None, None, None, None),
        // `/api/v1/namespaces/dev` is the Namespace `dev` itself.
        [plural] => (None, Some(*plural), None, None),
        [plural, name] => (None, Some(*plural), Some(*name), None),
        ["namespaces", namespace, plural] if group.is_empty() && *plural == "status" => {
            (None, Some("namespaces"), Some(*namespace), Some("status"))
        }
        ["namespaces", namespace, plural] => (Some(*namespace), Some(*plural), None, None),
        ["namespaces", namespace, plural, name] => {
            (Some(*namespace), Some(*plural), Some(*name), None)
        }
        ["namespaces", namespace, plural, name, subresource] => (
            Some(*namespace),
            Some(*plural),
            Some(*name),
            Some(*subresource),
        ),
        [plural, name, subresource] => (None, Some(*plural), Some(*name), Some(*subresource)),
        _ => return None,
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        plural: plural.map(str::to_string),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

async fn handle(state: &Arc<Mutex<State>>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return failure(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body"),
    };
    let (response, cleanup) = {
        let mut guard = state.lock().unwrap();
        let state = &mut *guard;
        state.requests.push((method.to_string(), path.clone()));
        route(state, &method, &path, &query, &content_type, &body)
    };
    // The controller's part, a moment later: the object is seen Terminating meanwhile.
    if let Some(cleanup) = cleanup {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(lifecycle::CONTROLLER_DELAY).await;
            lifecycle::cleanup(&mut state.lock().unwrap(), cleanup);
        });
    }
    response
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &Bytes,
) -> (Response<Full<Bytes>>, Option<lifecycle::Cleanup>) {
    let answer = |response| (response, None);
    match (method, path) {
        (&Method::GET, "/api") => {
            return answer(respond(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ));
        }
        (&Method::GET, "/apis") => {
            return answer(respond(StatusCode::OK, &kinds::group_list(&state.kinds)));
        }
        (&Method::GET, "/version") => {
            return answer(respond(
                StatusCode::OK,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.4-fake"}),
            ));
        }
        _ => {}
    }
    let Some(target) = parse_path(path) else {
        return answer(page_not_found());
    };
    let served = state
        .kinds
        .iter()
        .any(|k| k.group == target.group && k.version == target.version);
    if !served {
        return answer(page_not_found());
    }
    let Some(plural) = target.plural.clone() else {
        return answer(
            match kinds::resource_list(&state.kinds, &target.group, &target.version) {
                Some(list) if method == Method::GET => respond(StatusCode::OK, &list),
                _ => no_resource(),
            },
        );
    };
    let Some(kind) = state
        .kinds
        .iter()
        .find(|k| k.group == target.group && k.version == target.version && k.plural == plural)
        .cloned()
    else {
        // Built-in groups answer with a `Status`; the apiextensions server, which serves
        // the groups of CRDs, with the router's plain 404.
        let built_in = state
            .kinds
            .iter()
            .any(|k| k.group == target.group && k.version == target.version && !k.custom);
        return answer(if built_in {
            no_resource()
        } else {
            page_not_found()
        });
    };
    // A namespaced kind has no objects outside namespaces (a list across namespaces
    // aside), and a cluster-scoped one none inside.
    let misplaced = if kind.namespaced {
        target.namespace.is_none() && target.name.is_some()
    } else {
        target.namespace.is_some()
    };
    if misplaced {
        return answer(no_resource());
    }
    let key = |name: &str| -> Key {
        (
            kind.group.clone(),
            kind.plural.clone(),
            target.namespace.clone(),
            name.to_string(),
        )
    };
    if let Some(subresource) = &target.subresource {
        let name = target.name.clone().unwrap_or_default();
        return answer(match (method, subresource.as_str()) {
            (&Method::GET, "status") if kind.status_subresource => {
                match state.objects.get(&key(&name)) {
                    Some(stored) => respond(StatusCode::OK, &stored.object),
                    None => not_found(&kind, &name),
                }
            }
            (&Method::GET, _) => no_resource(),
            _ => failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the fake serves subresources for reading only",
            ),
        });
    }
    match (method.clone(), target.name.clone()) {
        (Method::GET, Some(name)) => answer(match state.objects.get(&key(&name)) {
            Some(stored) => respond(StatusCode::OK, &stored.object),
            None => not_found(&kind, &name),
        }),
        (Method::GET, None) => {
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|((group, plural, namespace, _), _)| {
                    *group == kind.group
                        && *plural == kind.plural
                        && (target.namespace.is_none() || *namespace == target.namespace)
                })
                .map(|(_, stored)| stored.object.clone())
                .collect();
            answer(respond(
                StatusCode::OK,
                &json!({"apiVersion": kind.api_version(),
                "kind": format!("{}List", kind.kind),
                "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
            ))
        }
        (Method::DELETE, Some(name)) => lifecycle::delete(state, &kind, &key(&name)),
        (Method::PATCH, Some(name)) => {
            if content_type != "application/apply-patch+yaml" {
                return answer(failure(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &format!("the fake supports server-side apply only, not {content_type}"),
                ));
            }
            let Some(manager) = query_param(query, "fieldManager").filter(|m| !m.is_empty()) else {
                return answer(failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            };
            let force = query_param(query, "force").as_deref() == Some("true");
            let manifest: Value = match serde_yaml::from_slice(body) {
                Ok(value) => value,
                Err(error) => {
                    return answer(failure(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &error.to_string(),
                    ));
                }
            };
            answer(apply::apply(
                state,
                apply::Apply {
                    kind: &kind,
                    namespace: target.namespace.clone(),
                    name,
                    manager,
                    force,
                    manifest,
                },
            ))
        }
        _ => answer(failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the fake",
        )),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

fn not_found(kind: &Kind, name: &str) -> Response<Full<Bytes>> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", kind.resource()),
    )
}

impl FakeApiServer {
    /// Establish a CRD applied without a reactor (registering its kinds).
    pub fn establish(&self, name: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let key = (
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
            None,
            name.to_string(),
        );
        let Some(stored) = state.objects.get_mut(&key) else {
            return false;
        };
        stored.object["status"] = json!({"conditions": [
            {"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]});
        state.revision += 1;
        let revision = state.revision.to_string();
        if let Some(stored) = state.objects.get_mut(&key) {
            stored.object["metadata"]["resourceVersion"] = json!(revision);
        }
        crd_established(&mut state, &key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_for_core_groups_namespaces_and_namespace_objects() {
        let target = parse_path("/api/v1/namespaces/dev").unwrap();
        assert_eq!(target.plural.as_deref(), Some("namespaces"));
        assert_eq!(target.name.as_deref(), Some("dev"));
        assert!(target.namespace.is_none());
        let target = parse_path("/apis/apps/v1/namespaces/dev/deployments/web").unwrap();
        assert_eq!(
            (
                target.group.as_str(),
                target.namespace.as_deref(),
                target.name.as_deref()
            ),
            ("apps", Some("dev"), Some("web"))
        );
        let target = parse_path("/apis/apps/v1/namespaces/dev/deployments/web/status").unwrap();
        assert_eq!(target.subresource.as_deref(), Some("status"));
        let target = parse_path("/api/v1/namespaces/dev/status").unwrap();
        assert_eq!(
            (target.plural.as_deref(), target.name.as_deref()),
            (Some("namespaces"), Some("dev"))
        );
        assert!(
            parse_path("/apis/argoproj.io/v1alpha1")
                .unwrap()
                .plural
                .is_none()
        );
        assert!(parse_path("/healthz").is_none());
    }
}
