//! Contract tests against wiremock: the exact requests (method, path, form body, auth
//! headers) each operation sends, and how PVE's failures come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use infraflux_provider::{
    Attributes, CreateRequest, DeleteRequest, ErrorKind, Provider, ReadItem, ReadOutcome,
    ReadRequest, ResourceRef, UpdateRequest,
};
use infraflux_proxmox::task::{self, Upid, WaitOptions};
use infraflux_proxmox::{
    Client, ClientConfig, Credentials, ProviderOptions, ProxmoxProvider, RetryPolicy,
    TlsVerification,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "root@pam!ci=5ecr3t-70k3n";
const AUTH: &str = "PVEAPIToken=root@pam!ci=5ecr3t-70k3n";

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn client_for(uri: &str, credentials: Credentials, attempts: u32) -> Client {
    let mut config = ClientConfig::new(uri.parse().unwrap(), credentials, TlsVerification::System);
    config.retry = fast_retry(attempts);
    config.request_timeout = Duration::from_secs(10);
    Client::new(config).unwrap()
}

fn token_client(server: &MockServer) -> Client {
    client_for(&server.uri(), Credentials::api_token(TOKEN).unwrap(), 3)
}

fn provider(client: Client) -> ProxmoxProvider {
    let options = ProviderOptions {
        poll_first: Duration::from_millis(1),
        poll_max: Duration::from_millis(5),
        ..ProviderOptions::default()
    };
    ProxmoxProvider::new(client, options)
}

fn ok(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "data": data }))
}

fn pve_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({ "data": null, "message": format!("{message}\n") }))
}

fn upid(node: &str, kind: &str, id: &str) -> String {
    format!("UPID:{node}:0000A1B2:0012D687:6734F1A2:{kind}:{id}:root@pam!ci:")
}

async fn task_ok(server: &MockServer, upid: &str) {
    let node = Upid::parse(upid).unwrap().node;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/{node}/tasks/{upid}/status")))
        .and(header("authorization", AUTH))
        .respond_with(ok(
            json!({ "status": "stopped", "exitstatus": "OK", "upid": upid }),
        ))
        .mount(server)
        .await;
}

