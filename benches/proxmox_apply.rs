//! Apply at realistic API latency: one Talos image per node and 30 new VMs over 3 nodes,
//! planned and applied through the engine and the real Proxmox provider against fakepve
//! at 2.5, 50 and 200 ms per answer, each against its floor.
//!
//! The floor is what no client can beat with PVE's API: the image download (fakepve's
//! task takes 5 PVE seconds, here × [`TIME_SCALE`]) after its POST, then on the busiest
//! node the dependent calls of its VMs: create and its status poll, resize and its poll
//! (both take PVE's storage lock, so at most `storage_concurrency` of them run at once on
//! a node's storage), start and its poll. `chain floor`: one VM's 6 calls, as if the lock
//! allowed every VM at once; `lock floor`: ⌈4·n / limit⌉ + 2 calls for n VMs on the
//! busiest node at the limit. Every figure counts one latency per call.
//!
//! Also counts the calls per VM (from fakepve's request log) and checks that every VM was
//! made, with no failure. Needs `INFRAFLUX_FAKEPVE_PYTHON`; without it, says so and exits
//! 0. Run with `cargo bench --bench proxmox_apply` (`harness = false`).
//! `INFRAFLUX_BENCH_LATENCIES_MS=50,200` and `INFRAFLUX_BENCH_PARALLELISM=10,33` (empty:
//! the CLI's default) choose the runs; `INFRAFLUX_BENCH_CALLS=1` prints the calls by kind.

#[path = "fleet/mod.rs"]
mod fleet;
#[path = "../providers/proxmox/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use infraflux_proxmox::provider::storage_slots::DEFAULT_STORAGE_CONCURRENCY;
use serde_json::json;

const VMS: usize = 30;
/// fakepve's clock: PVE seconds × this = real seconds.
const TIME_SCALE: f64 = 0.1;
/// fakepve's download task, in PVE seconds.
const DOWNLOAD_SECONDS: f64 = 5.0;
const LATENCIES_MS: [f64; 3] = [2.5, 50.0, 200.0];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let python = match support::python() {
        Ok(python) => python,
        Err(reason) => {
            println!("proxmox_apply bench {reason}");
            return;
        }
    };
    let parallelism: Vec<Option<usize>> = match std::env::var("INFRAFLUX_BENCH_PARALLELISM") {
        Ok(text) => text.split(',').map(|p| p.trim().parse().ok()).collect(),
        Err(_) => vec![None, Some(VMS + 3)],
    };
    let latencies: Vec<f64> = match std::env::var("INFRAFLUX_BENCH_LATENCIES_MS") {
        Ok(text) => text
            .split(',')
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
        Err(_) => LATENCIES_MS.to_vec(),
    };
    println!(
        "fakepve, 3 nodes, {VMS} new VMs + 3 images, storage_concurrency {DEFAULT_STORAGE_CONCURRENCY} (default), tasks at {TIME_SCALE} × PVE's durations (download {:.2} s)",
        DOWNLOAD_SECONDS * TIME_SCALE
    );
    println!(
        "| per answer | --parallelism | InfraFlux apply | chain floor | lock floor | ratio to lock floor | calls/VM | calls in apply |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for latency_ms in latencies {
        for parallelism in &parallelism {
            let outcome = tokio::time::timeout(
                Duration::from_secs(300),
                run(&python, latency_ms, *parallelism),
            )
            .await;
            match outcome {
                Ok(true) => {}
                Ok(false) => failed = true,
                Err(_) => {
                    eprintln!("proxmox_apply bench: gave up after 300 s");
                    failed = true;
                }
            }
        }
    }
    if failed {
        eprintln!("proxmox_apply bench: FAILED");
        std::process::exit(1);
    }
}

/// One plan and apply at `latency_ms`; prints a table row, says whether all went well.
async fn run(python: &str, latency_ms: f64, parallelism: Option<usize>) -> bool {
    let mut fake = support::FakePve::start_with(
        python,
        fleet::LAUNCHER,
        support::Options {
            nodes: 3,
            vms: 0,
            import_content: true,
            time_scale: TIME_SCALE,
        },
    )
    .await
    .expect("fakepve starts");
    fake.expect(json!({"op": "slow_network", "latency": latency_ms / 1000.0 / TIME_SCALE}))
        .await;
    let connection = fleet::connection(&fake.url, &fake.fingerprint, None);
    let before = fake.expect(json!({"op": "requests"})).await;
    let applied = fleet::plan_and_apply(fleet::desired(VMS, &connection), parallelism).await;
    let log = fake
        .expect(json!({"op": "request_log", "since": before}))
        .await;
    let vms = fake.expect(json!({"op": "vms"})).await;
    fake.stop().await;
    for failure in &applied.summary.failed {
        eprintln!("{}: {}", failure.address, failure.message);
    }
    let calls = fleet::Calls::from_log(&log);
    let per_node = fleet::per_node(&vms);
    let busiest = per_node.values().copied().max().unwrap_or(0);
    let latency = latency_ms / 1000.0;
    let image = DOWNLOAD_SECONDS * TIME_SCALE + 2.0 * latency;
    let chain_floor = image + 6.0 * latency;
    let lock_calls = (4 * busiest).div_ceil(DEFAULT_STORAGE_CONCURRENCY) + 2;
    let lock_floor = image + lock_calls.max(6) as f64 * latency;
    let wall = applied.apply_wall.as_secs_f64();
    println!(
        "| {latency_ms} ms | {} | {wall:.2} s | {chain_floor:.2} s | {lock_floor:.2} s | {:.2} | {:.2} | {} |",
        parallelism.map_or("10 (default)".to_string(), |p| p.to_string()),
        wall / lock_floor,
        calls.per_vm_mean(),
        calls.total,
    );
    if std::env::var_os("INFRAFLUX_BENCH_CALLS").is_some() {
        for (shape, count) in &calls.by_shape {
            println!("    {count:4} {shape}");
        }
        println!(
            "    plan {:.2} s; VMs per node {per_node:?}",
            applied.plan_wall.as_secs_f64()
        );
    }
    applied.summary.failed.is_empty() && fleet::names(&vms).len() == VMS
}
