//! The PostgreSQL state backend against a real server started by the tests
//! (tests/support/postgres.rs): documents, compare-and-swap writes, leases, the CLI
//! (`--state-backend postgres`, `state migrate`), TLS, and that the password never shows.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use infraflux::registry::ProviderRegistry;
use infraflux::state::postgres::ConnectionString;
use infraflux::state::{
    Encryption, Error, IdentitySource, LocalStore, LockInfo, PostgresStore, PromotionRecord,
    ResourceState, ResourceStatus, StateDocument, StateStore,
};
use infraflux::vocabulary::ResourceAddr;
use infraflux::vocabulary::Sensitive;
use infraflux_provider_mock::Op;
use serde_json::json;
use support::TestContext;
use support::engine::{Engine, mock_providers};
use support::postgres::{self as postgres_server, PASSWORD, Server, Session};

const BACKEND: &str = "INFRAFLUX_STATE_BACKEND";
const URL: &str = "INFRAFLUX_STATE_POSTGRES_URL";

/// The shared server and a fresh database on it, or `None` (skipped, reason printed).
fn database() -> Option<(&'static Server, String)> {
    let server = postgres_server::shared()?;
    let url = server.database();
    Some((server, url))
}

fn store(url: &str) -> PostgresStore {
    store_with_lease(url, Duration::from_secs(120))
}

fn store_with_lease(url: &str, lease: Duration) -> PostgresStore {
    PostgresStore::new(ConnectionString::parse(url, None).unwrap(), lease).unwrap()
}

fn resource(name: &str, secret: &str) -> (ResourceAddr, ResourceState) {
    let serde_json::Value::Object(attributes) = json!({"name": name, "token": secret}) else {
        unreachable!()
    };
    (
        format!("dev/workload/proxmox_vm.{name}").parse().unwrap(),
        ResourceState {
            kind: "proxmox_vm".into(),
            provider: "proxmox".into(),
            id: Some(format!("id-{name}")),
            attributes: attributes.into(),
            sensitive: vec!["token".into()],
            dependencies: vec![],
            status: ResourceStatus::Ready,
        },
    )
}

fn document(environment: &str, serial: u64, names: &[&str]) -> StateDocument {
    let mut document = StateDocument::new(environment);
    document.lineage = uuid::Uuid::from_u128(0xfeed);
    document.serial = serial;
    for name in names {
        let (address, state) = resource(name, "tok");
        let address =
            ResourceAddr::new(environment, &address.cluster, &address.kind, &address.name);
        document.resources.insert(address, state);
    }
    document
}

#[test]
fn documents_round_trip_with_their_promotion_record() {
    let Some((_, url)) = database() else { return };
    let store = store(&url);
    assert_eq!(store.load("dev").unwrap(), None);
    assert_eq!(store.environments().unwrap(), Vec::<String>::new());
    let mut first = document("dev", 1, &["cp-1", "cp-2"]);
    first.promotion = Some(PromotionRecord {
        digest: "sha256:abc".into(),
        clusters: [(
            "workload".to_string(),
            [("a.b".to_string(), json!(3))].into(),
        )]
        .into(),
        applied_at: chrono::Utc::now(),
        skipped_check: None,
    });
    store.persist(&first).unwrap();
    assert_eq!(store.load("dev").unwrap(), Some(first.clone()));
    let mut second = first.clone();
    second.serial = 2;
    second.resources.clear();
    store.persist(&second).unwrap();
    store.persist(&document("prod", 1, &[])).unwrap();
    // Another process (another store) sees the same.
    let other = self::store(&url);
    assert_eq!(other.load("dev").unwrap(), Some(second));
    assert_eq!(other.environments().unwrap(), vec!["dev", "prod"]);
    let session = Session::open(&url);
    assert_eq!(
        session.column("SELECT version FROM infraflux_schema"),
        vec!["1"]
    );
    assert_eq!(
        session.column("SELECT serial FROM infraflux_state WHERE environment = 'dev'"),
        vec!["2"]
    );
    // Names that could not be files are refused here too.
    assert!(matches!(
        store.load("../dev"),
        Err(Error::InvalidEnvironment { .. })
    ));
}

