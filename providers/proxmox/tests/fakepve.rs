//! Scenarios against fakepve (a fake PVE 9 API): the provider's whole life cycle on a
//! 3-node cluster, and faults (locked VM, offline node, failed task, slow network)
//! that must end with a truthful result and converge on retry.
//!
//! Needs `INFRAFLUX_FAKEPVE_PYTHON` (see `tests/support/mod.rs`); without it each test
//! prints why it is skipped and returns.

mod support;

use std::time::Duration;

use infraflux_provider::{
    Attributes, CreateRequest, CreateResponse, DeleteRequest, ErrorKind, PlanRequest, Provider,
    ReadItem, ReadOutcome, ReadRequest, ResourceRef, UpdateRequest, is_unknown,
};
use infraflux_proxmox::client::Call;
use infraflux_proxmox::{
    Client, ClientConfig, Credentials, ProviderOptions, ProxmoxProvider, RetryPolicy,
    TlsVerification,
};
use reqwest::Method;
use serde_json::{Value, json};
use support::{FakePve, Options};

macro_rules! python_or_skip {
    () => {
        match support::python() {
            Ok(python) => python,
            Err(reason) => {
                eprintln!("{reason}");
                return;
            }
        }
    };
}

fn client(fake: &FakePve, request_timeout: Duration) -> Client {
    let mut config = ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::api_token(support::TOKEN).unwrap(),
        TlsVerification::Fingerprint(fake.fingerprint.clone()),
    );
    config.request_timeout = request_timeout;
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    Client::new(config).unwrap()
}

fn provider(client: Client) -> ProxmoxProvider {
    ProxmoxProvider::new(
        client,
        ProviderOptions {
            create_timeout: Duration::from_secs(60),
            download_timeout: Duration::from_secs(60),
            task_timeout: Duration::from_secs(30),
            poll_first: Duration::from_millis(10),
            poll_max: Duration::from_millis(100),
            ..ProviderOptions::default()
        },
    )
}

fn reference(kind: &str, name: &str) -> ResourceRef {
    ResourceRef {
        address: format!("dev/workload/{kind}.{name}"),
        kind: kind.into(),
    }
}

fn object(value: Value) -> Attributes {
    value.as_object().unwrap().clone()
}

fn image_desired() -> Attributes {
    object(json!({
        "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
        "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        "url": "https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/v1.13.9/nocloud-amd64.raw",
        "filename": "talos-v1.13.9-ce4c9805.raw",
        "checksum": null,
    }))
}

fn vm_desired(name: &str, node: &str, image: &Value) -> Attributes {
    object(json!({
        "node": node, "name": name, "cores": 2, "memory_mib": 4096, "disk_gib": 40,
        "storage": "local-lvm", "bridge": "vmbr0", "vlan": 10, "ipv4": "10.0.0.10/24",
        "gateway": "10.0.0.1", "dns": ["10.0.0.1", "1.1.1.1"], "tags": ["prod", "infraflux"],
        "image": image, "guest_agent": true, "vmid_range": [1000, 1099],
    }))
}

async fn read_one(
    provider: &ProxmoxProvider,
    resource: &ResourceRef,
    id: &str,
    prior: &Attributes,
    deep: bool,
) -> ReadOutcome {
    let response = provider
        .read(ReadRequest {
            resources: vec![ReadItem {
                resource: resource.clone(),
                id: id.to_string(),
                prior: prior.clone(),
            }],
            deep,
        })
        .await
        .unwrap();
    assert_eq!(response.results.len(), 1);
    response.results.into_iter().next().unwrap().outcome
}

fn found(outcome: ReadOutcome) -> Attributes {
    match outcome {
        ReadOutcome::Found(attributes) => attributes,
        other => panic!("expected Found, got {other:?}"),
    }
}

/// The attributes a plan would change (empty: no drift).
async fn changes(
    provider: &ProxmoxProvider,
    resource: &ResourceRef,
    prior: &Attributes,
    desired: &Attributes,
) -> Vec<String> {
    let plan = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: Some(prior),
            desired: desired.clone(),
        })
        .await
        .unwrap();
    assert!(
        plan.requires_replace.is_empty(),
        "replace: {:?}",
        plan.requires_replace
    );
    let mut changed: Vec<String> = plan
        .planned
        .iter()
        .filter(|(key, value)| prior.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect();
    changed.sort();
    changed
}

