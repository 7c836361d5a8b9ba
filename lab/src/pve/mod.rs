//! A Proxmox VE API simulator: enough of PVE 9 for the real `proxmox` provider to run
//! unchanged against it, over HTTPS with a self-signed certificate (clients pin its
//! fingerprint) and API-token authentication.
//!
//! It serves exactly the endpoints the provider uses ([`schema`], from PVE's own API
//! schema), with PVE's shapes: the `data` envelope, UPIDs and task status and log for
//! writes, `500 … does not exist` for a missing VM, `400 Parameter verification failed.`
//! with per-field `errors` for an unknown or mistyped parameter, property strings with
//! allocated volumes and generated MACs, tags sorted, a `digest` on config reads, node
//! entries with `maxmem`/`mem` in `/cluster/resources`. It simulates, it does not
//! emulate: disks are entries in a list, downloads fetch nothing, and what runs in a VM
//! is whatever the caller's [`Machines`] starts when the VM starts (in `infraflux lab`,
//! its `src/lab/machines.rs`).

pub mod api;
pub mod model;
pub mod params;
pub mod property;
pub mod schema;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::{Booted, Machines, Simulator};
pub use model::{Cluster, ClusterOptions};

/// How long a TLS handshake and one connection may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
const CONNECTION_LIMIT: Duration = Duration::from_secs(300);
/// Request bodies larger than this are refused (the provider's forms are small).
const BODY_LIMIT: usize = 1024 * 1024;

/// A running simulator; stopped when dropped.
pub struct PveSimulator {
    address: SocketAddr,
    fingerprint: String,
    token: String,
    simulator: Arc<Simulator>,
    shutdown: CancellationToken,
}

impl Drop for PveSimulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl PveSimulator {
    /// Listen on `address` (loopback only; port 0 picks one).
    pub async fn start(
        address: SocketAddr,
        options: ClusterOptions,
        machines: Arc<dyn Machines>,
    ) -> std::io::Result<Self> {
        if !address.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the PVE simulator listens on loopback addresses only",
            ));
        }
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (config, fingerprint) = tls_config(address)?;
        let token_id = "root@pam!lab";
        let secret = uuid::Uuid::new_v4().to_string();
        let simulator = Arc::new(Simulator::new(
            Cluster::new(options),
            machines,
            token_id,
            &secret,
        ));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            simulator.clone(),
            shutdown.clone(),
        ));
        Ok(PveSimulator {
            address,
            fingerprint,
            token: format!("{token_id}={secret}"),
            simulator,
            shutdown,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The SHA-256 fingerprint of its certificate, `AB:CD:…`, for `proxmox.tls`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `root@pam!lab=SECRET`, for `proxmox.token`.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn simulator(&self) -> &Arc<Simulator> {
        &self.simulator
    }
}

/// A fresh self-signed certificate for the listening address, and its fingerprint.
fn tls_config(address: SocketAddr) -> std::io::Result<(rustls::ServerConfig, String)> {
    let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(std::io::Error::other)?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(address.ip()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "infraflux-lab PVE");
    let certificate = params.self_signed(&key).map_err(std::io::Error::other)?;
    let der = certificate.der().clone();
    let fingerprint = fingerprint_of(der.as_ref());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, fingerprint))
}

/// `AB:CD:…`: the SHA-256 of a DER certificate as `proxmox.tls.fingerprint` takes it
/// (the format of `infraflux_proxmox::fingerprint_of`; the tests pin it with that client).
fn fingerprint_of(certificate: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(certificate)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    simulator: Arc<Simulator>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let simulator = simulator.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await
            else {
                return;
            };
            let service = service_fn(move |request| {
                let simulator = simulator.clone();
                async move { Ok::<_, Infallible>(answer(&simulator, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_LIMIT, connection) => {}
            }
        });
    }
}

async fn answer(simulator: &Arc<Simulator>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match http_body_util::Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let answer = simulator
        .handle(&method, &path, &query, &body, authorization.as_deref())
        .await;
    let mut response = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(Full::new(Bytes::from(answer.body.to_string())))
        .expect("a valid response");
    // PVE puts its message in the reason phrase; clients show it.
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(answer.reason.into_bytes()) {
        response.extensions_mut().insert(reason);
    }
    response
}
