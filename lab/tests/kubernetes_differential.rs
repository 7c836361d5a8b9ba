//! The lab's fake Kubernetes API (`infraflux_lab::kubernetes`) may stand in for a cluster
//! only where it answers as a real one does. This sends the same requests, in the same
//! order, to the fake and to a real control plane (kube-apiserver v1.34 with etcd, the
//! controller manager, the scheduler and kwok; infraflux-testkit) and compares the
//! answers: status codes, `Status` reasons and messages, and the fields of the objects
//! that a client reads (identity, labels, annotations, generation, finalizers, field
//! managers, every field sent coming back as sent).
//!
//! The sequence covers what the fake serves: discovery; the objects the Kubernetes
//! provider renders for a cluster's platform, namespace and handoff, applied as it
//! applies them; a no-op re-apply and a spec change; conflicting field managers (409)
//! and forcing; get, list and delete; namespaced objects without their namespace or at
//! the wrong path; a namespace being deleted; and status reads — the status the fake's
//! `ready_reactor` writes against the status the real controllers write after kwok ran
//! the pods.
//!
//! Where the fake does less than the real server (no controllers: a CRD is Established
//! only when the lab says so, no Deployment rolls out by itself) it is never kinder: it
//! refuses or waits where the real one would succeed, not the other way round. Each
//! such place is named below where the sequence steps in for the missing controller.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::apply::is_subset;
use infraflux_kubernetes::object::sort_for_apply;
use infraflux_kubernetes::provider::{HANDOFF, NAMESPACE, PLATFORM, Releases, render_resource};
use infraflux_kubernetes::readiness;
use infraflux_kubernetes::upstream::Sources;
use infraflux_lab::kubernetes::{FakeApiServer, make_ready};
use infraflux_testkit::control_plane;
use infraflux_testkit::endpoint::{Answer, Discovery, Endpoint};

