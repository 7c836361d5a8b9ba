//! A real Kubernetes control plane for tests, in the envtest shape: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok (fake kubelets) built from the official
//! Go modules by
//! `.ci/counterparts`, on 127.0.0.1 with ports the kernel chose, TLS from certificates
//! made here (rcgen), an admin client certificate (`O=system:masters`) and a kubeconfig.
//!
//! One control plane per test binary ([`shared`]), never dropped: a small `sh` watchdog
//! holds the processes' ids and reads our pipe. When this process exits — normally, by a
//! panic, or SIGKILLed — the pipe closes, and the watchdog stops them (TERM, then KILL)
//! and removes the directory.
//!
//! The controller manager turns Deployments into ReplicaSets and Pods, the scheduler binds
//! them to the fake node [`FAKE_NODE`] (in the control-plane role), and kwok makes them
//! Running and Ready there, and Job pods complete, so `Available` and `Complete` mean what
//! they mean on a real cluster.
//!
//! Every test binary that needs a cluster uses this one starter (the root crate's tests,
//! the Kubernetes provider's, the lab's). Tests of one binary share the control plane:
//! each works in namespaces and names of its own, or takes [`ControlPlane::exclusive`]
//! when it changes what others would see (nodes, cluster-wide objects).
//! Without the binaries: `skipped: <why>` and `None`, or a panic when
//! `INFRAFLUX_REQUIRE_COUNTERPARTS` is set.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::counterparts;
use crate::endpoint::Endpoint;

/// How long etcd + kube-apiserver may take to answer `/readyz` (2 cores, busy with builds).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the controller manager and kwok may take to do their first work.
const WORKING_TIMEOUT: Duration = Duration::from_secs(90);

/// The fake node kwok manages (it carries kwok's annotation).
pub const FAKE_NODE: &str = "kwok-node-0";
const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// [`ControlPlane::exclusive`]'s hold, released when dropped. Async tests keep it across
/// `.await`s on purpose: each test runs its own runtime on its own thread, so waiting
/// for it blocks only the tests that want it too.
pub struct Exclusive(#[allow(dead_code)] MutexGuard<'static, ()>);

pub struct ControlPlane {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// An admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    pub ca_pem: String,
    /// The admin client certificate and its key, PEM.
    pub client_pem: String,
    pub client_key_pem: String,
    /// `kube-apiserver`'s `gitVersion`, e.g. `v1.34.4`.
    pub version: String,
    /// `etcd Version: 3.6.4`.
    pub etcd_version: String,
    /// `kwok version v0.7.0`.
    pub kwok_version: String,
    directory: PathBuf,
    /// Dropping it closes the pipe: the watchdog stops the processes.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    /// The processes by name, to notice one that exited while starting.
    processes: Mutex<Vec<(String, Child)>>,
}

/// The control plane shared by this test binary, started on first use; `None` (with the
/// reason printed) when the counterparts are missing and not required.
pub fn shared() -> Option<&'static ControlPlane> {
    // A failed start is kept too: every test reports it, none starts another.
    static PLANE: OnceLock<Option<Result<ControlPlane, String>>> = OnceLock::new();
    let plane = PLANE.get_or_init(|| {
        let binaries = match Binaries::find() {
            Ok(binaries) => binaries,
            Err(why) => {
                if counterparts::required() {
                    return Some(Err(format!("{why}, and {} is set", counterparts::REQUIRE_VAR)));
                }
                return counterparts::skip(&why);
            }
        };
        let started = Instant::now();
        // On a thread of its own: the start blocks on a runtime of its own, which a
        // caller inside an async test (`#[tokio::test]`) could not do on its thread.
        let plane = match std::thread::spawn(move || ControlPlane::start(&binaries))
            .join()
            .unwrap_or_else(|_| Err("the control plane's start panicked".into()))
        {
            Ok(plane) => plane,
            Err(error) => return Some(Err(error)),
        };
        // Past the test harness's capture, so that the CI log shows what ran.
        let line = format!(
            "control plane: kube-apiserver {} (+ controller-manager, scheduler), {}, {}, at {}, ready in {:.1}s\n",
            plane.version,
            plane.etcd_version,
            plane.kwok_version,
            plane.url,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        Some(Ok(plane))
    });
    match plane.as_ref()? {
        Ok(plane) => Some(plane),
        Err(error) => panic!("{error}"),
    }
}

struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kwok: PathBuf,
}

