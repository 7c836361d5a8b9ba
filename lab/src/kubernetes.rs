//! A fake Kubernetes API server, for the Kubernetes provider's tests and the engine's
//! lab: plain HTTP on 127.0.0.1 ([`FakeApiServer::start`]), or HTTPS on a given loopback
//! address with a server certificate and, optionally, client certificates verified
//! against a CA, as a cluster's real endpoint serves ([`FakeApiServer::start_tls`]);
//! objects kept in memory.
//!
//! It serves what the provider and the `kube` client use: discovery (`/api`, `/apis`,
//! resource lists, including kinds of CRDs applied at run time), GET, LIST, DELETE and
//! server-side apply (`PATCH` with `application/apply-patch+yaml`, `fieldManager`,
//! `force`). Apply merges are simplified: objects merge key by key, lists are replaced
//! whole, ownership is tracked per leaf path per manager, and a field owned by another
//! manager with a different value is a 409 conflict in the API server's wording.
//! Namespaced objects need their Namespace to exist, as on a real server.
//!
//! Nothing runs controllers: tests drive status with [`FakeApiServer::set_status`], or
//! install a [`Reactor`] that is called on every applied object (e.g.
//! [`ready_reactor`], which makes workloads available, CRDs Established and
//! Applications Synced and Healthy). [`FakeApiServer::simulate_argocd`] serves ArgoCD's
//! kinds without its CRDs, for a lab that has no copy of ArgoCD's release manifest.

mod simulated_argocd;

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
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// Called with every object after an apply, to play a controller's part.
pub type Reactor = Arc<dyn Fn(&mut Value) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Kind {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl Kind {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

type Key = (String, String, Option<String>, String);

struct Stored {
    object: Value,
    /// Leaf paths (JSON pointers) each manager set, with the value it set.
    owned: BTreeMap<String, BTreeMap<String, Value>>,
}

#[derive(Default)]
struct State {
    kinds: Vec<Kind>,
    objects: BTreeMap<Key, Stored>,
    requests: Vec<(String, String)>,
    revision: u64,
    reactor: Option<Reactor>,
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

const BUILTIN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "Node", "nodes", false),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Pod", "pods", true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    ("", "v1", "ResourceQuota", "resourcequotas", true),
    ("", "v1", "LimitRange", "limitranges", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("batch", "v1", "Job", "jobs", true),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
];

/// How long one connection may stay open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

impl FakeApiServer {
    /// Start on 127.0.0.1 with an ephemeral port, with namespaces `default` and
    /// `kube-system`.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve_on(listener, None)
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
        )
    }

    fn serve_on(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let mut state = State::default();
        for (group, version, kind, plural, namespaced) in BUILTIN {
            state.kinds.push(Kind {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                namespaced: *namespaced,
            });
        }
        let state = Arc::new(Mutex::new(state));
        let server = FakeApiServer {
            address,
            state: state.clone(),
            task: tokio::spawn(serve(listener, tls, state)),
        };
        for namespace in ["default", "kube-system"] {
            server.insert(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace}, "status": {"phase": "Active"}}));
        }
        Ok(server)
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
            state.objects.insert(
                key,
                Stored {
                    object,
                    owned: BTreeMap::new(),
                },
            );
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

/// Register the kinds a CRD defines (its served versions).
fn register_crd(state: &mut State, crd: &Value) {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return;
    };
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] != json!(true) {
            continue;
        }
        let kind = Kind {
            group: group.to_string(),
            version: version["name"].as_str().unwrap_or("v1").to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced: spec["scope"] == "Namespaced",
        };
        if !state.kinds.contains(&kind) {
            state.kinds.push(kind);
        }
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

