//! The SSH image upload against a real OpenSSH server (Debian's `openssh-server`),
//! started by each test on 127.0.0.1 with a throwaway host key and user key in a
//! temporary directory.
//!
//! Without `sshd` (installed by `.ci/run`) each test prints why it is skipped.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infraflux_proxmox::upload::{HostKeyCheck, SshTarget, Upload, UploadError, upload};
use sha2::{Digest, Sha256};

const SSHD: &str = "/usr/sbin/sshd";
const START_TIMEOUT: Duration = Duration::from_secs(15);

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Where uploads go.
    import: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "infraflux-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Set (to anything) to fail instead of skipping when sshd is not installed; CI sets it
/// (`.ci/run`).
const REQUIRE_VAR: &str = "INFRAFLUX_REQUIRE_SSHD";

/// Start sshd, or say why the test is skipped (a failure when [`REQUIRE_VAR`] is set).
fn start() -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        let reason = format!("{SSHD} not found (apt-get install openssh-server; .ci/run does)");
        if std::env::var_os(REQUIRE_VAR).is_some() {
            panic!("sshd is required ({REQUIRE_VAR} is set): {reason}");
        }
        eprintln!("skipped: {reason}");
        return None;
    }
    // Debian's sshd insists on its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    let user_key = dir.path().join("user_key");
    keygen(&host_key);
    keygen(&user_key);
    std::fs::copy(
        dir.path().join("user_key.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let import = dir.path().join("import");
    std::fs::create_dir(&import).unwrap();
    let port = free_port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin yes\nStrictModes no\nSubsystem sftp internal-sftp\n",
            host = host_key.display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sshd starts");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut errors = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut errors);
            panic!("sshd exited ({status}) before listening: {errors}");
        }
        assert!(
            Instant::now() < deadline,
            "sshd did not listen within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Sshd {
        child,
        port,
        dir,
        import,
    })
}

