//! What a person sees while an operation runs: apply events per resource with the time
//! they took (and a live summary line on a terminal), the steps of a bootstrap, and the
//! Ctrl-C handling that lets operations in flight finish.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::apply::{CancellationToken, Reporter};
use crate::plan::Action;
use crate::vocabulary::ResourceAddr;

use super::context::Sink;

/// Prints apply progress to `err`, one line per event, Terraform-style. On a terminal a
/// live summary line (done, running, failed, skipped, elapsed) stays under the events.
pub struct ProgressReporter {
    pub err: Sink,
    live: Option<Mutex<LiveSummary>>,
}

struct LiveSummary {
    total: usize,
    running: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    started: Instant,
}

impl ProgressReporter {
    /// `total`: the changes the apply will make; `live`: keep a summary line updated
    /// (only on a terminal).
    pub fn new(err: Sink, total: usize, live: bool) -> Self {
        ProgressReporter {
            err,
            live: live.then(|| {
                Mutex::new(LiveSummary {
                    total,
                    running: 0,
                    done: 0,
                    failed: 0,
                    skipped: 0,
                    started: Instant::now(),
                })
            }),
        }
    }

    /// Print one event line; on a terminal, redraw the summary line below it.
    fn event(&self, line: String, update: impl FnOnce(&mut LiveSummary)) {
        let Some(live) = &self.live else {
            self.err.write(&line);
            return;
        };
        let mut summary = live.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut summary);
        let status = format!(
            "[{}/{} done, {} running, {} failed, {} skipped, {}s]",
            summary.done,
            summary.total,
            summary.running,
            summary.failed,
            summary.skipped,
            summary.started.elapsed().as_secs()
        );
        // Clear the old summary line, print the event, draw the summary again.
        self.err.write(&format!("\r\x1b[2K{line}{status}"));
        if summary.done + summary.failed + summary.skipped >= summary.total {
            self.err.write("\r\x1b[2K");
        }
    }
}

fn doing(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
        Action::DeleteThenCreate | Action::CreateThenDelete => {
            ("Replacing...", "Replacement complete")
        }
        Action::Read => ("Recording...", "Recorded"),
        Action::NoOp => ("", ""),
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{}s", elapsed.as_secs())
}

impl Reporter for ProgressReporter {
    fn started(&self, address: &ResourceAddr, action: Action) {
        self.event(format!("{address}: {}\n", doing(action).0), |s| {
            s.running += 1
        });
    }
    fn finished(&self, address: &ResourceAddr, action: Action, elapsed: Duration) {
        self.event(
            format!(
                "{address}: {} after {}\n",
                doing(action).1,
                seconds(elapsed)
            ),
            |s| {
                s.running = s.running.saturating_sub(1);
                s.done += 1;
            },
        );
    }
    fn failed(&self, address: &ResourceAddr, action: Action, error: &str, elapsed: Duration) {
        self.event(
            format!(
                "{address}: {action} failed after {}: {error}\n",
                seconds(elapsed)
            ),
            |s| {
                s.running = s.running.saturating_sub(1);
                s.failed += 1;
            },
        );
    }
    fn skipped(&self, address: &ResourceAddr, because: &ResourceAddr) {
        self.event(format!("{address}: skipped because of {because}\n"), |s| {
            s.skipped += 1
        });
    }
}

/// Cancel `token` on the first Ctrl-C; exit 130 at once on the second.
pub fn watch_interrupts(token: CancellationToken, err: Sink) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        err.write("\nInterrupt received: finishing the operations in flight and starting nothing new. Press Ctrl-C again to stop at once (state may then miss the last results).\n");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            err.write("Second interrupt: stopping now.\n");
            std::process::exit(130);
        }
    });
}

/// Progress lines of a multi-step operation on standard error: started, done with the
/// time it took, failed.
pub struct Steps {
    pub err: Sink,
    /// ▸ ✔ ✗ for a person at a terminal; ASCII for logs and pipes.
    pub fancy: bool,
}

pub struct Step<'a> {
    steps: &'a Steps,
    name: String,
    started: Instant,
}

impl Steps {
    pub fn start(&self, name: String) -> Step<'_> {
        let symbol = if self.fancy { "▸" } else { ">" };
        self.err.write(&format!("{symbol} {name}\n"));
        Step {
            steps: self,
            name,
            started: Instant::now(),
        }
    }
}

impl Step<'_> {
    pub fn done(self, what: &str) {
        let symbol = if self.steps.fancy { "✔" } else { "OK" };
        self.finish(symbol, what);
    }

    pub fn failed(self, why: &str) {
        let symbol = if self.steps.fancy { "✗" } else { "FAIL" };
        self.finish(symbol, why);
    }

    fn finish(self, symbol: &str, text: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let separator = if text.is_empty() { "" } else { ": " };
        self.steps.err.write(&format!(
            "{symbol} {}{separator}{text} ({elapsed:.1}s)\n",
            self.name
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(fancy: bool) -> (Steps, std::sync::Arc<Mutex<Vec<u8>>>) {
        let (err, buffer) = Sink::buffer();
        (Steps { err, fancy }, buffer)
    }

    #[test]
    fn progress_lines_use_symbols_on_a_terminal_and_ascii_elsewhere() {
        for (fancy, started, done, failed) in [(true, "▸", "✔", "✗"), (false, ">", "OK", "FAIL")]
        {
            let (steps, buffer) = steps(fancy);
            steps.start("dev: plan and apply".into()).done("");
            steps
                .start("dev/workload: ready signal".into())
                .failed("not ready after 600s: nodes");
            let output = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines.len(), 4, "{output}");
            assert_eq!(lines[0], format!("{started} dev: plan and apply"));
            // Done and failed lines end with the time the step took.
            assert!(lines[1].starts_with(&format!("{done} dev: plan and apply (")));
            assert!(lines[1].ends_with("s)"), "{}", lines[1]);
            assert!(lines[3].starts_with(&format!(
                "{failed} dev/workload: ready signal: not ready after 600s: nodes ("
            )));
            assert!(output.is_ascii() != fancy, "{output}");
        }
    }
}
