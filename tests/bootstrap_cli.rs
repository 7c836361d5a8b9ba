//! `infraflux bootstrap` over the shipped configuration (`config/`), its ready signals
//! read from a real Kubernetes control plane (kube-apiserver, controller manager,
//! scheduler and kwok's fake nodes; infraflux-testkit).
//!
//! Most tests stand mock providers in for proxmox, talos and kubernetes, so that they
//! count what the engine asked for; the control plane holds what the configuration's
//! kubernetes resources render, applied as the provider applies them and really rolled
//! out on kwok's nodes, with ArgoCD's application controller played by the test. What is
//! proven: environments run in promotion order (dev → staging → prod), the first failure
//! (of an apply or of a ready signal) stops the run, a second run changes nothing and
//! checks the signal again, `--json` has the documented shape, `--render` writes files
//! and touches nothing.
//!
//! And one bootstrap with the real Kubernetes provider: the kubeconfig Talos hands out
//! (here: the control plane's) drives the apply of the platform, the namespace and the
//! handoff, and the ready signal turns ready on what was applied.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use infraflux::config::Selection;
use infraflux_kubernetes::api::ApiError;
use infraflux_kubernetes::api::{ApplyOptions, KubeApi};
use infraflux_kubernetes::apply::apply_manifests;
use infraflux_kubernetes::client::{ClientOptions, KubeClient, Kubeconfig};
use infraflux_kubernetes::object::ObjectRef;
use infraflux_kubernetes::provider::{Connector, KubernetesProvider, ProviderOptions, Releases};
use infraflux_kubernetes::wait::{WaitOptions, wait_for};
use infraflux_provider_mock::Op;
use infraflux_testkit::argocd::{self, ApplicationController};
use infraflux_testkit::control_plane::{ControlPlane, Exclusive};
use support::control_plane;
use support::engine::{Engine, Variables};

/// Nodes of the control plane (kwok's `kwok-node-0` and more): as many as the largest
/// cluster of the configuration has, so every cluster's node count is met.
const NODES: usize = 20;

/// Every cluster's API is the one control plane (the clusters' objects have distinct
/// names: namespaces and handoffs are per environment).
struct OneCluster {
    kubeconfig: Kubeconfig,
    opened: Mutex<usize>,
}

#[async_trait]
impl Connector for OneCluster {
    async fn connect(&self, _kubeconfig: &Kubeconfig) -> Result<Arc<dyn KubeApi>, ApiError> {
        Ok(Arc::new(
            KubeClient::new(&self.kubeconfig, ClientOptions::default()).await?,
        ))
    }