impl Binaries {
    fn find() -> Result<Binaries, String> {
        let mut kube = counterparts::find(
            counterparts::KUBE_BIN_DIR,
            &[
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ],
        )?;
        let scheduler = kube.pop().unwrap();
        let controller_manager = kube.pop().unwrap();
        let apiserver = kube.pop().unwrap();
        let etcd = counterparts::find(counterparts::ETCD_BIN, &[])?.remove(0);
        let kwok = counterparts::find(counterparts::KWOK_BIN, &[])?.remove(0);
        Ok(Binaries {
            etcd,
            apiserver,
            controller_manager,
            scheduler,
            kwok,
        })
    }

    fn first_line(binary: &Path, argument: &str) -> String {
        Command::new(binary)
            .arg(argument)
            .output()
            .map(|output| {
                let text = String::from_utf8_lossy(&output.stdout).to_string();
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
    }

    fn etcd_version(&self) -> String {
        // "etcd Version: 3.6.4"
        Binaries::first_line(&self.etcd, "--version")
    }

    fn kwok_version(&self) -> String {
        // "kwok version v0.7.0 go1.26.8 (linux/amd64)"
        let line = Binaries::first_line(&self.kwok, "--version");
        line.split(" go").next().unwrap_or(&line).to_string()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

struct Certificates {
    ca: String,
    ca_key: String,
    serving: (String, String),
    admin: (String, String),
    /// The service-account signing key (PKCS#8) and its public key, PEM.
    service_account: (String, String),
}

fn certificates() -> Certificates {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_key_pem = ca_key.serialize_pem();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "infraflux-test-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving = (
        params.signed_by(&key, &ca).unwrap().pem(),
        key.serialize_pem(),
    );

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "admin");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin = (
        params.signed_by(&key, &ca).unwrap().pem(),
        key.serialize_pem(),
    );

    Certificates {
        ca: ca.pem(),
        ca_key: ca_key_pem,
        serving,
        admin,
        service_account: {
            let key = KeyPair::generate().unwrap();
            (key.serialize_pem(), key.public_key_pem())
        },
    }
}

/// The watchdog: reads process ids, one a line, until our end of the pipe closes; then
/// TERM, up to 10 s, KILL, and the directory goes.
const WATCHDOG: &str = r#"dir="$1"; pids=""
while read -r pid; do pids="$pids $pid"; done
[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt 100 ]; do
  alive=""
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
  [ -z "$alive" ] && break
  sleep 0.1; i=$((i + 1))
done
[ -n "$alive" ] && kill -KILL $alive 2>/dev/null
rm -rf "$dir""#;

impl ControlPlane {
    fn start(binaries: &Binaries) -> Result<ControlPlane, String> {
        // A port found free can be taken before a server binds it: try again with others.
        let mut last = String::new();
        for _ in 0..3 {
            match ControlPlane::start_once(binaries) {
                Ok(plane) => return Ok(plane),
                Err(text) if text.contains("address already in use") => last = text,
                Err(text) => return Err(text),
            }
        }
        Err(last)
    }

    fn start_once(binaries: &Binaries) -> Result<ControlPlane, String> {
        // /tmp, not $TMPDIR: short paths (etcd's unix sockets) and easy to find by hand.
        let directory = tempfile::Builder::new()
            .prefix("infraflux-kube-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a directory for the control plane: {e}"))?
            .keep();
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&directory)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        let pipe = watchdog.stdin.take().unwrap();
        let mut plane = ControlPlane {
            url: String::new(),
            kubeconfig: directory.join("kubeconfig"),
            ca_pem: String::new(),
            client_pem: String::new(),
            client_key_pem: String::new(),
            version: String::new(),
            etcd_version: binaries.etcd_version(),
            kwok_version: binaries.kwok_version(),
            directory: directory.clone(),
            watchdog: Mutex::new(Some((watchdog, pipe))),
            processes: Mutex::new(Vec::new()),
        };
        plane.boot(binaries)?;
        Ok(plane)
    }

