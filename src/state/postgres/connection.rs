//! The connection string: parsed once, shown only without its password, turned into a
//! tokio-postgres configuration and a TLS setting.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only, and verifies nothing
//! itself. libpq's `verify-ca` and `verify-full` (and `sslrootcert`, the CA file they
//! verify against) are taken out of the URL here and become a rustls verifier.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;

use crate::state::Error;

/// Used when the connection string sets no `connect_timeout`: an unreachable server is
/// an error after this long, not a hang.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection is encrypted, and what the server's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode=disable`: plaintext.
    Disable,
    /// `sslmode=prefer` (the default) or `require`: encrypted (required or when the
    /// server offers it), the certificate not verified — as libpq does.
    Unverified { required: bool },
    /// `sslmode=verify-ca`: the certificate must chain to a trusted CA.
    VerifyCa(Roots),
    /// `sslmode=verify-full`: as verify-ca, and name the host connected to.
    VerifyFull(Roots),
}

/// The CAs a verified connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's CA certificates.
    System,
    /// `sslrootcert=<file>`: the PEM certificates in this file.
    File(PathBuf),
}

/// A parsed connection string. Debug and Display show it without its password.
#[derive(Clone)]
pub struct ConnectionString {
    config: tokio_postgres::Config,
    tls: Tls,
    shown: String,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("url", &self.shown)
            .field("tls", &self.tls)
            .finish()
    }
}

impl std::fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::BackendConfig {
        reason: reason.into(),
    }
}

impl ConnectionString {
    /// Parse a `postgres://` or `postgresql://` URL. `password` fills in a password the
    /// URL does not carry (e.g. from `PGPASSWORD`). Errors never repeat the URL: it may
    /// hold a password.
    pub fn parse(text: &str, password: Option<String>) -> Result<Self, Error> {
        let text = text.trim();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(invalid(
                "the PostgreSQL connection string must be a URL starting with postgres:// (the key=value form is not supported)",
            ));
        }
        let mut url = url::Url::parse(text).map_err(|e| {
            invalid(format!(
                "the PostgreSQL connection string is not a valid URL: {e}"
            ))
        })?;
        let mut tls_mode = None;
        let mut root_file = None;
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => tls_mode = Some(value.into_owned()),
                "sslrootcert" => root_file = Some(PathBuf::from(value.as_ref())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        let roots = || match &root_file {
            Some(path) => Roots::File(path.clone()),
            None => Roots::System,
        };
        let (tls, ssl_mode) = match tls_mode.as_deref().unwrap_or("prefer") {
            "disable" => (Tls::Disable, SslMode::Disable),
            "prefer" | "allow" => (Tls::Unverified { required: false }, SslMode::Prefer),
            "require" => (Tls::Unverified { required: true }, SslMode::Require),
            "verify-ca" => (Tls::VerifyCa(roots()), SslMode::Require),
            "verify-full" => (Tls::VerifyFull(roots()), SslMode::Require),
            other => {
                return Err(invalid(format!(
                    "unknown sslmode `{other}` (expected disable, prefer, require, verify-ca or verify-full)"
                )));
            }
        };
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let has_password = url.password().is_some() || kept.iter().any(|(k, _)| k == "password");
        let mut config = tokio_postgres::Config::from_str(url.as_str()).map_err(|e| {
            // The cause names the option ("unknown option `x`"), never its value.
            let cause = std::error::Error::source(&e)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default();
            invalid(format!(
                "the PostgreSQL connection string is not valid{cause}"
            ))
        })?;
        config.ssl_mode(ssl_mode);
        if !has_password && let Some(password) = password.filter(|p| !p.is_empty()) {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("infraflux");
        }
        Ok(ConnectionString {
            config,
            tls,
            shown: shown(&url),
        })
    }

    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The rustls configuration for [`ConnectionString::tls`] (`None` for plaintext).
    /// Reads `sslrootcert` or the system's CAs, so it is called when connecting.
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("cannot set up TLS: {e}")))?;
        let config = match &self.tls {
            Tls::Disable => return Ok(None),
            Tls::Unverified { .. } => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Tls::VerifyFull(roots) => builder
                .with_root_certificates(root_store(roots)?)
                .with_no_client_auth(),
            Tls::VerifyCa(roots) => {
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(root_store(roots)?),
                    provider,
                )
                .build()
                .map_err(|e| invalid(format!("cannot set up TLS verification: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
                    .with_no_client_auth()
            }
        };
        Ok(Some(config))
    }
}

