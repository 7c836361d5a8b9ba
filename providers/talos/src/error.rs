//! The crate's error type. Messages never carry secret values: parse errors of documents
//! that hold secrets are reduced to a location, and no variant interpolates key material.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key or certificate generation failed (an RNG or encoding failure).
    #[error("generating {what} failed")]
    Generate {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A secrets bundle (state attributes or a talosctl `secrets.yaml`) is incomplete or
    /// malformed. The message names the field, never its value.
    #[error("invalid secrets: {0}")]
    InvalidSecrets(String),
    /// The machine config inputs are incomplete or malformed.
    #[error("invalid machine config input `{attribute}`: {message}")]
    InvalidInput { attribute: String, message: String },
    /// A user patch could not be parsed or applied.
    #[error("config patch {index} cannot be applied: {message}")]
    Patch { index: usize, message: String },
    /// A gRPC call to a Talos node failed.
    #[error("{call} on {node} failed: {kind}: {message}")]
    Api {
        call: &'static str,
        node: String,
        kind: ApiErrorKind,
        message: String,
    },
    /// TLS setup for a Talos API connection failed (bad certificate or key).
    #[error("TLS setup for {node} failed: {message}")]
    Tls { node: String, message: String },
    /// The kubeconfig stream could not be unpacked.
    #[error("kubeconfig from {node} cannot be read: {message}")]
    Kubeconfig { node: String, message: String },
    /// `Bootstrap` kept being refused as not available yet (or the node stayed
    /// unreachable) until the caller's deadline.
    #[error(
        "bootstrap on {node} did not become available within {waited}s ({attempts} attempts); last answer: {last}"
    )]
    BootstrapUnavailable {
        node: String,
        /// Seconds waited, with a decimal (deadlines in tests are sub-second).
        waited: String,
        attempts: usize,
        last: String,
    },
    /// A wait did not reach its condition in time.
    #[error("timed out after {seconds}s waiting for {condition}; last observation: {last}")]
    Timeout {
        condition: String,
        seconds: u64,
        last: String,
    },
}

/// How a Talos API call failed, for retry decisions and truthful messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// No connection could be made (refused, unreachable, TLS handshake failed).
    Unreachable,
    /// The connection broke while the call was in flight: the node may or may not have
    /// acted on it.
    ConnectionLost,
    /// The node did not answer within the deadline.
    Timeout,
    /// The node refused our credentials (or their absence).
    Unauthenticated,
    /// The node rejected the request (invalid config, wrong node role…); asking again
    /// will not help.
    Rejected,
    /// The node cannot do this in its current state yet (gRPC `FailedPrecondition`):
    /// its services are still starting (e.g. `bootstrap is not available yet`), or it is
    /// about to reboot. Asking again later may succeed.
    NotReady,
    /// The thing named does not exist (e.g. an etcd member id).
    NotFound,
    /// The thing exists already (e.g. etcd is bootstrapped).
    AlreadyExists,
    /// Anything else the node reported.
    Other,
}

impl fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiErrorKind::Unreachable => "node unreachable",
            ApiErrorKind::ConnectionLost => "connection lost mid-call (outcome unknown)",
            ApiErrorKind::Timeout => "deadline exceeded",
            ApiErrorKind::Unauthenticated => "unauthenticated",
            ApiErrorKind::Rejected => "rejected",
            ApiErrorKind::NotReady => "not ready yet",
            ApiErrorKind::NotFound => "not found",
            ApiErrorKind::AlreadyExists => "already exists",
            ApiErrorKind::Other => "error",
        })
    }
}

impl Error {
    pub(crate) fn generate(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Generate {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn input(attribute: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            attribute: attribute.into(),
            message: message.into(),
        }
    }

    /// The API failure kind, when this is an API error.
    pub fn api_kind(&self) -> Option<ApiErrorKind> {
        match self {
            Error::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