#[test]
fn encrypted_documents_hold_no_secret_in_the_database() {
    let Some((_, url)) = database() else { return };
    let identity = age::x25519::Identity::generate();
    let key = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_string();
    let encryption = Encryption {
        identities: vec![IdentitySource::Key(Sensitive::new(key))],
        ..Encryption::default()
    };
    let store = store(&url).with_encryption(Some(encryption));
    let mut secret = document("dev", 1, &[]);
    let (address, state) = resource("cp-1", "do-not-leak-this-token");
    secret.resources.insert(address, state);
    store.persist(&secret).unwrap();
    let stored = Session::open(&url)
        .column("SELECT encode(document, 'escape') FROM infraflux_state")
        .concat();
    assert!(
        stored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{stored}"
    );
    assert!(!stored.contains("do-not-leak-this-token"));
    assert_eq!(store.load("dev").unwrap(), Some(secret.clone()));
    // Without the key: a clear error naming the database and environment.
    let error = self::store(&url).load("dev").unwrap_err();
    assert!(matches!(error, Error::NoKey { .. }), "{error}");
    assert!(error.to_string().contains("environment `dev`"), "{error}");
    // Rekey to a new identity: same document and serial, the old key no longer opens it.
    let new = age::x25519::Identity::generate();
    let rotating = self::store(&url).with_encryption(Some(Encryption {
        recipients: vec![new.to_public().to_string()],
        ..store.encryption().unwrap().clone()
    }));
    assert!(rotating.rekey("dev").unwrap());
    assert!(!rotating.rekey("prod").unwrap());
    let new_key = age::secrecy::ExposeSecret::expose_secret(&new.to_string()).to_string();
    let with_new = self::store(&url).with_encryption(Some(Encryption {
        identities: vec![IdentitySource::Key(Sensitive::new(new_key))],
        ..Encryption::default()
    }));
    assert_eq!(with_new.load("dev").unwrap(), Some(secret));
    assert!(matches!(store.load("dev"), Err(Error::WrongKey { .. })));
}

#[test]
fn a_misconfigured_backend_is_reported_before_anything_runs() {
    // No server needed: the settings are wrong before any connection.
    let output = TestContext::with_example()
        .command()
        .env(BACKEND, "postgres")
        .env_remove(URL)
        .env("PROXMOX_TOKEN", "root@pam!ci=secret")
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config")])
        .args(["plan", "--env", "dev"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the postgres backend needs INFRAFLUX_STATE_POSTGRES_URL"),
        "{stderr}"
    );
    let output = TestContext::with_example()
        .command()
        .env(BACKEND, "mysql")
        .args(["state", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("[possible values: local, postgres]"),
        "{stderr}"
    );
}

#[test]
fn of_two_concurrent_writers_one_wins_and_the_other_is_told() {
    let Some((_, url)) = database() else { return };
    store(&url).persist(&document("dev", 1, &[])).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["alpha", "beta"]
        .into_iter()
        .map(|name| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = store(&url);
                let mut mine = store.load("dev").unwrap().unwrap();
                let (address, state) = resource(name, "tok");
                mine.resources.insert(address, state);
                mine.serial += 1;
                barrier.wait();
                (mine.clone(), store.persist(&mine))
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let winners: Vec<&StateDocument> = results
        .iter()
        .filter(|(_, result)| result.is_ok())
        .map(|(document, _)| document)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one write succeeds");
    let loser = results.iter().find_map(|(_, r)| r.as_ref().err()).unwrap();
    assert_eq!(
        loser.to_string(),
        "state of `dev` changed underneath you: stored serial 2, expected 1"
    );
    assert!(loser.help().contains("re-run plan"), "{}", loser.help());
    assert_eq!(store(&url).load("dev").unwrap().as_ref(), Some(winners[0]));
    // A writer that loaded nothing cannot create over an existing document either.
    let error = store(&url).persist(&document("dev", 1, &[])).unwrap_err();
    assert!(
        matches!(error, Error::SerialMismatch { found: 2, .. }),
        "{error}"
    );
    // Nor can one of another lineage.
    let mut other = StateDocument::new("dev");
    other.serial = 3;
    let error = store(&url).persist(&other).unwrap_err();
    assert!(matches!(error, Error::LineageMismatch { .. }), "{error}");
}

#[test]
fn a_connection_dropped_mid_write_leaves_the_previous_serial() {
    let Some((_, url)) = database() else { return };
    let store = store(&url);
    let first = document("dev", 1, &["cp-1"]);
    store.persist(&first).unwrap();
    // Another session holds the row, so our write blocks inside its transaction.
    let blocker = Session::open(&url);
    blocker
        .execute("BEGIN; SELECT serial FROM infraflux_state WHERE environment = 'dev' FOR UPDATE");
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || store.persist(&document("dev", 2, &["cp-1", "cp-2"])))
    };
    let observer = Session::open(&url);
    let waiting = "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'infraflux' AND wait_event_type = 'Lock'";
    let mut pids = Vec::new();
    for _ in 0..300 {
        pids = observer.column(waiting);
        if !pids.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pids.len(), 1, "the write never blocked");
    observer.execute(&format!("SELECT pg_terminate_backend({})", pids[0]));
    let error = writer.join().unwrap().unwrap_err();
    assert!(matches!(error, Error::Database { .. }), "{error}");
    blocker.execute("ROLLBACK");
    assert_eq!(
        store.load("dev").unwrap(),
        Some(first),
        "previous serial intact"
    );
    // The store reconnects, and the write goes through once retried.
    let second = document("dev", 2, &["cp-1", "cp-2"]);
    store.persist(&second).unwrap();
    assert_eq!(store.load("dev").unwrap(), Some(second.clone()));
    // An idle connection that dies (a server restart, a proxy's idle timeout) costs a
    // read nothing: it is retried on a new connection.
    observer.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'infraflux'",
    );
    assert_eq!(store.load("dev").unwrap(), Some(second));
}

