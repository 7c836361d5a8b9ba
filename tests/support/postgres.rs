//! A throwaway PostgreSQL server for tests and benches, from the Debian packages
//! (`apt-get install postgresql`): `initdb` into a temporary directory, `postgres` on
//! 127.0.0.1 and a free port, password authentication (scram) for TCP.
//!
//! The server runs under a small `sh` watchdog that reads our pipe: when this process
//! exits — normally, by a panic, or SIGKILLed — the pipe closes, and the watchdog stops
//! the server and deletes its directory. So a server shared by a whole test binary (a
//! `static`, never dropped) does not outlive it.
//!
//! PostgreSQL refuses to run as root: as root, the server runs as `nobody`.
//!
//! Without the binaries the tests are skipped with a printed reason, unless
//! `INFRAFLUX_REQUIRE_POSTGRES` is set (CI sets it), which makes that a failure.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Set (to anything) to fail instead of skipping when PostgreSQL is not installed.
pub const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_POSTGRES";
/// The superuser the tests connect as, and its password.
pub const USER: &str = "infraflux";
pub const PASSWORD: &str = "pg-test-Secr3t-p4ss";

/// How long the server may take to accept connections (initdb excluded).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    pub port: u16,
    bin: PathBuf,
    directory: PathBuf,
    watchdog: Child,
    /// Dropping it closes the pipe: the watchdog stops the server.
    pipe: Option<ChildStdin>,
}

/// The directory of `initdb` and `postgres`: `INFRAFLUX_POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("INFRAFLUX_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The server shared by this test binary, started on first use; `None` (with the reason
/// printed) when PostgreSQL is not installed and not required.
pub fn shared() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = binaries() else {
                let reason = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; `apt-get install postgresql`)";
                if std::env::var_os(REQUIRE_VAR).is_some() {
                    panic!("{reason}, and {REQUIRE_VAR} is set");
                }
                eprintln!("skipped: {reason}");
                return None;
            };
            Some(Server::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}")))
        })
        .as_ref()
}

/// Who the server runs as: this user, or `nobody` when we are root.
fn server_user() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"nobody"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    });
    Some(ids.unwrap_or((65534, 65534)))
}

fn as_server_user(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        command.uid(uid).gid(gid);
    }
    command.env("LC_ALL", "C")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// initdb and start a server; `extra` are `postgres -c name=value` settings.
    pub fn start(bin: &Path, extra: &[(&str, &str)]) -> Result<Server, String> {
        Server::start_with_files(bin, extra, &[])
    }

    /// As [`Server::start`], with `files` (name, contents) written into the server's
    /// directory first, mode 0600 and owned by the server's user (e.g. TLS keys, named
    /// by relative paths in `extra`).
    pub fn start_with_files(
        bin: &Path,
        extra: &[(&str, &str)],
        files: &[(&str, &[u8])],
    ) -> Result<Server, String> {
        // /tmp, not $TMPDIR: the server's user (nobody) must reach it.
        let directory = tempfile::Builder::new()
            .prefix("infraflux-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a directory for PostgreSQL: {e}"))?
            .keep();
        let owner = server_user();
        let chown = |path: &Path| {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("cannot chown {}: {e}", path.display()))
            } else {
                Ok(())
            }
        };
        chown(&directory)?;
        let password_file = directory.join("password");
        std::fs::write(&password_file, PASSWORD).map_err(|e| e.to_string())?;
        chown(&password_file)?;
        for (name, contents) in files {
            let path = directory.join(name);
            std::fs::write(&path, contents).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            chown(&path)?;
        }
        let data = directory.join("data");
        let output = as_server_user(&mut Command::new(bin.join("initdb")))
            .args(["-D"])
            .arg(&data)
            .args(["-U", USER, "-A", "scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut last_log = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = directory.join(format!("postgres-{port}.log"));
            let mut arguments: Vec<String> = vec![
                "-D".into(),
                data.display().to_string(),
                "-k".into(),
                directory.display().to_string(),
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ];
            for (name, value) in extra {
                arguments.push("-c".into());
                arguments.push(format!("{name}={value}"));
            }
            // The watchdog: start the server, wait for our pipe to close (or for the
            // server to die), then stop it and remove its directory.
            let mut watchdog = as_server_user(&mut Command::new("sh"))
                .arg("-c")
                .arg(
                    r#"dir="$1"; log="$2"; bin="$3"; shift 3
"$bin" "$@" </dev/null >>"$log" 2>&1 &
pid=$!
read _ignored
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir""#,
                )
                .arg("sh")
                .arg(&directory)
                .arg(&log)
                .arg(bin.join("postgres"))
                .args(&arguments)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start postgres: {e}"))?;
            let pipe = watchdog.stdin.take();
            let mut server = Server {
                port,
                bin: bin.to_path_buf(),
                directory: directory.clone(),
                watchdog,
                pipe,
            };
            match server.wait_ready(&log) {
                Ok(()) => return Ok(server),
                Err(text) if text.contains("could not bind") => {
                    // The server exited; stop the watchdog without it removing the
                    // directory, whose data the next attempt uses.
                    last_log = text;
                    let _ = server.watchdog.kill();
                    let _ = server.watchdog.wait();
                    server.pipe = None;
                    std::mem::forget(server);
                }
                // Dropping it stops the server and removes its directory.
                Err(text) => return Err(format!("PostgreSQL did not start:\n{text}")),
            }
        }
        Err(format!("PostgreSQL did not start:\n{last_log}"))
    }

    /// Poll `pg_isready` until the server accepts connections, for a bounded time.
    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-t", "2", "-p"])
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // Our own polls make it log "FATAL: the database system is starting up".
            let failed = text
                .lines()
                .any(|line| line.contains("FATAL") && !line.contains("starting up"));
            if failed || text.contains("could not bind") || Instant::now() > deadline {
                return Err(text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// `postgres://infraflux:<password>@127.0.0.1:<port>/<database>?sslmode=disable`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database (one per test keeps tests apart); returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        Session::open(&self.url("postgres")).execute(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the pipe tells the watchdog to stop the server and clean up.
        self.pipe = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// A plain connection for what tests do behind the store's back (a blocking
/// transaction, `pg_terminate_backend`, looking at rows).
pub struct Session {
    runtime: tokio::runtime::Runtime,
    pub client: tokio_postgres::Client,
}

impl Session {
    pub fn open(url: &str) -> Session {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        });
        Session { runtime, client }
    }

    /// Run statements (the simple protocol: `BEGIN; …` keeps a transaction open).
    pub fn execute(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The first column of every row, as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        let messages = self
            .runtime
            .block_on(self.client.simple_query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect()
    }
}