/// rustls settings for [`FakeApiServer::start_tls`].
fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("the server certificate is not PEM"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| invalid("the server key is not a PEM private key"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                let certificate = certificate.map_err(|_| invalid("the client CA is not PEM"))?;
                roots.add(certificate).map_err(std::io::Error::other)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

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

fn failure(status: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": status.as_u16()}),
    )
}

/// A parsed resource path.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [] => (None, None, None),
        // `/api/v1/namespaces/dev` is the Namespace `dev` itself.
        [plural] => (None, Some(*plural), None),
        [plural, name] => (None, Some(*plural), Some(*name)),
        ["namespaces", namespace, plural] => (Some(*namespace), Some(*plural), None),
        ["namespaces", namespace, plural, name] => (Some(*namespace), Some(*plural), Some(*name)),
        _ => return None,
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        plural: plural.map(str::to_string),
        name: name.map(str::to_string),
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
    let mut state = state.lock().unwrap();
    state.requests.push((method.to_string(), path.clone()));
    match (&method, path.as_str()) {
        (&Method::GET, "/api") => {
            return respond(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": []}),
            );
        }
        (&Method::GET, "/apis") => return respond(StatusCode::OK, &group_list(&state)),
        (&Method::GET, "/version") => {
            return respond(
                StatusCode::OK,
                &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.2-fake"}),
            );
        }
        _ => {}
    }
    let Some(target) = parse_path(&path) else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let Some(plural) = target.plural.clone() else {
        return match resource_list(&state, &target.group, &target.version) {
            Some(list) if method == Method::GET => respond(StatusCode::OK, &list),
            _ => failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ),
        };
    };
    let Some(kind) = state
        .kinds
        .iter()
        .find(|k| k.group == target.group && k.version == target.version && k.plural == plural)
        .cloned()
    else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    match (method, target.name.clone()) {
        (Method::GET, Some(name)) => {
            let key = (
                kind.group.clone(),
                kind.plural.clone(),
                target.namespace.clone(),
                name.clone(),
            );
            match state.objects.get(&key) {
                Some(stored) => respond(StatusCode::OK, &stored.object),
                None => not_found(&kind, &name),
            }
        }
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
            respond(
                StatusCode::OK,
                &json!({"apiVersion": kind.api_version(),
                "kind": format!("{}List", kind.kind),
                "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
            )
        }
        (Method::DELETE, Some(name)) => {
            let key = (
                kind.group.clone(),
                kind.plural.clone(),
                target.namespace.clone(),
                name.clone(),
            );
            match state.objects.remove(&key) {
                Some(stored) => {
                    state.revision += 1;
                    respond(StatusCode::OK, &stored.object)
                }
                None => not_found(&kind, &name),
            }
        }
        (Method::PATCH, Some(name)) => {
            if content_type != "application/apply-patch+yaml" {
                return failure(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &format!("the fake supports server-side apply only, not {content_type}"),
                );
            }
            let Some(manager) = query_param(&query, "fieldManager") else {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "PATCH /apply requires fieldManager",
                );
            };
            let force = query_param(&query, "force").as_deref() == Some("true");
            let manifest: Value = match serde_yaml::from_slice(&body) {
                Ok(value) => value,
                Err(error) => {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest", &error.to_string());
                }
            };
            apply(
                &mut state,
                &kind,
                target.namespace,
                &name,
                &manager,
                force,
                manifest,
            )
        }
        _ => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the fake",
        ),
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
    let resource = if kind.group.is_empty() {
        kind.plural.clone()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    };
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
    )
}

fn group_list(state: &State) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for kind in state.kinds.iter().filter(|k| !k.group.is_empty()) {
        let versions = groups.entry(&kind.group).or_default();
        if !versions.contains(&kind.version.as_str()) {
            versions.push(&kind.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(state: &State, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = state
        .kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources}),
    )
}

// ---- server-side apply ------------------------------------------------------------------

/// Leaf paths of an applied configuration, as JSON pointers. Lists are leaves (the
/// fake replaces them whole); identity fields are nobody's.
fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                if matches!(
                    path.as_str(),
                    "/apiVersion" | "/kind" | "/metadata/name" | "/metadata/namespace" | "/status"
                ) {
                    continue;
                }
                leaves(value, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), value.clone());
        }
    }
}

/// `/spec/replicas` → `.spec.replicas`, as the API server names fields in conflicts.
fn field_name(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| format!(".{}", part.replace("~1", "/").replace("~0", "~")))
        .collect()
}

fn remove_pointer(object: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = object.pointer_mut(parent) {
        map.remove(&last);
    }
}

fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut current = object;
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(part)
            .or_insert(Value::Null);
    }
    *current = value;
}

/// Everything but metadata and status: a change there bumps the generation.
fn spec_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