/// `postgres://user@host:port/database`: what the user needs to recognise the database,
/// without the password or query parameters.
fn shown(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn root_store(roots: &Roots) -> Result<rustls::RootCertStore, Error> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(format!("cannot read sslrootcert `{}`: {e}", path.display()))
            })?;
            let blocks = pem::parse_many(&text).map_err(|e| {
                invalid(format!("sslrootcert `{}` is not PEM: {e}", path.display()))
            })?;
            for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
                store
                    .add(CertificateDer::from(block.into_contents()))
                    .map_err(|e| {
                        invalid(format!(
                            "sslrootcert `{}` holds an unusable certificate: {e}",
                            path.display()
                        ))
                    })?;
            }
            if store.is_empty() {
                return Err(invalid(format!(
                    "sslrootcert `{}` holds no CERTIFICATE",
                    path.display()
                )));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(invalid(
                    "no system CA certificates found to verify the server with; add sslrootcert=<ca.pem> to the connection string",
                ));
            }
        }
    }
    Ok(store)
}

/// `sslmode=require`: encrypted but not authenticated (libpq's meaning). The handshake
/// signatures are still checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// `sslmode=verify-ca`: the chain is verified, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-secret";

    #[test]
    fn the_password_is_never_shown() {
        let url = format!("postgres://infraflux:{SECRET}@db.example:5433/state?sslmode=require");
        let parsed = ConnectionString::parse(&url, None).unwrap();
        let shown = format!("{parsed} {parsed:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert_eq!(
            parsed.to_string(),
            "postgres://infraflux@db.example:5433/state"
        );
        assert_eq!(parsed.config().get_password(), Some(SECRET.as_bytes()));
        assert_eq!(parsed.tls(), &Tls::Unverified { required: true });
    }

    #[test]
    fn a_password_in_the_query_is_not_shown_either() {
        let url = format!("postgres://db.example/state?password={SECRET}&user=ci");
        let parsed = ConnectionString::parse(&url, None).unwrap();
        assert!(!format!("{parsed} {parsed:?}").contains(SECRET));
        assert_eq!(parsed.config().get_password(), Some(SECRET.as_bytes()));
    }

    #[test]
    fn invalid_strings_are_errors_that_do_not_repeat_them() {
        for bad in [
            format!("host=db password={SECRET}"),
            format!("postgres://u:{SECRET}@db/state?sslmode=sometimes"),
            format!("postgres://u:{SECRET}@db:notaport/state"),
            format!("postgres://u:{SECRET}@db/state?frobnicate=1"),
        ] {
            let error = ConnectionString::parse(&bad, None).unwrap_err();
            let shown = format!("{error} {error:?}");
            if bad.contains("frobnicate") {
                assert!(shown.contains("unknown option `frobnicate`"), "{shown}");
            }
            assert!(matches!(error, Error::BackendConfig { .. }), "{shown}");
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }

    #[test]
    fn verify_modes_become_rustls_verification() {
        let parsed = ConnectionString::parse(
            "postgres://db.example/state?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3",
            None,
        )
        .unwrap();
        assert_eq!(
            parsed.tls(),
            &Tls::VerifyFull(Roots::File("/etc/ca.pem".into()))
        );
        assert_eq!(parsed.config().get_ssl_mode(), SslMode::Require);
        assert_eq!(
            parsed.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let parsed =
            ConnectionString::parse("postgresql://db.example/state?sslmode=verify-ca", None)
                .unwrap();
        assert_eq!(parsed.tls(), &Tls::VerifyCa(Roots::System));
        let plain =
            ConnectionString::parse("postgres://db.example/state?sslmode=disable", None).unwrap();
        assert_eq!(plain.tls(), &Tls::Disable);
        assert!(plain.client_config().unwrap().is_none());
        let default = ConnectionString::parse("postgres://db.example/state", None).unwrap();
        assert_eq!(default.tls(), &Tls::Unverified { required: false });
        assert_eq!(
            default.config().get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let parsed = ConnectionString::parse(
            "postgres://db.example/state?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            None,
        )
        .unwrap();
        let error = parsed.client_config().unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn pgpassword_fills_in_a_missing_password_only() {
        let parsed =
            ConnectionString::parse("postgres://ci@db/state", Some("from-env".into())).unwrap();
        assert_eq!(parsed.config().get_password(), Some(&b"from-env"[..]));
        let parsed =
            ConnectionString::parse("postgres://ci:inline@db/state", Some("from-env".into()))
                .unwrap();
        assert_eq!(parsed.config().get_password(), Some(&b"inline"[..]));
    }
}
