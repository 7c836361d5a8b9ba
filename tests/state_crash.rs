//! Crash safety of the local backend: a writer process that persists state in a loop is
//! killed with SIGKILL at varying moments; afterwards the state file loads (its checksum
//! is valid) and is exactly one of the documents the writer wrote, never a mix; the
//! backup loads too; the writer's lock is stale and the next run breaks it.
//!
//! This test has its own `main` (harness = false): run with `--writer DIR` it is the
//! writer, otherwise it is the test, which re-executes itself as the writer.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use infraflux::state::format;
use infraflux::state::{
    LocalStore, LockInfo, ResourceState, ResourceStatus, StateDocument, StateStore,
};
use infraflux::vocabulary::ResourceAddr;
use serde_json::json;

const ENVIRONMENT: &str = "dev";
const RESOURCES: usize = 300;
/// Upper bound on the writer's loop, so a writer that is never killed still ends.
const MAX_WRITES: u64 = 200_000;

/// The document the writer writes at `serial`: every resource records the serial, and
/// the payload's length varies with it, so a mix or a truncation cannot pass for another
/// document.
fn document_at(lineage: uuid::Uuid, serial: u64) -> StateDocument {
    let mut document = StateDocument::new(ENVIRONMENT);
    document.lineage = lineage;
    document.serial = serial;
    for i in 0..RESOURCES {
        let serde_json::Value::Object(attributes) = json!({
            "generation": serial,
            "payload": "x".repeat((serial as usize * 7 + i) % 301),
        }) else {
            unreachable!()
        };
        document.resources.insert(
            ResourceAddr::new(ENVIRONMENT, "workload", "proxmox_vm", format!("vm-{i}")),
            ResourceState {
                kind: "proxmox_vm".into(),
                provider: "proxmox".into(),
                id: Some(i.to_string()),
                attributes: attributes.into(),
                sensitive: vec![],
                dependencies: vec![],
                status: ResourceStatus::Ready,
            },
        );
    }
    document
}

fn writer(directory: &Path) {
    let store = LocalStore::new(directory);
    let _guard = store
        .lock(ENVIRONMENT, LockInfo::new("crash-test writer"))
        .expect("the writer takes the lock");
    let (lineage, mut serial) = match store.load(ENVIRONMENT).expect("state loads") {
        Some(document) => (document.lineage, document.serial),
        None => (uuid::Uuid::new_v4(), 0),
    };
    for _ in 0..MAX_WRITES {
        serial += 1;
        store
            .persist(&document_at(lineage, serial))
            .expect("persist");
        // Tell the test a write has completed.
        println!("{serial}");
    }
}

/// After a kill: the state is one whole document, the backup an earlier one, and the
/// writer's lock is stale. Returns the serial found.
fn check(store: &LocalStore, previous_serial: u64) -> u64 {
    let document = store
        .load(ENVIRONMENT)
        .expect("the state file loads after a kill")
        .expect("the state file exists");
    assert!(
        document == document_at(document.lineage, document.serial),
        "the state file is not one of the documents written (serial {})",
        document.serial
    );
    assert!(document.serial > previous_serial);
    if let Ok(bytes) = std::fs::read(store.backup_path(ENVIRONMENT)) {
        let backup = format::decode(&bytes, "backup").expect("the backup loads after a kill");
        assert!(backup == document_at(backup.lineage, backup.serial));
        // Equal when the kill came between the backup's rename and the state's.
        assert!(backup.serial <= document.serial);
    }
    // The killed writer's lock is still there (no destructor ran) and its holder is
    // gone: the next run breaks it.
    let holder = store
        .current_lock(ENVIRONMENT)
        .expect("the lock file reads")
        .expect("the killed writer's lock remains");
    assert!(holder.is_stale(), "{holder}");
    let guard = store
        .lock(ENVIRONMENT, LockInfo::new("check"))
        .expect("the stale lock is broken");
    assert_ne!(guard.info().id, holder.id);
    document.serial
}

fn crash_safety() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = LocalStore::new(directory.path());
    let executable = std::env::current_exe().expect("own executable");
    let mut serial = 0;
    let leftovers = || {
        std::fs::read_dir(directory.path())
            .expect("state directory")
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .count()
    };
    // Kills that left a temporary file behind: they landed mid-write.
    let mut killed_mid_write = 0;
    // Varied delays after the first completed write, so kills land at different points
    // of the write sequence.
    let delays_ms = [0, 1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43];
    for (round, delay) in delays_ms.iter().enumerate() {
        let mut child = Command::new(&executable)
            .arg("--writer")
            .arg(directory.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the writer");
        // Kept open until the writer is reaped: a closed pipe would end it another way.
        let mut progress = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        progress
            .read_line(&mut first)
            .expect("read from the writer");
        assert!(!first.is_empty(), "round {round}: the writer wrote nothing");
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().expect("kill the writer");
        let status = child.wait().expect("reap the writer");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "round {round}: {status}");
        }
        #[cfg(not(unix))]
        let _ = status;
        drop(progress);
        killed_mid_write += usize::from(leftovers() > 0);
        serial = check(&store, serial);
    }
    // The writers' temporary files are gone once a run holds the lock again.
    let guard = store
        .lock(ENVIRONMENT, LockInfo::new("check"))
        .expect("the lock is free");
    assert_eq!(leftovers(), 0);
    drop(guard);
    println!(
        "crash_safety: {} kills, last serial {serial}, {killed_mid_write} of them mid-write",
        delays_ms.len()
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if let Some(position) = arguments.iter().position(|a| a == "--writer") {
        let directory = arguments.get(position + 1).expect("--writer DIR");
        writer(Path::new(directory));
        return;
    }
    if arguments.iter().any(|a| a == "--list") {
        println!("crash_safety: test");
        return;
    }
    crash_safety();
    println!("crash_safety: 1 passed, 0 failed");
}