/// The platform, namespace and handoff of one environment, as the provider renders
/// them (ArgoCD from its release files in `upstream`), in the provider's apply order.
async fn rendered(upstream: &Sources, environment: &str) -> Vec<Value> {
    let workloads = json!({"replicas": 1, "anti_affinity": false,
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let resources = [
        (
            PLATFORM,
            json!({"service": "cilium", "version": "1.18.4", "values": {},
                "environment": environment, "workloads": workloads}),
        ),
        (
            PLATFORM,
            json!({"service": "argocd", "version": "v3.5.1", "values": {},
                "environment": environment, "workloads": workloads,
                "adopt": [{"service": "cilium", "version": "1.18.4", "values": {}}]}),
        ),
        (
            PLATFORM,
            json!({"service": "cert_manager", "version": "v1.19.1", "values": {},
                "environment": environment, "workloads": workloads}),
        ),
        (
            NAMESPACE,
            json!({"name": environment, "environment": environment, "pod_security": "baseline",
                "default_deny": true, "quota": {"cpu": "8", "memory": "16Gi", "pods": 50},
                "workloads": workloads}),
        ),
        (
            HANDOFF,
            json!({"environment": environment, "project": format!("{environment}-workload"),
                "application": format!("{environment}-workload"), "argocd_namespace": "argocd",
                "repository": "https://git.example.internal/platform/apps.git",
                "revision": "main", "path": format!("environments/{environment}"),
                "destination_namespace": environment, "automated": true, "sync_wave": 0}),
        ),
    ];
    let mut manifests = Vec::new();
    for (kind, attributes) in resources {
        let attributes = attributes.as_object().unwrap();
        let releases = Releases::load(upstream, kind, attributes).await.unwrap();
        let mut objects = render_resource(kind, attributes, &releases)
            .unwrap()
            .manifests;
        sort_for_apply(&mut objects);
        manifests.extend(objects);
    }
    manifests
}

/// The two servers and what disagreed so far.
struct Differential {
    fake: Endpoint,
    real: Endpoint,
    steps: usize,
    disagreements: Vec<String>,
}

impl Differential {
    /// Send one request to both.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> (Answer, Answer) {
        self.steps += 1;
        let fake = self
            .fake
            .send(method, path, content_type, body.clone())
            .await;
        let real = self.real.send(method, path, content_type, body).await;
        (fake, real)
    }

    async fn get(&mut self, path: &str) -> (Answer, Answer) {
        self.send("GET", path, None, None).await
    }

    async fn delete(&mut self, path: &str) -> (Answer, Answer) {
        self.send("DELETE", path, None, None).await
    }

    async fn apply(
        &mut self,
        path: &str,
        body: &Value,
        manager: &str,
        force: bool,
    ) -> (Answer, Answer) {
        self.send(
            "PATCH",
            &format!("{path}?fieldManager={manager}&force={force}"),
            Some("application/apply-patch+yaml"),
            Some(body.to_string()),
        )
        .await
    }

    fn same(&mut self, step: &str, what: &str, fake: Value, real: Value) {
        if fake != real {
            self.disagreements
                .push(format!("{step}: {what}: fake {fake} ≠ real {real}"));
        }
    }

    /// Same status code; for failures the same `Status` reason and message.
    fn same_answer(&mut self, step: &str, fake: &Answer, real: &Answer) {
        self.same(step, "status code", json!(fake.status), json!(real.status));
        if !real.is_success() || !fake.is_success() {
            self.same(
                step,
                "body kind",
                fake.body["kind"].clone(),
                real.body["kind"].clone(),
            );
            self.same(step, "reason", json!(fake.reason()), json!(real.reason()));
            self.same(
                step,
                "message",
                json!(fake.message()),
                json!(real.message()),
            );
        }
    }

    /// An object both returned after `sent` was applied: the same identity, labels,
    /// annotations, generation, finalizers and field managers, and every field sent is
    /// there as sent.
    fn same_object(&mut self, step: &str, sent: &Value, fake: &Value, real: &Value) {
        let (fake, real) = (&without_controllers(fake), &without_controllers(real));
        for pointer in [
            "/apiVersion",
            "/kind",
            "/metadata/name",
            "/metadata/namespace",
            "/metadata/labels",
            "/metadata/annotations",
            "/metadata/generation",
            "/metadata/finalizers",
        ] {
            self.same(
                step,
                pointer,
                fake.pointer(pointer).cloned().unwrap_or(Value::Null),
                real.pointer(pointer).cloned().unwrap_or(Value::Null),
            );
        }
        for pointer in [
            "/metadata/uid",
            "/metadata/resourceVersion",
            "/metadata/creationTimestamp",
        ] {
            self.same(
                step,
                &format!("{pointer} is set"),
                json!(fake.pointer(pointer).is_some()),
                json!(real.pointer(pointer).is_some()),
            );
        }
        self.same(step, "field managers", managers(fake), managers(real));
        self.same(
            step,
            "every field sent is stored as sent",
            json!(is_subset(sent, fake)),
            json!(is_subset(sent, real)),
        );
        if !is_subset(sent, real) {
            self.disagreements
                .push(format!("{step}: the real server changed what was sent"));
        }
    }

    /// Apply `object` to both and compare; the answers.
    async fn apply_object(
        &mut self,
        step: &str,
        discovery: &mut Discovery,
        object: &Value,
        manager: &str,
        force: bool,
    ) -> (Answer, Answer) {
        let path = discovery
            .path_of(&self.real, object)
            .await
            .unwrap_or_else(|why| panic!("{step}: {why}"));
        let (fake, real) = self.apply(&path, object, manager, force).await;
        self.same_answer(step, &fake, &real);
        if fake.is_success() && real.is_success() {
            self.same_object(step, object, &fake.body, &real.body);
        }
        (fake, real)
    }
}

/// Controllers write to objects on the real server while the sequence runs (the
/// deployment controller's revision annotation); the fake runs none. Their
/// `managedFields` entries (operation `Update`) and the annotations they own are left
/// out of comparisons.
fn without_controllers(object: &Value) -> Value {
    let mut object = object.clone();
    let Some(entries) = object["metadata"]["managedFields"].as_array().cloned() else {
        return object;
    };
    let (controllers, others): (Vec<Value>, Vec<Value>) = entries
        .into_iter()
        .partition(|entry| entry["operation"] == "Update");
    for entry in &controllers {
        let owned = entry["fieldsV1"]["f:metadata"]["f:annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for key in owned.keys() {
            let name = key.trim_start_matches("f:");
            if let Some(annotations) = object["metadata"]["annotations"].as_object_mut() {
                annotations.remove(name);
                if annotations.is_empty() {
                    object["metadata"]
                        .as_object_mut()
                        .expect("metadata")
                        .remove("annotations");
                }
            }
        }
    }
    object["metadata"]["managedFields"] = Value::Array(others);
    object
}

/// `[(manager, operation)]` of an object's managedFields, sorted.
fn managers(object: &Value) -> Value {
    let mut managers: Vec<(String, String)> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            (
                entry["manager"].as_str().unwrap_or("").to_string(),
                entry["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    managers.sort();
    json!(managers)
}

/// The names of a list's items, sorted.
fn names(list: &Value) -> Value {
    let names: BTreeSet<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    json!(names)
}

fn crd_name(crd: &Value) -> &str {
    crd["metadata"]["name"].as_str().unwrap_or("")
}

/// Condition `(type, status)` pairs.
fn conditions(object: &Value) -> Value {
    let pairs: BTreeSet<(String, String)> = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    json!(pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_answers_as_the_real_api_server_does() {
    let Some(plane) = control_plane::shared() else {
        return;
    };
    // ArgoCD's release files beside the workspace, as an offline mirror.
    let Some(upstream) = infraflux_kubernetes::upstream::testing::mirror_sources() else {
        return;
    };
    let server = FakeApiServer::start().await.unwrap();
    let mut test = Differential {
        fake: Endpoint::plain(server.url()),
        real: plane.endpoint(),
        steps: 0,
        disagreements: Vec::new(),
    };
    discovery(&mut test).await;
    let objects = rendered(&upstream, "diff").await;
    platform(&mut test, &server, &objects).await;
    conflicts(&mut test).await;
    reads_and_deletes(&mut test).await;
    wrong_places(&mut test).await;
    namespace_deletion(&mut test).await;
    status_reads(&mut test, &objects).await;
    definition_deletion(&mut test, &objects).await;

    let summary = format!(
        "fake Kubernetes API against the real API server {}: {} requests to each, {} rendered objects, {} disagreements\n",
        plane.version,
        test.steps,
        objects.len(),
        test.disagreements.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(
        test.disagreements.is_empty(),
        "the fake and the real API server ({}) disagree:\n{}",
        plane.version,
        test.disagreements.join("\n")
    );
}

/// `/api`, `/apis`, and every group version the fake serves: the fake's resources are
/// the real server's (plural, kind, scope), its verbs a subset of the real verbs.
async fn discovery(test: &mut Differential) {
    let (fake, real) = test.get("/api").await;
    test.same_answer("GET /api", &fake, &real);
    test.same(
        "GET /api",
        "kind",
        fake.body["kind"].clone(),
        real.body["kind"].clone(),
    );
    test.same(
        "GET /api",
        "versions",
        fake.body["versions"].clone(),
        real.body["versions"].clone(),
    );

    let (fake, real) = test.get("/apis").await;
    test.same_answer("GET /apis", &fake, &real);
    test.same(
        "GET /apis",
        "kind",
        fake.body["kind"].clone(),
        real.body["kind"].clone(),
    );
    let mut group_versions = vec!["v1".to_string()];
    for group in fake.body["groups"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or("");
        let Some(real_group) = real.body["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == name)
        else {
            test.disagreements.push(format!(
                "GET /apis: the fake serves group {name}, the real one does not"
            ));
            continue;
        };
        test.same(
            &format!("GET /apis {name}"),
            "preferred version",
            group["preferredVersion"].clone(),
            real_group["preferredVersion"].clone(),
        );
        for version in group["versions"].as_array().into_iter().flatten() {
            group_versions.push(version["groupVersion"].as_str().unwrap_or("").to_string());
        }
    }
    for group_version in group_versions {
        let path = if group_version == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group_version}")
        };
        let (fake, real) = test.get(&path).await;
        let step = format!("GET {path}");
        test.same_answer(&step, &fake, &real);
        test.same(
            &step,
            "kind",
            fake.body["kind"].clone(),
            real.body["kind"].clone(),
        );
        test.same(
            &step,
            "groupVersion",
            fake.body["groupVersion"].clone(),
            real.body["groupVersion"].clone(),
        );
        for resource in fake.body["resources"].as_array().into_iter().flatten() {
            let name = resource["name"].as_str().unwrap_or("");
            let Some(twin) = real.body["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == name)
            else {
                test.disagreements.push(format!(
                    "{step}: the fake serves {name}, the real one does not"
                ));
                continue;
            };
            for field in ["kind", "namespaced", "singularName"] {
                test.same(
                    &format!("{step} {name}"),
                    field,
                    resource[field].clone(),
                    twin[field].clone(),
                );
            }
            let verbs = |r: &Value| -> BTreeSet<String> {
                r["verbs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let extra: Vec<String> = verbs(resource).difference(&verbs(twin)).cloned().collect();
            if !extra.is_empty() {
                test.disagreements.push(format!(
                    "{step} {name}: the fake claims verbs the real one does not have: {extra:?}"
                ));
            }
        }
    }
    for path in ["/apis/nothing.example.com/v1", "/apis/apps/v1/nothings"] {
        let (fake, real) = test.get(path).await;
        test.same_answer(&format!("GET {path}"), &fake, &real);
    }
    // The namespaces every cluster starts with.
    let (fake, real) = test.get("/api/v1/namespaces").await;
    test.same_answer("GET /api/v1/namespaces", &fake, &real);
    test.same(
        "GET /api/v1/namespaces",
        "names",
        names(&fake.body),
        names(&real.body),
    );
}

/// Every rendered object applied as the provider applies it (CRDs first, then
/// namespaces, then the rest), compared; again, unchanged; a spec change bumps the
/// generation on both.
async fn platform(test: &mut Differential, server: &FakeApiServer, objects: &[Value]) {
    let mut discovery = Discovery::default();
    for object in objects {
        let step = format!(
            "apply {} {}",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        test.apply_object(&step, &mut discovery, object, "infraflux", false)
            .await;
        if object["kind"] == "CustomResourceDefinition" {
            // The real apiextensions controller establishes a CRD within moments; the
            // fake runs no controllers and waits for the lab (here: the test) to say
            // so. Until then it refuses the CRD's kinds: slower, never kinder.
            let name = crd_name(object);
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            let established = test
                .real
                .wait_until(&path, Duration::from_secs(30), |answer| {
                    answer.body["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                })
                .await
                .expect("the real server establishes the CRD");
            assert!(server.establish(name));
            let (fake, _) = test.get(&path).await;
            test.same(
                &format!("{step} (established)"),
                "conditions",
                conditions(&fake.body),
                conditions(&established),
            );
        }
    }
    // The same objects again: nothing changes (resourceVersion and generation).
    for object in objects {
        let step = format!(
            "re-apply {} {}",
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        let path = discovery.path_of(&test.real, object).await.unwrap();
        let (fake_before, real_before) = test.get(&path).await;
        let (fake, real) = test.apply(&path, object, "infraflux", false).await;
        test.same_answer(&step, &fake, &real);
        for (name, before, after) in [
            ("fake", &fake_before.body, &fake.body),
            ("real", &real_before.body, &real.body),
        ] {
            for pointer in ["/metadata/resourceVersion", "/metadata/generation"] {
                if before.pointer(pointer) != after.pointer(pointer)
                    // Controllers write status on the real server meanwhile: only a
                    // change of the object's own fields counts.
                    && !(name == "real" && pointer == "/metadata/resourceVersion")
                {
                    test.disagreements.push(format!(
                        "{step}: the {name} server changed {pointer} on a no-op apply"
                    ));
                }
            }
        }
    }
    // A spec change moves the generation by one; a label change does not.
    let mut discovery = Discovery::default();
    if let Some(deployment) = objects.iter().find(|o| o["kind"] == "Deployment") {
        let mut scaled = deployment.clone();
        scaled["spec"]["replicas"] = json!(3);
        test.apply_object(
            "scale a Deployment",
            &mut discovery,
            &scaled,
            "infraflux",
            false,
        )
        .await;
        let mut labelled = scaled.clone();
        labelled["metadata"]["labels"]["differential"] = json!("yes");
        test.apply_object(
            "label a Deployment",
            &mut discovery,
            &labelled,
            "infraflux",
            false,
        )
        .await;
        // Back as rendered: the real one must roll out on its one node below.
        test.apply_object(
            "restore a Deployment",
            &mut discovery,
            deployment,
            "infraflux",
            false,
        )
        .await;
    }
}

/// Two field managers: a different value is a 409 naming field and owner, the same
/// value is shared ownership, forcing takes the field over.
async fn conflicts(test: &mut Differential) {
    let mut discovery = Discovery::default();
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diff-owners"}});
    test.apply_object(
        "namespace diff-owners",
        &mut discovery,
        &namespace,
        "infraflux",
        false,
    )
    .await;
    let config = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "diff-owners"}, "data": data})
    };
    let steps = [
        (
            "infraflux creates",
            "infraflux",
            false,
            json!({"mode": "a", "level": "1"}),
        ),
        (
            "helm, one field differs",
            "helm",
            false,
            json!({"mode": "b", "level": "1"}),
        ),
        (
            "helm, the same values",
            "helm",
            false,
            json!({"mode": "a", "level": "1"}),
        ),
        (
            "helm, two fields differ",
            "helm",
            false,
            json!({"mode": "b", "level": "2"}),
        ),
        (
            "helm forces",
            "helm",
            true,
            json!({"mode": "b", "level": "2"}),
        ),
        (
            "infraflux, fields helm took",
            "infraflux",
            false,
            json!({"mode": "c", "level": "1"}),
        ),
        (
            "infraflux drops a shared field",
            "infraflux",
            false,
            json!({"mode": "b"}),
        ),
        (
            "infraflux forces",
            "infraflux",
            true,
            json!({"mode": "c", "level": "3"}),
        ),
        ("helm lets go of level", "helm", false, json!({"mode": "c"})),
    ];
    for (step, manager, force, data) in steps {
        test.apply_object(step, &mut discovery, &config(data), manager, force)
            .await;
        let (fake, real) = test
            .get("/api/v1/namespaces/diff-owners/configmaps/settings")
            .await;
        test.same(
            &format!("{step}, then GET"),
            "data",
            fake.body["data"].clone(),
            real.body["data"].clone(),
        );
        test.same(
            &format!("{step}, then GET"),
            "field managers",
            managers(&fake.body),
            managers(&real.body),
        );
    }
}

/// GET, LIST and DELETE, of what exists and of what does not.
async fn reads_and_deletes(test: &mut Differential) {
    let base = "/api/v1/namespaces/diff-owners/configmaps";
    let (fake, real) = test.get(&format!("{base}/settings")).await;
    test.same_answer("GET a ConfigMap", &fake, &real);
    for path in [
        format!("{base}/missing"),
        "/apis/apps/v1/namespaces/diff-owners/deployments/missing".to_string(),
        "/api/v1/namespaces/missing".to_string(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/missing".to_string(),
    ] {
        let (fake, real) = test.get(&path).await;
        test.same_answer(&format!("GET {path}"), &fake, &real);
    }
    for path in [
        format!("{base}/settings/status"),
        "/api/v1/namespaces/diff-owners/status".to_string(),
        "/api/v1/namespaces/diff-owners/resourcequotas/missing/status".to_string(),
    ] {
        let (fake, real) = test.get(&path).await;
        test.same_answer(&format!("GET {path}"), &fake, &real);
    }
    let (fake, real) = test.get(base).await;
    test.same_answer("LIST ConfigMaps", &fake, &real);
    for field in ["kind", "apiVersion"] {
        test.same(
            "LIST ConfigMaps",
            field,
            fake.body[field].clone(),
            real.body[field].clone(),
        );
    }
    test.same(
        "LIST ConfigMaps",
        "names",
        names(&fake.body),
        names(&real.body),
    );
    let (fake, real) = test
        .get("/api/v1/namespaces/diff-owners/serviceaccounts")
        .await;
    test.same(
        "LIST ServiceAccounts",
        "names",
        names(&fake.body),
        names(&real.body),
    );

    let (fake, real) = test.delete(&format!("{base}/settings")).await;
    test.same_answer("DELETE a ConfigMap", &fake, &real);
    test.same(
        "DELETE a ConfigMap",
        "body kind",
        fake.body["kind"].clone(),
        real.body["kind"].clone(),
    );
    let (fake, real) = test.get(&format!("{base}/settings")).await;
    test.same_answer("GET a deleted ConfigMap", &fake, &real);
    let (fake, real) = test.delete(&format!("{base}/settings")).await;
    test.same_answer("DELETE it again", &fake, &real);
    let (fake, real) = test.get(base).await;
    test.same(
        "LIST after DELETE",
        "names",
        names(&fake.body),
        names(&real.body),
    );
}

/// Objects sent where they do not belong.
async fn wrong_places(test: &mut Differential) {
    let deployment = |namespace: Option<&str>, name: &str| {
        let mut object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        if let Some(namespace) = namespace {
            object["metadata"]["namespace"] = json!(namespace);
        }
        object
    };
    let cases = [
        (
            "a namespaced object in a namespace that does not exist",
            "/apis/apps/v1/namespaces/nowhere/deployments/web",
            deployment(Some("nowhere"), "web"),
        ),
        (
            "a namespaced object at a path without a namespace",
            "/apis/apps/v1/deployments/web",
            deployment(None, "web"),
        ),
        (
            "a namespaced object whose namespace is not the path's",
            "/apis/apps/v1/namespaces/diff-owners/deployments/web",
            deployment(Some("default"), "web"),
        ),
        (
            "an object whose name is not the path's",
            "/apis/apps/v1/namespaces/diff-owners/deployments/web",
            deployment(Some("diff-owners"), "other"),
        ),
        (
            "a cluster-scoped object at a namespaced path",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/diff-owners/clusterroles/reader",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "reader"}, "rules": []}),
        ),
        (
            "a field the schema does not declare",
            "/apis/apps/v1/namespaces/diff-owners/deployments/misspelt",
            {
                let mut object = deployment(Some("diff-owners"), "misspelt");
                object["spec"]["replica"] = json!(2);
                object
            },
        ),
        (
            "a field the schema does not declare, in a list element",
            "/apis/apps/v1/namespaces/diff-owners/deployments/misspelt",
            {
                let mut object = deployment(Some("diff-owners"), "misspelt");
                object["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
                object
            },
        ),
        (
            "a field the schema does not declare, cluster-scoped",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/misspelt",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "misspelt"}, "rules": [], "rulez": []}),
        ),
        (
            "a kind the server does not serve",
            "/apis/example.com/v1/namespaces/diff-owners/widgets/w",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "namespace": "diff-owners"}}),
        ),
        ("without a field manager", "", json!({})),
    ];
    for (step, path, body) in cases {
        let (fake, real) = if path.is_empty() {
            test.send(
                "PATCH",
                "/api/v1/namespaces/diff-owners/configmaps/unmanaged",
                Some("application/apply-patch+yaml"),
                Some(
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "unmanaged", "namespace": "diff-owners"}})
                    .to_string(),
                ),
            )
            .await
        } else {
            test.apply(path, &body, "infraflux", false).await
        };
        test.same_answer(step, &fake, &real);
    }
}

/// A namespace held by a finalizer: deleting it makes it Terminating (nothing new may
/// be created in it) and removes what is in it; it goes once the finalizer is released.
async fn namespace_deletion(test: &mut Differential) {
    let mut discovery = Discovery::default();
    let namespace = |finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "diff-leaving", "finalizers": finalizers}})
    };
    test.apply_object(
        "namespace diff-leaving",
        &mut discovery,
        &namespace(json!(["infraflux.test/hold"])),
        "infraflux",
        false,
    )
    .await;
    let config = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "diff-leaving"}, "data": {"a": "b"}})
    };
    test.apply_object(
        "a ConfigMap in it",
        &mut discovery,
        &config("inside"),
        "infraflux",
        false,
    )
    .await;
    let path = "/api/v1/namespaces/diff-leaving";
    let (fake, real) = test.delete(path).await;
    test.same_answer("DELETE the namespace", &fake, &real);
    for pointer in [
        "/kind",
        "/status/phase",
        "/metadata/finalizers",
        "/spec/finalizers",
    ] {
        test.same(
            "DELETE the namespace",
            pointer,
            fake.body.pointer(pointer).cloned().unwrap_or(Value::Null),
            real.body.pointer(pointer).cloned().unwrap_or(Value::Null),
        );
    }
    test.same(
        "DELETE the namespace",
        "deletionTimestamp is set",
        json!(fake.body.pointer("/metadata/deletionTimestamp").is_some()),
        json!(real.body.pointer("/metadata/deletionTimestamp").is_some()),
    );
    let (fake, real) = test
        .apply(
            "/api/v1/namespaces/diff-leaving/configmaps/late",
            &config("late"),
            "infraflux",
            false,
        )
        .await;
    test.same_answer("create in a Terminating namespace", &fake, &real);
    // The namespace controller empties it; the finalizer keeps the namespace. Emptied
    // means no item left at all: a real list without `inside` could still hold
    // `kube-root-ca.crt` (the controller manager publishes it in every namespace; the
    // namespace controller deletes it too), which made this comparison flaky on a loaded
    // machine.
    let configmaps = "/api/v1/namespaces/diff-leaving/configmaps";
    let emptied = |answer: &Answer| {
        answer.is_success()
            && answer.body["items"]
                .as_array()
                .is_none_or(|items| items.is_empty())
    };
    let real_emptied = test
        .real
        .wait_until(configmaps, Duration::from_secs(60), emptied)
        .await;
    let fake_emptied = test
        .fake
        .wait_until(configmaps, Duration::from_secs(60), emptied)
        .await;
    test.same(
        "a Terminating namespace, emptied",
        "names",
        names(fake_emptied.as_ref().unwrap_or(&Value::Null)),
        names(real_emptied.as_ref().unwrap_or(&Value::Null)),
    );
    let (fake, real) = test.get(path).await;
    test.same_answer("GET a Terminating namespace", &fake, &real);
    test.same(
        "GET a Terminating namespace",
        "phase",
        fake.body["status"]["phase"].clone(),
        real.body["status"]["phase"].clone(),
    );
    // Released: gone.
    let (fake, real) = test
        .apply(path, &namespace(json!([])), "infraflux", false)
        .await;
    test.same_answer("release the finalizer", &fake, &real);
    let gone = |answer: &Answer| answer.status == 404;
    let real_gone = test
        .real
        .wait_until(path, Duration::from_secs(60), gone)
        .await;
    let fake_gone = test
        .fake
        .wait_until(path, Duration::from_secs(60), gone)
        .await;
    test.same(
        "after the finalizer is released",
        "gone",
        json!(fake_gone.is_some()),
        json!(real_gone.is_some()),
    );
}

