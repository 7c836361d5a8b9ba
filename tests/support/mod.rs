//! The one harness for the CLI tests (in the shape of ripgrep's `tests/util.rs` and uv's
//! `TestContext`). Each test file includes it with `mod support;` and uses what it needs:
//!
//! - [`TestContext`]: a project directory (a temporary directory, optionally holding a
//!   copy of the bundled `config/`), the environment variables a run sees (none of the
//!   caller's `INFRAFLUX_*` variables leak in), and `infraflux` commands built for it:
//!   `context.command()`, `context.plan("dev")`, `context.validate()`, then
//!   `.args(..)`, `.env(..)` and [`RunExt::run`] for a [`Run`] with the exit code and both
//!   streams as strings.
//! - [`engine::Engine`]: the engine commands in process, with mock providers that have
//!   the real providers' schemas, for tests that count what the providers were asked.
//! - [`lab`]: a lab started with `infraflux lab up` in a [`TestContext`].
//! - [`postgres`]: a throwaway PostgreSQL server.
//! - [`upstream`]: the upstream release files beside the repository, as the offline
//!   mirror every run reads.
//! - [`control_plane`] and [`counterparts`] (from `infraflux-testkit`, shared with the
//!   providers' tests): the real Kubernetes control plane, Talos's own validation.
//! - [`filters`] / [`TestContext::filters`]: insta filters that make snapshots of rendered
//!   output stable (temporary paths, ports, durations, timestamps, UUIDs, pids, the host
//!   name). Bind them for the rest of a test with `let _filters = context.filters();`.

#![allow(dead_code)]

// The real counterparts live in their own crate, shared with the providers' tests.
#[allow(unused_imports)]
pub use infraflux_testkit::{control_plane, counterparts};
pub mod engine;
pub mod lab;
pub mod postgres;
pub mod upstream;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use insta::internals::SettingsBindDropGuard;

/// The Proxmox token `${env:PROXMOX_TOKEN}` resolves to unless a test sets another.
pub const TOKEN: &str = "root@pam!infraflux=example";

/// The variables `infraflux` reads that would point a run somewhere else (or change its
/// output) if they leaked in from the caller's environment.
const CLEARED: [&str; 21] = [
    "PROXMOX_TOKEN",
    "INFRAFLUX_MANIFESTS",
    "INFRAFLUX_MANIFESTS_URL",
    "XDG_CACHE_HOME",
    "INFRAFLUX_CONFIG",
    "INFRAFLUX_OVERLAY",
    "INFRAFLUX_LOG",
    "INFRAFLUX_STATE_DIR",
    "INFRAFLUX_STATE_BACKEND",
    "INFRAFLUX_STATE_LEASE",
    "INFRAFLUX_STATE_POSTGRES_URL",
    "INFRAFLUX_STATE_RECIPIENTS",
    "INFRAFLUX_STATE_IDENTITY_FILE",
    "INFRAFLUX_STATE_IDENTITY",
    "INFRAFLUX_STATE_PASSPHRASE",
    "INFRAFLUX_AGE_IDENTITY_FILE",
    "INFRAFLUX_AGE_IDENTITY",
    "INFRAFLUX_AGE_RECIPIENTS",
    "VISUAL",
    "EDITOR",
    "NO_GRAPHICS",
];

/// The repository root (where `config/`, `examples/` and `tests/` are).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example configuration (`config/`).
pub fn example_config() -> PathBuf {
    root().join("config")
}

