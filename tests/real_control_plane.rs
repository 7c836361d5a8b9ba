//! Against a real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager +
//! kwok, built from the official Go modules; tests/support/control_plane.rs):
//!
//! - every object `infraflux bootstrap --render` writes for every bundled environment and
//!   cluster (`config/`, `examples/*`) goes through the real API server's server-side
//!   apply as a dry run, ArgoCD's official install manifests whole among them (read
//!   offline from the release files beside the repository, `../shared/upstream`: CRDs
//!   with their full schemas, NetworkPolicies, redis-ha), the file's bytes sent as they
//!   are (`application/apply-patch+yaml`:
//!   the server reads the YAML as kubectl and ArgoCD do). Namespaces and
//!   CustomResourceDefinitions are created for real first, since the objects in them and
//!   the custom resources cannot be judged without them. Zero rejected.
//! - the control plane works as a cluster does: a Deployment becomes Available on kwok's
//!   fake node.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::control_plane::{self, ControlPlane};
use support::{TestContext, bundled_configurations};

const FIELD_MANAGER: &str = "infraflux-test";

/// `infraflux bootstrap --render` of every environment of `config` into `out`; the
/// manifest files, in the order written (apply order within each cluster).
fn render(config: &Path, out: &Path) -> Vec<PathBuf> {
    let context = TestContext::new().config(config);
    let output = context
        .command()
        .args(["bootstrap", "--render"])
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {stdout}{}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let files: Vec<PathBuf> = stdout
        .lines()
        .map(PathBuf::from)
        .filter(|path| path.components().any(|c| c.as_os_str() == "kubernetes"))
        .collect();
    assert!(!files.is_empty(), "{}: nothing rendered", config.display());
    files
}

/// One rendered object: its file and what locates it.
struct Object {
    file: PathBuf,
    body: String,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl Object {
    fn read(file: &Path) -> Object {
        let body = std::fs::read_to_string(file).unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        let text = |v: &serde_yaml::Value| v.as_str().map(str::to_string);
        Object {
            file: file.to_path_buf(),
            api_version: text(&value["apiVersion"]).unwrap_or_default(),
            kind: text(&value["kind"]).unwrap_or_default(),
            name: text(&value["metadata"]["name"]).unwrap_or_default(),
            namespace: text(&value["metadata"]["namespace"]),
            body,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}/{}{}",
            self.file.display(),
            self.kind,
            self.namespace
                .as_deref()
                .map(|ns| format!("{ns}/"))
                .unwrap_or_default(),
            self.name
        )
    }
}

/// The API server's resources, looked up by (apiVersion, kind) through discovery.
struct Discovery {
    /// apiVersion → [(kind, plural, namespaced)].
    cache: HashMap<String, Vec<(String, String, bool)>>,
}

