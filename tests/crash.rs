//! Crash consistency: SIGKILL a process in the middle of an apply, more than once, then
//! plan and apply again. Nothing may be lost (every resource ends up managed) or
//! duplicated (one object per address in the provider's world), and the result converges
//! (the next plan is empty).
//!
//! The child is this test binary itself, running the ignored `crash_child` test with
//! `INFRAFLUX_CRASH_DIR` set: it applies a graph with a slow mock provider whose world
//! lives in a JSON file, persisting state through the atomic JSON file store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infraflux::apply::{ApplyOptions, NoReporter, apply};
use infraflux::graph::DesiredResource;
use infraflux::plan::{PlanOptions, plan};
use infraflux::registry::ProviderRegistry;
use infraflux::state::LocalStore;
use infraflux::state::{ResourceStatus, StateDocument, StateStore};
use infraflux::testing::{desired, mock_schemas};
use infraflux_provider::reference;
use infraflux_provider_mock::MockProvider;
use serde_json::json;

const CHILD_DIRECTORY: &str = "INFRAFLUX_CRASH_DIR";
const RESOURCES: usize = 40;

/// Ten chains of four: r{c}-0 ← r{c}-1 ← r{c}-2 ← r{c}-3, each referring to the previous
/// one's computed `out`.
fn resources() -> Vec<DesiredResource> {
    let mut resources = Vec::new();
    for chain in 0..RESOURCES / 4 {
        for link in 0..4 {
            let name = format!("r{chain}-{link}");
            let attributes = if link == 0 {
                json!({"value": chain})
            } else {
                json!({"value": chain, "input": reference(format!("dev/w/mock_thing.r{chain}-{}", link - 1), "out")})
            };
            resources.push(desired(&name, attributes, &[]));
        }
    }
    resources
}

fn rig(directory: &Path) -> (Arc<MockProvider>, ProviderRegistry, Arc<LocalStore>) {
    let mock = Arc::new(
        MockProvider::new("mock", mock_schemas()).with_world_file(directory.join("world.json")),
    );
    let registry = ProviderRegistry::new().with(mock.clone());
    (
        mock,
        registry,
        Arc::new(LocalStore::new(directory.join("state"))),
    )
}

async fn plan_and_apply(directory: &Path, latency: Duration) -> infraflux::apply::ApplySummary {
    let (mock, registry, store) = rig(directory);
    mock.set_default_latency(latency);
    let state = store
        .load("dev")
        .unwrap()
        .unwrap_or_else(|| StateDocument::new("dev"));
    let plan = plan(resources(), &state, &registry, &PlanOptions::default())
        .await
        .unwrap();
    let options = ApplyOptions {
        parallelism: 4,
        ..ApplyOptions::default()
    };
    apply(
        &plan,
        state,
        store,
        &registry,
        Arc::new(NoReporter),
        &options,
    )
    .await
    .unwrap()
}

#[test]
#[ignore = "the child process of sigkill_in_the_middle_of_an_apply_loses_nothing"]
fn crash_child() {
    let directory = std::env::var(CHILD_DIRECTORY).expect("run by the crash test only");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(plan_and_apply(
            Path::new(&directory),
            Duration::from_millis(40),
        ));
}

fn spawn_child(directory: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_DIRECTORY, directory)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn ready_count(store: &LocalStore) -> usize {
    // A torn read is impossible (atomic rename), but the file may not exist yet.
    store
        .load("dev")
        .ok()
        .flatten()
        .map(|s| {
            s.resources
                .values()
                .filter(|r| r.status == ResourceStatus::Ready)
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_in_the_middle_of_an_apply_loses_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let store = LocalStore::new(directory.path().join("state"));
    let mut kills = 0;
    for kill_at in [4, 14, 26] {
        let mut child = spawn_child(directory.path());
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready_count(&store) < kill_at && Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                // Finished on its own: it must have succeeded.
                assert!(status.success(), "the child apply failed: {status}");
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL: no destructor, no final save.
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 1, "no child was killed in the middle of its apply");
    let before = ready_count(&store);
    assert!(before < RESOURCES, "the applies finished before any kill");

    // Recover in this process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(plan_and_apply(directory.path(), Duration::ZERO));
    assert!(summary.is_success(), "{summary:?}");

    let (mock, registry, store) = rig(directory.path());
    let state = store.load("dev").unwrap().unwrap();
    // Nothing duplicated: one object per address, and it is the one state records.
    let mut by_address: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for object in mock.objects() {
        by_address
            .entry(object.address)
            .or_default()
            .push(object.id);
    }
    assert_eq!(by_address.len(), RESOURCES);
    for (address, ids) in &by_address {
        assert_eq!(ids.len(), 1, "{address} exists {} times", ids.len());
        let record = &state.resources[&address.parse().unwrap()];
        assert_eq!(record.id.as_ref(), Some(&ids[0]));
        assert_eq!(record.status, ResourceStatus::Ready);
    }
    // Nothing lost, and values that were unknown at plan time are filled.
    assert_eq!(state.resources.len(), RESOURCES);
    for (address, record) in &state.resources {
        if let Some(input) = record.attributes.get("input") {
            let previous = address.name.rsplit_once('-').unwrap();
            let previous: usize = previous.1.parse::<usize>().unwrap() - 1;
            let target = format!(
                "dev/w/mock_thing.{}-{previous}",
                address.name.rsplit_once('-').unwrap().0
            );
            assert_eq!(
                input,
                state.resources[&target.parse().unwrap()].attributes.parse()["out"]
            );
        }
    }
    // Converged.
    let again = runtime
        .block_on(plan(
            resources(),
            &state,
            &registry,
            &PlanOptions::default(),
        ))
        .unwrap();
    assert!(!again.has_changes());
}
