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

/// Write the generated hierarchy: the example's defaults and templates, three
/// environments listing every cluster, and one file per cluster with an override per
/// environment giving it its own /24 (so no two of the 3,000 node ranges overlap).
fn generate(dir: &Path) -> usize {
    let mut files = 0;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for directory in ["defaults", "templates"] {
        std::fs::create_dir_all(dir.join(directory)).unwrap();
        for entry in std::fs::read_dir(example.join(directory)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(directory).join(entry.file_name())).unwrap();
            files += 1;
        }
    }
    // 16,000 VMs on the one Proxmox cluster: the example's 1,000 VM IDs would not hold
    // them (validate says so), so the generated hierarchy widens the range.
    std::fs::write(
        dir.join("defaults").join("vmids.yaml"),
        "proxmox:\n  vmid_range: {start: 1000, end: 99999}\n",
    )
    .unwrap();
    files += 1;
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("cluster-{i:04}")).collect();
    std::fs::create_dir_all(dir.join("environments")).unwrap();
    for (wave, (environment, template)) in ENVIRONMENTS.iter().enumerate() {
        let mut text = format!("sync_wave: {wave}\ntemplate: {template}\nclusters:\n");
        for name in &names {
            text.push_str(&format!("  - {name}\n"));
        }
        std::fs::write(
            dir.join("environments").join(format!("{environment}.yaml")),
            text,
        )
        .unwrap();
        files += 1;
    }
    std::fs::create_dir_all(dir.join("clusters")).unwrap();
    for (i, name) in names.iter().enumerate() {
        let mut text = String::from("role: workload\nenvironments:\n");
        for (e, (environment, _)) in ENVIRONMENTS.iter().enumerate() {
            // 10.<e*4 + i/256>.<i%256>.0/24: distinct for every (environment, cluster).
            let prefix = format!("10.{}.{}", e * 4 + i / 256, i % 256);
            text.push_str(&format!(
                "  {environment}:\n    network:\n      nodes:\n        cidr: {prefix}.0/24\n        gateway: {prefix}.1\n        start: {prefix}.10\n      vip: {prefix}.5\n"
            ));
        }
        std::fs::write(dir.join("clusters").join(format!("{name}.yaml")), text).unwrap();
        files += 1;
    }
    files
}

fn generated_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path());
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
