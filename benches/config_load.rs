//! How long the configuration takes to load, validate and resolve.
//!
//! `cargo bench --bench config_load` prints:
//! - the bundled example (`config/`): median of many runs (target: < 20 ms);
//! - a generated hierarchy of 1,000 clusters × 3 environments, every cluster file with
//!   per-environment network overrides, all 3,000 node ranges distinct (target: < 1 s).
//!
//! No timing is asserted anywhere: tests must not depend on the machine's speed. This
//! prints figures for a human (or a CI log) to compare.

use std::path::Path;
use std::time::{Duration, Instant};

use infraflux::config::{Selection, Variables, load_config};
use infraflux::model::resolve_model;

#[path = "support/hierarchy.rs"]
mod hierarchy;

struct FakeEnvironment;

impl Variables for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| "root@pam!infraflux=bench".to_string())
    }
}

/// Load, validate and resolve once; panics if the configuration is not clean, so the
/// figures are never those of an early exit.
fn load_and_resolve(dir: &Path) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let (config, problems) = load_config(dir, &Selection::default(), &FakeEnvironment);
    let loaded = started.elapsed();
    assert!(problems.is_empty(), "{problems:?}");
    let (model, problems) = resolve_model(&config);
    let total = started.elapsed();
    assert!(problems.is_empty(), "{problems:?}");
    let pairs = model
        .expect("a valid configuration has a model")
        .clusters()
        .count();
    (loaded, total, pairs)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn bundled_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    const RUNS: usize = 101;
    let mut loads = Vec::with_capacity(RUNS);
    let mut totals = Vec::with_capacity(RUNS);
    let mut pairs = 0;
    for _ in 0..RUNS {
        let (load, total, count) = load_and_resolve(&dir);
        loads.push(load);
        totals.push(total);
        pairs = count;
    }
    let median_total = median(totals);
    println!(
        "bundled example ({pairs} pairs): median of {RUNS} runs {} (load+validate {}, resolve {}); target < 20 ms: {}",
        millis(median_total),
        millis(median(loads.clone())),
        millis(median_total.saturating_sub(median(loads))),
        verdict(median_total < Duration::from_millis(20)),
    );
}

const CLUSTERS: usize = 1000;
const ENVIRONMENTS: [(&str, &str); 3] =
    [("dev", "small"), ("staging", "medium"), ("prod", "large")];

fn generated_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let files = hierarchy::generate(dir.path(), CLUSTERS, &ENVIRONMENTS);
    const RUNS: usize = 5;
    let mut loads = Vec::with_capacity(RUNS);
    let mut totals = Vec::with_capacity(RUNS);
    let mut pairs = 0;
    for _ in 0..RUNS {
        let (load, total, count) = load_and_resolve(dir.path());
        loads.push(load);
        totals.push(total);
        pairs = count;
    }
    assert_eq!(pairs, CLUSTERS * ENVIRONMENTS.len());
    let median_total = median(totals);
    println!(
        "generated {CLUSTERS} clusters x {} environments ({pairs} pairs, {} files): median of {RUNS} runs {} (load+validate+merge {}, resolve {}); target < 1 s: {}",
        ENVIRONMENTS.len(),
        files,
        millis(median_total),
        millis(median(loads.clone())),
        millis(median_total.saturating_sub(median(loads))),
        verdict(median_total < Duration::from_secs(1)),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep the
    // work bounded either way.
    bundled_example();
    generated_hierarchy();
}
