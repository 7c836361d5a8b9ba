//! Driving the local lab from tests, as a user or a CI job does: a project directory with
//! a copy of the bundled `config/`, `infraflux lab up` in it, commands through the lab's
//! overlay and state, and `lab down` whatever happens (a drop guard). Each command is
//! bounded in time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

/// A generous bound for a debug build on a busy 2-core machine (a run takes seconds).
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The flags that point a command at a running lab (as `lab up` prints them).
pub const OVERLAY_ARGS: [&str; 4] = [
    "--overlay",
    ".infraflux/lab/overlay",
    "--state-dir",
    ".infraflux/lab",
];

/// A project directory with a copy of the bundled `config/`.
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        &dir.path().join("config"),
    );
    dir
}

/// Replace the first `from` by `to` in the project's `config/<file>`, which must contain
/// it: an edit as a user makes it.
pub fn edit(project: &Path, file: &str, from: &str, to: &str) {
    let path = project.join("config").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `infraflux` in `project`, with nothing from the caller's environment pointing it
/// elsewhere.
pub fn infraflux(project: &Path) -> Command {
    let mut command = Command::cargo_bin("infraflux").unwrap();
    command
        .current_dir(project)
        .env_remove("PROXMOX_TOKEN")
        .env_remove("INFRAFLUX_CONFIG")
        .env_remove("INFRAFLUX_OVERLAY")
        .env_remove("INFRAFLUX_STATE_DIR")
        .env_remove("INFRAFLUX_STATE_BACKEND")
        .env("NO_COLOR", "1")
        .timeout(RUN_LIMIT);
    command
}

/// What a command did: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(command: &mut Command) -> Run {
        let output = command.output().unwrap();
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Both streams, stdout first (progress goes to stderr, results to stdout).
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with both streams unless the command exited 0.
    pub fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "{}\n{}", self.stdout, self.stderr);
        self
    }
}

/// A lab started with `lab up` in a project directory; `lab down` when dropped.
pub struct LabUp {
    project: PathBuf,
    /// `lab up`'s own output (the addresses it describes are on stderr).
    pub up: Run,
}

impl LabUp {
    /// `infraflux lab up --env <env>` in `project`; panics if it fails.
    pub fn start(project: &Path, env: &str) -> LabUp {
        LabUp::start_with(project, env, &[])
    }

    /// [`LabUp::start`] with extra environment variables for the lab process (its
    /// fault injection).
    pub fn start_with(project: &Path, env: &str, vars: &[(&str, &str)]) -> LabUp {
        let mut command = infraflux(project);
        command.args(["lab", "up", "--env", env]);
        for (name, value) in vars {
            command.env(name, value);
        }
        let up = Run::of(&mut command).success();
        LabUp {
            project: project.to_path_buf(),
            up,
        }
    }

    /// `infraflux <overlay args> <args>`: a command against this lab.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(infraflux(&self.project).args(OVERLAY_ARGS).args(args))
    }

    /// `infraflux <args>` in the project, without the overlay (`lab down`, `lab status`).
    pub fn run_plain(&self, args: &[&str]) -> Run {
        Run::of(infraflux(&self.project).args(args))
    }
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = infraflux(&self.project).args(["lab", "down"]).output();
    }
}