async fn create(
    provider: &ProxmoxProvider,
    resource: &ResourceRef,
    desired: &Attributes,
) -> Result<CreateResponse, infraflux_provider::ProviderError> {
    let plan = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: None,
            desired: desired.clone(),
        })
        .await
        .unwrap();
    provider
        .create(CreateRequest {
            resource: resource.clone(),
            planned: plan.planned,
            replacing: false,
        })
        .await
}

async fn update(
    provider: &ProxmoxProvider,
    resource: &ResourceRef,
    id: &str,
    prior: &Attributes,
    desired: &Attributes,
) -> Result<Attributes, infraflux_provider::ProviderError> {
    let plan = provider
        .plan(PlanRequest {
            resource: resource.clone(),
            prior: Some(prior),
            desired: desired.clone(),
        })
        .await
        .unwrap();
    provider
        .update(UpdateRequest {
            resource: resource.clone(),
            id: id.to_string(),
            prior: prior.clone(),
            planned: plan.planned,
        })
        .await
        .map(|r| r.attributes)
}

async fn vms_named(fake: &mut FakePve, name: &str) -> Vec<Value> {
    let vms = fake.expect(json!({ "op": "vms" })).await;
    vms.as_array()
        .unwrap()
        .iter()
        .filter(|vm| vm["name"] == json!(name))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_create_read_update_drift_delete() {
    let python = python_or_skip!();
    let mut fake = FakePve::start(
        &python,
        Options {
            nodes: 3,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let client = client(&fake, Duration::from_secs(30));
    let p = provider(client.clone());
    let image_ref = reference("proxmox_image", "talos");
    let vm_ref = reference("proxmox_vm", "cp-1");

    // A fresh PVE's `local` takes no `import` content: said before anything starts.
    let error = create(&p, &image_ref, &image_desired()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(
        error
            .message
            .contains("pvesm set local --content iso,vztmpl,backup,import"),
        "{}",
        error.message
    );
    client
        .call(
            Call::new(Method::PUT, &["storage", "local"])
                .form("content", "iso,vztmpl,backup,import"),
        )
        .await
        .unwrap();

    let image = create(&p, &image_ref, &image_desired()).await.unwrap();
    assert_eq!(image.id, "pve1/local:import/talos-v1.13.9-ce4c9805.raw");
    let volume = image.attributes["volume"].clone();
    assert_eq!(volume, json!("local:import/talos-v1.13.9-ce4c9805.raw"));

    let mut desired = vm_desired("cp-1", "pve2", &volume);
    let vm = create(&p, &vm_ref, &desired).await.unwrap();
    assert_eq!(vm.id, "1000");
    assert!(vm.attributes.values().all(|v| !is_unknown(v)));
    assert!(
        vm.attributes["mac"]
            .as_str()
            .unwrap()
            .starts_with("BC:24:11:"),
        "{:?}",
        vm.attributes["mac"]
    );
    let ours = vms_named(&mut fake, "cp-1").await;
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["node"], json!("pve2"));
    assert_eq!(ours[0]["status"], json!("running"));
    assert_eq!(ours[0]["config"]["scsihw"], json!("virtio-scsi-pci"));
    assert_eq!(ours[0]["config"]["bios"], json!("ovmf"));

    // Refresh: one cluster listing for both (the image's storage usage is unchanged,
    // so its content is not listed); nothing changed.
    let before = client.request_count();
    let response = p
        .read(ReadRequest {
            resources: vec![
                ReadItem {
                    resource: image_ref.clone(),
                    id: image.id.clone(),
                    prior: image.attributes.clone(),
                },
                ReadItem {
                    resource: vm_ref.clone(),
                    id: vm.id.clone(),
                    prior: vm.attributes.clone(),
                },
            ],
            deep: false,
        })
        .await
        .unwrap();
    assert_eq!(client.request_count() - before, 1);
    for result in response.results {
        let attributes = found(result.outcome);
        let expected = if result.address == image_ref.address {
            &image.attributes
        } else {
            &vm.attributes
        };
        assert_eq!(&attributes, expected, "{}", result.address);
    }
    // A deep read parses the config back to the same attributes.
    let deep = found(read_one(&p, &vm_ref, &vm.id, &vm.attributes, true).await);
    assert_eq!(deep, vm.attributes);
    assert_eq!(
        changes(&p, &vm_ref, &deep, &desired).await,
        Vec::<String>::new()
    );
    let image_read = found(read_one(&p, &image_ref, &image.id, &image.attributes, false).await);
    assert_eq!(
        changes(&p, &image_ref, &image_read, &image_desired()).await,
        Vec::<String>::new()
    );

    // Memory changes in place (the running VM is rebooted to apply it).
    desired.insert("memory_mib".into(), json!(8192));
    assert_eq!(changes(&p, &vm_ref, &deep, &desired).await, ["memory_mib"]);
    let updated = update(&p, &vm_ref, &vm.id, &deep, &desired).await.unwrap();
    assert_eq!(updated["memory_mib"], json!(8192));
    assert_eq!(updated["mac"], vm.attributes["mac"]);
    let after = found(read_one(&p, &vm_ref, &vm.id, &updated, true).await);
    assert_eq!(after, updated);
    let ours = vms_named(&mut fake, "cp-1").await;
    assert_eq!(ours[0]["config"]["memory"], json!("8192"));
    assert_eq!(ours[0]["pending"], json!({}));

    // Drift made through the API, and a migration: seen by a plain refresh.
    client
        .set_vm_config(
            "pve2",
            1000,
            &[("tags".into(), "infraflux;manual;prod".into())],
            &[],
        )
        .await
        .unwrap();
    fake.expect(json!({ "op": "migrate", "vmid": 1000, "target": "pve3" }))
        .await;
    let drifted = found(read_one(&p, &vm_ref, &vm.id, &after, false).await);
    assert_eq!(drifted["tags"], json!(["infraflux", "manual", "prod"]));
    assert_eq!(drifted["node"], json!("pve3"));
    assert_eq!(
        changes(&p, &vm_ref, &drifted, &desired).await,
        ["node", "tags"]
    );
    // A node change is reported, never fixed by recreating or moving the VM.
    let error = update(&p, &vm_ref, &vm.id, &drifted, &desired)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert!(
        error.message.contains("runs on `pve3`"),
        "{}",
        error.message
    );
    let fixed = found(read_one(&p, &vm_ref, &vm.id, &drifted, false).await);
    assert_eq!(fixed["tags"], json!(["infraflux", "prod"]));
    desired.insert("node".into(), json!("pve3"));
    assert_eq!(
        changes(&p, &vm_ref, &fixed, &desired).await,
        Vec::<String>::new()
    );

    // Delete leaves nothing.
    p.delete(DeleteRequest {
        resource: vm_ref.clone(),
        id: vm.id.clone(),
        prior: fixed.clone(),
        teardown: false,
    })
    .await
    .unwrap();
    assert!(matches!(
        read_one(&p, &vm_ref, &vm.id, &fixed, false).await,
        ReadOutcome::Gone
    ));
    p.delete(DeleteRequest {
        resource: image_ref.clone(),
        id: image.id.clone(),
        prior: image.attributes.clone(),
        teardown: false,
    })
    .await
    .unwrap();
    assert!(matches!(
        read_one(&p, &image_ref, &image.id, &image.attributes, false).await,
        ReadOutcome::Gone
    ));
    assert!(vms_named(&mut fake, "cp-1").await.is_empty());
    let volumes = fake
        .expect(json!({ "op": "volumes", "storage": "local-lvm" }))
        .await;
    assert_eq!(volumes, json!([]), "disks left behind");
    let volumes = fake
        .expect(json!({ "op": "volumes", "storage": "local" }))
        .await;
    assert_eq!(volumes, json!([]), "image left behind");
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_end_truthfully_and_retries_converge() {
    let python = python_or_skip!();
    let mut fake = FakePve::start(
        &python,
        Options {
            nodes: 3,
            import_content: true,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let client = client(&fake, Duration::from_secs(30));
    let p = provider(client.clone());
    let image = create(&p, &reference("proxmox_image", "talos"), &image_desired())
        .await
        .unwrap();
    let volume = image.attributes["volume"].clone();

    // Offline node: the create fails as transient (595), and succeeds once it is back.
    let vm3_ref = reference("proxmox_vm", "w-3");
    let mut vm3_desired = vm_desired("w-3", "pve3", &volume);
    fake.expect(json!({ "op": "node_offline", "node": "pve3" }))
        .await;
    let error = create(&p, &vm3_ref, &vm3_desired).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert_eq!(error.http.as_ref().and_then(|h| h.status), Some(595));
    assert!(vms_named(&mut fake, "w-3").await.is_empty());
    fake.expect(json!({ "op": "node_offline", "node": "pve3", "offline": false }))
        .await;
    let vm3 = create(&p, &vm3_ref, &vm3_desired).await.unwrap();

    // Offline node during a deep refresh: that VM fails (transient), not Gone.
    fake.expect(json!({ "op": "node_offline", "node": "pve3" }))
        .await;
    match read_one(&p, &vm3_ref, &vm3.id, &vm3.attributes, true).await {
        ReadOutcome::Failed(error) => assert_eq!(error.kind, ErrorKind::Transient),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    fake.expect(json!({ "op": "node_offline", "node": "pve3", "offline": false }))
        .await;
    assert_eq!(
        found(read_one(&p, &vm3_ref, &vm3.id, &vm3.attributes, true).await),
        vm3.attributes
    );

    // Locked VM (a backup): the update fails as transient, naming the lock; then converges.
    let vmid: u32 = vm3.id.parse().unwrap();
    fake.expect(json!({ "op": "lock", "vmid": vmid, "lock": "backup" }))
        .await;
    vm3_desired.insert("cores".into(), json!(4));
    let error = update(&p, &vm3_ref, &vm3.id, &vm3.attributes, &vm3_desired)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(
        error.message.contains("VM is locked (backup)"),
        "{}",
        error.message
    );
    fake.expect(json!({ "op": "unlock", "vmid": vmid })).await;
    let updated = update(&p, &vm3_ref, &vm3.id, &vm3.attributes, &vm3_desired)
        .await
        .unwrap();
    assert_eq!(updated["cores"], json!(4));

    // A task that fails: the error has PVE's exit status and the log; a retry finishes
    // the same VM instead of making a second one.
    fake.expect(json!({ "op": "fail", "method": "POST", "suffix": "/status/start", "error": "qemu_exited_code", "times": 1 }))
        .await;
    let vm1_ref = reference("proxmox_vm", "cp-2");
    let mut vm1_desired = vm_desired("cp-2", "pve1", &volume);
    vm1_desired.insert("ipv4".into(), json!("10.0.0.11/24"));
    let error = create(&p, &vm1_ref, &vm1_desired).await.unwrap_err();
    assert!(
        error
            .message
            .contains("task qmstart on pve1 failed: QEMU exited with code 1"),
        "{}",
        error.message
    );
    assert!(error.message.contains("task log"), "{}", error.message);
    let half_made = vms_named(&mut fake, "cp-2").await;
    assert_eq!(half_made.len(), 1);
    assert_eq!(half_made[0]["status"], json!("stopped"));
    let vm1 = create(&p, &vm1_ref, &vm1_desired).await.unwrap();
    assert_eq!(json!(vm1.id.parse::<u64>().unwrap()), half_made[0]["vmid"]);
    let ours = vms_named(&mut fake, "cp-2").await;
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["status"], json!("running"));

    // Slow network: a refresh with a short request timeout fails as transient for
    // every VM; once the network is back it converges.
    let impatient = provider(self::client(&fake, Duration::from_millis(300)));
    fake.expect(json!({ "op": "time_scale", "value": 0.01 }))
        .await;
    fake.expect(json!({ "op": "slow_network", "latency": 100 }))
        .await;
    match read_one(&impatient, &vm1_ref, &vm1.id, &vm1.attributes, false).await {
        ReadOutcome::Failed(error) => {
            assert_eq!(error.kind, ErrorKind::Transient);
            assert!(error.message.contains("timed out"), "{}", error.message);
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    fake.expect(json!({ "op": "slow_network", "latency": 0 }))
        .await;
    assert_eq!(
        found(read_one(&impatient, &vm1_ref, &vm1.id, &vm1.attributes, false).await),
        vm1.attributes
    );
    // Tasks now run in the background (time scale > 0): the waiter polls them.
    p.delete(DeleteRequest {
        resource: vm1_ref.clone(),
        id: vm1.id.clone(),
        prior: vm1.attributes.clone(),
        teardown: false,
    })
    .await
    .unwrap();
    p.delete(DeleteRequest {
        resource: vm3_ref.clone(),
        id: vm3.id.clone(),
        prior: updated.clone(),
        teardown: false,
    })
    .await
    .unwrap();
    assert!(vms_named(&mut fake, "cp-2").await.is_empty());
    assert!(vms_named(&mut fake, "w-3").await.is_empty());
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_and_ticket_login() {
    let python = python_or_skip!();
    let fake = FakePve::start(
        &python,
        Options {
            nodes: 1,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    // The fake's self-signed certificate as the only CA, with a password login.
    let config = ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::password("root@pam", "secret"),
        TlsVerification::CaFile(fake.cafile.clone()),
    );
    let client = Client::new(config).unwrap();
    assert_eq!(client.version().await.unwrap().release, "9.0");
    let nodes = client
        .cluster_resources(infraflux_proxmox::api::ResourceType::Node)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1);

    // The wrong pinned fingerprint: refused, not retried as transient.
    let wrong = ["00"; 32].join(":");
    let mut config = ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::api_token(support::TOKEN).unwrap(),
        TlsVerification::Fingerprint(wrong),
    );
    config.retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let client = Client::new(config).unwrap();
    let error = client.version().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permission);
    assert!(
        error.message.contains(&fake.fingerprint),
        "{}",
        error.message
    );
    assert_eq!(client.request_count(), 1);

    // System roots do not know the fake's certificate.
    let client = Client::new(ClientConfig::new(
        fake.url.parse().unwrap(),
        Credentials::api_token(support::TOKEN).unwrap(),
        TlsVerification::System,
    ))
    .unwrap();
    assert_eq!(
        client.version().await.unwrap_err().kind,
        ErrorKind::Permission
    );
    fake.stop().await;
}

/// A create interrupted before its ID reached state is read with an empty ID: the VM
/// is found by name and adopted only when its marker names this resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_create_is_adopted_by_name_and_marker() {
    let python = python_or_skip!();
    let fake = FakePve::start(
        &python,
        Options {
            nodes: 2,
            import_content: true,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let p = provider(client(&fake, Duration::from_secs(30)));
    let image = create(&p, &reference("proxmox_image", "talos"), &image_desired())
        .await
        .unwrap();
    let vm_ref = reference("proxmox_vm", "cp-1");
    let desired = vm_desired("cp-1", "pve1", &image.attributes["volume"]);
    let created = create(&p, &vm_ref, &desired).await.unwrap();

    let adopted = found(read_one(&p, &vm_ref, "", &desired, false).await);
    assert_eq!(adopted["id"], json!(created.id));
    assert_eq!(adopted["vmid"], json!(created.id.parse::<u32>().unwrap()));

    // Same name, another resource's address: not ours.
    let other = reference("proxmox_vm", "someone-else");
    assert!(matches!(
        read_one(&p, &other, "", &desired, false).await,
        ReadOutcome::Gone
    ));
    // No VM of that name: the create never happened.
    let missing = vm_desired("cp-9", "pve1", &image.attributes["volume"]);
    assert!(matches!(
        read_one(&p, &vm_ref, "", &missing, false).await,
        ReadOutcome::Gone
    ));
    // An image read with an empty ID gets its ID too.
    let image_adopted = found(
        read_one(
            &p,
            &reference("proxmox_image", "talos"),
            "",
            &image.attributes,
            false,
        )
        .await,
    );
    assert_eq!(image_adopted["id"], json!(image.id));
    fake.stop().await;
}

/// Wait for a task the test started through the client.
async fn finish(client: &Client, upid: infraflux_proxmox::task::Upid) {
    infraflux_proxmox::task::wait(
        client,
        &upid,
        infraflux_proxmox::task::WaitOptions::with_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("the task finishes");
}

/// Issue 14: what the refresh sees of changes made outside InfraFlux, and what it costs.
/// A VM stopped by hand and a boot disk grown are in the cluster listing: a plain
/// refresh reads that VM in full and the plan starts it. A memory change left pending on
/// the running VM is not in the listing: a deep refresh sees it, and the update clears
/// it. A start that fails fails the update; the VM stays stopped and the next plan starts
/// it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_disk_and_pending_drift_are_refreshed_and_fixed() {
    let python = python_or_skip!();
    let mut fake = FakePve::start(
        &python,
        Options {
            nodes: 2,
            import_content: true,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let client = client(&fake, Duration::from_secs(30));
    let p = provider(client.clone());
    let image = create(&p, &reference("proxmox_image", "talos"), &image_desired())
        .await
        .unwrap();
    let vm_ref = reference("proxmox_vm", "cp-1");
    let desired = vm_desired("cp-1", "pve1", &image.attributes["volume"]);
    let vm = create(&p, &vm_ref, &desired).await.unwrap();
    assert_eq!(vm.attributes["power"], json!("running"));
    assert_eq!(vm.attributes["pending"], json!({}));
    let vmid: u32 = vm.id.parse().unwrap();

    // Stopped by hand: the listing shows it; the node confirms it (listing, config,
    // status: 3 calls); the plan starts it.
    finish(&client, client.stop_vm("pve1", vmid).await.unwrap()).await;
    let before = client.request_count();
    let stopped = found(read_one(&p, &vm_ref, &vm.id, &vm.attributes, false).await);
    assert_eq!(client.request_count() - before, 3);
    assert_eq!(stopped["power"], json!("stopped"));
    assert_eq!(changes(&p, &vm_ref, &stopped, &desired).await, ["power"]);

    // Its start fails once: the update fails, the VM stays stopped, and the next plan
    // wants the start again; the retry starts it.
    fake.expect(json!({ "op": "fail", "method": "POST", "suffix": "/status/start", "error": "qemu_exited_code", "times": 1 }))
        .await;
    let error = update(&p, &vm_ref, &vm.id, &stopped, &desired)
        .await
        .unwrap_err();
    assert!(
        error.message.contains("QEMU exited with code 1"),
        "{}",
        error.message
    );
    let still = found(read_one(&p, &vm_ref, &vm.id, &stopped, false).await);
    assert_eq!(still, stopped);
    assert_eq!(changes(&p, &vm_ref, &still, &desired).await, ["power"]);
    let started = update(&p, &vm_ref, &vm.id, &still, &desired).await.unwrap();
    assert_eq!(started["power"], json!("running"));
    assert_eq!(
        vms_named(&mut fake, "cp-1").await[0]["status"],
        json!("running")
    );
    let before = client.request_count();
    assert_eq!(
        found(read_one(&p, &vm_ref, &vm.id, &started, false).await),
        started
    );
    assert_eq!(client.request_count() - before, 1, "one listing");

    // The boot disk grown 40G → 50G outside InfraFlux: in the listing too.
    let resized = client
        .resize_disk("pve1", vmid, "scsi0", "50G")
        .await
        .unwrap();
    if let Some(upid) = resized {
        finish(&client, upid).await;
    }
    let grown = found(read_one(&p, &vm_ref, &vm.id, &started, false).await);
    assert_eq!(grown["disk_gib"], json!(50));
    // Shrinking is not possible in place: the plan says the VM must be replaced, unless
    // the configuration takes the new size.
    let plan = p
        .plan(PlanRequest {
            resource: vm_ref.clone(),
            prior: Some(&grown),
            desired: desired.clone(),
        })
        .await
        .unwrap();
    assert_eq!(plan.requires_replace, ["disk_gib"]);
    let mut desired = desired.clone();
    desired.insert("disk_gib".into(), json!(50));
    assert_eq!(
        changes(&p, &vm_ref, &grown, &desired).await,
        Vec::<String>::new()
    );

    // Memory raised by hand on the running VM: pending until a restart, so the listing
    // (and the VM) still show 4096. A plain refresh cannot see it; a deep one can.
    client
        .set_vm_config("pve1", vmid, &[("memory".into(), "8192".into())], &[])
        .await
        .unwrap();
    assert_eq!(
        found(read_one(&p, &vm_ref, &vm.id, &grown, false).await),
        grown
    );
    let before = client.request_count();
    let waiting = found(read_one(&p, &vm_ref, &vm.id, &grown, true).await);
    assert_eq!(client.request_count() - before, 2, "listing + one config");
    assert_eq!(waiting["memory_mib"], json!(4096));
    assert_eq!(waiting["pending"], json!({"memory": "8192"}));
    assert_eq!(changes(&p, &vm_ref, &waiting, &desired).await, ["pending"]);
    let fixed = update(&p, &vm_ref, &vm.id, &waiting, &desired)
        .await
        .unwrap();
    assert_eq!(fixed["pending"], json!({}));
    assert_eq!(fixed["memory_mib"], json!(4096));
    assert_eq!(
        changes(&p, &vm_ref, &fixed, &desired).await,
        Vec::<String>::new()
    );
    // What the fake holds is what was recorded: a deep read finds nothing new.
    assert_eq!(
        found(read_one(&p, &vm_ref, &vm.id, &fixed, true).await),
        fixed
    );
    let ours = vms_named(&mut fake, "cp-1").await;
    assert_eq!(ours[0]["status"], json!("running"));
    assert_eq!(ours[0]["config"]["memory"], json!("4096"));
    fake.stop().await;
}