/// The fixtures of the tests (`tests/fixtures/`).
/// The configuration folders the project ships: `config/` and every `examples/*` that
/// has environments.
pub fn bundled_configurations() -> Vec<PathBuf> {
    let mut folders = vec![example_config()];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ is readable")
        .map(|entry| entry.expect("an examples/ entry").path())
        .filter(|path| path.join("environments").is_dir())
        .collect();
    examples.sort();
    folders.extend(examples);
    folders
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// Copy the tree `from` into `to` (created if missing), merging with what is there.
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

/// A project directory and the environment `infraflux` runs with in it.
pub struct TestContext {
    dir: tempfile::TempDir,
    /// Passed as `--config`; without it the binary finds `config/` in the project.
    config: Option<PathBuf>,
    /// Passed as `--state-dir`.
    state_dir: Option<PathBuf>,
    /// Set (`Some`) or removed (`None`), after [`CLEARED`] is removed.
    envs: Vec<(OsString, Option<OsString>)>,
    timeout: Option<Duration>,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    /// An empty project directory; `PROXMOX_TOKEN` is [`TOKEN`]; upstream release files
    /// come from the shared mirror ([`upstream::mirror`]), the cache is the project's
    /// `.cache/`, and a download would go to a port where nothing listens.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut envs: Vec<(OsString, Option<OsString>)> = vec![
            ("PROXMOX_TOKEN".into(), Some(TOKEN.into())),
            (
                "XDG_CACHE_HOME".into(),
                Some(dir.path().join(".cache").into_os_string()),
            ),
            (
                "INFRAFLUX_MANIFESTS_URL".into(),
                Some(upstream::UNREACHABLE.into()),
            ),
        ];
        if let Some(mirror) = upstream::mirror() {
            envs.push(("INFRAFLUX_MANIFESTS".into(), Some(mirror.into_os_string())));
        }
        TestContext {
            dir,
            config: None,
            state_dir: None,
            envs,
            timeout: None,
        }
    }

    /// A project with a copy of the bundled example in `config/` (edit it freely).
    pub fn with_example() -> Self {
        let context = Self::new();
        copy_dir(&example_config(), &context.config_dir());
        context
    }

    /// The project directory, the working directory of every command.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The project's `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.path().join("config")
    }

    /// `config/<file>` of the project.
    pub fn config_file(&self, file: &str) -> PathBuf {
        self.config_dir().join(file)
    }

    /// Run with `--config <dir>` (e.g. [`example_config`] itself, without a copy).
    pub fn config(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config = Some(dir.into());
        self
    }

    /// Run with `--state-dir <dir>`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Set a variable for every command.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), Some(value.into())));
        self
    }

    /// Remove a variable for every command.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), None));
        self
    }

    /// `PROXMOX_TOKEN` for every command, or none.
    pub fn token(self, token: Option<&str>) -> Self {
        match token {
            Some(token) => self.env("PROXMOX_TOKEN", token),
            None => self.env_remove("PROXMOX_TOKEN"),
        }
    }

    /// Kill a command that runs longer than `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Replace `from` by `to` in `config/<file>`; `from` must occur exactly once, so a
    /// test whose edit no longer applies (the example changed) fails instead of testing
    /// nothing.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.config_file(file);
        let text = std::fs::read_to_string(&path).expect("read the configuration file");
        assert_eq!(
            text.matches(from).count(),
            1,
            "`{from}` must occur exactly once in {file}:\n{text}"
        );
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write the edited file");
    }

    /// [`TestContext::edit`], as a builder.
    pub fn with_edit(self, file: &str, from: &str, to: &str) -> Self {
        self.edit(file, from, to);
        self
    }

    /// Write `config/<file>` (its directory created if missing).
    pub fn write(&self, file: &str, bytes: impl AsRef<[u8]>) {
        let path = self.config_file(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).expect("write the file");
    }

    /// [`TestContext::write`], as a builder.
    pub fn with_file(self, file: &str, bytes: impl AsRef<[u8]>) -> Self {
        self.write(file, bytes);
        self
    }

    /// `infraflux --color never [--config ..] [--state-dir ..]` in the project, with the
    /// context's variables and none of the caller's.
    pub fn command(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::cargo_bin("infraflux").expect("the binary is built");
        command.current_dir(self.path());
        for name in CLEARED {
            command.env_remove(name);
        }
        command.env("NO_COLOR", "1");
        for (name, value) in &self.envs {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.args(["--color", "never"]);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        if let Some(state_dir) = &self.state_dir {
            command.arg("--state-dir").arg(state_dir);
        }
        if let Some(limit) = self.timeout {
            command.timeout(limit);
        }
        command
    }

    /// The binary as a [`std::process::Command`] with the same settings (to spawn it and
    /// do something while it runs).
    pub fn std_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("infraflux"));
        command.current_dir(self.path());
        for name in CLEARED {
            command.env_remove(name);
        }
        command.env("NO_COLOR", "1");
        for (name, value) in &self.envs {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.args(["--color", "never"]);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        if let Some(state_dir) = &self.state_dir {
            command.arg("--state-dir").arg(state_dir);
        }
        command
    }

    /// `infraflux <args>`, run.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command().args(args).run()
    }

    /// `infraflux plan --env <environment>`.
    pub fn plan(&self, environment: &str) -> assert_cmd::Command {
        let mut command = self.command();
        command.args(["plan", "--env", environment]);
        command
    }

    /// `infraflux validate`.
    pub fn validate(&self) -> assert_cmd::Command {
        let mut command = self.command();
        command.arg("validate");
        command
    }

    /// `infraflux config show --env <environment> --cluster <cluster>`.
    pub fn config_show(&self, environment: &str, cluster: &str) -> assert_cmd::Command {
        let mut command = self.command();
        command.args(["config", "show", "--env", environment, "--cluster", cluster]);
        command
    }

    /// `infraflux state <args>`.
    pub fn state(&self, args: &[&str]) -> assert_cmd::Command {
        let mut command = self.command();
        command.arg("state").args(args);
        command
    }

    /// [`filters`] plus the project directory (as `[TMP]`), bound until the guard drops.
    pub fn filters(&self) -> SettingsBindDropGuard {
        let mut list = Vec::new();
        for path in [
            Some(self.path().to_path_buf()),
            self.path().canonicalize().ok(),
        ]
        .into_iter()
        .flatten()
        {
            list.push((escape(&path.display().to_string()), "[TMP]".to_string()));
        }
        list.extend(filter_list());
        bind(list)
    }
}

