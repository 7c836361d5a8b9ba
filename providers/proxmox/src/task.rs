//! PVE tasks: the UPID a write returns, and the one waiter for it.
//!
//! `UPID:node:pid:pstart:starttime:type:id:user:` (pid, pstart and starttime in hex).
//! The task runs on `node`, so its status is asked of that node, whatever node the
//! request went to. The waiter polls until the task stops or the caller's timeout
//! passes: `OK` and `WARNINGS: n` succeed, any other exit status fails with the end of
//! the task's log.
//!
//! When to poll: at once (most tasks of a create end within the request's round trip),
//! then after a pause of an eighth of the time waited so far, kept between the first
//! and the longest interval. A task is so seen stopped at most about 1/8 of its run time
//! (plus one round trip) late, where doubling pauses could add as much again as it ran —
//! at 200 ms per answer, a 5 s download seen up to 3 s late — and a long task still
//! costs few polls (about 8 in its first second after the first interval, then one per
//! longest interval).

use std::fmt;
use std::time::Duration;

use infraflux_provider::{ErrorKind, ProviderError};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{ApiError, classify_message};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    pub node: String,
    pub pid: u64,
    pub pstart: u64,
    pub starttime: u64,
    /// `qmcreate`, `qmstart`, `download`, …
    pub task_type: String,
    /// Usually the VMID or the storage.
    pub id: String,
    /// `root@pam` or `root@pam!token`.
    pub user: String,
}

impl Upid {
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("UPID:")?.strip_suffix(':')?;
        let fields: Vec<&str> = rest.split(':').collect();
        let [node, pid, pstart, starttime, task_type, id, user] = fields.as_slice() else {
            return None;
        };
        if node.is_empty() || task_type.is_empty() || user.is_empty() {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        Some(Upid {
            raw: text.to_string(),
            node: node.to_string(),
            pid: hex(pid)?,
            pstart: hex(pstart)?,
            starttime: hex(starttime)?,
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// How long and how often to poll.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Give up (and report the task as still running) after this long.
    pub timeout: Duration,
    pub first_interval: Duration,
    pub max_interval: Duration,
}

impl WaitOptions {
    pub fn with_timeout(timeout: Duration) -> Self {
        WaitOptions {
            timeout,
            first_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(2),
        }
    }
}

/// A task that ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// `OK` or `WARNINGS: n`.
    pub exit_status: String,
    pub warnings: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    #[error("task {upid} failed: {exit_status}")]
    Failed {
        upid: Upid,
        exit_status: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },
    #[error("task {upid} still running after {waited:?}")]
    TimedOut { upid: Upid, waited: Duration },
    #[error("cannot follow task {upid}")]
    Api {
        upid: Upid,
        #[source]
        error: ApiError,
    },
}

/// Lines of the log shown with a failure.
pub const LOG_TAIL_LINES: usize = 15;
/// Lines read to find the tail (a download logs a line per progress step).
const LOG_READ_LIMIT: u64 = 5000;

impl TaskError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TaskError::Failed { exit_status, .. } => classify_message(exit_status),
            // It may still succeed: look again later.
            TaskError::TimedOut { .. } => ErrorKind::Transient,
            TaskError::Api { error, .. } => error.kind,
        }
    }

    /// What the user reads: the exit status, then the end of the log.
    pub fn detail(&self) -> String {
        match self {
            TaskError::Failed {
                upid,
                exit_status,
                log_tail,
            } => {
                let mut text = format!(
                    "task {} on {} failed: {exit_status}",
                    upid.task_type, upid.node
                );
                if !log_tail.is_empty() {
                    text.push_str("\n  task log (last lines):");
                    for line in log_tail {
                        text.push_str("\n    ");
                        text.push_str(line);
                    }
                }
                text.push_str(&format!("\n  task: {upid}"));
                text
            }
            TaskError::TimedOut { upid, waited } => format!(
                "task {} on {} still running after {}s; it may yet finish — see the task log on the node ({upid})",
                upid.task_type,
                upid.node,
                waited.as_secs()
            ),
            TaskError::Api { upid, error } => format!(
                "cannot follow task {} on {}: {}",
                upid.task_type,
                upid.node,
                error.detail()
            ),
        }
    }

    pub fn into_provider(self, operation: &str, address: &str) -> ProviderError {
        let error = ProviderError::new(self.kind(), operation, address, self.detail());
        match self {
            TaskError::Api { error: api, .. } => error.with_http(api.http_context()),
            _ => error,
        }
    }
}

/// Whether an exit status is a success, and with how many warnings.
pub fn exit_status_ok(exit_status: &str) -> Option<u64> {
    if exit_status == "OK" {
        return Some(0);
    }
    exit_status
        .strip_prefix("WARNINGS: ")
        .and_then(|n| n.trim().parse().ok())
}