fn form_pairs(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn vm_ref() -> ResourceRef {
    ResourceRef {
        address: "dev/w/proxmox_vm.cp-1".into(),
        kind: "proxmox_vm".into(),
    }
}

fn image_ref() -> ResourceRef {
    ResourceRef {
        address: "dev/w/proxmox_image.talos".into(),
        kind: "proxmox_image".into(),
    }
}

fn vm_attributes() -> Attributes {
    json!({
        "node": "pve1", "name": "cp-1", "cores": 2, "memory_mib": 4096, "disk_gib": 40,
        "storage": "local-lvm", "bridge": "vmbr0", "vlan": 10, "ipv4": "10.0.0.10/24",
        "gateway": "10.0.0.1", "dns": ["10.0.0.1"], "tags": ["infraflux", "prod"],
        "image": "local:import/talos-v1.13.9.raw", "guest_agent": true, "vmid_range": [1000, 1099],
    })
    .as_object()
    .unwrap()
    .clone()
}

/// A VM as a refresh records it: running, nothing pending.
fn refreshed_vm_attributes() -> Attributes {
    let mut attributes = vm_attributes();
    attributes.insert("power".into(), json!("running"));
    attributes.insert("pending".into(), json!({}));
    attributes
}

fn image_attributes() -> Attributes {
    json!({
        "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
        "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        "url": "https://factory.talos.dev/image/ce4c9805/v1.13.9/nocloud-amd64.raw",
        "filename": "talos-v1.13.9.raw",
        "checksum": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    })
    .as_object()
    .unwrap()
    .clone()
}

#[tokio::test]
async fn api_token_goes_in_the_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .and(header("authorization", AUTH))
        .respond_with(ok(
            json!({ "version": "9.1.1", "release": "9.1", "repoid": "abcdef12" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = token_client(&server);
    let version = client.version().await.unwrap();
    assert_eq!(version.release, "9.1");
    assert_eq!(client.request_count(), 1);
}

#[tokio::test]
async fn ticket_login_sends_the_cookie_and_csrf_token_on_writes_only() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api2/json/access/ticket"))
        .and(body_string("username=root%40pam&password=hunter2"))
        .respond_with(ok(json!({
            "ticket": "PVE:root@pam:6734F1A2::c2lnbmF0dXJl", "CSRFPreventionToken": "6734F1A2:csrf", "username": "root@pam"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/current"))
        .and(header(
            "cookie",
            "PVEAuthCookie=PVE:root@pam:6734F1A2::c2lnbmF0dXJl",
        ))
        .respond_with(ok(json!({ "status": "stopped", "name": "vm" })))
        .mount(&server)
        .await;
    let start = upid("pve1", "qmstart", "100");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/start"))
        .and(header(
            "cookie",
            "PVEAuthCookie=PVE:root@pam:6734F1A2::c2lnbmF0dXJl",
        ))
        .and(header("csrfpreventiontoken", "6734F1A2:csrf"))
        .respond_with(ok(json!(start)))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(
        &server.uri(),
        Credentials::password("root@pam", "hunter2"),
        1,
    );
    assert_eq!(
        client.vm_status("pve1", 100).await.unwrap().status,
        "stopped"
    );
    assert_eq!(client.start_vm("pve1", 100).await.unwrap().as_str(), start);
    let requests = server.received_requests().await.unwrap();
    let status = requests
        .iter()
        .find(|r| r.url.path().ends_with("/status/current"))
        .unwrap();
    assert!(
        status.headers.get("csrfpreventiontoken").is_none(),
        "CSRF token sent on a GET"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
}

#[tokio::test]
async fn an_expired_ticket_is_renewed_once() {
    let server = MockServer::start().await;
    let logins = Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    Mock::given(method("POST"))
        .and(path("/api2/json/access/ticket"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            ok(json!({ "ticket": format!("PVE:root@pam:T{n}"), "CSRFPreventionToken": format!("C{n}") }))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .and(header("cookie", "PVEAuthCookie=PVE:root@pam:T0"))
        .respond_with(pve_error(401, "permission denied - invalid PVE ticket"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .and(header("cookie", "PVEAuthCookie=PVE:root@pam:T1"))
        .respond_with(ok(json!({ "version": "9.1.1", "release": "9.1" })))
        .mount(&server)
        .await;
    let client = client_for(
        &server.uri(),
        Credentials::password("root@pam", "hunter2"),
        1,
    );
    assert_eq!(client.version().await.unwrap().release, "9.1");
    assert_eq!(logins.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_wrong_token_is_a_permission_error_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .respond_with(pve_error(401, "authentication failure"))
        .expect(1)
        .mount(&server)
        .await;
    let error = token_client(&server).version().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permission);
    assert_eq!(error.status, Some(401));
    let shown = format!(
        "{error} {error:?} {:?}",
        error.clone().into_provider("read", "x")
    );
    assert!(!shown.contains("5ecr3t-70k3n"), "{shown}");
    // It names the token PVE refused, by its id.
    let token_id = TOKEN.split_once('=').unwrap().0;
    assert!(
        shown.contains(&format!("PVE refused the API token `{token_id}`")),
        "{shown}"
    );
}

#[tokio::test]
async fn a_ticket_login_failure_never_shows_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api2/json/access/ticket"))
        .respond_with(pve_error(401, "authentication failure"))
        .mount(&server)
        .await;
    let client = client_for(
        &server.uri(),
        Credentials::password("root@pam", "hunter2"),
        1,
    );
    let error = client.version().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permission);
    assert!(error.body.is_none());
    assert!(!format!("{error} {error:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_forbidden_call_names_the_missing_privilege() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(pve_error(
            403,
            "Permission check failed (/vms/1000, VM.Allocate)",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permission);
    assert!(
        error.message.contains("`VM.Allocate` on `/vms/1000`"),
        "{}",
        error.message
    );
    let http = error.http.unwrap();
    assert_eq!((http.method.as_str(), http.status), ("POST", Some(403)));
    assert!(
        http.url.ends_with("/api2/json/nodes/pve1/qemu"),
        "{}",
        http.url
    );
}

#[tokio::test]
async fn create_vm_sends_the_parameters_pve_expects() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .and(header("authorization", AUTH))
        .respond_with(ok(json!([
            { "id": "qemu/1000", "type": "qemu", "vmid": 1000, "node": "pve2", "name": "other", "maxmem": 1, "maxcpu": 1 }
        ])))
        .mount(&server)
        .await;
    let create = upid("pve1", "qmcreate", "1001");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .and(header("authorization", AUTH))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ok(json!(create)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &create).await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1001/config"))
        .respond_with(ok(json!({
            "name": "cp-1", "cores": 2, "memory": "4096", "sockets": 1,
            "scsi0": "local-lvm:vm-1001-disk-1,discard=on,size=1536M",
            "net0": "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,tag=10",
            "ipconfig0": "ip=10.0.0.10/24,gw=10.0.0.1", "nameserver": "10.0.0.1",
            "tags": "infraflux;prod", "agent": "1", "digest": "abc"
        })))
        .mount(&server)
        .await;
    let resize = upid("pve1", "resize", "1001");
    Mock::given(method("PUT"))
        .and(path("/api2/json/nodes/pve1/qemu/1001/resize"))
        .and(body_string("disk=scsi0&size=40G"))
        .respond_with(ok(json!(resize)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &resize).await;
    let start = upid("pve1", "qmstart", "1001");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/1001/status/start"))
        .respond_with(ok(json!(start)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &start).await;

    let response = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap();
    assert_eq!(response.id, "1001");
    assert_eq!(response.attributes["mac"], json!("BC:24:11:0A:0B:0C"));
    assert_eq!(response.attributes["disk_gib"], json!(40));
    assert_eq!(response.attributes["vmid"], json!(1001));

    let requests = server.received_requests().await.unwrap();
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/api2/json/nodes/pve1/qemu")
        .unwrap();
    let expected: Vec<(String, String)> = [
        ("vmid", "1001"),
        ("name", "cp-1"),
        (
            "description",
            "Managed by InfraFlux (dev/w/proxmox_vm.cp-1)",
        ),
        ("ostype", "l26"),
        ("machine", "q35"),
        ("bios", "ovmf"),
        ("efidisk0", "local-lvm:1,efitype=4m,pre-enrolled-keys=0"),
        ("scsihw", "virtio-scsi-pci"),
        (
            "scsi0",
            "local-lvm:0,discard=on,import-from=local:import/talos-v1.13.9.raw",
        ),
        ("boot", "order=scsi0"),
        ("cores", "2"),
        ("sockets", "1"),
        ("memory", "4096"),
        ("balloon", "0"),
        ("agent", "1"),
        ("net0", "virtio,bridge=vmbr0,tag=10"),
        ("ide2", "local-lvm:cloudinit"),
        ("ipconfig0", "ip=10.0.0.10/24,gw=10.0.0.1"),
        ("nameserver", "10.0.0.1"),
        ("tags", "infraflux;prod"),
        ("onboot", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form_pairs(post), expected);
    let raw = String::from_utf8(post.body.clone()).unwrap();
    assert!(
        raw.contains("&scsi0=local-lvm%3A0%2Cdiscard%3Don%2Cimport-from%3Dlocal%3Aimport%2Ftalos-v1.13.9.raw&"),
        "{raw}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("authorization").unwrap() == AUTH)
    );
}

#[tokio::test]
async fn a_vmid_taken_meanwhile_is_picked_again() {
    let server = MockServer::start().await;
    // The shared listing, then a new one after PVE said the VMID is taken.
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([])))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .and(wiremock::matchers::body_string_contains("vmid=1000&"))
        .respond_with(pve_error(
            500,
            "unable to create VM 1000 - VM 1000 already exists on node 'pve3'",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .and(wiremock::matchers::body_string_contains("vmid=1001&"))
        .respond_with(pve_error(500, "stop here"))
        .expect(1)
        .mount(&server)
        .await;
    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.message, "stop here");
    assert_eq!(error.kind, ErrorKind::Other);
}

/// A create whose answer was lost may have made the VM: the retry lists the cluster
/// again (not the shared listing from before) and finds it by name and marker instead
/// of making a second one.
#[tokio::test]
async fn a_failed_create_lists_again_on_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([
            { "id": "qemu/1000", "type": "qemu", "vmid": 1000, "node": "pve1", "name": "cp-1", "maxmem": 1, "maxcpu": 1 }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(pve_error(500, "proxy loop detected"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
        .respond_with(ok(json!({
            "name": "cp-1", "lock": "create",
            "description": "Managed by InfraFlux (dev/w/proxmox_vm.cp-1)",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(token_client(&server));
    let request = CreateRequest {
        resource: vm_ref(),
        planned: vm_attributes(),
        replacing: false,
    };
    let error = p.create(request.clone()).await.unwrap_err();
    assert_eq!(error.message, "proxy loop detected");
    let error = p.create(request).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(
        error
            .message
            .contains("VM 1000, from an earlier create of this resource, is locked (create)"),
        "{}",
        error.message
    );
}

/// A shared listing older than a delete (a replace deletes the VM, then creates it
/// again) shows a same-named VM that is gone: the create lists once more instead of
/// failing on it, and takes the VMID that is free now.
#[tokio::test]
async fn a_listed_vm_that_is_gone_renews_the_listing_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([
            { "id": "qemu/1000", "type": "qemu", "vmid": 1000, "node": "pve1", "name": "cp-1", "maxmem": 1, "maxcpu": 1 }
        ])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
        .respond_with(pve_error(
            500,
            "Configuration file 'nodes/pve1/qemu-server/1000.conf' does not exist",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .and(wiremock::matchers::body_string_contains("vmid=1000&"))
        .respond_with(pve_error(500, "stop here"))
        .expect(1)
        .mount(&server)
        .await;
    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.message, "stop here");
}

#[tokio::test]
async fn download_url_checks_the_storage_first_and_sends_the_checksum() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/status"))
        .respond_with(ok(
            json!({ "content": "iso,vztmpl,backup", "type": "dir", "active": 1, "enabled": 1 }),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let p = provider(token_client(&server));
    let error = p
        .create(CreateRequest {
            resource: image_ref(),
            planned: image_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(
        error
            .message
            .contains("pvesm set local --content iso,vztmpl,backup,import"),
        "{}",
        error.message
    );

    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/status"))
        .respond_with(ok(
            json!({ "content": "iso,import", "type": "dir", "active": 1 }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/content"))
        .and(query_param("content", "import"))
        .respond_with(ok(json!([])))
        .mount(&server)
        .await;
    let download = upid("pve1", "download", "local");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/storage/local/download-url"))
        .and(body_string(
            "content=import&filename=talos-v1.13.9.raw&url=https%3A%2F%2Ffactory.talos.dev%2Fimage%2Fce4c9805%2Fv1.13.9%2Fnocloud-amd64.raw&checksum=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef&checksum-algorithm=sha256",
        ))
        .and(header("authorization", AUTH))
        .respond_with(ok(json!(download)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &download).await;
    // Then the storage's usage, for refreshes to skip listing an unchanged storage.
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "storage"))
        .respond_with(ok(json!([
            { "id": "storage/pve2/local", "type": "storage", "node": "pve2", "storage": "local", "disk": 1, "maxdisk": 9 },
            { "id": "storage/pve1/local", "type": "storage", "node": "pve1", "storage": "local", "disk": 1288490188u64, "maxdisk": 107374182400u64 }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let response = p
        .create(CreateRequest {
            resource: image_ref(),
            planned: image_attributes(),
            replacing: false,
        })
        .await
        .unwrap();
    assert_eq!(response.id, "pve1/local:import/talos-v1.13.9.raw");
    assert_eq!(
        response.attributes["volume"],
        json!("local:import/talos-v1.13.9.raw")
    );
    assert_eq!(response.attributes["storage_used"], json!(1288490188u64));
}

fn image_on(node: &str, storage_used: u64) -> ReadItem {
    let mut prior = image_attributes();
    prior.insert("node".into(), json!(node));
    prior.insert("volume".into(), json!("local:import/talos-v1.13.9.raw"));
    prior.insert("storage_used".into(), json!(storage_used));
    ReadItem {
        resource: ResourceRef {
            address: format!("dev/w/proxmox_image.talos-{node}"),
            kind: "proxmox_image".into(),
        },
        id: format!("{node}/local:import/talos-v1.13.9.raw"),
        prior,
    }
}

/// Images and VMs refresh from one untyped `/cluster/resources`: an image whose
/// storage's usage is what it was is confirmed from it; a storage whose usage changed
/// is listed (once); a deep refresh lists every storage and records the usage anew.
#[tokio::test]
async fn a_refresh_lists_only_the_image_storages_whose_usage_changed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([
            { "id": "qemu/1001", "type": "qemu", "vmid": 1001, "node": "pve1", "name": "cp-2",
              "status": "running", "maxmem": 4294967296u64, "maxcpu": 2, "maxdisk": 42949672960u64,
              "tags": "infraflux;prod" },
            { "id": "node/pve1", "type": "node", "node": "pve1", "status": "online" },
            { "id": "storage/pve1/local", "type": "storage", "node": "pve1", "storage": "local", "disk": 1000, "maxdisk": 9000 },
            { "id": "storage/pve2/local", "type": "storage", "node": "pve2", "storage": "local", "disk": 2000, "maxdisk": 9000 }
        ])))
        .expect(2)
        .mount(&server)
        .await;
    // pve2's storage lost 500 bytes: listed, and the image is gone from it.
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve2/storage/local/content"))
        .and(query_param("content", "import"))
        .respond_with(ok(json!([])))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/content"))
        .and(query_param("content", "import"))
        .respond_with(ok(json!([
            { "volid": "local:import/talos-v1.13.9.raw", "content": "import", "format": "raw", "size": 1000 }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let mut vm = refreshed_vm_attributes();
    vm.insert("name".into(), json!("cp-2"));
    let items = vec![
        image_on("pve1", 1000),
        image_on("pve2", 2500),
        ReadItem {
            resource: vm_ref(),
            id: "1001".into(),
            prior: vm.clone(),
        },
    ];
    let client = token_client(&server);
    let p = provider(client.clone());
    let response = p
        .read(ReadRequest {
            resources: items.clone(),
            deep: false,
        })
        .await
        .unwrap();
    assert_eq!(client.request_count(), 2, "one listing + pve2's content");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests[0].url.query(),
        None,
        "no type filter: storages are needed"
    );
    for result in response.results {
        match (result.address.as_str(), result.outcome) {
            ("dev/w/proxmox_image.talos-pve1", ReadOutcome::Found(attributes)) => {
                assert_eq!(attributes, items[0].prior)
            }
            ("dev/w/proxmox_image.talos-pve2", ReadOutcome::Gone) => {}
            ("dev/w/proxmox_vm.cp-1", ReadOutcome::Found(attributes)) => assert_eq!(attributes, vm),
            (address, outcome) => panic!("{address}: {outcome:?}"),
        }
    }

    // Deep: every storage listed; the usage seen with the image is recorded.
    let response = p
        .read(ReadRequest {
            resources: vec![items[0].clone(), items[1].clone()],
            deep: true,
        })
        .await
        .unwrap();
    assert_eq!(client.request_count(), 5);
    let found: Vec<_> = response
        .results
        .into_iter()
        .filter_map(|r| match r.outcome {
            ReadOutcome::Found(attributes) => Some(attributes),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["storage_used"], json!(1000));
}

/// Creates pick VMIDs from one shared cluster listing (and claims in-process), not one
/// listing each: the second create lists nothing and takes the next free VMID.
#[tokio::test]
async fn creates_share_one_cluster_listing_to_pick_vmids() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([
            { "id": "qemu/1000", "type": "qemu", "vmid": 1000, "node": "pve2", "name": "other", "maxmem": 1, "maxcpu": 1 }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let create = upid("pve1", "qmcreate", "1001");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(ok(json!(create)))
        .expect(2)
        .mount(&server)
        .await;
    task_ok(&server, &create).await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/api2/json/nodes/pve1/qemu/\d+/config$",
        ))
        .respond_with(ok(json!({
            "name": "cp", "cores": 2, "memory": "4096",
            "scsi0": "local-lvm:vm-1001-disk-1,discard=on,size=40G",
            "net0": "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,tag=10",
        })))
        .mount(&server)
        .await;
    let start = upid("pve1", "qmstart", "1001");
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/api2/json/nodes/pve1/qemu/\d+/status/start$",
        ))
        .respond_with(ok(json!(start)))
        .mount(&server)
        .await;
    task_ok(&server, &start).await;
    // The boot disk is grown to `disk_gib` while the config is read (a no-op at that
    // size on PVE).
    Mock::given(method("PUT"))
        .and(wiremock::matchers::path_regex(
            r"^/api2/json/nodes/pve1/qemu/\d+/resize$",
        ))
        .respond_with(ok(Value::Null))
        .expect(2)
        .mount(&server)
        .await;

    let p = provider(token_client(&server));
    let first = p
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap();
    let mut second = vm_attributes();
    second.insert("name".into(), json!("cp-2"));
    let second = p
        .create(CreateRequest {
            resource: ResourceRef {
                address: "dev/w/proxmox_vm.cp-2".into(),
                kind: "proxmox_vm".into(),
            },
            planned: second,
            replacing: false,
        })
        .await
        .unwrap();
    assert_eq!((first.id.as_str(), second.id.as_str()), ("1001", "1002"));
    let requests = server.received_requests().await.unwrap();
    let vmids: Vec<String> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/api2/json/nodes/pve1/qemu")
        .map(|r| {
            form_pairs(r)
                .into_iter()
                .find(|(k, _)| k == "vmid")
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(vmids, ["1001", "1002"]);
}

#[tokio::test]
async fn a_failed_task_reports_its_exit_status_and_log_tail() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/status"))
        .respond_with(ok(json!({ "content": "import", "type": "dir" })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/content"))
        .respond_with(ok(json!([])))
        .mount(&server)
        .await;
    let download = upid("pve1", "download", "local");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/storage/local/download-url"))
        .respond_with(ok(json!(download)))
        .mount(&server)
        .await;
    // Running twice, then failed: the waiter polls.
    Mock::given(method("GET"))
        .and(path(format!(
            "/api2/json/nodes/pve1/tasks/{download}/status"
        )))
        .respond_with(ok(json!({ "status": "running" })))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{download}/status")))
        .respond_with(ok(json!({ "status": "stopped", "exitstatus": "checksum mismatch: got 'aa…', expected '01…'" })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{download}/log")))
        .and(query_param("start", "0"))
        .respond_with(ok(json!([
            { "n": 1, "t": "downloading https://factory.talos.dev/… to /var/lib/vz/import/talos-v1.13.9.raw.tmp" },
            { "n": 2, "t": "calculating checksum..." },
            { "n": 3, "t": "TASK ERROR: checksum mismatch: got 'aa…', expected '01…'" }
        ])))
        .mount(&server)
        .await;
    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: image_ref(),
            planned: image_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .contains("task download on pve1 failed: checksum mismatch"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("calculating checksum..."),
        "{}",
        error.message
    );
    assert!(!error.message.contains("TASK ERROR"), "{}", error.message);
    let polls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/status") && r.url.path().contains("/tasks/"))
        .count();
    assert_eq!(polls, 3);
}

#[tokio::test]
async fn the_waiter_asks_the_node_named_in_the_upid() {
    let server = MockServer::start().await;
    let moved = upid("pve3", "qmstart", "104");
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve3/tasks/{moved}/status")))
        .respond_with(ok(
            json!({ "status": "stopped", "exitstatus": "WARNINGS: 2" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = task::wait(
        &token_client(&server),
        &Upid::parse(&moved).unwrap(),
        WaitOptions::with_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(outcome.warnings, 2);
}

#[tokio::test]
async fn a_task_that_keeps_running_times_out_as_transient() {
    let server = MockServer::start().await;
    let slow = upid("pve1", "qmcreate", "104");
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{slow}/status")))
        .respond_with(ok(json!({ "status": "running" })))
        .mount(&server)
        .await;
    let options = WaitOptions {
        timeout: Duration::from_millis(30),
        first_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(10),
    };
    let error = task::wait(
        &token_client(&server),
        &Upid::parse(&slow).unwrap(),
        options,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(matches!(error, task::TaskError::TimedOut { .. }));
}

#[tokio::test]
async fn an_unreachable_node_is_retried_then_reported_as_transient() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve2/qemu/101/config"))
        .respond_with(ResponseTemplate::new(596).set_body_string(""))
        .expect(3)
        .mount(&server)
        .await;
    let error = token_client(&server)
        .vm_config("pve2", 101)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.status, Some(596));
    assert!(error.detail().contains("unreachable"), "{}", error.detail());
}

/// Issue 14: a 5xx PVE does not explain is sent again for a read (bounded), never for a
/// create; an explained one (a missing VM) is not retried at all.
#[tokio::test]
async fn an_unexplained_server_error_is_retried_for_reads_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(pve_error(500, "internal error"))
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(pve_error(500, "internal error"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/pending"))
        .respond_with(pve_error(
            500,
            "Configuration file 'nodes/pve1/qemu-server/1000.conf' does not exist",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = token_client(&server);
    let listing = client
        .cluster_resources(infraflux_proxmox::api::ResourceType::Vm)
        .await
        .unwrap();
    assert!(listing.is_empty());
    assert_eq!(client.request_count(), 3);
    let error = client
        .create_vm("pve1", &[("vmid".into(), "1000".into())])
        .await
        .unwrap_err();
    assert_eq!(error.status, Some(500));
    let error = client.vm_pending("pve1", 1000).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert_eq!(client.request_count(), 5);
}

/// Issue 14: a task-status poll that meets a server error PVE does not explain is sent
/// again; the wait goes on.
#[tokio::test]
async fn a_task_poll_survives_a_server_error() {
    let server = MockServer::start().await;
    let start = upid("pve1", "qmstart", "1000");
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{start}/status")))
        .respond_with(
            ResponseTemplate::new(500).set_body_string("<html>Internal Server Error</html>"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &start).await;
    let client = token_client(&server);
    let upid = Upid::parse(&start).unwrap();
    let outcome = task::wait(
        &client,
        &upid,
        task::WaitOptions::with_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(outcome.exit_status, "OK");
    assert_eq!(client.request_count(), 2);
}

#[tokio::test]
async fn a_lock_timeout_on_a_create_is_retried_because_pve_rejected_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(pve_error(
            500,
            "can't lock file '/var/lock/qemu-server/lock-1000.conf' - got timeout",
        ))
        .expect(3)
        .mount(&server)
        .await;
    let error = token_client(&server)
        .create_vm("pve1", &[("vmid".into(), "1000".into())])
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
}

#[tokio::test]
async fn a_missing_vm_is_confirmed_gone_with_one_config_read() {
    // The config is read through `…/pending` (current values and pending changes).
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .respond_with(ok(json!([
            { "id": "qemu/1001", "type": "qemu", "vmid": 1001, "node": "pve1", "name": "cp-2",
              "status": "running", "maxmem": 4294967296u64, "maxcpu": 2, "tags": "infraflux;prod" }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/pending"))
        .respond_with(pve_error(
            500,
            "Configuration file 'nodes/pve1/qemu-server/1000.conf' does not exist",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut gone = refreshed_vm_attributes();
    gone.insert("vmid".into(), json!(1000));
    let mut unchanged = refreshed_vm_attributes();
    unchanged.insert("name".into(), json!("cp-2"));
    let items = vec![
        ReadItem {
            resource: vm_ref(),
            id: "1000".into(),
            prior: gone,
        },
        ReadItem {
            resource: ResourceRef {
                address: "dev/w/proxmox_vm.cp-2".into(),
                kind: "proxmox_vm".into(),
            },
            id: "1001".into(),
            prior: unchanged.clone(),
        },
    ];
    let client = token_client(&server);
    let response = provider(client.clone())
        .read(ReadRequest {
            resources: items,
            deep: false,
        })
        .await
        .unwrap();
    assert_eq!(client.request_count(), 2);
    for result in response.results {
        match (result.address.as_str(), result.outcome) {
            ("dev/w/proxmox_vm.cp-1", ReadOutcome::Gone) => {}
            ("dev/w/proxmox_vm.cp-2", ReadOutcome::Found(attributes)) => {
                assert_eq!(attributes, unchanged)
            }
            (address, outcome) => panic!("{address}: {outcome:?}"),
        }
    }
}

#[tokio::test]
async fn update_sets_changed_keys_and_reboots_for_pending_ones() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
        .and(body_string("memory=8192"))
        .and(header("authorization", AUTH))
        .respond_with(ok(Value::Null))
        .expect(1)
        .mount(&server)
        .await;
    // Pending before the reboot; the whole config, applied, after it.
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/pending"))
        .respond_with(ok(
            json!([{ "key": "memory", "value": "4096", "pending": "8192" }]),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/pending"))
        .respond_with(ok(json!([
            { "key": "name", "value": "cp-1" }, { "key": "cores", "value": 2 },
            { "key": "memory", "value": "8192" },
            { "key": "scsi0", "value": "local-lvm:vm-1000-disk-1,discard=on,size=40G" },
            { "key": "net0", "value": "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,tag=10" },
            { "key": "ipconfig0", "value": "ip=10.0.0.10/24,gw=10.0.0.1" },
            { "key": "nameserver", "value": "10.0.0.1" },
            { "key": "tags", "value": "infraflux;prod" }, { "key": "agent", "value": "1" },
            { "key": "digest", "value": "0123abcd" }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let reboot = upid("pve1", "qmreboot", "1000");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/status/reboot"))
        .respond_with(ok(json!(reboot)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &reboot).await;
    let mut prior = refreshed_vm_attributes();
    prior.insert("vmid".into(), json!(1000));
    prior.insert("mac".into(), json!("BC:24:11:0A:0B:0C"));
    let mut planned = prior.clone();
    planned.insert("memory_mib".into(), json!(8192));
    let response = provider(token_client(&server))
        .update(UpdateRequest {
            resource: vm_ref(),
            id: "1000".into(),
            prior,
            planned: planned.clone(),
        })
        .await
        .unwrap();
    assert_eq!(response.attributes, planned);
}

#[tokio::test]
async fn delete_stops_then_purges() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/status/current"))
        .respond_with(ok(json!({ "status": "running" })))
        .mount(&server)
        .await;
    let stop = upid("pve1", "qmstop", "1000");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/status/stop"))
        .and(header("authorization", AUTH))
        .respond_with(ok(json!(stop)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &stop).await;
    let destroy = upid("pve1", "qmdestroy", "1000");
    Mock::given(method("DELETE"))
        .and(path("/api2/json/nodes/pve1/qemu/1000"))
        .and(query_param("purge", "1"))
        .and(query_param("destroy-unreferenced-disks", "1"))
        .and(header("authorization", AUTH))
        .respond_with(ok(json!(destroy)))
        .expect(1)
        .mount(&server)
        .await;
    task_ok(&server, &destroy).await;
    let mut prior = vm_attributes();
    prior.insert("vmid".into(), json!(1000));
    provider(token_client(&server))
        .delete(DeleteRequest {
            resource: vm_ref(),
            id: "1000".into(),
            prior,
            teardown: false,
        })
        .await
        .unwrap();
}

/// A server that accepts connections and closes them at once (a reset mid-request).
async fn resetting_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        // Bounded: the test's runtime ends this task; at most 20 connections.
        for _ in 0..20 {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (format!("http://{address}"), accepted)
}

#[tokio::test]
async fn a_reset_connection_is_retried_for_reads_but_not_for_creates() {
    let (uri, accepted) = resetting_server().await;
    let client = client_for(&uri, Credentials::api_token(TOKEN).unwrap(), 3);
    let error = client.version().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(!error.to_string().contains("5ecr3t"), "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    // A create might have happened before the reset: not sent again.
    let error = client
        .create_vm("pve1", &[("vmid".into(), "1000".into())])
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_retried_even_for_creates() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client = client_for(
        &format!("http://{address}"),
        Credentials::api_token(TOKEN).unwrap(),
        2,
    );
    let error = client
        .create_vm("pve1", &[("vmid".into(), "1000".into())])
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(
        error.message.starts_with("cannot connect"),
        "{}",
        error.message
    );
    assert_eq!(client.request_count(), 2);
}

#[tokio::test]
async fn typed_endpoints_send_exact_requests() {
    let server = MockServer::start().await;
    let mount = |m: Mock| {
        let server = &server;
        async move { m.expect(1).mount(server).await }
    };
    mount(
        Mock::given(method("GET"))
            .and(path("/api2/json/cluster/nextid"))
            .and(query_param("vmid", "1005"))
            .respond_with(ok(json!("1005"))),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/status"))
            .respond_with(ok(
                json!({ "uptime": 3600, "pveversion": "pve-manager/9.1.1" }),
            )),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/storage/local/content"))
            .and(query_param("content", "import"))
            .respond_with(ok(json!([
                { "volid": "local:import/talos.raw", "content": "import", "format": "raw", "size": 1288490188, "ctime": 1 }
            ]))),
    )
    .await;
    let shutdown = upid("pve1", "qmshutdown", "1000");
    mount(
        Mock::given(method("POST"))
            .and(path("/api2/json/nodes/pve1/qemu/1000/status/shutdown"))
            .and(body_string("timeout=60&forceStop=1"))
            .respond_with(ok(json!(shutdown))),
    )
    .await;
    mount(
        Mock::given(method("PUT"))
            .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
            .and(body_string("cores=4&delete=tags%2Cnameserver"))
            .respond_with(ok(Value::Null)),
    )
    .await;
    let config = upid("pve1", "qmconfig", "1000");
    mount(
        Mock::given(method("POST"))
            .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
            .and(body_string("net0=virtio%2Cbridge%3Dvmbr1"))
            .respond_with(ok(json!(config))),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
            .respond_with(ok(
                json!({ "cores": 4, "memory": "current=2048", "digest": "d1g357", "onboot": 1 }),
            )),
    )
    .await;
    // PVE before 8 answered a resize without a task.
    mount(
        Mock::given(method("PUT"))
            .and(path("/api2/json/nodes/pve1/qemu/1000/resize"))
            .and(body_string("disk=scsi0&size=%2B2G"))
            .respond_with(ok(Value::Null)),
    )
    .await;
    let delete = upid("pve1", "imgdel", "local");
    mount(
        Mock::given(method("DELETE"))
            .and(path(
                "/api2/json/nodes/pve1/storage/local/content/local:import%2Ftalos.raw",
            ))
            .respond_with(ok(json!(delete))),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path(format!("/api2/json/nodes/pve1/tasks/{delete}/log")))
            .and(query_param("start", "10"))
            .and(query_param("limit", "5"))
            .respond_with(ok(json!([{ "n": 11, "t": "removed" }]))),
    )
    .await;

    let client = token_client(&server);
    assert_eq!(client.next_id(Some(1005)).await.unwrap(), 1005);
    assert_eq!(
        client.node_status("pve1").await.unwrap()["uptime"],
        json!(3600)
    );
    let volumes = client
        .storage_content("pve1", "local", Some("import"))
        .await
        .unwrap();
    assert_eq!(volumes[0].volid, "local:import/talos.raw");
    assert_eq!(volumes[0].size, Some(1288490188));
    assert_eq!(
        client
            .shutdown_vm("pve1", 1000, Some(60), true)
            .await
            .unwrap()
            .as_str(),
        shutdown
    );
    client
        .set_vm_config(
            "pve1",
            1000,
            &[("cores".into(), "4".into())],
            &["tags".into(), "nameserver".into()],
        )
        .await
        .unwrap();
    let task = client
        .set_vm_config_async(
            "pve1",
            1000,
            &[("net0".into(), "virtio,bridge=vmbr1".into())],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(task.task_type, "qmconfig");
    let read = client.vm_config("pve1", 1000).await.unwrap();
    assert_eq!(read.get("cores"), Some("4"));
    assert_eq!(read.get("memory"), Some("current=2048"));
    assert_eq!(read.digest.as_deref(), Some("d1g357"));
    assert_eq!(read.get("digest"), None);
    assert_eq!(
        client
            .resize_disk("pve1", 1000, "scsi0", "+2G")
            .await
            .unwrap(),
        None
    );
    let task = client
        .delete_volume("pve1", "local", "local:import/talos.raw")
        .await
        .unwrap()
        .unwrap();
    let log = client.task_log(&task, 10, 5).await.unwrap();
    assert_eq!(log.lines, vec![(11, "removed".to_string())]);
}

#[tokio::test]
async fn a_same_named_vm_not_made_for_this_resource_is_a_conflict() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([{ "id": "qemu/1004", "type": "qemu", "vmid": 1004, "node": "pve2", "name": "cp-1" }])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve2/qemu/1004/config"))
        .respond_with(ok(json!({ "name": "cp-1", "description": "hand-made" })))
        .expect(1)
        .mount(&server)
        .await;
    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert!(
        error.message.contains("VMID 1004 on pve2"),
        "{}",
        error.message
    );
    let posts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 0, "nothing may be created next to it");
}

/// Placement's inventory: one `GET /cluster/resources` without a type filter, read into
/// hosts (free memory = maxmem - mem, offline nodes have none) and preflight problems.
#[tokio::test]
async fn inventory_is_one_untyped_cluster_listing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(wiremock::matchers::query_param_is_missing("type"))
        .and(header("authorization", AUTH))
        .respond_with(ok(json!([
            {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online",
             "maxmem": 8589934592u64, "mem": 2147483648u64},
            {"id": "node/pve2", "type": "node", "node": "pve2", "status": "offline"},
            {"id": "storage/pve1/local", "type": "storage", "node": "pve1",
             "storage": "local", "content": "iso,vztmpl,backup"},
            {"id": "qemu/100", "type": "qemu", "node": "pve1", "vmid": 100, "name": "x"},
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(token_client(&server));
    let image = infraflux_provider::InventoryItem {
        resource: ResourceRef {
            address: "dev/w/proxmox_image.talos-pve1".into(),
            kind: "proxmox_image".into(),
        },
        desired: json!({"node": "pve1", "storage": "local"})
            .as_object()
            .unwrap()
            .clone(),
    };
    let inventory = p
        .inventory(infraflux_provider::InventoryRequest {
            resources: vec![image],
        })
        .await
        .unwrap()
        .expect("proxmox has an inventory");
    assert_eq!(inventory.scope, format!("{}/api2/json", server.uri()));
    let hosts: Vec<(&str, bool, u64)> = inventory
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.online, h.memory_free))
        .collect();
    assert_eq!(hosts, [("pve1", true, 6 << 30), ("pve2", false, 0)]);
    assert_eq!(inventory.problems.len(), 1);
    assert!(
        inventory.problems[0]
            .1
            .detail
            .as_deref()
            .unwrap()
            .contains("pvesm set local --content iso,vztmpl,backup,import")
    );
}

/// An image larger than `disk_gib`: PVE refuses to shrink the boot disk, the create
/// fails with the sizes and the fix, and the VM is never started.
#[tokio::test]
async fn an_image_larger_than_the_disk_fails_the_create_and_is_not_started() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([])))
        .mount(&server)
        .await;
    let create = upid("pve1", "qmcreate", "1000");
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu"))
        .respond_with(ok(json!(create)))
        .mount(&server)
        .await;
    task_ok(&server, &create).await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/config"))
        .respond_with(ok(json!({
            "name": "cp-1", "cores": 2, "memory": "4096",
            "scsi0": "local-lvm:vm-1000-disk-1,discard=on,size=60G",
            "net0": "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,tag=10",
        })))
        .mount(&server)
        .await;
    let resize = upid("pve1", "resize", "1000");
    Mock::given(method("PUT"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/resize"))
        .respond_with(ok(json!(resize)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{resize}/status")))
        .respond_with(ok(json!({
            "status": "stopped", "exitstatus": "shrinking disks is not supported", "upid": resize
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{resize}/log")))
        .respond_with(ok(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/1000/status/start"))
        .respond_with(ok(json!(upid("pve1", "qmstart", "1000"))))
        .expect(0)
        .mount(&server)
        .await;

    let error = provider(token_client(&server))
        .create(CreateRequest {
            resource: vm_ref(),
            planned: vm_attributes(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(
        error
            .message
            .contains("the imported image (60G) is larger than disk_gib (40G)"),
        "{error}"
    );
    assert!(error.message.contains("left stopped"), "{error}");
}