    /// The mock's kubeconfig in state names no cluster: every cluster is the one plane.
    async fn open(&self, _kubeconfig: &str) -> Result<Arc<dyn KubeApi>, String> {
        *self.opened.lock().unwrap() += 1;
        self.connect(&self.kubeconfig)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The engine with mock providers; the control plane holding every kubernetes resource
/// of every environment, rolled out and Current, with [`NODES`] Ready nodes.
struct Harness {
    engine: Engine,
    clusters: Arc<OneCluster>,
    plane: &'static ControlPlane,
    argocd: Mutex<Option<ApplicationController>>,
    // Tests of this binary change the one plane's Applications: one at a time.
    _alone: Exclusive,
}

impl std::ops::Deref for Harness {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Harness {
    /// `None` (skipped, reason printed) without the control plane's binaries.
    fn new() -> Option<Self> {
        let plane = control_plane::shared()?;
        let alone = plane.exclusive();
        let argocd = ApplicationController::healthy(plane.endpoint());
        let kubeconfig = Kubeconfig::new(plane.kubeconfig_text()).unwrap();
        // The plane is this process's: populated by the first harness, its objects kept
        // by every test (none deletes or changes one; the Applications' statuses are
        // the controller's). A later harness only waits until its healthy controller has
        // written every status back, which an earlier test may have changed.
        static POPULATED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        let runtime = control_plane::runtime();
        if POPULATED.get().is_some() {
            assert!(
                runtime.block_on(argocd.written(Duration::from_secs(30))),
                "the application controller did not write the statuses"
            );
        } else {
            runtime.block_on(populate(plane, &kubeconfig));
            POPULATED.get_or_init(|| ());
        }
        let clusters = Arc::new(OneCluster {
            kubeconfig,
            opened: Mutex::new(0),
        });
        // The ready signal: the real Kubernetes provider, its connections opened on the
        // control plane.
        let signal = Arc::new(KubernetesProvider::with_connector(
            clusters.clone(),
            ProviderOptions {
                upstream: support::upstream::sources(),
                ..Default::default()
            },
        ));
        Some(Harness {
            engine: Engine::new().clusters(signal),
            clusters,
            plane,
            argocd: Mutex::new(Some(argocd)),
            _alone: alone,
        })
    }

    /// ArgoCD decides otherwise from now on: each Application gets `decide`'s status
    /// (returned once the controller has written it).
    fn argocd(&self, decide: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static) {
        let mut slot = self.argocd.lock().unwrap();
        drop(slot.take());
        let controller = ApplicationController::start(self.plane.endpoint(), decide);
        assert!(
            control_plane::runtime().block_on(controller.written(Duration::from_secs(30))),
            "the application controller did not write the statuses"
        );
        *slot = Some(controller);
    }
}

/// The configuration's kubernetes resources (every environment), as the model has them.
fn kubernetes_resources() -> Vec<infraflux::graph::DesiredResource> {
    let (_, model, problems) = infraflux::operation::load::load_model(
        &support::example_config(),
        &Selection::default(),
        &Variables::example(),
        false,
    );
    assert!(!problems.has_errors());
    infraflux::graph::build_desired(&model.unwrap())
        .into_iter()
        .filter(|resource| resource.provider == "kubernetes")
        .collect()
}

/// Apply what every kubernetes resource of the configuration renders, as the real
/// provider would have, and wait until all of it is Current: workloads rolled out on
/// kwok's nodes, CRDs Established, Applications Synced and Healthy.
async fn populate(plane: &ControlPlane, kubeconfig: &Kubeconfig) {
    for index in 1..NODES {
        plane.add_node(&format!("kwok-node-{index}")).await.unwrap();
    }
    let client = KubeClient::new(kubeconfig, ClientOptions::default())
        .await
        .unwrap();
    let wait = WaitOptions {
        timeout: Duration::from_secs(180),
        interval: Duration::from_millis(200),
    };
    let mut targets = Vec::new();
    for resource in kubernetes_resources() {
        let releases = Releases::load(
            &support::upstream::sources(),
            &resource.kind,
            &resource.attributes,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", resource.address));
        let rendered = infraflux_kubernetes::provider::render_resource(
            &resource.kind,
            &resource.attributes,
            &releases,
        )
        .unwrap();
        apply_manifests(&client, &rendered.manifests, ApplyOptions::default(), wait)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", resource.address));
        targets.extend(
            rendered
                .manifests
                .iter()
                .filter_map(ObjectRef::from_manifest)
                .map(|object| (object, rendered.expectation.clone())),
        );
    }
    targets.dedup();
    wait_for(&client, &targets, wait)
        .await
        .unwrap_or_else(|e| panic!("the configuration did not become ready: {e}"));
}

fn environment_of(address: &str) -> &str {
    address.split('/').next().unwrap()
}

/// The ready-signal reports in a run's standard output (without the plans before them).
fn signals(stdout: &str) -> String {
    let mut report = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        inside = line.starts_with("Ready signal for ") || (inside && line.starts_with(' '));
        if inside {
            report.push(line);
        }
    }
    report.join("\n")
}

/// `text` from the first occurrence of `start` on.
fn from<'a>(text: &'a str, start: &str) -> &'a str {
    let at = text
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in:\n{text}"));
    &text[at..]
}

/// Position of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}` in:\n{text}"))
}