/// What a command did: its exit code (-1 if a signal ended it) and both streams.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(output: &std::process::Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
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
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Panics with both streams unless the command exited with `code`.
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{self}");
        self
    }

    /// Panics with both streams if the command exited 0; and if it panicked.
    pub fn failure(self) -> Run {
        assert_ne!(self.code, 0, "{self}");
        assert!(!self.stderr.contains("panicked"), "{self}");
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `.run()` on a command: its [`Run`].
pub trait RunExt {
    fn run(&mut self) -> Run;
}

impl RunExt for assert_cmd::Command {
    fn run(&mut self) -> Run {
        Run::of(&self.output().expect("run infraflux"))
    }
}

impl RunExt for std::process::Command {
    fn run(&mut self) -> Run {
        Run::of(&self.output().expect("run infraflux"))
    }
}

/// The filters for output that differs from run to run, bound until the guard drops.
pub fn filters() -> SettingsBindDropGuard {
    bind(filter_list())
}

fn bind(list: Vec<(String, String)>) -> SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in list {
        settings.add_filter(&pattern, replacement);
    }
    settings.bind_to_scope()
}

/// (regex, replacement) for what differs from run to run, most specific first.
pub fn filter_list() -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = [
        // Temporary directories (other than the context's own).
        (r"(/private)?/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        // RFC 3339 timestamps.
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2}| UTC)?",
            "[TIMESTAMP]",
        ),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[UUID]",
        ),
        // Loopback and local ports.
        (
            r"(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{2,5}\b",
            "$1:[PORT]",
        ),
        (r"\bpid \d+", "pid [PID]"),
        (r"\bprocess \d+\b", "process [PID]"),
        // Who holds a lock: `$USER` on this host.
        (r"\bby \S+ on \S+ \(pid", "by [USER] on [HOST] (pid"),
        // The mock providers number their objects in the order creates finish.
        (r"\bmock-\d+\b", "mock-[ID]"),
        // Elapsed times: "after 0s", "(0.3s)", "in 12ms", "3s ago".
        (r"\b(after|in) \d+(\.\d+)?(ns|µs|us|ms|s|m)\b", "$1 [TIME]"),
        (r"\(\d+(\.\d+)?(ns|µs|us|ms|s|m)\)", "([TIME])"),
        (r"\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h) ago\b", "[TIME] ago"),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_string(), r.to_string()))
    .collect();
    if let Some(host) = hostname().filter(|h| h.len() >= 4) {
        list.push((format!(r"\b{}\b", escape(&host)), "[HOST]".to_string()));
    }
    list
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `text` as a regex matching itself.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The lines of `text`, sorted: a stable snapshot of progress that concurrent work
/// prints in no fixed order.
pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}
