//! Write and read time of a 10,000-resource state document with the local backend, and
//! with the PostgreSQL backend against a throwaway server (tests/support/postgres.rs;
//! skipped with a message when PostgreSQL is not installed).
//! `cargo bench --bench state_io`; prints each round and the best of them.
//!
//! Wall time includes fsync; CPU time (this thread's, on Unix) is what serialization,
//! checksum and parsing cost, and holds up on a busy machine where wall time does not.
//! For PostgreSQL the database work runs on the backend's own thread: its CPU time here
//! is encoding and decoding only, and the wall time is the whole round trip.

#[path = "../tests/support/postgres.rs"]
mod postgres_server;

use std::time::{Duration, Instant};

use infraflux::state::format;
use infraflux::state::postgres::{ConnectionString, DEFAULT_LEASE};
use infraflux::state::{
    LocalStore, PostgresStore, ResourceState, ResourceStatus, StateDocument, StateStore,
};
use infraflux::vocabulary::ResourceAddr;
use serde_json::json;

const RESOURCES: usize = 10_000;
const ROUNDS: usize = 5;

fn document() -> StateDocument {
    let mut document = StateDocument::new("bench");
    for i in 0..RESOURCES {
        let serde_json::Value::Object(attributes) = json!({
            "name": format!("node-{i}"),
            "node": format!("pve-{}", i % 7),
            "cores": 4,
            "memory_mib": 8192,
            "disk_gib": 64.5,
            "ipv4": format!("10.{}.{}.{}/24", i / 65_536, (i / 256) % 256, i % 256),
            "tags": ["infraflux", "workload", "bench"],
            "network": {"bridge": "vmbr0", "vlan": 42, "mac": format!("BC:24:11:00:{:02X}:{:02X}", (i / 256) % 256, i % 256)},
            "password": "not-a-real-secret",
        }) else {
            unreachable!()
        };
        let cluster = format!("cluster-{}", i % 10);
        document.resources.insert(
            ResourceAddr::new("bench", &cluster, "proxmox_vm", format!("node-{i}")),
            ResourceState {
                kind: "proxmox_vm".into(),
                provider: "proxmox".into(),
                id: Some(format!("{}", 100 + i)),
                attributes: attributes.into(),
                sensitive: vec!["password".into()],
                dependencies: vec![ResourceAddr::new(
                    "bench",
                    &cluster,
                    "proxmox_image",
                    "talos",
                )],
                status: ResourceStatus::Ready,
            },
        );
    }
    document
}

/// This thread's CPU time.
fn cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
    #[cfg(not(unix))]
    {
        Duration::ZERO
    }
}

/// Wall and CPU time of `f`.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let result = f();
    (result, wall.elapsed(), cpu_time() - cpu)
}

#[derive(Clone, Copy)]
struct Best(Duration, Duration);

impl Best {
    fn update(&mut self, wall: Duration, cpu: Duration) {
        *self = Best(self.0.min(wall), self.1.min(cpu));
    }
}

impl std::fmt::Display for Best {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1?} wall, {:.1?} cpu", self.0, self.1)
    }
}

fn main() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = LocalStore::new(directory.path());
    let mut document = document();
    let start = Best(Duration::MAX, Duration::MAX);
    let (mut write, mut read, mut encode, mut decode) = (start, start, start, start);
    for round in 0..ROUNDS {
        document.serial += 1;
        let ((), wall, cpu) = measure(|| store.persist(&document).expect("persist"));
        write.update(wall, cpu);
        print!("round {round}: write {wall:.1?} ({cpu:.1?} cpu)");
        let (loaded, wall, cpu) = measure(|| store.load("bench").expect("load"));
        assert_eq!(loaded.expect("document").resources.len(), RESOURCES);
        read.update(wall, cpu);
        print!(", read {wall:.1?} ({cpu:.1?} cpu)");
        // The same work without the file system: serialization and checksum only.
        let (bytes, wall, cpu) = measure(|| format::encode(&document).expect("encode"));
        encode.update(wall, cpu);
        print!(", encode {wall:.1?} ({cpu:.1?} cpu)");
        let (_, wall, cpu) = measure(|| format::decode(&bytes, "memory").expect("decode"));
        decode.update(wall, cpu);
        println!(", decode {wall:.1?} ({cpu:.1?} cpu)");
    }
    let size = std::fs::metadata(store.state_path("bench"))
        .expect("state file")
        .len();
    println!(
        "state_io: {RESOURCES} resources, {:.1} MiB file, best of {ROUNDS}: write {write}; read {read}; encode {encode}; decode {decode}",
        size as f64 / (1024.0 * 1024.0)
    );
    postgres(document);
}

/// The same document written to and read from PostgreSQL (one row, compare-and-swap
/// transaction per write), on a server started for the bench with default durability
/// (fsync on).
fn postgres(mut document: StateDocument) {
    let Some(bin) = postgres_server::binaries() else {
        println!(
            "state_io postgres: skipped, PostgreSQL is not installed (apt-get install postgresql)"
        );
        return;
    };
    let server = postgres_server::Server::start(&bin, &[]).expect("a PostgreSQL server");
    let url = server.database();
    let store = PostgresStore::new(
        ConnectionString::parse(&url, None).expect("connection string"),
        DEFAULT_LEASE,
    )
    .expect("store");
    // The first write creates the schema and the row; it is not measured.
    document.serial = 1;
    store.persist(&document).expect("persist");
    let start = Best(Duration::MAX, Duration::MAX);
    let (mut write, mut read) = (start, start);
    for round in 0..ROUNDS {
        document.serial += 1;
        let ((), wall, cpu) = measure(|| store.persist(&document).expect("persist"));
        write.update(wall, cpu);
        print!("postgres round {round}: write {wall:.1?} ({cpu:.1?} cpu)");
        let (loaded, wall, cpu) = measure(|| store.load("bench").expect("load"));
        assert_eq!(loaded.expect("document").resources.len(), RESOURCES);
        read.update(wall, cpu);
        println!(", read {wall:.1?} ({cpu:.1?} cpu)");
    }
    println!(
        "state_io postgres: {RESOURCES} resources, best of {ROUNDS}: write {write}; read {read}"
    );
}