/// Wait for the task to stop; see the module docs.
pub async fn wait(
    client: &Client,
    upid: &Upid,
    options: WaitOptions,
) -> Result<TaskOutcome, TaskError> {
    let start = Instant::now();
    let deadline = start + options.timeout;
    loop {
        let status = client
            .task_status(upid)
            .await
            .map_err(|error| TaskError::Api {
                upid: upid.clone(),
                error,
            })?;
        if status.status != "running" {
            let exit_status = status
                .exitstatus
                .unwrap_or_else(|| "unknown (no exit status)".into());
            if let Some(warnings) = exit_status_ok(&exit_status) {
                if warnings > 0 {
                    tracing::warn!(%upid, warnings, "task finished with warnings");
                }
                return Ok(TaskOutcome {
                    exit_status,
                    warnings,
                });
            }
            let log_tail = log_tail(client, upid).await;
            return Err(TaskError::Failed {
                upid: upid.clone(),
                exit_status,
                log_tail,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TaskError::TimedOut {
                upid: upid.clone(),
                waited: now - start,
            });
        }
        tokio::time::sleep(pause(now - start, &options).min(deadline - now)).await;
    }
}

/// The pause before the next poll after `waited`: an eighth of it, within the
/// options' first and longest interval (see the module docs).
fn pause(waited: Duration, options: &WaitOptions) -> Duration {
    (waited / 8).clamp(
        options.first_interval,
        options.max_interval.max(options.first_interval),
    )
}

/// The last lines of a task's log, without `TASK ERROR:` (the exit status says it);
/// empty when the log cannot be read (the failure is reported all the same).
async fn log_tail(client: &Client, upid: &Upid) -> Vec<String> {
    match client.task_log(upid, 0, LOG_READ_LIMIT).await {
        Ok(log) => {
            let lines: Vec<String> = log
                .lines
                .into_iter()
                .map(|(_, text)| text)
                .filter(|t| !t.starts_with("TASK ERROR:") && !t.trim().is_empty())
                .collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].to_vec()
        }
        Err(error) => {
            tracing::debug!(%upid, error = %error.message, "cannot read the task log");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upids() {
        let upid =
            Upid::parse("UPID:pve2:000A1B2C:0012D687:6734F1A2:qmcreate:104:root@pam!ci:").unwrap();
        assert_eq!(upid.node, "pve2");
        assert_eq!(upid.pid, 0xA1B2C);
        assert_eq!(upid.pstart, 0x12D687);
        assert_eq!(upid.starttime, 0x6734F1A2);
        assert_eq!(upid.task_type, "qmcreate");
        assert_eq!(upid.id, "104");
        assert_eq!(upid.user, "root@pam!ci");
        assert_eq!(
            upid.to_string(),
            "UPID:pve2:000A1B2C:0012D687:6734F1A2:qmcreate:104:root@pam!ci:"
        );
        let download =
            Upid::parse("UPID:pve1:00001000:00007000:6734F1A2:download:local:root@pam:").unwrap();
        assert_eq!(download.id, "local");
        for bad in [
            "",
            "UPID:pve1:1:2:3:qmstart:100:root@pam",
            "UPID:pve1:zz:2:3:qmstart:100:root@pam:",
            "UPID:pve1:1:2:3:qmstart:root@pam:",
            "PID:pve1:1:2:3:qmstart:100:root@pam:",
        ] {
            assert_eq!(Upid::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn polls_late_by_at_most_an_eighth_of_the_time_waited() {
        let options = WaitOptions::with_timeout(Duration::from_secs(60));
        assert_eq!(pause(Duration::ZERO, &options), Duration::from_millis(50));
        assert_eq!(
            pause(Duration::from_secs(1), &options),
            Duration::from_millis(125)
        );
        assert_eq!(
            pause(Duration::from_secs(8), &options),
            Duration::from_secs(1)
        );
        assert_eq!(
            pause(Duration::from_secs(600), &options),
            Duration::from_secs(2)
        );
        // A longest interval below the first is the first.
        let odd = WaitOptions {
            first_interval: Duration::from_secs(1),
            max_interval: Duration::from_millis(10),
            ..options
        };
        assert_eq!(
            pause(Duration::from_secs(600), &odd),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status_ok("OK"), Some(0));
        assert_eq!(exit_status_ok("WARNINGS: 3"), Some(3));
        assert_eq!(exit_status_ok("VM is locked (backup)"), None);
        assert_eq!(exit_status_ok("WARNINGS: x"), None);
    }

    #[test]
    fn failures_carry_the_log_tail_and_their_kind() {
        let upid =
            Upid::parse("UPID:pve1:00001000:00007000:6734F1A2:qmcreate:104:root@pam:").unwrap();
        let error = TaskError::Failed {
            upid: upid.clone(),
            exit_status: "can't lock file '/var/lock/qemu-server/lock-104.conf' - got timeout"
                .into(),
            log_tail: vec!["trying to acquire lock...".into()],
        };
        assert_eq!(error.kind(), ErrorKind::Transient);
        let detail = error.detail();
        assert!(detail.contains("trying to acquire lock..."), "{detail}");
        assert!(detail.contains("task qmcreate on pve1 failed"), "{detail}");
        let timed_out = TaskError::TimedOut {
            upid,
            waited: Duration::from_secs(3),
        };
        assert_eq!(timed_out.kind(), ErrorKind::Transient);
    }
}