/// What the fake's ready_reactor writes is what the real controllers write, in the
/// fields a reader looks at: the same status fields and condition types, and the same
/// verdict by the kstatus rules.
async fn status_reads(test: &mut Differential, objects: &[Value]) {
    let mut discovery = Discovery::default();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        if ![
            "Deployment",
            "DaemonSet",
            "StatefulSet",
            "Job",
            "CustomResourceDefinition",
        ]
        .contains(&kind)
        {
            continue;
        }
        let step = format!(
            "status of {kind} {}",
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        let path = discovery.path_of(&test.real, object).await.unwrap();
        // Real: wait until the controllers made it Current (kwok runs the pods).
        let Some(real) = test
            .real
            .wait_until(&path, Duration::from_secs(120), |answer| {
                readiness::status(Some(&answer.body)).is_current()
            })
            .await
        else {
            let live = test.real.get(&path).await.body;
            test.disagreements.push(format!(
                "{step}: not Current on the real server within 120s: {}",
                readiness::status(Some(&live))
            ));
            continue;
        };
        let (fake, real_again) = test.get(&path).await;
        test.same_answer(&step, &fake, &real_again);
        let mut ready = fake.body.clone();
        make_ready(&mut ready);
        let keys = |status: &Value| -> BTreeSet<String> {
            status
                .as_object()
                .map(|map| map.keys().cloned().collect())
                .unwrap_or_default()
        };
        let missing: Vec<String> = keys(&ready["status"])
            .difference(&keys(&real["status"]))
            .cloned()
            .collect();
        if !missing.is_empty() {
            test.disagreements.push(format!(
                "{step}: the fake's ready status has fields the real one lacks: {missing:?}"
            ));
        }
        let types = |object: &Value| -> BTreeSet<String> {
            object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["type"].as_str().map(str::to_string))
                .collect()
        };
        let invented: Vec<String> = types(&ready).difference(&types(&real)).cloned().collect();
        if !invented.is_empty() {
            test.disagreements.push(format!(
                "{step}: the fake's ready status has conditions the real one lacks: {invented:?}"
            ));
        }
        test.same(
            &step,
            "kstatus verdict",
            json!(readiness::status(Some(&ready)).to_string()),
            json!(readiness::status(Some(&real)).to_string()),
        );
    }
}