#[test]
fn leases_are_exclusive_renewed_broken_and_waited_for() {
    let Some((_, url)) = database() else { return };
    let (first, second) = (store_with_lease(&url, Duration::from_secs(3)), store(&url));
    let guard = first.lock("dev", LockInfo::new("apply")).unwrap();
    let error = second.lock("dev", LockInfo::new("plan")).err().unwrap();
    let Error::Locked {
        holder, expires_in, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(holder.id, guard.info().id);
    assert_eq!(holder.operation, "apply");
    assert!(expires_in.is_some());
    assert!(error.to_string().contains("lease expires in"), "{error}");
    assert!(
        error.help().contains("expires by itself"),
        "{}",
        error.help()
    );
    // Held past its length: the heartbeat renews it.
    std::thread::sleep(Duration::from_secs(5));
    assert!(matches!(
        second.lock("dev", LockInfo::new("plan")),
        Err(Error::Locked { .. })
    ));
    assert_eq!(second.locks().unwrap()[0].1.id, guard.info().id);
    // Breaking it needs its ID.
    assert!(matches!(
        second.force_unlock("dev", "not-the-id"),
        Err(Error::LockIdMismatch { .. })
    ));
    let broken = second.force_unlock("dev", &guard.info().id).unwrap();
    assert_eq!(broken.id, guard.info().id);
    // The run whose lock was broken can no longer write.
    let error = first.persist(&document("dev", 1, &[])).unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error}");
    let taken = second.lock("dev", LockInfo::new("apply")).unwrap();
    drop(guard); // leaves the new holder's lease alone
    assert_eq!(second.locks().unwrap()[0].1.id, taken.info().id);
    assert!(matches!(
        second.force_unlock("prod", "x"),
        Err(Error::NotLocked { .. })
    ));
    // A waiter gets the lock once it is released.
    let waiter = {
        let first = first.clone();
        std::thread::spawn(move || {
            first
                .lock_with_timeout("dev", LockInfo::new("apply"), Duration::from_secs(60))
                .map(|guard| guard.info().id.clone())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(taken);
    let id = waiter.join().unwrap().unwrap();
    assert!(second.locks().unwrap().is_empty(), "released on drop: {id}");
}

#[test]
fn state_unlock_breaks_a_lease_found_by_its_id() {
    let Some((_, url)) = database() else { return };
    let store = store(&url);
    let guard = store.lock("staging", LockInfo::new("apply")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = infraflux(
        &url,
        dir.path(),
        &[
            "--state-backend",
            "postgres",
            "state",
            "unlock",
            &guard.info().id,
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("unlocked environment `staging`"),
        "{stdout}"
    );
    // Its holder (this test) still runs: the user is warned.
    assert!(stderr.contains("still runs"), "{stderr}");
    assert!(store.locks().unwrap().is_empty());
    let output = infraflux(
        &url,
        dir.path(),
        &[
            "--state-backend",
            "postgres",
            "state",
            "unlock",
            "no-such-id",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no environment is locked"), "{stderr}");
}

/// Not a test on its own: the process `a_killed_holders_lease_expires_by_itself` starts
/// and kills. It takes the lease and waits.
#[test]
#[ignore = "run by a_killed_holders_lease_expires_by_itself"]
fn lease_holder_process() {
    let Ok(url) = std::env::var("INFRAFLUX_TEST_LEASE_HOLDER_URL") else {
        return;
    };
    let store = store_with_lease(&url, Duration::from_secs(2));
    let guard = store.lock("dev", LockInfo::new("apply")).unwrap();
    println!("locked {}", guard.info().id);
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_holders_lease_expires_by_itself() {
    let Some((_, url)) = database() else { return };
    let store = store(&url);
    store
        .persist(&document("dev", 1, &["cp-1", "cp-2"]))
        .unwrap();
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lease_holder_process",
            "--ignored",
            "--nocapture",
        ])
        .env("INFRAFLUX_TEST_LEASE_HOLDER_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let stdout = holder.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("locked ") {
                let _ = sender.send(id.to_string());
            }
        }
    });
    let id = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the holder took the lease");
    holder.kill().unwrap(); // SIGKILL: no cleanup runs
    holder.wait().unwrap();
    // Its lease is still there: nothing released it.
    let session = Session::open(&url);
    assert_eq!(
        session.column("SELECT pid FROM infraflux_state_lease WHERE environment = 'dev'"),
        vec![holder.id().to_string()]
    );
    assert_eq!(store.locks().unwrap()[0].1.id, id);
    // The next run waits for it to expire (2 s) and proceeds.
    let output = TestContext::with_example()
        .command()
        .env(BACKEND, "postgres")
        .env(URL, &url)
        .args([
            "state",
            "rm",
            "dev/workload/proxmox_vm.cp-1",
            "--lock-timeout",
            "1m",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "removed dev/workload/proxmox_vm.cp-1\n"
    );
    let stored = store.load("dev").unwrap().unwrap();
    assert_eq!(stored.serial, 2);
    assert_eq!(stored.resources.len(), 1);
    assert!(store.locks().unwrap().is_empty());
}

/// `infraflux apply …` over the example configuration, in this process, with the mocks
/// and its own PostgreSQL store (as a separate run would have).
fn apply(registry: &ProviderRegistry, url: &str, args: &[&str]) -> (i32, String) {
    let mut engine = Engine::new().store(Arc::new(store(url)));
    engine.registry = registry.clone();
    let mut argv = vec!["apply"];
    argv.extend_from_slice(args);
    let run = engine.run(&argv);
    (run.code, run.stderr)
}

#[test]
fn of_two_concurrent_applies_one_waits_or_fails_fast() {
    let Some((_, url)) = database() else { return };
    store(&url).locks().unwrap(); // creates the tables the loop below looks at
    let (registry, mocks) = mock_providers();
    for mock in &mocks {
        mock.set_default_latency(Duration::from_millis(300));
        // The last resource keeps the first run (and its lock) busy long after the
        // second one has started, however loaded the machine is.
        mock.set_latency(
            "dev/workload/kubernetes_handoff.dev",
            Duration::from_secs(8),
        );
    }
    let first = {
        let (registry, url) = (registry.clone(), url.clone());
        std::thread::spawn(move || apply(&registry, &url, &["--env", "dev", "--auto-approve"]))
    };
    // Wait until the first run holds the lock.
    let session = Session::open(&url);
    let mut held = false;
    for _ in 0..600 {
        held = !session
            .column("SELECT id FROM infraflux_state_lease WHERE environment = 'dev'")
            .is_empty();
        if held {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(held, "the first apply never took the lock");
    let (code, err) = apply(&registry, &url, &["--env", "dev", "--auto-approve"]);
    assert_eq!(code, 1);
    // The diagnostic is wrapped to the terminal's width: compare its words.
    let words = err
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(words.contains("is locked by"), "{err}");
    assert!(words.contains("operation `apply`"), "{err}");
    assert!(words.contains("its lease expires in"), "{err}");
    assert!(words.contains("--lock-timeout"), "{err}");
    let (code, err) = apply(
        &registry,
        &url,
        &["--env", "dev", "--auto-approve", "--lock-timeout", "5m"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = first.join().unwrap();
    assert_eq!(code, 0, "{err}");
    // The waiting run planned against the first run's state: nothing was created twice.
    let creates: usize = mocks.iter().map(|m| m.count(Op::Create)).sum();
    let stored = store(&url).load("dev").unwrap().unwrap();
    assert_eq!(creates, stored.resources.len());
}

fn infraflux(url: &str, state_dir: &Path, args: &[&str]) -> std::process::Output {
    TestContext::with_example()
        .env(URL, url)
        .state_dir(state_dir)
        .command()
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_configurations_state_section_selects_the_backend_and_a_flag_overrides_it() {
    let Some((_, url)) = database() else { return };
    store(&url).persist(&document("qa", 1, &["cp-9"])).unwrap();
    let project = tempfile::tempdir().unwrap();
    let config = project.path().join("config");
    std::fs::create_dir_all(config.join("defaults")).unwrap();
    std::fs::write(
        config.join("defaults/state.yaml"),
        "state:\n  backend: postgres\n  lease: 30s\n",
    )
    .unwrap();
    let list = |extra: &[&str]| {
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["state", "list", "--env", "qa"]);
        infraflux(&url, project.path(), &args)
    };
    let output = list(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "qa/workload/proxmox_vm.cp-9\n"
    );
    // --state-backend local wins over the file: the project has no local state for `qa`.
    let output = list(&["--state-backend", "local"]);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("cp-9"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn state_migrate_round_trips_byte_identical_documents() {
    let Some((_, url)) = database() else { return };
    let (from, back) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = LocalStore::in_project(from.path());
    let mut dev = document("dev", 7, &["cp-1", "cp-2"]);
    dev.promotion = Some(PromotionRecord {
        digest: "sha256:def".into(),
        clusters: Default::default(),
        applied_at: chrono::Utc::now(),
        skipped_check: Some("hotfix".into()),
    });
    local.persist(&dev).unwrap();
    local.persist(&document("prod", 3, &["cp-1"])).unwrap();

    let output = infraflux(&url, from.path(), &["state", "migrate", "--to", "postgres"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("copied environment `dev` (serial 7, 2 resources)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("copied environment `prod` (serial 3, 1 resources)"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    assert_eq!(store(&url).load("dev").unwrap(), Some(dev.clone()));
    // Again: nothing to do.
    let output = infraflux(&url, from.path(), &["state", "migrate", "--to", "postgres"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("is already in"));

    // With the postgres backend selected, the state commands read the database.
    let output = infraflux(
        &url,
        back.path(),
        &[
            "--state-backend",
            "postgres",
            "state",
            "list",
            "--env",
            "dev",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "dev/workload/proxmox_vm.cp-1\ndev/workload/proxmox_vm.cp-2\n"
    );

    let output = infraflux(&url, back.path(), &["state", "migrate", "--to", "local"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for environment in ["dev", "prod"] {
        let file = |dir: &Path| {
            std::fs::read(LocalStore::in_project(dir).state_path(environment)).unwrap()
        };
        assert_eq!(file(from.path()), file(back.path()), "{environment}");
    }

    // Another history of `dev` in the database: refused, nothing overwritten.
    let other = tempfile::tempdir().unwrap();
    LocalStore::in_project(other.path())
        .persist(&StateDocument {
            serial: 9,
            ..StateDocument::new("dev")
        })
        .unwrap();
    let output = infraflux(
        &url,
        other.path(),
        &["state", "migrate", "--to", "postgres"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("holds another history of environment `dev`"),
        "{stderr}"
    );
    assert_eq!(store(&url).load("dev").unwrap(), Some(dev));
}

#[test]
fn the_password_never_appears_in_error_output() {
    let Some((server, url)) = database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let wrong = "Wr0ng-pa55word-never-shown";
    let cases = [
        // A wrong password, a database that does not exist, a port nobody listens on.
        format!(
            "postgres://infraflux:{wrong}@127.0.0.1:{}/{database}?sslmode=disable",
            server.port
        ),
        format!(
            "postgres://infraflux:{PASSWORD}@127.0.0.1:{}/nonexistent?sslmode=disable",
            server.port
        ),
        format!(
            "postgres://infraflux:{PASSWORD}@127.0.0.1:1/{database}?sslmode=disable&connect_timeout=5"
        ),
        format!(
            "postgres://infraflux:{PASSWORD}@127.0.0.1:{}/{database}?sslmode=bogus",
            server.port
        ),
    ];
    for (case, bad) in cases.iter().enumerate() {
        for args in [
            &["state", "list"][..],
            &["-vv", "state", "unlock", "some-id", "--env", "dev"],
        ] {
            let output = TestContext::with_example()
                .command()
                .env(BACKEND, "postgres")
                .env(URL, bad)
                .arg("--state-dir")
                .arg(dir.path())
                .args(args)
                .output()
                .unwrap();
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!output.status.success(), "case {case}: {shown}");
            assert!(!shown.contains(wrong), "case {case}: {shown}");
            assert!(!shown.contains(PASSWORD), "case {case}: {shown}");
            if case < 3 {
                assert!(
                    shown.contains("postgres://infraflux@127.0.0.1:"),
                    "case {case}: {shown}"
                );
            }
        }
    }
    let wrong_password = infraflux(
        &cases[0],
        dir.path(),
        &["--state-backend", "postgres", "state", "list"],
    );
    let stderr = String::from_utf8_lossy(&wrong_password.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains("INFRAFLUX_STATE_POSTGRES_URL"), "{stderr}");
}

/// A CA and a server certificate for `db.example` (not for 127.0.0.1), PEM.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["db.example".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[test]
fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let Some(bin) = postgres_server::binaries() else {
        // Skipped or failed (INFRAFLUX_REQUIRE_POSTGRES) by the shared server.
        let _ = postgres_server::shared();
        return;
    };
    let (ca, certificate, key) = certificates();
    let server = Server::start_with_files(
        &bin,
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "../server.crt"),
            ("ssl_key_file", "../server.key"),
        ],
        &[
            ("server.crt", certificate.as_bytes()),
            ("server.key", key.as_bytes()),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let (other_ca, _, _) = certificates();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let url = |mode: &str, root: &Path| {
        format!(
            "postgres://infraflux:{PASSWORD}@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}",
            server.port,
            root.display()
        )
    };
    let works = |url: String| {
        let store = store(&url);
        store
            .persist(&document("dev", 1, &[]))
            .or_else(|e| match e {
                // Ran before in this database: the document is there.
                Error::SerialMismatch { .. } => Ok(()),
                e => Err(e),
            })?;
        store.load("dev").map(|d| d.is_some())
    };
    assert!(works(url("require", &ca_file)).unwrap());
    assert!(works(url("verify-ca", &ca_file)).unwrap());
    // The certificate names db.example, not 127.0.0.1.
    let error = works(url("verify-full", &ca_file)).unwrap_err();
    assert!(matches!(error, Error::Database { .. }), "{error}");
    // Another CA: refused.
    for mode in ["verify-ca", "verify-full"] {
        let error = works(url(mode, &other_ca_file)).unwrap_err();
        let chain = format!("{error}: {:?}", std::error::Error::source(&error));
        assert!(matches!(error, Error::Database { .. }), "{chain}");
        assert!(!chain.contains(PASSWORD), "{chain}");
    }
    // The connection really is encrypted (the store keeps its connection open).
    let encrypted = store(&url("require", &ca_file));
    encrypted.load("dev").unwrap();
    let session = Session::open(&server.url("postgres"));
    let count = session.column(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND application_name = 'infraflux'",
    );
    assert_eq!(count, vec!["1"]);
}
