//! Who holds a lock, and whether that holder still runs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who holds a lock, recorded so a user can tell a live holder from a stale one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    /// When the holder's process started, in the host's own clock (on Linux, field 22
    /// `starttime` of `/proc/<pid>/stat`: clock ticks since boot). With the pid it names
    /// one process: a pid reused by another process after the holder died has another
    /// start time. Absent in locks written before it was recorded, and where it cannot be
    /// read (then only the pid is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_started: Option<u64>,
}

impl LockInfo {
    /// A lock for `operation` (e.g. `apply`, `state rm`) taken by this process: a new
    /// random ID, `$USER`, this host's name, this process's ID, now.
    pub fn new(operation: impl Into<String>) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.into(),
            owner: current_user(),
            host: hostname(),
            pid: std::process::id(),
            created: chrono::Utc::now(),
            process_started: process_start_time(std::process::id()),
        }
    }

    /// How long ago the lock was taken (zero if its clock is ahead of ours).
    pub fn age(&self) -> std::time::Duration {
        (chrono::Utc::now() - self.created)
            .to_std()
            .unwrap_or_default()
    }

    /// Whether the holder is certainly gone: it ran on this host and its process no longer
    /// exists, or the process now under its pid started at another time than the one
    /// recorded (the pid was reused). A holder on another host is never called stale: we
    /// cannot look. When nothing can be told for sure, the holder is taken as alive.
    pub fn is_stale(&self) -> bool {
        if self.host != hostname() {
            return false;
        }
        match process_alive(self.pid) {
            Some(false) => true,
            Some(true) => {
                let reused = matches!(
                    (self.process_started, process_start_time(self.pid)),
                    (Some(recorded), Some(current)) if recorded != current
                );
                // A zombie (killed, not yet reaped by its parent) is gone too: it can
                // never release the lock.
                reused || is_zombie(self.pid)
            }
            None => false,
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} (pid {}, operation `{}`, lock ID {}, taken {} ago)",
            self.owner,
            self.host,
            self.pid,
            self.operation,
            self.id,
            format_age(self.age())
        )
    }
}

/// `42s`, `5m 3s`, `2h 5m`, `3d 4h`: precise enough to tell a fresh lock from an old one.
pub fn format_age(age: std::time::Duration) -> String {
    let seconds = age.as_secs();
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if days > 0 {
        format!("{days}d {}h", hours % 24)
    } else if hours > 0 {
        format!("{hours}h {}m", minutes % 60)
    } else if minutes > 0 {
        format!("{minutes}m {}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// The login name from `$USER` (`$USERNAME` on Windows), or `unknown`.
pub fn current_user() -> String {
    ["USER", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// This machine's host name.
pub fn hostname() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".to_string())
    }
}

/// Whether a process with this ID exists on this host: `kill(pid, 0)`, which sends no
/// signal. `None` when that cannot be told (not Unix, or an unexpected error).
pub fn process_alive(pid: u32) -> Option<bool> {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)?;
        match rustix::process::test_kill_process(pid) {
            Ok(()) => Some(true),
            // It exists, but belongs to someone we may not signal.
            Err(Errno::PERM) => Some(true),
            Err(Errno::SRCH) => Some(false),
            Err(_) => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        None
    }
}

/// When process `pid` started, in clock ticks since boot (`starttime`, field 22 of
/// `/proc/<pid>/stat`); `None` when it does not exist or this is not Linux.
pub fn process_start_time(pid: u32) -> Option<u64> {
    // Fields after the command name, which is in parentheses and may itself hold spaces
    // and parentheses: the last `)` ends it. Field 3 (`state`) is the first after it.
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// Whether process `pid` is a zombie: it has exited and waits for its parent to reap it.
fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().map(String::as_str) == Some("Z"))
}

/// The fields of `/proc/<pid>/stat` from field 3 (`state`) on.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let s = std::time::Duration::from_secs;
        assert_eq!(format_age(s(42)), "42s");
        assert_eq!(format_age(s(5 * 60 + 3)), "5m 3s");
        assert_eq!(format_age(s(2 * 3600 + 5 * 60 + 9)), "2h 5m");
        assert_eq!(format_age(s(3 * 86_400 + 4 * 3600)), "3d 4h");
    }

    #[test]
    fn this_process_is_alive_and_an_exited_child_is_not() {
        assert_eq!(process_alive(std::process::id()), Some(true));
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_alive(pid), Some(false));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_pid_with_another_start_time_is_a_reused_pid() {
        let mut info = LockInfo::new("apply");
        let started = info.process_started.expect("read on Linux");
        assert!(!info.is_stale());
        info.process_started = Some(started + 1);
        assert!(info.is_stale(), "another process now has this pid");
        // A lock written before start times were recorded: only the pid is checked.
        info.process_started = None;
        assert!(!info.is_stale());
        let text = serde_json::to_string(&info).unwrap();
        assert!(!text.contains("process_started"), "{text}");
        let old: LockInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(old, info);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_killed_holder_not_yet_reaped_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let mut info = LockInfo::new("apply");
        info.pid = child.id();
        info.process_started = process_start_time(child.id());
        assert!(info.process_started.is_some());
        assert!(!info.is_stale());
        child.kill().unwrap();
        // Until it is reaped the child is a zombie: its pid still answers kill(pid, 0).
        while !is_zombie(info.pid) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(info.is_stale());
        child.wait().unwrap();
        assert!(info.is_stale());
    }

    #[test]
    fn a_new_lock_describes_this_process() {
        let info = LockInfo::new("apply");
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.host, hostname());
        assert!(!info.is_stale());
        #[cfg(target_os = "linux")]
        assert!(info.process_started.is_some());
        let text = info.to_string();
        assert!(text.contains("operation `apply`"), "{text}");
        assert!(text.contains(&info.id), "{text}");
        assert_ne!(LockInfo::new("apply").id, info.id);
    }
}