impl Discovery {
    async fn resource(
        &mut self,
        plane: &ControlPlane,
        client: &reqwest::Client,
        api_version: &str,
        kind: &str,
    ) -> Option<(String, bool)> {
        let find = |resources: &Vec<(String, String, bool)>| {
            resources
                .iter()
                .find(|(k, _, _)| k == kind)
                .map(|(_, plural, namespaced)| (plural.clone(), *namespaced))
        };
        if let Some(found) = self.cache.get(api_version).and_then(find) {
            return Some(found);
        }
        // Not known (yet): ask again, a new CRD's group can take a moment to be served.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let path = if api_version == "v1" {
                "/api/v1".to_string()
            } else {
                format!("/apis/{api_version}")
            };
            if let Some(list) = plane.get(client, &path).await {
                let resources: Vec<(String, String, bool)> = list["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| !r["name"].as_str().unwrap_or("/").contains('/'))
                    .map(|r| {
                        (
                            r["kind"].as_str().unwrap_or("").to_string(),
                            r["name"].as_str().unwrap_or("").to_string(),
                            r["namespaced"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect();
                let found = find(&resources);
                self.cache.insert(api_version.to_string(), resources);
                if found.is_some() {
                    return found;
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Server-side apply of `object` as its file's bytes; a dry run unless `for_real`.
async fn apply(
    plane: &ControlPlane,
    client: &reqwest::Client,
    discovery: &mut Discovery,
    object: &Object,
    for_real: bool,
) -> Result<(), String> {
    let Some((plural, namespaced)) = discovery
        .resource(plane, client, &object.api_version, &object.kind)
        .await
    else {
        return Err(format!(
            "the API server serves no {} {}",
            object.api_version, object.kind
        ));
    };
    let group_version = if object.api_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}", object.api_version)
    };
    let scope = match (&object.namespace, namespaced) {
        (Some(namespace), true) => format!("/namespaces/{namespace}"),
        (None, true) => return Err("a namespaced object without metadata.namespace".into()),
        (_, false) => String::new(),
    };
    let dry_run = if for_real { "" } else { "&dryRun=All" };
    let path = format!(
        "{group_version}{scope}/{plural}/{}?fieldManager={FIELD_MANAGER}&force=true{dry_run}",
        object.name
    );
    let response = client
        .patch(format!("{}{path}", plane.url))
        .header("Content-Type", "application/apply-patch+yaml")
        .body(object.body.clone())
        .send()
        .await
        .map_err(|e| format!("PATCH {path}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    Err(format!("PATCH {path}: {status}: {message}"))
}

async fn established(plane: &ControlPlane, client: &reqwest::Client, name: &str) -> bool {
    let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(crd) = plane.get(client, &path).await {
            let conditions = crd["status"]["conditions"].as_array().cloned();
            if conditions
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[test]
fn every_rendered_object_is_accepted_by_the_real_api_server() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    // ArgoCD's release files, read by the renders as their offline mirror.
    if support::upstream::required_mirror().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut objects = Vec::new();
    for (index, config) in bundled_configurations().iter().enumerate() {
        let out = dir.path().join(index.to_string());
        objects.extend(render(config, &out).iter().map(|file| Object::read(file)));
    }
    // The upstream install is there whole: its CRDs, and the HA manifest's redis-ha.
    for (kind, name) in [
        ("CustomResourceDefinition", "applicationsets.argoproj.io"),
        ("StatefulSet", "argocd-redis-ha-server"),
        ("NetworkPolicy", "argocd-dex-server-network-policy"),
    ] {
        assert!(
            objects.iter().any(|o| o.kind == kind && o.name == name),
            "no {kind} {name} among the rendered objects"
        );
    }

    let runtime = control_plane::runtime();
    let client = plane.client();
    let mut discovery = Discovery {
        cache: HashMap::new(),
    };
    let mut rejected = Vec::new();
    let (mut real, mut dry) = (0, 0);
    runtime.block_on(async {
        // For real first: the namespaces the others live in, and the CRDs of the custom
        // resources.
        let first = |o: &Object| {
            (o.api_version == "v1" && o.kind == "Namespace")
                || (o.api_version == "apiextensions.k8s.io/v1"
                    && o.kind == "CustomResourceDefinition")
        };
        for object in objects.iter().filter(|o| first(o)) {
            match apply(plane, &client, &mut discovery, object, true).await {
                Ok(()) => real += 1,
                Err(error) => rejected.push(format!("{}: {error}", object.describe())),
            }
            if object.kind == "CustomResourceDefinition"
                && !established(plane, &client, &object.name).await
            {
                rejected.push(format!("{}: not Established in 30s", object.describe()));
            }
        }
        for object in objects.iter().filter(|o| !first(o)) {
            match apply(plane, &client, &mut discovery, object, false).await {
                Ok(()) => dry += 1,
                Err(error) => rejected.push(format!("{}: {error}", object.describe())),
            }
        }
    });
    // Past the test harness's capture, so that the CI log shows it.
    let summary = format!(
        "real API server {}: {} rendered objects, {real} created (namespaces, CRDs), {dry} accepted by a dry run, {} rejected\n",
        plane.version,
        objects.len(),
        rejected.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(
        rejected.is_empty(),
        "the API server ({}) rejected {} of {} rendered objects:\n{}",
        plane.version,
        rejected.len(),
        objects.len(),
        rejected.join("\n")
    );
}

#[test]
fn a_dry_run_rejects_what_the_server_rejects() {
    // The judge must be able to say no: the string a YAML 1.2 reader makes of a YAML 1.1
    // octal is refused where an integer belongs.
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: quoted-mode\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: busybox\n  volumes:\n  - name: v\n    secret:\n      secretName: s\n      defaultMode: '0400'\n",
    )
    .unwrap();
    let object = Object::read(&file);
    let client = plane.client();
    let mut discovery = Discovery {
        cache: HashMap::new(),
    };
    let result =
        control_plane::runtime().block_on(apply(plane, &client, &mut discovery, &object, false));
    let error = result.expect_err("a string defaultMode is refused");
    assert!(error.contains("defaultMode"), "{error}");
}

#[test]
fn a_deployment_becomes_available_on_the_fake_node() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let client = plane.client();
    let namespace = "available-test";
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27"}],
                    // kwok's node is tainted by nothing; pin the pods to it all the same.
                    "nodeSelector": {"type": "kwok"},
                },
            },
        },
    });
    let runtime = control_plane::runtime();
    runtime.block_on(async {
        let ssa = |path: String, body: Value| {
            let client = client.clone();
            async move {
                let response = client
                    .patch(format!(
                        "{}{path}?fieldManager={FIELD_MANAGER}&force=true",
                        plane.url
                    ))
                    .header("Content-Type", "application/apply-patch+yaml")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                assert!(
                    status.is_success(),
                    "{path}: {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
        };
        ssa(
            format!("/api/v1/namespaces/{namespace}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .await;
        ssa(
            format!("/apis/apps/v1/namespaces/{namespace}/deployments/web"),
            deployment,
        )
        .await;
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/web");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let current = plane.get(&client, &path).await.unwrap_or(Value::Null);
            let available = current["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            if available && current["status"]["readyReplicas"] == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not Available in 90s: {}\n{}",
                current["status"],
                plane.log("kwok")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let pods = plane
            .get(&client, &format!("/api/v1/namespaces/{namespace}/pods"))
            .await
            .unwrap();
        for pod in pods["items"].as_array().unwrap() {
            assert_eq!(pod["spec"]["nodeName"], control_plane::FAKE_NODE);
            assert_eq!(pod["status"]["phase"], "Running");
        }
    });
}
