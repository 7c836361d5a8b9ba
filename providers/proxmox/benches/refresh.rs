//! Refresh and create at scale against fakepve: 300 VMs over 3 nodes.
//!
//! - a refresh when nothing changed must take ≤ 3 API calls (it takes one: the
//!   cluster inventory), counted by the client;
//! - 30 creates, 10 at a time, honouring the provider's concurrency keys as the engine
//!   does, must all succeed (no lock failures).
//!
//! Prints calls per VM and wall times. Needs `INFRAFLUX_FAKEPVE_PYTHON`; without it,
//! says so and exits 0. Run with `cargo bench -p infraflux-proxmox`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use infraflux_provider::{
    Attributes, CreateRequest, Operation, PlanRequest, Provider, ReadItem, ReadOutcome,
    ReadRequest, ResourceRef,
};
use infraflux_proxmox::{
    Client, ClientConfig, Credentials, ProviderOptions, ProxmoxProvider, TlsVerification,
};
use serde_json::json;
use tokio::sync::Semaphore;

const VMS: u32 = 300;
const FIRST_VMID: u32 = 5000;
const CREATES: usize = 30;
const PARALLEL: usize = 10;

fn vm_ref(name: &str) -> ResourceRef {
    ResourceRef {
        address: format!("bench/scale/proxmox_vm.{name}"),
        kind: "proxmox_vm".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let python = match support::python() {
        Ok(python) => python,
        Err(reason) => {
            println!("refresh bench {reason}");
            return;
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(600), run(&python)).await;
    if outcome.is_err() {
        eprintln!("refresh bench: gave up after 600 s");
        std::process::exit(1);
    }
}

async fn run(python: &str) {
    let fake = support::FakePve::start(
        python,
        support::Options {
            nodes: 3,
            vms: VMS,
            import_content: true,
            time_scale: 0.0,
        },
    )
    .await
    .expect("fakepve starts");
    let mut config = ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::api_token(support::TOKEN).unwrap(),
        TlsVerification::Fingerprint(fake.fingerprint.clone()),
    );
    config.request_timeout = Duration::from_secs(30);
    let client = Client::new(config).unwrap();
    let options = ProviderOptions {
        poll_first: Duration::from_millis(10),
        poll_max: Duration::from_millis(200),
        ..ProviderOptions::default()
    };
    let provider = Arc::new(ProxmoxProvider::new(client.clone(), options));

    // State as it would be after an import: one deep read of every VM.
    let seed: Vec<ReadItem> = (FIRST_VMID..FIRST_VMID + VMS)
        .map(|vmid| {
            let mut prior = Attributes::new();
            prior.insert(
                "node".into(),
                json!(format!("pve{}", (vmid - FIRST_VMID) % 3 + 1)),
            );
            prior.insert("image".into(), json!("local:import/talos.raw"));
            prior.insert(
                "vmid_range".into(),
                json!([FIRST_VMID, FIRST_VMID + VMS - 1]),
            );
            ReadItem {
                resource: vm_ref(&format!("bench-{vmid}")),
                id: vmid.to_string(),
                prior,
            }
        })
        .collect();
    let before = client.request_count();
    let started = Instant::now();
    let deep = provider
        .read(ReadRequest {
            resources: seed.clone(),
            deep: true,
        })
        .await
        .unwrap();
    let deep_time = started.elapsed();
    let deep_calls = client.request_count() - before;
    let mut state = Vec::new();
    for result in deep.results {
        match result.outcome {
            ReadOutcome::Found(attributes) => state.push(ReadItem {
                resource: ResourceRef {
                    address: result.address,
                    kind: "proxmox_vm".into(),
                },
                id: attributes["vmid"].to_string(),
                prior: attributes,
            }),
            other => panic!("{}: {other:?}", result.address),
        }
    }
    assert_eq!(state.len(), VMS as usize);

    // The refresh that matters: nothing changed.
    let before = client.request_count();
    let started = Instant::now();
    let refresh = provider
        .read(ReadRequest {
            resources: state.clone(),
            deep: false,
        })
        .await
        .unwrap();
    let refresh_time = started.elapsed();
    let refresh_calls = client.request_count() - before;
    let priors: HashMap<&str, &Attributes> = state
        .iter()
        .map(|item| (item.resource.address.as_str(), &item.prior))
        .collect();
    let unchanged = refresh
        .results
        .iter()
        .filter(|r| matches!(&r.outcome, ReadOutcome::Found(a) if priors.get(r.address.as_str()) == Some(&a)))
        .count();
    assert_eq!(unchanged, VMS as usize);
    assert!(
        refresh_calls <= 3,
        "refresh of {VMS} unchanged VMs took {refresh_calls} calls"
    );

    // An image, then 30 creates, 10 at a time, one per node and storage at once.
    let image = json!({
        "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
        "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        "url": "https://factory.talos.dev/image/ce4c9805/v1.13.9/nocloud-amd64.raw",
        "filename": "talos-v1.13.9.raw",
    });
    let image_ref = ResourceRef {
        address: "bench/scale/proxmox_image.talos".into(),
        kind: "proxmox_image".into(),
    };
    let image = provider
        .create(CreateRequest {
            resource: image_ref,
            planned: image.as_object().unwrap().clone(),
            replacing: false,
        })
        .await
        .unwrap();
    let volume = image.attributes["volume"].clone();
    let keys: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    let before = client.request_count();
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..CREATES)
        .map(|i| {
            let provider = provider.clone();
            let keys = keys.clone();
            let volume = volume.clone();
            async move {
                let name = format!("new-{i}");
                let desired = json!({
                    "node": format!("pve{}", i % 3 + 1), "name": name, "cores": 2, "memory_mib": 2048,
                    "disk_gib": 20, "storage": "local-lvm", "bridge": "vmbr0", "ipv4": format!("10.2.0.{}/24", i + 10),
                    "gateway": "10.2.0.1", "dns": ["10.2.0.1"], "tags": ["bench"], "image": volume,
                    "guest_agent": false, "vmid_range": [7000, 7999],
                });
                let resource = vm_ref(&name);
                let plan = provider
                    .plan(PlanRequest { resource: resource.clone(), prior: None, desired: desired.as_object().unwrap().clone() })
                    .await
                    .unwrap();
                let key = provider.concurrency_key(Operation::Create, &resource, &plan.planned);
                let semaphore = key.map(|key| {
                    keys.lock()
                        .unwrap()
                        .entry(key.key)
                        .or_insert_with(|| Arc::new(Semaphore::new(key.limit)))
                        .clone()
                });
                let _permit = match &semaphore {
                    Some(semaphore) => Some(semaphore.acquire().await.unwrap()),
                    None => None,
                };
                provider.create(CreateRequest { resource, planned: plan.planned, replacing: false }).await
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let create_time = started.elapsed();
    let create_calls = client.request_count() - before;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for failure in &failures {
        eprintln!("create failed: {failure}");
    }
    let vmids: std::collections::BTreeSet<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.id.clone())
        .collect();

    println!("fakepve: {VMS} VMs on 3 nodes (time scale 0: tasks finish at once)");
    println!(
        "deep refresh    : {VMS} VMs, {deep_calls} calls ({:.2}/VM), {:.0} ms",
        deep_calls as f64 / f64::from(VMS),
        deep_time.as_secs_f64() * 1000.0
    );
    println!(
        "refresh         : {VMS} VMs unchanged, {refresh_calls} calls ({:.4}/VM), {:.0} ms",
        refresh_calls as f64 / f64::from(VMS),
        refresh_time.as_secs_f64() * 1000.0
    );
    println!(
        "create          : {CREATES} VMs, {PARALLEL} in parallel (1 per node+storage key), {} failed, {} distinct VMIDs, {create_calls} calls ({:.1}/VM), {:.0} ms",
        failures.len(),
        vmids.len(),
        create_calls as f64 / CREATES as f64,
        create_time.as_secs_f64() * 1000.0
    );
    fake.stop().await;
    if !failures.is_empty() || vmids.len() != CREATES {
        std::process::exit(1);
    }
}