#[test]
fn environments_are_applied_and_signalled_in_promotion_order() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    let run = harness.run(&["bootstrap", "--auto-approve", "--timeout", "5s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Every create of dev before any of staging, every one of staging before prod.
    assert!(harness.created().len() > 30);
    let mut environments: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(": Creation complete"))
        .map(environment_of)
        .collect();
    environments.dedup();
    assert_eq!(environments, ["dev", "staging", "prod"]);

    // Progress: each environment applied, then its clusters signalled, in order.
    let err = &run.stderr;
    let dev_ready = line_of(err, "OK dev/workload: ready signal (");
    assert!(line_of(err, "> dev: plan and apply") < line_of(err, "OK dev: plan and apply ("));
    assert!(line_of(err, "OK dev: plan and apply (") < dev_ready);
    assert!(dev_ready < line_of(err, "> staging: plan and apply"));
    assert!(
        line_of(err, "OK staging/workload: ready signal (")
            < line_of(err, "> prod: plan and apply")
    );
    for cluster in ["workload", "edge", "management"] {
        line_of(err, &format!("OK prod/{cluster}: ready signal ("));
    }
    assert!(
        !err.contains('▸') && !err.contains('✔'),
        "ASCII off a terminal"
    );

    // The signal per cluster on standard output.
    insta::assert_snapshot!("bootstrap_all_signals", signals(&run.stdout));
    assert_eq!(*harness.clusters.opened.lock().unwrap(), 5);
}

