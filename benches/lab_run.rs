//! `infraflux lab run --env prod` over the real CLI path: dev, staging and prod of the
//! bundled example (5 clusters, 18 VMs, 73 resources in prod) through plan → bootstrap →
//! ready signal → an empty second plan, in promotion order, against the in-process lab.
//! Issue 15's target: ≤ 5 s.
//!
//! Each run is the `infraflux` binary in a process of its own, measured from a parent
//! that runs only it ([`child_usage`]): wall time, CPU time (user + sys), peak RSS. The
//! bench prints every run and the median of `INFRAFLUX_BENCH_RUNS` (default 5; one
//! run in an unoptimised build, which only checks that it still works). It runs in the
//! repository, where the README's command runs, and leaves the lab's state in
//! `.infraflux/lab` as that command does. No timing is asserted.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/child_usage.rs"]
mod child_usage;

use child_usage::{Usage, median};

/// The argument that makes this bench the measuring parent of one `lab run`.
const MEASURE: &str = "--measure-lab-run";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The measuring parent: run `lab run`, then print its usage.
fn measure() {
    let binary = std::env::var_os("INFRAFLUX_BENCH_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_infraflux").into());
    let (status, usage) = Usage::of(
        Command::new(binary)
            .current_dir(repository())
            .args(["lab", "run", "--env", "prod", "--color=never"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        status.success(),
        "infraflux lab run --env prod failed ({status}); run it by hand to see why"
    );
    println!("{}", usage.encode());
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(MEASURE) {
        return measure();
    }
    let runs = child_usage::repetitions(5);
    let mut usages = Vec::new();
    for run in 1..=runs {
        let output = Command::new(std::env::current_exe().unwrap())
            .arg(MEASURE)
            .stderr(Stdio::inherit())
            .output()
            .expect("run the measuring process");
        let (usage, _) = Usage::decode(&String::from_utf8_lossy(&output.stdout));
        assert!(output.status.success(), "run {run} failed");
        println!(
            "lab run --env prod, run {run}: wall {:>5.2} s  cpu {:>5.2} s  peak RSS {:>5.1} MiB",
            usage.wall.as_secs_f64(),
            usage.cpu.as_secs_f64(),
            usage.peak_rss_kib as f64 / 1024.0
        );
        usages.push(usage);
    }
    println!(
        "lab run --env prod, median of {runs}: wall {:.2} s  cpu {:.2} s  peak RSS {:.1} MiB (target ≤ 5 s)",
        median(usages.iter().map(|u| u.wall).collect()).as_secs_f64(),
        median(usages.iter().map(|u| u.cpu).collect()).as_secs_f64(),
        median(usages.iter().map(|u| u.peak_rss_kib).collect()) as f64 / 1024.0
    );
}