impl Sshd {
    fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap()
    }

    fn known_hosts(&self, public_key: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("known_hosts-{}", public_key.len()));
        let mut fields = public_key.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(&path, format!("[127.0.0.1]:{} {kind} {key}\n", self.port)).unwrap();
        path
    }

    fn target(&self, host_key: HostKeyCheck) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: user(),
            private_key_file: self.dir.path().join("user_key"),
            host_key,
            timeout: Duration::from_secs(10),
        }
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.import)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn image(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn request(sshd: &Sshd, bytes: Vec<u8>, expected: Option<String>) -> Upload {
    Upload {
        source: Box::new(std::io::Cursor::new(bytes)),
        directory: sshd.import.display().to_string(),
        filename: "talos-v1.13.9-ce4c9805-nocloud-amd64.raw".into(),
        expected_sha256: expected,
    }
}

#[tokio::test]
async fn an_upload_lands_complete_under_its_final_name() {
    let Some(sshd) = start() else { return };
    let known_hosts = sshd.known_hosts(&sshd.host_public_key());
    let bytes = image(3 * 1024 * 1024 + 17);
    let uploaded = upload(
        sshd.target(HostKeyCheck::KnownHosts(known_hosts)),
        request(&sshd, bytes.clone(), Some(sha256(&bytes))),
    )
    .await
    .expect("the upload succeeds");
    assert_eq!(uploaded.bytes, bytes.len() as u64);
    assert_eq!(uploaded.sha256, sha256(&bytes));
    assert_eq!(sshd.files(), ["talos-v1.13.9-ce4c9805-nocloud-amd64.raw"]);
    let landed =
        std::fs::read(sshd.import.join("talos-v1.13.9-ce4c9805-nocloud-amd64.raw")).unwrap();
    assert!(landed == bytes, "the stored image differs from the source");
}

#[tokio::test]
async fn a_pinned_fingerprint_is_accepted_and_a_wrong_one_refused() {
    let Some(sshd) = start() else { return };
    let output = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(sshd.dir.path().join("host_key.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    upload(
        sshd.target(HostKeyCheck::Fingerprint(fingerprint)),
        request(&sshd, image(1000), None),
    )
    .await
    .expect("the pinned key is accepted");

    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".to_string();
    let error = upload(
        sshd.target(HostKeyCheck::Fingerprint(wrong)),
        request(&sshd, image(1000), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, UploadError::HostKeyMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_or_unknown_host_key_is_refused_before_anything_is_written() {
    let Some(sshd) = start() else { return };
    // Another key for the same [host]:port: a changed or impostor key.
    let other = sshd.dir.path().join("other_host_key");
    keygen(&other);
    let other_public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let known_hosts = sshd.known_hosts(&other_public);
    let error = upload(
        sshd.target(HostKeyCheck::KnownHosts(known_hosts.clone())),
        request(&sshd, image(1000), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, UploadError::HostKeyMismatch { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("does not match"), "{message}");
    assert!(
        message.contains(&known_hosts.display().to_string()),
        "{message}"
    );

    // A known_hosts file that does not list the node at all.
    let empty = sshd.dir.path().join("known_hosts-empty");
    std::fs::write(&empty, "").unwrap();
    let error = upload(
        sshd.target(HostKeyCheck::KnownHosts(empty)),
        request(&sshd, image(1000), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, UploadError::UnknownHostKey { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("refusing to trust an unknown key"),
        "{message}"
    );
    assert!(message.contains("SHA256:"), "{message}");
    assert!(sshd.files().is_empty(), "{:?}", sshd.files());
}

/// A source that fails part-way, like a broken download or a disk error.
struct Failing {
    remaining: usize,
}

impl Read for Failing {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Err(std::io::Error::other("the source broke off"));
        }
        let n = buffer.len().min(self.remaining);
        buffer[..n].fill(7);
        self.remaining -= n;
        Ok(n)
    }
}

#[tokio::test]
async fn a_failed_or_interrupted_upload_leaves_nothing_under_the_final_name() {
    let Some(sshd) = start() else { return };
    let known_hosts = sshd.known_hosts(&sshd.host_public_key());

    // Interrupted: the source breaks off after 2 MiB.
    let error = upload(
        sshd.target(HostKeyCheck::KnownHosts(known_hosts.clone())),
        Upload {
            source: Box::new(Failing {
                remaining: 2 * 1024 * 1024,
            }),
            ..request(&sshd, Vec::new(), None)
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, UploadError::Source { .. }), "{error:?}");
    assert!(sshd.files().is_empty(), "left behind: {:?}", sshd.files());

    // Failed: the image is not the one expected.
    let bytes = image(100_000);
    let error = upload(
        sshd.target(HostKeyCheck::KnownHosts(known_hosts)),
        request(&sshd, bytes, Some("0".repeat(64))),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, UploadError::Checksum { .. }), "{error:?}");
    assert!(error.to_string().contains("nothing was kept"), "{error}");
    assert!(sshd.files().is_empty(), "left behind: {:?}", sshd.files());
}

/// The provider with `upload` set: PVE (wiremock) is asked about the storage and lists
/// the volume once it is there; the file itself goes over SSH, never `download-url`.
#[tokio::test]
async fn the_provider_uploads_the_image_over_ssh_instead_of_downloading() {
    use infraflux_provider::{CreateRequest, Provider, ResourceRef};
    use infraflux_proxmox::{Client, ClientConfig, Credentials, ProviderOptions, ProxmoxProvider};
    use serde_json::json;
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let Some(sshd) = start() else { return };
    let known_hosts = sshd.known_hosts(&sshd.host_public_key());
    let filename = "talos-v1.13.9-ce4c9805.raw";
    let source = tempfile::tempdir().unwrap();
    let bytes = image(512 * 1024 + 3);
    std::fs::write(source.path().join(filename), &bytes).unwrap();

    let server = MockServer::start().await;
    let ok =
        |data: serde_json::Value| ResponseTemplate::new(200).set_body_json(json!({"data": data}));
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/storage/local/status"))
        .respond_with(ok(
            json!({"content": "iso,import", "type": "dir", "active": 1, "enabled": 1}),
        ))
        .mount(&server)
        .await;
    let content = "/api2/json/nodes/pve1/storage/local/content";
    // Before the upload: nothing; after it: the volume.
    Mock::given(method("GET"))
        .and(path(content))
        .and(query_param("content", "import"))
        .respond_with(ok(json!([])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(content))
        .and(query_param("content", "import"))
        .respond_with(ok(
            json!([{"volid": format!("local:import/{filename}"), "content": "import"}]),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/storage/local/download-url"))
        .respond_with(ok(json!(null)))
        .expect(0)
        .mount(&server)
        .await;

    let client = Client::new(ClientConfig::new(
        server.uri().parse().unwrap(),
        Credentials::api_token("root@pam!ci=s3cr3t").unwrap(),
        infraflux_proxmox::TlsVerification::System,
    ))
    .unwrap();
    let provider = ProxmoxProvider::new(client, ProviderOptions::default());
    let planned = json!({
        "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
        "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        "url": "https://factory.talos.dev/image/ce4c9805/v1.13.9/nocloud-amd64.raw",
        "filename": filename, "checksum": sha256(&bytes),
        "upload": {
            "method": "ssh", "user": user(), "port": sshd.port,
            "private_key_file": sshd.dir.path().join("user_key"),
            "known_hosts": known_hosts, "hosts": {"pve1": "127.0.0.1"},
            "source_dir": source.path(), "import_dir": sshd.import,
        },
    });
    let created = provider
        .create(CreateRequest {
            resource: ResourceRef {
                address: "dev/w/proxmox_image.talos-pve1".into(),
                kind: "proxmox_image".into(),
            },
            planned: planned.as_object().unwrap().clone(),
            replacing: false,
        })
        .await
        .expect("the image is uploaded");
    assert_eq!(created.id, format!("pve1/local:import/{filename}"));
    assert_eq!(
        created.attributes["volume"],
        json!(format!("local:import/{filename}"))
    );
    assert_eq!(sshd.files(), [filename]);
    assert!(std::fs::read(sshd.import.join(filename)).unwrap() == bytes);

    // A missing local file says where to put it and where it comes from.
    std::fs::remove_file(source.path().join(filename)).unwrap();
    let mut other = planned.clone();
    other["filename"] = json!("talos-other.raw");
    other["checksum"] = serde_json::Value::Null;
    let error = provider
        .create(CreateRequest {
            resource: ResourceRef {
                address: "dev/w/proxmox_image.talos-pve1".into(),
                kind: "proxmox_image".into(),
            },
            planned: other.as_object().unwrap().clone(),
            replacing: false,
        })
        .await
        .unwrap_err();
    assert!(error.message.contains("is not at"), "{}", error.message);
    assert!(
        error.message.contains("factory.talos.dev"),
        "{}",
        error.message
    );
}
