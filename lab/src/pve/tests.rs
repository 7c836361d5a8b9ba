//! The simulator driven by the real PVE client (`infraflux_proxmox::Client`), over TLS
//! with the pinned fingerprint: what PVE would answer, in PVE's shapes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infraflux_provider::ErrorKind;
use infraflux_proxmox::api::{Download, ResourceType};
use infraflux_proxmox::client::Call;
use infraflux_proxmox::task::{WaitOptions, wait};
use infraflux_proxmox::{Client, ClientConfig, Credentials, RetryPolicy, TlsVerification};

use super::*;

/// Records what the lab was asked to boot.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait]
impl Machines for Recorder {
    async fn started(&self, vm: Booted) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {} {} {:?}", vm.vmid, vm.name, vm.ipv4));
        Ok(())
    }
    async fn stopped(&self, vmid: u32) {
        self.0.lock().unwrap().push(format!("stop {vmid}"));
    }
}

async fn simulator() -> (PveSimulator, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let pve = PveSimulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ClusterOptions::default(),
        recorder.clone(),
    )
    .await
    .unwrap();
    (pve, recorder)
}

fn client(pve: &PveSimulator, token: &str) -> Client {
    let mut config = ClientConfig::new(
        pve.url().parse().unwrap(),
        Credentials::api_token(token).unwrap(),
        TlsVerification::Fingerprint(pve.fingerprint().to_string()),
    );
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    Client::new(config).unwrap()
}