    /// Start `program` with its output in `<directory>/<name>.log`, under the watchdog.
    fn spawn(&self, name: &str, program: &Path, arguments: &[String]) -> Result<(), String> {
        let log = std::fs::File::create(self.directory.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut watchdog = self.watchdog.lock().unwrap();
        let (_, pipe) = watchdog.as_mut().unwrap();
        writeln!(pipe, "{}", child.id()).map_err(|e| e.to_string())?;
        self.processes
            .lock()
            .unwrap()
            .push((name.to_string(), child));
        Ok(())
    }

    /// The first process that exited, with its status, if one did.
    fn exited(&self) -> Option<String> {
        self.processes
            .lock()
            .unwrap()
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name} exited ({status})")),
                _ => None,
            })
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.directory.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn logs(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|name| {
                let text = self.log(name);
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- {name}.log (last 30 lines) ---\n{tail}\n")
            })
            .collect()
    }

    fn write(&self, name: &str, contents: &str) -> Result<String, String> {
        let path = self.directory.join(name);
        std::fs::write(&path, contents).map_err(|e| e.to_string())?;
        Ok(path.display().to_string())
    }

    fn boot(&mut self, binaries: &Binaries) -> Result<(), String> {
        let certificates = certificates();
        let ca = self.write("ca.crt", &certificates.ca)?;
        let ca_key = self.write("ca.key", &certificates.ca_key)?;
        let serving_crt = self.write("apiserver.crt", &certificates.serving.0)?;
        let serving_key = self.write("apiserver.key", &certificates.serving.1)?;
        let service_account_key =
            self.write("service-account.key", &certificates.service_account.0)?;
        // kube-apiserver reads public keys (or PKCS#1/SEC1 private keys) to verify tokens.
        let service_account_public =
            self.write("service-account.pub", &certificates.service_account.1)?;
        self.ca_pem = certificates.ca.clone();
        self.client_pem = certificates.admin.0.clone();
        self.client_key_pem = certificates.admin.1.clone();

        let (etcd_client, etcd_peer, apiserver_port) = (free_port(), free_port(), free_port());
        let data = self.directory.join("etcd");
        let etcd = |port: u16| format!("http://127.0.0.1:{port}");
        self.spawn(
            "etcd",
            &binaries.etcd,
            &[
                "--name=default".into(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={}", etcd(etcd_client)),
                format!("--advertise-client-urls={}", etcd(etcd_client)),
                format!("--listen-peer-urls={}", etcd(etcd_peer)),
                format!("--initial-advertise-peer-urls={}", etcd(etcd_peer)),
                format!("--initial-cluster=default={}", etcd(etcd_peer)),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;

        self.url = format!("https://127.0.0.1:{apiserver_port}");
        self.spawn(
            "kube-apiserver",
            &binaries.apiserver,
            &[
                format!("--etcd-servers={}", etcd(etcd_client)),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={apiserver_port}"),
                format!("--cert-dir={}", self.directory.join("certs").display()),
                format!("--tls-cert-file={serving_crt}"),
                format!("--tls-private-key-file={serving_key}"),
                format!("--client-ca-file={ca}"),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!("--service-account-key-file={service_account_public}"),
                format!("--service-account-signing-key-file={service_account_key}"),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                "--endpoint-reconciler-type=none".into(),
                "--v=1".into(),
            ],
        )?;

        let kubeconfig = kubeconfig(
            &self.url,
            &certificates.ca,
            &certificates.admin.0,
            &certificates.admin.1,
        );
        self.write("kubeconfig", &kubeconfig)?;

        let client = self.client();
        let runtime = runtime();
        // Bounded: /readyz is 200 once etcd is reached and the post-start hooks are done.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = runtime.block_on(async {
                let response = client.get(format!("{}/readyz", self.url)).send().await;
                matches!(response, Ok(r) if r.status().is_success())
            });
            if ready {
                break;
            }
            let exited = self.exited();
            if exited.is_some() || Instant::now() > deadline {
                let why = exited.unwrap_or(format!("not ready within {READY_TIMEOUT:?}"));
                return Err(format!(
                    "kube-apiserver did not start: {why}\n{}",
                    self.logs(&["etcd", "kube-apiserver"])
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let version = runtime
            .block_on(self.get(&client, "/version"))
            .ok_or("GET /version failed")?;
        self.version = version["gitVersion"].as_str().unwrap_or("?").to_string();

        let kubeconfig_path = self.kubeconfig.display().to_string();
        self.spawn(
            "kube-controller-manager",
            &binaries.controller_manager,
            &[
                format!("--kubeconfig={kubeconfig_path}"),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=false".into(),
                format!("--service-account-private-key-file={service_account_key}"),
                format!("--root-ca-file={ca}"),
                format!("--cluster-signing-cert-file={ca}"),
                format!("--cluster-signing-key-file={ca_key}"),
                // No HTTPS of its own: nothing here scrapes it, and no port to collide.
                "--secure-port=0".into(),
                // kwok renews its nodes' leases late when the machine is loaded (two
                // cores shared by many test binaries): with the default 50 s grace the
                // node lifecycle controller saw nodes vanish for a moment and marked every
                // pod on them not Ready for good (kwok makes a pod Ready only once, when
                // it gives it an IP). No test here is about a node going away.
                "--node-monitor-grace-period=10m".into(),
                "--v=1".into(),
            ],
        )?;
        self.spawn(
            "kube-scheduler",
            &binaries.scheduler,
            &[
                format!("--kubeconfig={kubeconfig_path}"),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
        )?;
        // Its own configuration, not the ~/.kwok/kwok.yaml of whoever runs the tests.
        let kwok_config = self.write(
            "kwok.yaml",
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n",
        )?;
        self.spawn(
            "kwok",
            &binaries.kwok,
            &[
                format!("--kubeconfig={kubeconfig_path}"),
                format!("--config={kwok_config}"),
                "--manage-all-nodes=false".into(),
                format!("--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake"),
                "--cidr=10.0.0.1/24".into(),
                "--node-ip=10.0.0.1".into(),
            ],
        )?;

        // Working: the controller manager made the `default` service account, and kwok
        // made the fake node Ready.
        self.create(&runtime, "/api/v1/nodes", &control_plane_node(FAKE_NODE))?;
        let deadline = Instant::now() + WORKING_TIMEOUT;
        loop {
            let (account, node) = runtime.block_on(async {
                let account = self
                    .get(
                        &client,
                        "/api/v1/namespaces/default/serviceaccounts/default",
                    )
                    .await;
                let node = self
                    .get(&client, &format!("/api/v1/nodes/{FAKE_NODE}"))
                    .await;
                (account, node)
            });
            let node_ready = node.is_some_and(|node| {
                node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if account.is_some() && node_ready {
                return Ok(());
            }
            let exited = self.exited();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "the control plane did not start working ({}; default service account: {}, \
                     node {FAKE_NODE} Ready: {node_ready}):\n{}",
                    exited.unwrap_or(format!("not within {WORKING_TIMEOUT:?}")),
                    account.is_some(),
                    self.logs(&["kube-controller-manager", "kube-scheduler", "kwok"])
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Raw requests as the admin ([`Endpoint`]).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.url.clone(), self.client())
    }

    /// The admin kubeconfig's text (it holds the client key: never print it).
    pub fn kubeconfig_text(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig).expect("the control plane's kubeconfig")
    }

    /// Held by a test for as long as it changes what the other tests of its binary
    /// would see (nodes, cluster-scoped objects, the platform everyone applies), so
    /// that those tests run one after the other. A test that failed while holding it
    /// does not stop the others.
    pub fn exclusive(&self) -> Exclusive {
        static LOCK: Mutex<()> = Mutex::new(());
        Exclusive(LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Register another node that kwok runs (Ready within moments, pods on it Running).
    pub async fn add_node(&self, name: &str) -> Result<(), String> {
        let answer = self
            .endpoint()
            .post("/api/v1/nodes", &fake_node(name))
            .await;
        if answer.is_success() || answer.status == 409 {
            Ok(())
        } else {
            Err(format!("POST /api/v1/nodes ({name}): {answer}"))
        }
    }

    /// An HTTP client that trusts the control plane's CA and presents the admin
    /// certificate.
    pub fn client(&self) -> reqwest::Client {
        let identity = reqwest::Identity::from_pem(
            format!("{}{}", self.client_pem, self.client_key_pem).as_bytes(),
        )
        .expect("the admin certificate and key");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .identity(identity)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    }

    /// GET `path`; `None` on 404 or any error.
    pub async fn get(&self, client: &reqwest::Client, path: &str) -> Option<Value> {
        let response = client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        serde_json::from_str(&response.text().await.ok()?).ok()
    }

    fn create(
        &self,
        runtime: &tokio::runtime::Runtime,
        path: &str,
        body: &Value,
    ) -> Result<(), String> {
        let client = self.client();
        runtime.block_on(async {
            let response = client
                .post(format!("{}{path}", self.url))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| format!("POST {path}: {e}"))?;
            let status = response.status();
            if status.is_success() || status.as_u16() == 409 {
                Ok(())
            } else {
                Err(format!(
                    "POST {path}: {status}: {}",
                    response.text().await.unwrap_or_default()
                ))
            }
        })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Closing the pipe tells the watchdog to stop the processes and clean up.
        if let Some((mut watchdog, pipe)) = self.watchdog.lock().unwrap().take() {
            drop(pipe);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = watchdog.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A current-thread runtime for the blocking helpers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn kubeconfig(url: &str, ca: &str, certificate: &str, key: &str) -> String {
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    serde_json::to_string_pretty(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": url, "certificate-authority-data": encode(ca)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": encode(certificate),
            "client-key-data": encode(key)}}],
        "contexts": [{"name": "admin", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "admin",
    }))
    .unwrap()
}

/// [`fake_node`] in the control-plane role (the label a Talos control-plane node
/// carries, without its taint): what must run there (Cilium's install Job, which requires
/// that label) is scheduled, and everything else too.
pub fn control_plane_node(name: &str) -> Value {
    let mut node = fake_node(name);
    node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
    node
}

/// A node kwok manages: its annotation, a kwok taint-free spec and room for pods.
pub fn fake_node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    })
}