/// A custom resource deleted, then its CRD: the CRD is Terminating until its custom
/// resources are gone, then it goes and its kind is no longer served.
async fn definition_deletion(test: &mut Differential, objects: &[Value]) {
    let Some(resource) = objects
        .iter()
        .find(|o| o["kind"] == "AppProject" || o["kind"] == "Application")
    else {
        return;
    };
    let mut discovery = Discovery::default();
    let path = discovery.path_of(&test.real, resource).await.unwrap();
    let (fake, real) = test.delete(&path).await;
    test.same_answer("DELETE a custom resource", &fake, &real);
    test.same(
        "DELETE a custom resource",
        "body kind",
        fake.body["kind"].clone(),
        real.body["kind"].clone(),
    );
    let (fake, real) = test.get(&path).await;
    test.same_answer("GET a deleted custom resource", &fake, &real);

    let crd = objects
        .iter()
        .find(|o| {
            o["kind"] == "CustomResourceDefinition"
                && o["spec"]["names"]["kind"] == resource["kind"]
        })
        .expect("the CRD of a rendered custom resource is rendered");
    let crd_path = format!(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{}",
        crd_name(crd)
    );
    let (fake, real) = test.delete(&crd_path).await;
    test.same_answer("DELETE a CRD", &fake, &real);
    for pointer in ["/kind", "/metadata/finalizers"] {
        test.same(
            "DELETE a CRD",
            pointer,
            fake.body.pointer(pointer).cloned().unwrap_or(Value::Null),
            real.body.pointer(pointer).cloned().unwrap_or(Value::Null),
        );
    }
    let gone = |answer: &Answer| answer.status == 404;
    let real_gone = test
        .real
        .wait_until(&crd_path, Duration::from_secs(60), gone)
        .await;
    let fake_gone = test
        .fake
        .wait_until(&crd_path, Duration::from_secs(60), gone)
        .await;
    test.same(
        "a deleted CRD",
        "gone",
        json!(fake_gone.is_some()),
        json!(real_gone.is_some()),
    );
    // Its kind is no longer served (discovery takes a moment on the real server).
    let list = path
        .rsplit_once('/')
        .map_or(path.as_str(), |(list, _)| list)
        .to_string();
    let real_unserved = test
        .real
        .wait_until(&list, Duration::from_secs(60), gone)
        .await;
    let (fake, real) = test.get(&list).await;
    test.same_answer("LIST the kind of a deleted CRD", &fake, &real);
    test.same(
        "LIST the kind of a deleted CRD",
        "not served",
        json!(fake.status == 404),
        json!(real_unserved.is_some()),
    );
}