fn waiting() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(10),
        first_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(50),
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Download the image and create VM 1000 from it, as the provider does.
async fn create_vm(client: &Client) {
    let upid = client
        .download_url(
            "pve1",
            "local",
            &Download {
                url: "https://factory.talos.dev/image/x/v1.13.9/nocloud-amd64.raw.xz".into(),
                filename: "talos.raw".into(),
                content: "import".into(),
                checksum: None,
            },
        )
        .await
        .unwrap();
    wait(client, &upid, waiting()).await.unwrap();
    let upid = client
        .create_vm(
            "pve1",
            &params(&[
                ("vmid", "1000"),
                ("name", "dev-workload-cp-1"),
                ("cores", "2"),
                ("memory", "4096"),
                ("efidisk0", "local-lvm:1,efitype=4m,pre-enrolled-keys=0"),
                (
                    "scsi0",
                    "local-lvm:0,discard=on,import-from=local:import/talos.raw",
                ),
                ("net0", "virtio,bridge=vmbr0,tag=10"),
                ("ide2", "local-lvm:cloudinit"),
                ("ipconfig0", "ip=127.42.0.10/16,gw=127.42.0.1"),
                ("tags", "worker;dev;infraflux"),
            ]),
        )
        .await
        .unwrap();
    wait(client, &upid, waiting()).await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_refused_as_pve_does() {
    let (pve, _) = simulator().await;
    let error = client(&pve, "root@pam!lab=wrong")
        .version()
        .await
        .unwrap_err();
    assert_eq!(error.status, Some(401));
    assert_eq!(error.kind, ErrorKind::Permission);
    let version = client(&pve, pve.token()).version().await.unwrap();
    assert_eq!(version.version, "9.1.3");
}

#[tokio::test]
async fn unknown_and_mistyped_parameters_are_400s_with_per_field_errors() {
    let (pve, _) = simulator().await;
    let client = client(&pve, pve.token());
    let error = client
        .create_vm(
            "pve1",
            &params(&[("vmid", "1000"), ("cores", "banana"), ("bogus", "1")]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status, Some(400));
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert_eq!(
        error.field_errors["cores"],
        "type check ('integer') failed - got 'banana'"
    );
    assert!(
        error.field_errors["bogus"].starts_with("property is not defined in schema"),
        "{:?}",
        error.field_errors
    );
    // Nothing was created.
    assert!(
        client
            .cluster_resources(ResourceType::Vm)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn created_vms_read_back_like_pves() {
    let (pve, recorder) = simulator().await;
    let client = client(&pve, pve.token());
    create_vm(&client).await;
    let config = client.vm_config("pve1", 1000).await.unwrap();
    assert_eq!(config.get("tags"), Some("dev;infraflux;worker"));
    assert_eq!(config.get("cores"), Some("2"));
    let net = config.get("net0").unwrap();
    assert!(net.starts_with("virtio=BC:24:11:"), "{net}");
    assert!(net.ends_with(",bridge=vmbr0,tag=10"), "{net}");
    assert_eq!(
        config.get("scsi0"),
        Some("local-lvm:vm-1000-disk-1,discard=on,size=1G")
    );
    assert_eq!(
        config.get("efidisk0"),
        Some("local-lvm:vm-1000-disk-0,efitype=4m,pre-enrolled-keys=0,size=4M")
    );
    assert!(config.get("ide2").unwrap().ends_with("media=cdrom"));
    assert_eq!(config.digest.as_deref().map(str::len), Some(40));
    // Growing the disk, then starting: the lab boots the VM's address.
    let upid = client
        .resize_disk("pve1", 1000, "scsi0", "40G")
        .await
        .unwrap()
        .unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    assert!(
        client
            .vm_config("pve1", 1000)
            .await
            .unwrap()
            .get("scsi0")
            .unwrap()
            .ends_with("size=40G")
    );
    let before = node_memory(&client).await;
    let upid = client.start_vm("pve1", 1000).await.unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["start 1000 dev-workload-cp-1 Some(127.42.0.10)"]
    );
    assert_eq!(node_memory(&client).await, before + 4096 * 1024 * 1024);
    assert_eq!(
        client.vm_status("pve1", 1000).await.unwrap().status,
        "running"
    );
    // A running VM is not destroyed; a stopped one is, with its disks.
    let error = client.delete_vm("pve1", 1000).await.unwrap_err();
    assert!(error.message.contains("is running"), "{}", error.message);
    let upid = client.stop_vm("pve1", 1000).await.unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    let upid = client.delete_vm("pve1", 1000).await.unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    assert!(
        client
            .vm_config("pve1", 1000)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let disks = client
        .storage_content("pve1", "local-lvm", None)
        .await
        .unwrap();
    assert!(disks.is_empty(), "{disks:?}");
}

async fn node_memory(client: &Client) -> u64 {
    let nodes = client.cluster_resources(ResourceType::Node).await.unwrap();
    let node = nodes.iter().find(|n| n.id == "node/pve1").unwrap();
    assert!(node.maxmem.is_some());
    let raw = client
        .call(Call::get(&["cluster", "resources"]).query("type", "node"))
        .await
        .unwrap();
    raw.as_array().unwrap()[0]["mem"].as_u64().unwrap()
}

#[tokio::test]
async fn changes_to_a_running_vm_wait_as_pending_values_until_a_reboot() {
    let (pve, _) = simulator().await;
    let client = client(&pve, pve.token());
    create_vm(&client).await;
    let upid = client.start_vm("pve1", 1000).await.unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    client
        .set_vm_config(
            "pve1",
            1000,
            &params(&[("cores", "4"), ("name", "renamed")]),
            &[],
        )
        .await
        .unwrap();
    let pending = client.vm_pending("pve1", 1000).await.unwrap();
    let cores = pending.iter().find(|p| p.key == "cores").unwrap();
    assert_eq!(cores.pending.as_deref(), Some("4"));
    assert!(
        !pending
            .iter()
            .find(|p| p.key == "name")
            .unwrap()
            .is_change()
    );
    let upid = client.reboot_vm("pve1", 1000).await.unwrap();
    wait(&client, &upid, waiting()).await.unwrap();
    assert_eq!(
        client.vm_config("pve1", 1000).await.unwrap().get("cores"),
        Some("4")
    );
    // Starting a running VM fails in its task, with PVE's words in the log.
    let upid = client.start_vm("pve1", 1000).await.unwrap();
    let error = wait(&client, &upid, waiting()).await.unwrap_err();
    assert!(
        error.detail().contains("already running"),
        "{}",
        error.detail()
    );
}

#[tokio::test]
async fn a_storage_without_import_content_refuses_downloads_in_pves_words() {
    let (pve, _) = simulator().await;
    let client = client(&pve, pve.token());
    let error = client
        .download_url(
            "pve1",
            "local-lvm",
            &Download {
                url: "https://example.invalid/talos.raw".into(),
                filename: "talos.raw".into(),
                content: "import".into(),
                checksum: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "storage 'local-lvm' is not configured for content-type 'import'"
    );
    let error = client.vm_status("pve4", 1000).await.unwrap_err();
    assert!(error.message.contains("hostname lookup 'pve4' failed"));
}
