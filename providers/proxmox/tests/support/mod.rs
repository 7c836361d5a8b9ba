//! Starting fakepve from Rust: `tests/support/fakepve_launcher.py` run by the Python
//! named in `INFRAFLUX_FAKEPVE_PYTHON` (a venv with `fakepve[crypto]`). Shared by the
//! integration tests and the bench (`#[path]`-included there).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const PYTHON_VAR: &str = "INFRAFLUX_FAKEPVE_PYTHON";
pub const TOKEN: &str = "root@pam!ci=f4k3-5ecr3t";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Set (to anything) to fail instead of skipping when fakepve is not available; CI
/// sets it (`.ci/run`), so a missing counterpart never passes silently there.
pub const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_FAKEPVE";

/// The Python to run fakepve with, or why the fakepve tests are skipped (a panic when
/// [`REQUIRE_VAR`] is set).
pub fn python() -> Result<String, String> {
    match std::env::var(PYTHON_VAR) {
        Ok(python) if !python.is_empty() => Ok(python),
        _ => {
            let reason = format!(
                "set {PYTHON_VAR} to a Python with `fakepve[crypto]` installed (python3 -m venv /work/.venv-fakepve && /work/.venv-fakepve/bin/pip install 'fakepve[crypto]')"
            );
            if std::env::var_os(REQUIRE_VAR).is_some() {
                panic!("fakepve is required ({REQUIRE_VAR} is set): {reason}");
            }
            Err(format!("skipped: {reason}"))
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub nodes: u32,
    pub vms: u32,
    pub import_content: bool,
    pub time_scale: f64,
}

pub struct FakePve {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// `https://127.0.0.N:PORT`.
    pub url: String,
    /// SHA-256 of its certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// Its self-signed certificate, usable as a CA file.
    pub cafile: PathBuf,
}

static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

impl FakePve {
    pub async fn start(python: &str, options: Options) -> Result<FakePve, String> {
        let launcher = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/fakepve_launcher.py"
        );
        Self::start_with(python, launcher, options).await
    }

    /// With the launcher at `launcher` (for crates that include this file by path).
    pub async fn start_with(
        python: &str,
        launcher: &str,
        options: Options,
    ) -> Result<FakePve, String> {
        // Each instance on its own loopback address (port 0: any free port).
        let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed) % 250 + 2;
        let host = format!("127.0.{}.{n}", std::process::id() % 200 + 20);
        let mut command = Command::new(python);
        command
            .arg(launcher)
            .args(["--host", &host, "--port", "0"])
            .args(["--nodes", &options.nodes.max(1).to_string()])
            .args(["--vms", &options.vms.to_string()])
            .args(["--time-scale", &options.time_scale.to_string()])
            .env("INFRAFLUX_FAKEPVE_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("INFRAFLUX_FAKEPVE_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        if options.import_content {
            command.arg("--import-content");
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {python} {launcher}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let line = tokio::time::timeout(START_TIMEOUT, stdout.next_line())
            .await
            .map_err(|_| format!("fakepve did not say it listens within {START_TIMEOUT:?}"))?
            .map_err(|e| format!("reading fakepve's output: {e}"))?
            .ok_or(
                "fakepve exited before listening (is fakepve[crypto] installed for that Python?)",
            )?;
        let rest = line
            .strip_prefix("fakepve listening on ")
            .ok_or_else(|| format!("unexpected first line from fakepve: {line}"))?;
        let mut parts = rest.split_whitespace();
        let url = parts.next().ok_or("no URL")?.to_string();
        let mut fingerprint = String::new();
        let mut cafile = PathBuf::new();
        for part in parts {
            if let Some(value) = part.strip_prefix("fingerprint=") {
                fingerprint = value.to_string();
            } else if let Some(value) = part.strip_prefix("cafile=") {
                cafile = value.into();
            }
        }
        Ok(FakePve {
            child,
            stdin,
            stdout,
            url,
            fingerprint,
            cafile,
        })
    }

    /// Send a control command (see the launcher) and return its result.
    pub async fn command(&mut self, request: Value) -> Result<Value, String> {
        let mut line = request.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("writing to fakepve: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, self.stdout.next_line())
            .await
            .map_err(|_| "fakepve did not answer in time".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("fakepve exited")?;
        match answer.split_once(' ') {
            Some(("ok", json)) => serde_json::from_str(json).map_err(|e| e.to_string()),
            Some(("err", message)) => Err(message.to_string()),
            _ => Err(format!("unexpected answer: {answer}")),
        }
    }

    /// Ask and panic on failure (tests).
    pub async fn expect(&mut self, request: Value) -> Value {
        let shown = request.to_string();
        self.command(request)
            .await
            .unwrap_or_else(|e| panic!("fakepve command {shown}: {e}"))
    }

    pub async fn stop(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
