//! What one child process costs: wall time, CPU time (user + sys) and peak RSS.
//!
//! `getrusage(RUSAGE_CHILDREN)` sums every child a process has waited for, so the
//! benches measure from a parent of their own (the bench re-executed with a flag) that
//! runs exactly one child: the `infraflux` command under test.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

impl Usage {
    /// Run `command` to its end and read what it cost. Call it once per process.
    pub fn of(command: &mut Command) -> (ExitStatus, Usage) {
        use nix::sys::resource::{UsageWho, getrusage};
        let started = Instant::now();
        let status = command.status().expect("run the measured command");
        let wall = started.elapsed();
        let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
        let micros =
            |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        let cpu = micros(usage.user_time()) + micros(usage.system_time());
        (
            status,
            Usage {
                wall,
                cpu: Duration::from_micros(cpu),
                // Linux reports ru_maxrss in KiB.
                peak_rss_kib: usage.max_rss() as u64,
            },
        )
    }

    /// The measuring parent's answer: `wall_us cpu_us peak_rss_kib`.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {}",
            self.wall.as_micros(),
            self.cpu.as_micros(),
            self.peak_rss_kib
        )
    }

    /// [`Usage::encode`]'s three numbers at the start of `text`, and the rest of it.
    pub fn decode(text: &str) -> (Usage, &str) {
        let mut fields = text.trim().splitn(4, ' ');
        let mut number = || -> u64 {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("not a measurement: {text}"))
        };
        let usage = Usage {
            wall: Duration::from_micros(number()),
            cpu: Duration::from_micros(number()),
            peak_rss_kib: number(),
        };
        (usage, fields.next().unwrap_or_default())
    }
}

pub fn median<T: Copy + Ord>(mut samples: Vec<T>) -> T {
    samples.sort();
    samples[samples.len() / 2]
}

/// How many runs to measure: `INFRAFLUX_BENCH_RUNS`, else `optimised` in a `cargo bench`
/// build. An unoptimised build (`cargo test --benches`) runs once, only to check that the
/// bench still works, and says so.
pub fn repetitions(optimised: usize) -> usize {
    let built_optimised = !cfg!(debug_assertions);
    if !built_optimised {
        println!("(an unoptimised build: the figures say nothing; `cargo bench` measures)");
    }
    std::env::var("INFRAFLUX_BENCH_RUNS")
        .ok()
        .map(|n| n.parse().expect("INFRAFLUX_BENCH_RUNS: a number"))
        .unwrap_or(if built_optimised { optimised } else { 1 })
}