fn apply(
    state: &mut State,
    kind: &Kind,
    namespace: Option<String>,
    name: &str,
    manager: &str,
    force: bool,
    manifest: Value,
) -> Response<Full<Bytes>> {
    if manifest["kind"] != kind.kind.as_str() || manifest["metadata"]["name"] != name {
        return failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "kind or name does not match the URL",
        );
    }
    if kind.namespaced {
        let namespace = namespace.clone().unwrap_or_default();
        let exists = state.objects.contains_key(&(
            String::new(),
            "namespaces".to_string(),
            None,
            namespace.clone(),
        ));
        if !exists {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("namespaces \"{namespace}\" not found"),
            );
        }
    }
    let key = (
        kind.group.clone(),
        kind.plural.clone(),
        namespace.clone(),
        name.to_string(),
    );
    let mut applied = BTreeMap::new();
    leaves(&manifest, "", &mut applied);
    let created = !state.objects.contains_key(&key);
    let stored = state.objects.entry(key.clone()).or_insert_with(|| Stored {
        object: json!({"apiVersion": kind.api_version(), "kind": kind.kind,
            "metadata": {"name": name}}),
        owned: BTreeMap::new(),
    });
    // Conflicts: a leaf another manager set to a different value.
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (path, value) in &applied {
        for (other, fields) in &stored.owned {
            if other != manager && fields.get(path).is_some_and(|v| v != value) {
                conflicts.push((other.clone(), field_name(path)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let message = if conflicts.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\": {}",
                conflicts[0].0, conflicts[0].1
            )
        } else {
            let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (other, field) in &conflicts {
                by_manager.entry(other).or_default().push(field);
            }
            let lines: Vec<String> = by_manager
                .iter()
                .map(|(other, fields)| {
                    format!(
                        "conflicts with \"{other}\":\n{}",
                        fields
                            .iter()
                            .map(|f| format!("- {f}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        if created {
            state.objects.remove(&key);
        }
        return failure(StatusCode::CONFLICT, "Conflict", &message);
    }
    // Forced: the other managers lose the fields.
    for (other, fields) in stored.owned.iter_mut() {
        if other != manager {
            fields.retain(|path, _| !applied.contains_key(path));
        }
    }
    let before = stored.object.clone();
    let previous = stored.owned.remove(manager).unwrap_or_default();
    for path in previous.keys() {
        let owned_by_other = stored.owned.values().any(|f| f.contains_key(path));
        if !applied.contains_key(path) && !owned_by_other {
            remove_pointer(&mut stored.object, path);
        }
    }
    for (path, value) in &applied {
        set_pointer(&mut stored.object, path, value.clone());
    }
    stored.owned.insert(manager.to_string(), applied);
    if let Some(namespace) = &namespace {
        stored.object["metadata"]["namespace"] = json!(namespace);
    }
    let changed = stored.object != before;
    let generation = before["metadata"]["generation"].as_i64().unwrap_or(0);
    if created || spec_part(&stored.object) != spec_part(&before) {
        stored.object["metadata"]["generation"] = json!(generation + 1);
    }
    if created {
        stored.object["metadata"]["uid"] = json!(format!(
            "00000000-0000-0000-0000-{:012}",
            state.revision + 1
        ));
        stored.object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    }
    let managers: Vec<Value> = stored
        .owned
        .keys()
        .map(|m| json!({"manager": m, "operation": "Apply", "apiVersion": kind.api_version(), "fieldsType": "FieldsV1"}))
        .collect();
    stored.object["metadata"]["managedFields"] = Value::Array(managers);
    if let Some(reactor) = state.reactor.clone() {
        let stored = state.objects.get_mut(&key).expect("just stored");
        reactor(&mut stored.object);
    }
    if kind.kind == "CustomResourceDefinition" {
        let crd = state.objects[&key].object.clone();
        let established = crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if established {
            register_crd(state, &crd);
        }
    }
    if changed || created {
        state.revision += 1;
    }
    let revision = state.revision;
    let stored = state.objects.get_mut(&key).expect("just stored");
    stored.object["metadata"]["resourceVersion"] = json!(revision.to_string());
    respond(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &stored.object,
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
        let crd = stored.object.clone();
        register_crd(&mut state, &crd);
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
        assert!(
            parse_path("/apis/argoproj.io/v1alpha1")
                .unwrap()
                .plural
                .is_none()
        );
        assert!(parse_path("/healthz").is_none());
    }

    #[test]
    fn conflicts_are_named_like_the_api_server() {
        assert_eq!(field_name("/spec/replicas"), ".spec.replicas");
        assert_eq!(
            field_name("/metadata/labels/app.kubernetes.io~1name"),
            ".metadata.labels.app.kubernetes.io/name"
        );
    }
}