#[test]
fn a_second_run_changes_nothing_and_checks_the_signal_again() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    let first = harness.run(&["bootstrap", "--auto-approve", "--timeout", "5s"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let (creates, updates, deletes) = (
        harness.count(Op::Create),
        harness.count(Op::Update),
        harness.count(Op::Delete),
    );
    // No --auto-approve: a run with changes would have to ask, and cannot here.
    let second = harness.run(&["bootstrap", "--timeout", "5s"]);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert_eq!(harness.count(Op::Create), creates);
    assert_eq!(harness.count(Op::Update), updates);
    assert_eq!(harness.count(Op::Delete), deletes);
    insta::assert_snapshot!("bootstrap_again_stdout", second.stdout);
    assert_eq!(*harness.clusters.opened.lock().unwrap(), 10);
}

#[test]
fn a_failed_apply_stops_before_the_next_environment() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    harness.mock("talos").fail(
        Op::Create,
        "dev/workload/talos_bootstrap.cluster",
        "etcd did not start",
    );
    let run = harness.run(&["bootstrap", "--auto-approve", "--timeout", "5s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("FAIL dev: plan and apply: apply did not complete"),
        "{}",
        run.stderr
    );
    insta::assert_snapshot!(
        "bootstrap_failed_apply_summary",
        from(&run.stdout, "Apply failed")
    );
    assert!(!run.stderr.contains("staging"), "{}", run.stderr);
    assert!(
        harness.created().iter().all(|a| environment_of(a) == "dev"),
        "nothing outside dev is created"
    );
    assert_eq!(*harness.clusters.opened.lock().unwrap(), 0);
}

#[test]
fn a_degraded_handoff_fails_the_signal_and_stops_promotion() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    harness.argocd(|application| {
        Some(if application["metadata"]["name"] == "dev-workload" {
            argocd::degraded(application, "web", "CrashLoopBackOff")
        } else {
            argocd::synced_and_healthy(application)
        })
    });
    let run = harness.run(&["bootstrap", "--auto-approve", "--timeout", "5s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("FAIL dev/workload: ready signal: failed: handoff dev-workload"),
        "{}",
        run.stderr
    );
    insta::assert_snapshot!("bootstrap_degraded_handoff_signal", signals(&run.stdout));
    assert!(!run.stderr.contains("staging"), "{}", run.stderr);
}

#[test]
fn a_signal_not_ready_in_time_names_what_is_missing() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    // ArgoCD has not synced dev's workloads yet.
    harness.argocd(|application| {
        Some(if application["metadata"]["name"] == "dev-workload" {
            argocd::out_of_sync(application)
        } else {
            argocd::synced_and_healthy(application)
        })
    });
    let run = harness.run(&[
        "bootstrap",
        "--env",
        "dev",
        "--auto-approve",
        "--timeout",
        "1s",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Ready signal for dev/workload: NOT READY after 1s"),
        "{}",
        run.stdout
    );
    insta::assert_snapshot!("bootstrap_not_ready_in_time_signal", signals(&run.stdout));
    assert!(!run.stdout.contains("deadline"));
}

#[test]
fn json_reports_every_environment_and_check() {
    let Some(harness) = Harness::new() else {
        return;
    };
    let run = harness.run(&["bootstrap", "--auto-approve", "--timeout", "5s", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(report["ready"], true);
    assert_eq!(report["outcome"], "ready");
    let environments: Vec<&str> = report["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert_eq!(environments, ["dev", "staging", "prod"]);
    let dev = &report["environments"][0];
    assert_eq!(dev["apply"], "succeeded");
    let cluster = &dev["clusters"][0];
    assert_eq!(cluster["cluster"], "workload");
    assert_eq!(cluster["environment"], "dev");
    assert_eq!(cluster["ready"], true);
    assert_eq!(cluster["signal"]["outcome"], "ready");
    let check = &cluster["signal"]["checks"][1];
    assert_eq!(check["name"], "nodes");
    assert_eq!(check["state"], "ready");
    assert!(check["summary"].is_string());
    assert!(check["not_ready"].as_array().unwrap().is_empty());
    // The plans went to standard error.
    assert!(run.stderr.contains("Plan:"), "{}", run.stderr);
}

#[test]
fn render_writes_manifests_and_applies_nothing() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rendered");
    let run = harness.run(&[
        "bootstrap",
        "--env",
        "dev",
        "--render",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(harness.count(Op::Create), 0);
    assert_eq!(*harness.clusters.opened.lock().unwrap(), 0);
    let manifests = out.join("dev/workload/kubernetes");
    let files: Vec<PathBuf> = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 20, "one file per object: {files:?}");
    assert!(
        files.iter().any(|f| f
            .to_string_lossy()
            .ends_with("-argoproj.io-application-argocd-dev-workload.yaml")),
        "{files:?}"
    );
    for file in &files {
        assert!(run.stdout.contains(&file.display().to_string()));
        // Helm values may carry secrets from the configuration.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }
    insta::assert_snapshot!("bootstrap_render_stdout", run.stdout);
    // No secrets in state yet: no machine configs, and the reason.
    assert!(!out.join("dev/workload/talos").exists());
    insta::assert_snapshot!("bootstrap_render_stderr", run.stderr);
}

#[test]
fn apply_ends_with_the_signal_and_keeps_its_exit_code() {
    let _filters = support::filters();
    // The real provider's signal (as wired by default), which opens the kubeconfig in state.
    let harness = Engine::new();
    let run = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Apply takes the signal with the kubeconfig from state; the mock's is not a real
    // kubeconfig, and the report says so without quoting it.
    let tail = &run.stdout[run.stdout.find("Apply complete!").expect("a summary")..];
    insta::assert_snapshot!("apply_tail", tail);
    assert!(!tail.contains("kubeconfig-"), "{tail}");
}

#[test]
fn an_interrupt_exits_130_and_promotes_nothing_further() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    // Ctrl-C before the first apply starts anything.
    harness.cancel.cancel();
    let run = harness.run(&["bootstrap", "--auto-approve", "--json"]);
    assert_eq!(run.code, 130, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["ready"], false);
    assert_eq!(report["environments"][0]["apply"], "interrupted");
    assert_eq!(report["environments"][1]["apply"], "not_run");
    assert_eq!(report["environments"][2]["apply"], "not_run");
    assert_eq!(harness.count(Op::Create), 0);
    insta::assert_snapshot!(
        "bootstrap_interrupted_summary",
        from(&run.stderr, "Apply interrupted")
    );
}

#[test]
fn one_cluster_runs_only_where_it_exists_and_keeps_the_promotion_guard() {
    let _filters = support::filters();
    let Some(harness) = Harness::new() else {
        return;
    };
    // edge runs in prod only; prod is guarded until staging ran the same configuration.
    let run = harness.run(&["bootstrap", "--cluster", "edge", "--auto-approve", "--json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["environments"].as_array().unwrap().len(), 1);
    assert_eq!(report["environments"][0]["environment"], "prod");
    assert_eq!(report["environments"][0]["apply"], "failed");
    let error = report["environments"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("refusing to apply `prod`"), "{error}");
    insta::assert_snapshot!("bootstrap_edge_before_staging_stderr", run.stderr);
    assert_eq!(harness.count(Op::Create), 0);
}

/// The talos mock, handing out the control plane's kubeconfig as `talos_kubeconfig`'s
/// `kubeconfig` (what the real Talos provider fetches from the cluster it bootstrapped).
struct TalosHandsOut {
    mock: Arc<infraflux_provider_mock::MockProvider>,
    kubeconfig: String,
}

impl TalosHandsOut {
    fn hand_out(&self, address: &str, kind: &str, attributes: &mut infraflux_provider::Attributes) {
        if kind == "talos_kubeconfig" {
            attributes.insert("kubeconfig".into(), json!(self.kubeconfig));
            // In the mock's world too, so that a refresh reads it back.
            self.mock
                .set_attribute(address, "kubeconfig", json!(self.kubeconfig));
        }
    }
}

#[async_trait]
impl infraflux_provider::Provider for TalosHandsOut {
    fn name(&self) -> &str {
        self.mock.name()
    }

    fn schemas(&self) -> Vec<infraflux_provider::ResourceSchema> {
        self.mock.schemas()
    }

    async fn validate(
        &self,
        request: infraflux_provider::ValidateRequest,
    ) -> infraflux_provider::ValidateResponse {
        self.mock.validate(request).await
    }

    async fn read(
        &self,
        request: infraflux_provider::ReadRequest,
    ) -> Result<infraflux_provider::ReadResponse, infraflux_provider::ProviderError> {
        self.mock.read(request).await
    }

    async fn plan(
        &self,
        request: infraflux_provider::PlanRequest<'_>,
    ) -> Result<infraflux_provider::PlanResponse, infraflux_provider::ProviderError> {
        self.mock.plan(request).await
    }

    async fn create(
        &self,
        request: infraflux_provider::CreateRequest,
    ) -> Result<infraflux_provider::CreateResponse, infraflux_provider::ProviderError> {
        let (address, kind) = (
            request.resource.address.clone(),
            request.resource.kind.clone(),
        );
        let mut created = self.mock.create(request).await?;
        self.hand_out(&address, &kind, &mut created.attributes);
        Ok(created)
    }

    async fn update(
        &self,
        request: infraflux_provider::UpdateRequest,
    ) -> Result<infraflux_provider::UpdateResponse, infraflux_provider::ProviderError> {
        let (address, kind) = (
            request.resource.address.clone(),
            request.resource.kind.clone(),
        );
        let mut updated = self.mock.update(request).await?;
        self.hand_out(&address, &kind, &mut updated.attributes);
        Ok(updated)
    }

    async fn delete(
        &self,
        request: infraflux_provider::DeleteRequest,
    ) -> Result<(), infraflux_provider::ProviderError> {
        self.mock.delete(request).await
    }

    async fn import(
        &self,
        request: infraflux_provider::ImportRequest,
    ) -> Result<infraflux_provider::ImportResponse, infraflux_provider::ProviderError> {
        self.mock.import(request).await
    }
}

#[test]
fn bootstrap_with_the_real_provider_applies_the_platform_and_turns_ready() {
    let _filters = support::filters();
    let Some(plane) = control_plane::shared() else {
        return;
    };
    let _alone = plane.exclusive();
    let runtime = control_plane::runtime();
    runtime.block_on(async {
        for index in 1..NODES {
            plane.add_node(&format!("kwok-node-{index}")).await.unwrap();
        }
    });
    let _argocd = ApplicationController::healthy(plane.endpoint());
    // Proxmox and Talos mocked; Talos hands out the control plane's kubeconfig; the
    // real Kubernetes provider applies with it and takes the ready signal (the binary's
    // wiring, with waits polled more often than a real cluster needs).
    let mut harness = Engine::new();
    let talos = harness
        .mocks
        .iter()
        .find(|m| infraflux_provider::Provider::name(m.as_ref()) == "talos")
        .unwrap()
        .clone();
    harness.registry.register(Arc::new(TalosHandsOut {
        mock: talos,
        kubeconfig: plane.kubeconfig_text(),
    }));
    let poll = |seconds| WaitOptions {
        timeout: Duration::from_secs(seconds),
        interval: Duration::from_millis(250),
    };
    let kubernetes = Arc::new(KubernetesProvider::new(ProviderOptions {
        crd_wait: poll(60),
        ready_wait: poll(180),
        upstream: support::upstream::sources(),
    }));
    harness.registry.register(kubernetes.clone());
    let harness = harness.clusters(kubernetes);

    let run = harness.run(&[
        "bootstrap",
        "--env",
        "dev",
        "--auto-approve",
        "--timeout",
        "120s",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Ready signal for dev/workload: ready"),
        "{}",
        run.stdout
    );
    // Applied by the real provider (its mock was asked for nothing).
    assert!(
        run.stderr
            .contains("dev/workload/kubernetes_handoff.dev: Creation complete"),
        "{}",
        run.stderr
    );
    assert_eq!(harness.mock("kubernetes").count(Op::Create), 0);
    let signal = signals(&run.stdout);
    assert!(
        !signal.contains("FAIL") && !signal.contains(".. "),
        "{signal}"
    );
    // Every object dev's kubernetes resources render is on the control plane.
    let endpoint = plane.endpoint();
    let mut discovery = infraflux_testkit::endpoint::Discovery::default();
    let mut count = 0;
    runtime.block_on(async {
        for resource in kubernetes_resources()
            .iter()
            .filter(|r| r.address.to_string().starts_with("dev/"))
        {
            let releases = Releases::load(
                &support::upstream::sources(),
                &resource.kind,
                &resource.attributes,
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", resource.address));
            let rendered = infraflux_kubernetes::provider::render_resource(
                &resource.kind,
                &resource.attributes,
                &releases,
            )
            .unwrap();
            for manifest in &rendered.manifests {
                let path = discovery.path_of(&endpoint, manifest).await.unwrap();
                let answer = endpoint.get(&path).await;
                assert!(answer.is_success(), "{path}: {answer}");
                count += 1;
            }
        }
    });
    assert!(count > 0);

    // A second run: nothing to change (without --auto-approve, a change would have to
    // be approved, and cannot be here), and the signal is ready again.
    let (creates, updates) = (harness.count(Op::Create), harness.count(Op::Update));
    let again = harness.run(&["bootstrap", "--env", "dev", "--timeout", "120s"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .contains("Ready signal for dev/workload: ready"),
        "{}",
        again.stdout
    );
    assert_eq!(
        (harness.count(Op::Create), harness.count(Op::Update)),
        (creates, updates)
    );
    assert!(
        !again.stdout.contains("client-key-data"),
        "{}",
        again.stdout
    );
}
