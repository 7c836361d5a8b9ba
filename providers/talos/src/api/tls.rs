//! TLS for the Talos API: rustls (ring) under tonic, through our own connector so that
//! maintenance mode can skip server verification, which tonic's TLS options cannot.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// How to authenticate a connection to a node.
#[derive(Clone)]
pub enum Credentials {
    /// Maintenance mode: the node's self-signed certificate is not checked and no client
    /// certificate is sent. Use only before the node has a config.
    Insecure,
    /// Configured mode: the server must chain to the Talos API CA, and we present the
    /// admin client certificate.
    Mutual(ClientIdentity),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Insecure => f.write_str("Insecure"),
            Credentials::Mutual(_) => f.write_str("Mutual(..)"),
        }
    }
}

/// The Talos API CA and an admin client certificate, all PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub ca_crt: String,
    pub client_crt: String,
    pub client_key: String,
}

impl ClientIdentity {
    pub fn from_secrets(secrets: &crate::secrets::ClusterSecrets) -> Self {
        ClientIdentity {
            ca_crt: secrets.os_ca.crt.clone(),
            client_crt: secrets.admin.crt.clone(),
            client_key: secrets.admin.key.clone(),
        }
    }
}

/// The rustls crypto provider of every Talos connection (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every `CERTIFICATE` block of `pem_text` (an error names `node` when there is none).
pub fn certificates(pem_text: &str, node: &str) -> Result<Vec<CertificateDer<'static>>> {
    let blocks = pem::parse_many(pem_text).map_err(|_| Error::Tls {
        node: node.to_string(),
        message: "a certificate is not PEM".into(),
    })?;
    let certificates: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certificates.is_empty() {
        return Err(Error::Tls {
            node: node.to_string(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certificates)
}

/// The private key of `pem_text`. Talos writes Ed25519 keys as PKCS#8 under the label
/// `ED25519 PRIVATE KEY`.
pub fn private_key(pem_text: &str, node: &str) -> Result<PrivateKeyDer<'static>> {
    let bad = |message: &str| Error::Tls {
        node: node.to_string(),
        message: message.to_string(),
    };
    let block = pem::parse(pem_text).map_err(|_| bad("the client key is not PEM"))?;
    match block.tag() {
        "ED25519 PRIVATE KEY" | "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from(block.into_contents()),
        )),
        "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(block.into_contents().into())),
        "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(block.into_contents().into())),
        _ => Err(bad("unsupported client key type")),
    }
}

pub(crate) fn client_config(credentials: &Credentials, node: &str) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let tls_error = |e: rustls::Error| Error::Tls {
        node: node.to_string(),
        message: e.to_string(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let mut config = match credentials {
        Credentials::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate(provider)))
            .with_no_client_auth(),
        Credentials::Mutual(identity) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(&identity.ca_crt, node)? {
                roots.add(certificate).map_err(tls_error)?;
            }
            builder
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    certificates(&identity.client_crt, node)?,
                    private_key(&identity.client_key, node)?,
                )
                .map_err(tls_error)?
        }
    };
    // gRPC servers (grpc-go since 1.67) insist on ALPN h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The TLS server name for a node address: its IP (Talos API certificates carry the
/// node's addresses as IP SANs) or a DNS name.
pub(crate) fn server_name(host: &str, address: &SocketAddr) -> ServerName<'static> {
    match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(address.ip().into())),
    }
}

/// Maintenance mode only: the node has a throwaway self-signed certificate, so there is
/// nothing to verify it against. Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
