//! `infraflux bootstrap` over the shipped configuration (`config/`): mock providers
//! stand in for proxmox, talos and kubernetes, and the ready signal reads a fake
//! Kubernetes API server that holds what the kubernetes resources render, made ready
//! by the server's reactor.
//!
//! What is proven: environments run in promotion order (dev → staging → prod), the first
//! failure (of an apply or of a ready signal) stops the run, a second run changes
//! nothing and checks the signal again, `--json` has the documented shape, `--render`
//! writes files and touches nothing.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use infraflux::config::Selection;
use infraflux_kubernetes::api::ApiError;
use infraflux_kubernetes::api::{ApplyOptions, KubeApi};
use infraflux_kubernetes::apply::apply_manifests;
use infraflux_kubernetes::client::{ClientOptions, KubeClient, Kubeconfig};
use infraflux_kubernetes::provider::{Connector, KubernetesProvider, ProviderOptions, Releases};
use infraflux_kubernetes::wait::WaitOptions;
use infraflux_lab::kubernetes::{FakeApiServer, ready_reactor};
use infraflux_provider_mock::Op;
use support::engine::{Engine, Variables};

/// Every cluster's API is the one fake server (the clusters' objects have distinct
/// names: namespaces and handoffs are per environment).
struct FakeClusters {
    kubeconfig: Kubeconfig,
    opened: Mutex<usize>,
}

#[async_trait]
impl Connector for FakeClusters {
    async fn connect(&self, _kubeconfig: &Kubeconfig) -> Result<Arc<dyn KubeApi>, ApiError> {
        Ok(Arc::new(
            KubeClient::new(&self.kubeconfig, ClientOptions::default()).await?,
        ))
    }

    /// The mock's kubeconfig in state names no cluster: every cluster is the fake server.
    async fn open(&self, _kubeconfig: &str) -> Result<Arc<dyn KubeApi>, String> {
        *self.opened.lock().unwrap() += 1;
        self.connect(&self.kubeconfig)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The engine with mock providers, and a fake API server holding every kubernetes
/// resource of every environment, ready, with 20 Ready nodes, for the ready signals.
struct Harness {
    engine: Engine,
    clusters: Arc<FakeClusters>,
    server: FakeApiServer,
    // Keeps the fake server's task running while the command blocks the test thread.
    _runtime: tokio::runtime::Runtime,
}

impl std::ops::Deref for Harness {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(FakeApiServer::start()).unwrap();
        server.set_reactor(ready_reactor());
        for index in 0..20 {
            server.insert(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{index}")},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        }
        let kubeconfig = Kubeconfig::new(server.kubeconfig()).unwrap();
        runtime.block_on(populate(&kubeconfig));
        let clusters = Arc::new(FakeClusters {
            kubeconfig,
            opened: Mutex::new(0),
        });
        // The ready signal: the real Kubernetes provider, its connections opened on the
        // fake server.
        let signal = Arc::new(KubernetesProvider::with_connector(
            clusters.clone(),
            ProviderOptions {
                upstream: support::upstream::sources(),
                ..Default::default()
            },
        ));
        Harness {
            engine: Engine::new().clusters(signal),
            clusters,
            server,
            _runtime: runtime,
        }
    }
}

/// Apply what every kubernetes resource of the configuration renders, as the real
/// provider would have.
async fn populate(kubeconfig: &Kubeconfig) {
    let (_, model, problems) = infraflux::operation::load::load_model(
        &support::example_config(),
        &Selection::default(),
        &Variables::example(),
        false,
    );
    assert!(!problems.has_errors());
    let client = KubeClient::new(kubeconfig, ClientOptions::default())
        .await
        .unwrap();
    let wait = WaitOptions {
        timeout: std::time::Duration::from_secs(5),
        interval: std::time::Duration::from_millis(20),
    };
    for resource in infraflux::graph::build_desired(&model.unwrap()) {
        if resource.provider != "kubernetes" {
            continue;
        }
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
    }
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
    let harness = Harness::new();
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
    let harness = Harness::new();
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
    let harness = Harness::new();
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
    let harness = Harness::new();
    assert!(harness.server.set_status(
        "argoproj.io/v1alpha1",
        "Application",
        Some("argocd"),
        "dev-workload",
        json!({"sync": {"status": "Synced"},
            "health": {"status": "Degraded", "message": "Deployment web: CrashLoopBackOff"},
            "operationState": {"phase": "Succeeded"}}),
    ));
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
    let harness = Harness::new();
    // Observed (every environment applied its ArgoCD to the one server), not available.
    let generation = harness
        .server
        .object("apps/v1", "Deployment", Some("argocd"), "argocd-server")
        .unwrap()["metadata"]["generation"]
        .clone();
    assert!(harness.server.set_status(
        "apps/v1",
        "Deployment",
        Some("argocd"),
        "argocd-server",
        json!({"observedGeneration": generation, "replicas": 1, "availableReplicas": 0,
            "conditions": [{"type": "Available", "status": "False",
                "reason": "MinimumReplicasUnavailable"}]}),
    ));
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
    let harness = Harness::new();
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
    let harness = Harness::new();
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
    let harness = Harness::new();
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
    let harness = Harness::new();
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
