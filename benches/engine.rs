//! Engine benchmark: a synthetic 10,000-resource graph (1,000 clusters of 10 resources
//! shaped like a real cluster) with the mock provider. Prints figures; run with
//! `cargo bench --bench engine`. `INFRAFLUX_BENCH_CLUSTERS` changes the size.
//!
//! 1. plan without refresh (target < 0.5 s) and peak RSS (VmHWM, target < 200 MiB);
//! 2. apply with a zero-latency provider: the engine's own overhead (target < 1 s);
//! 3. apply with 50 ms per operation at parallelism 10: wall time against the critical
//!    path lower bound max(longest chain × 50 ms, total work × 50 ms / 10) (target ≤ 1.1).
//!
//! State goes to a store that counts persists without copying: the figures are the
//! engine's, not a backend's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infraflux::apply::{ApplyOptions, NoReporter, apply};
use infraflux::graph::DesiredResource;
use infraflux::plan::{PlanOptions, plan};
use infraflux::registry::ProviderRegistry;
use infraflux::state::StateDocument;
use infraflux::testing::{CountingStore, mock_schemas};
use infraflux_provider::reference;
use infraflux_provider_mock::MockProvider;
use serde_json::json;

/// Per cluster: image → 3 VMs → 3 machine configs (+ secrets) → bootstrap → kubeconfig.
/// Longest chain: image, vm, config, bootstrap, kubeconfig = 5 operations.
fn synthetic(clusters: usize) -> Vec<DesiredResource> {
    let mut resources = Vec::with_capacity(clusters * 10);
    for c in 0..clusters {
        let cluster = format!("c{c}");
        let make = |name: &str, attributes: serde_json::Value, depends_on: Vec<String>| {
            let addr =
                infraflux::vocabulary::ResourceAddr::new("bench", &cluster, "mock_thing", name);
            DesiredResource {
                provider: "mock".into(),
                kind: "mock_thing".into(),
                address: addr,
                attributes: attributes.as_object().unwrap().clone(),
                depends_on: depends_on
                    .iter()
                    .map(|n| {
                        infraflux::vocabulary::ResourceAddr::new("bench", &cluster, "mock_thing", n)
                    })
                    .collect(),
                prevent_destroy: false,
                origin: "bench".into(),
                secrets: Default::default(),
                replace_with: Vec::new(),
                placement: None,
            }
        };
        let at = |name: &str| format!("bench/{cluster}/mock_thing.{name}");
        resources.push(make(
            "image",
            json!({"value": "talos-v1.13.9", "zone": "pve1"}),
            vec![],
        ));
        resources.push(make("secrets", json!({"value": cluster}), vec![]));
        for m in 1..=3 {
            resources.push(make(
                &format!("vm-{m}"),
                json!({"value": m, "cores": 4, "memory_mib": 8192, "input": reference(at("image"), "out")}),
                vec![],
            ));
            resources.push(make(
                &format!("config-{m}"),
                json!({"value": m, "input": reference(at("secrets"), "secret")}),
                vec![format!("vm-{m}")],
            ));
        }
        resources.push(make(
            "bootstrap",
            json!({"value": 1}),
            vec!["config-1".into()],
        ));
        resources.push(make(
            "kubeconfig",
            json!({"input": reference(at("bootstrap"), "out")}),
            vec![],
        ));
    }
    resources
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let clusters: usize = std::env::var("INFRAFLUX_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let desired = synthetic(clusters);
    let count = desired.len();
    println!("engine bench: {count} resources in {clusters} clusters");

    let mock = Arc::new(MockProvider::new("mock", mock_schemas()));
    let registry = ProviderRegistry::new().with(mock.clone());
    let options = PlanOptions {
        refresh: false,
        ..PlanOptions::default()
    };

    // 1. plan without refresh.
    let state = StateDocument::new("bench");
    let started = Instant::now();
    let made = runtime
        .block_on(plan(desired.clone(), &state, &registry, &options))
        .unwrap();
    let plan_time = started.elapsed();
    let rss = peak_rss_mib();
    println!(
        "plan (no refresh):           {:>8.3} s   (target < 0.5 s)   {} changes",
        plan_time.as_secs_f64(),
        made.changes.len()
    );
    match rss {
        Some(rss) => println!("peak RSS after plan:         {rss:>8.1} MiB (target < 200 MiB)"),
        None => println!("peak RSS after plan:         unavailable (no /proc/self/status)"),
    }

    // 2. apply, zero latency: engine overhead.
    let store = Arc::new(CountingStore::default());
    let started = Instant::now();
    let summary = runtime
        .block_on(apply(
            &made,
            state,
            store.clone(),
            &registry,
            Arc::new(NoReporter),
            &ApplyOptions::default(),
        ))
        .unwrap();
    let apply_time = started.elapsed();
    assert!(summary.is_success());
    println!(
        "apply, zero latency:         {:>8.3} s   (target < 1 s)     {} operations, {} state persists",
        apply_time.as_secs_f64(),
        summary.done.len(),
        store.persists()
    );

    // 3. apply, 50 ms per operation, parallelism 10.
    let latency = Duration::from_millis(50);
    let mock = Arc::new(MockProvider::new("mock", mock_schemas()));
    mock.set_default_latency(latency);
    let registry = ProviderRegistry::new().with(mock.clone());
    let state = StateDocument::new("bench");
    let made = runtime
        .block_on(plan(desired.clone(), &state, &registry, &options))
        .unwrap();
    let parallelism = 10;
    let longest_chain = 5.0;
    let total_work = count as f64;
    let bound = (longest_chain * latency.as_secs_f64())
        .max(total_work * latency.as_secs_f64() / parallelism as f64);
    let store = Arc::new(CountingStore::default());
    let started = Instant::now();
    let summary = runtime
        .block_on(apply(
            &made,
            state,
            store,
            &registry,
            Arc::new(NoReporter),
            &ApplyOptions {
                parallelism,
                ..ApplyOptions::default()
            },
        ))
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(summary.is_success());
    println!(
        "apply, 50 ms/op, par. 10:    {wall:>8.3} s   lower bound {bound:.3} s, ratio {:.3} (target <= 1.1), max in flight {}",
        wall / bound,
        mock.max_in_flight()
    );
}
