//! Driving the local lab from tests, as a user or a CI job does: a project directory with
//! a copy of the bundled `config/` (a [`TestContext`]), `infraflux lab up` in it, commands
//! through the lab's overlay and state, and `lab down` whatever happens (a drop guard).
//! Each command is bounded in time.

use std::path::Path;
use std::time::Duration;

use super::{Run, RunExt, TestContext};

/// A generous bound for a debug build on a busy 2-core machine (a run takes seconds).
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The flags that point a command at a running lab (as `lab up` prints them).
pub const OVERLAY_ARGS: [&str; 4] = [
    "--overlay",
    ".infraflux/lab/overlay",
    "--state-dir",
    ".infraflux/lab",
];

/// A project directory with a copy of the bundled `config/`, no `PROXMOX_TOKEN` (the lab
/// needs none), each command bounded by [`RUN_LIMIT`].
pub fn project() -> TestContext {
    TestContext::with_example().token(None).timeout(RUN_LIMIT)
}

/// A lab started with `lab up` in a project directory; `lab down` when dropped.
pub struct LabUp<'a> {
    project: &'a TestContext,
    /// `lab up`'s own output (the addresses it describes are on stderr).
    pub up: Run,
}

impl<'a> LabUp<'a> {
    /// `infraflux lab up --env <env>` in `project`; panics if it fails.
    pub fn start(project: &'a TestContext, env: &str) -> LabUp<'a> {
        LabUp::start_with(project, env, &[])
    }

    /// [`LabUp::start`] with extra environment variables for the lab process (its
    /// fault injection).
    pub fn start_with(project: &'a TestContext, env: &str, vars: &[(&str, &str)]) -> LabUp<'a> {
        let mut command = project.command();
        command.args(["lab", "up", "--env", env]);
        for (name, value) in vars {
            command.env(name, value);
        }
        let up = command.run().success();
        LabUp { project, up }
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.project.path()
    }

    /// `infraflux <overlay args> <args>`: a command against this lab.
    pub fn run(&self, args: &[&str]) -> Run {
        self.project.command().args(OVERLAY_ARGS).args(args).run()
    }

    /// `infraflux <args>` in the project, without the overlay (`lab down`, `lab status`).
    pub fn run_plain(&self, args: &[&str]) -> Run {
        self.project.run(args)
    }
}

impl Drop for LabUp<'_> {
    fn drop(&mut self) {
        let _ = self.project.command().args(["lab", "down"]).output();
    }
}
