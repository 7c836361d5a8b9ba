//! The background lab of `infraflux lab up`: where its files live, its record
//! (`lab.json`: pid, endpoint, networks; the token stays in the overlay's 0600 file), and
//! stopping it (SIGTERM, a bounded wait, then SIGKILL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::overlay::LabCluster;

/// The lab's files, under `<project>/.infraflux/lab/`.
#[derive(Debug, Clone)]
pub struct LabPaths {
    pub root: PathBuf,
}

impl LabPaths {
    /// `project` is where `.infraflux/` lives (the `--state-dir`, else the
    /// configuration's parent), as for the real state.
    pub fn in_project(project: &Path) -> Self {
        LabPaths {
            root: project.join(".infraflux").join("lab"),
        }
    }

    pub fn overlay(&self) -> PathBuf {
        self.root.join("overlay")
    }

    /// The `--state-dir` of runs against the lab: its state is
    /// `<root>/.infraflux/state/<env>.json`, never the project's real state.
    pub fn state_dir(&self) -> PathBuf {
        self.root.clone()
    }

    pub fn record(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    pub fn log(&self) -> PathBuf {
        self.root.join("lab.log")
    }
}

/// What `lab up` leaves for `lab status` and `lab down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabRecord {
    pub pid: u32,
    /// The simulated PVE API.
    pub endpoint: String,
    pub nodes: Vec<String>,
    pub clusters: Vec<LabCluster>,
    pub overlay: PathBuf,
    pub state_dir: PathBuf,
    /// RFC 3339.
    pub started: String,
}

impl LabRecord {
    pub fn read(path: &Path) -> std::io::Result<Option<LabRecord>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Written whole to a temporary file, then renamed: a reader never sees half.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("json.tmp");
        std::fs::write(
            &temporary,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(temporary, path)
    }
}

/// Whether `pid` is alive and is an `infraflux … lab serve` (a pid the system reused
/// for something else is never signalled).
pub fn is_lab_process(pid: u32) -> bool {
    if !is_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let arguments: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            arguments
                .windows(2)
                .any(|w| w == [b"lab".as_slice(), b"serve".as_slice()])
        }
        // No /proc (not Linux): trust the record.
        Err(_) => true,
    }
}

#[cfg(unix)]
fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

#[cfg(unix)]
pub fn is_alive(pid: u32) -> bool {
    if crate::state::lock::process_alive(pid) != Some(true) {
        return false;
    }
    // A zombie (exited, not yet reaped by its parent) is not a running lab.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(true)
}

#[cfg(not(unix))]
pub fn is_alive(_pid: u32) -> bool {
    false
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It had to be killed.
    Killed,
    /// It was not running.
    NotRunning,
}

/// SIGTERM, wait up to `grace` for the process to exit, then SIGKILL.
#[cfg(unix)]
pub fn stop(pid: u32, grace: Duration) -> std::io::Result<Stopped> {
    use rustix::process::{Signal, kill_process};
    let Some(target) = pid_of(pid) else {
        return Ok(Stopped::NotRunning);
    };
    if !is_lab_process(pid) {
        return Ok(Stopped::NotRunning);
    }
    kill_process(target, Signal::TERM).map_err(std::io::Error::from)?;
    if wait_gone(pid, grace) {
        return Ok(Stopped::Terminated);
    }
    kill_process(target, Signal::KILL).map_err(std::io::Error::from)?;
    wait_gone(pid, Duration::from_secs(5));
    Ok(Stopped::Killed)
}

#[cfg(not(unix))]
pub fn stop(_pid: u32, _grace: Duration) -> std::io::Result<Stopped> {
    Err(std::io::Error::other(
        "stopping a background lab needs a Unix system",
    ))
}

/// Poll until `pid` is gone or `limit` passes; whether it is gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LabPaths::in_project(dir.path());
        std::fs::create_dir_all(&paths.root).unwrap();
        assert_eq!(LabRecord::read(&paths.record()).unwrap(), None);
        let record = LabRecord {
            pid: 42,
            endpoint: "https://127.0.0.1:8006".into(),
            nodes: vec!["pve1".into()],
            clusters: Vec::new(),
            overlay: paths.overlay(),
            state_dir: paths.state_dir(),
            started: "2026-01-01T00:00:00Z".into(),
        };
        record.write(&paths.record()).unwrap();
        assert_eq!(LabRecord::read(&paths.record()).unwrap(), Some(record));
    }

    #[test]
    fn this_process_is_alive_but_not_a_lab() {
        assert!(is_alive(std::process::id()));
        assert!(!is_lab_process(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }
}
