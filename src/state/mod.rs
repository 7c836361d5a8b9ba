//! State: what InfraFlux last knew of every resource it manages, one document per
//! environment.
//!
//! - [`document`]: the document (format version, lineage, serial, resources);
//! - [`edit`]: the edits `infraflux state rm` and `state mv` make to a document;
//! - [`sensitive`]: masking secret attributes for display;
//! - [`encryption`]: age encryption of state files at rest;
//! - [`format`](mod@format): the file envelope (checksum, format version, migrations), shared by
//!   every backend that stores bytes;
//! - [`lock`]: who holds a lock ([`LockInfo`]), whether its process is still alive;
//! - [`local`]: the local backend, `.infraflux/state/<env>.json` plus `<env>.lock`;
//! - [`StateStore`]: where documents live and how they are locked (backends implement it).

pub mod document;
pub mod edit;
pub mod encryption;
pub mod format;
pub mod local;
pub mod lock;
pub mod sensitive;

use std::time::{Duration, Instant};

pub use document::{FORMAT_VERSION, PromotionRecord, ResourceState, ResourceStatus, StateDocument};
pub use encryption::{Encryption, IdentitySource};
pub use local::LocalStore;

use crate::model::address::ResourceAddr;

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state for environment `{environment}` is locked by {holder}{}", if *stale { "; the lock is STALE: its process is gone" } else { "" })]
    Locked {
        environment: String,
        holder: Box<LockInfo>,
        /// The holder ran on this host and its process no longer exists.
        stale: bool,
    },
    #[error("state file `{path}` is corrupt: {reason}")]
    Corrupt {
        path: String,
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error(
        "state file `{path}` has format version {found}, newer than this infraflux supports ({supported})"
    )]
    UnsupportedVersion {
        path: String,
        found: u64,
        supported: u32,
    },
    #[error("state changed underneath this run (expected serial {expected}, found {found})")]
    SerialMismatch { expected: u64, found: u64 },
    #[error(
        "state file `{path}` holds another history of environment `{environment}` (lineage {found}, this document has {expected})"
    )]
    LineageMismatch {
        path: String,
        environment: String,
        expected: uuid::Uuid,
        found: uuid::Uuid,
    },
    #[error("invalid environment name `{name}`")]
    InvalidEnvironment { name: String },
    #[error("resource `{address}` does not belong to environment `{environment}`")]
    ForeignResource {
        environment: String,
        address: ResourceAddr,
    },
    #[error("environment `{environment}` is not locked")]
    NotLocked { environment: String },
    #[error(
        "lock ID `{given}` does not match the lock on environment `{environment}`, held by {holder}"
    )]
    LockIdMismatch {
        environment: String,
        given: String,
        holder: Box<LockInfo>,
    },
    #[error("lock file `{path}` cannot be read")]
    LockUnreadable {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no resource `{address}` in the state of environment `{}`", address.environment)]
    NotFound { address: ResourceAddr },
    #[error("resource `{address}` is already in the state of environment `{}`", address.environment)]
    AlreadyExists { address: ResourceAddr },
    #[error("cannot move `{from}` to `{to}`: {reason}")]
    InvalidMove {
        from: ResourceAddr,
        to: ResourceAddr,
        reason: &'static str,
    },
    #[error("cannot {action} `{path}`")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file `{path}` is encrypted, and no {} is configured to decrypt it",
        if *passphrase { "passphrase" } else { "age identity" }
    )]
    NoKey {
        path: String,
        /// The file is encrypted to a passphrase (else to X25519 recipients).
        passphrase: bool,
    },
    #[error(
        "state file `{path}` cannot be decrypted: {}",
        if *passphrase { "the configured passphrase is wrong" } else { "it is encrypted to other keys than the configured identities" }
    )]
    WrongKey { path: String, passphrase: bool },
    #[error("state encryption is misconfigured: {reason}")]
    EncryptionConfig { reason: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A stable identifier for diagnostics, e.g. `state::locked`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Locked { .. } => "state::locked",
            Error::Corrupt { .. } => "state::corrupt",
            Error::UnsupportedVersion { .. } => "state::unsupported-version",
            Error::SerialMismatch { .. } => "state::serial-mismatch",
            Error::LineageMismatch { .. } => "state::lineage-mismatch",
            Error::InvalidEnvironment { .. } => "state::invalid-environment",
            Error::ForeignResource { .. } => "state::foreign-resource",
            Error::NotLocked { .. } => "state::not-locked",
            Error::LockIdMismatch { .. } => "state::lock-id-mismatch",
            Error::LockUnreadable { .. } => "state::lock-unreadable",
            Error::NotFound { .. } => "state::not-found",
            Error::AlreadyExists { .. } => "state::already-exists",
            Error::InvalidMove { .. } => "state::invalid-move",
            Error::Io { .. } => "state::io",
            Error::NoKey { .. } => "state::no-key",
            Error::WrongKey { .. } => "state::wrong-key",
            Error::EncryptionConfig { .. } => "state::encryption-config",
            Error::Other(_) => "state::other",
        }
    }

    /// What the user can do about it, for the `help:` line of a diagnostic.
    pub fn help(&self) -> String {
        match self {
            Error::Locked {
                environment,
                holder,
                stale: true,
            } => format!(
                "process {} on {} no longer runs; if no other infraflux run is active, break the lock with `infraflux state unlock {} --env {environment}`",
                holder.pid, holder.host, holder.id
            ),
            Error::Locked {
                environment,
                holder,
                stale: false,
            } => format!(
                "wait for that run to finish, or wait for it with --lock-timeout (e.g. --lock-timeout 5m); only if it is gone, break the lock with `infraflux state unlock {} --env {environment}`",
                holder.id
            ),
            Error::Corrupt { path, .. } => format!(
                "restore the previous version with `cp {path}.backup {path}`; the changes of the last write are lost and the next plan finds them again"
            ),
            Error::UnsupportedVersion { .. } => {
                "a newer infraflux wrote this state: upgrade infraflux (older versions cannot read it)".to_string()
            }
            Error::SerialMismatch { .. } => {
                "another run changed the state since it was read; run the command again so it starts from the current state".to_string()
            }
            Error::LineageMismatch { .. } => {
                "the document was read from another state file (or the file was replaced); check --state-dir, then run the command again".to_string()
            }
            Error::InvalidEnvironment { .. } => {
                "environment names contain only letters, digits, `-` and `_`".to_string()
            }
            Error::ForeignResource { .. } => {
                "each environment has its own state document; use the address of this environment".to_string()
            }
            Error::NotLocked { .. } => "nothing to unlock".to_string(),
            Error::LockIdMismatch { .. } => {
                "pass the lock ID shown in the `locked by` message of the failed command; a lock taken since then is not broken by an old ID".to_string()
            }
            Error::LockUnreadable { path, .. } => format!(
                "if no infraflux run is active, delete `{path}` by hand"
            ),
            Error::NotFound { address } => format!(
                "list what the state holds with `infraflux state list --env {}`",
                address.environment
            ),
            Error::AlreadyExists { .. } => {
                "remove the existing resource first (`infraflux state rm`) or pick another address".to_string()
            }
            Error::InvalidMove { .. } => {
                "`state mv` renames a resource within one environment and keeps its type".to_string()
            }
            Error::Io { .. } => {
                "check that the state directory exists and is writable (see --state-dir)".to_string()
            }
            Error::NoKey {
                passphrase: true, ..
            } => "set INFRAFLUX_STATE_PASSPHRASE to the passphrase the state was encrypted with".to_string(),
            Error::NoKey { .. } => {
                "set INFRAFLUX_STATE_IDENTITY_FILE to an age identity file (`age-keygen -o key.txt`) whose public key is one of the file's recipients, or INFRAFLUX_STATE_IDENTITY to the key itself".to_string()
            }
            Error::WrongKey {
                passphrase: true, ..
            } => "check INFRAFLUX_STATE_PASSPHRASE".to_string(),
            Error::WrongKey { .. } => {
                "use an identity whose public key (`age-keygen -y key.txt`) the state was encrypted to; whoever holds one can add yours with `infraflux state rekey` and INFRAFLUX_STATE_RECIPIENTS".to_string()
            }
            Error::EncryptionConfig { .. } => {
                "check INFRAFLUX_STATE_RECIPIENTS (comma-separated `age1…` keys), INFRAFLUX_STATE_IDENTITY_FILE, INFRAFLUX_STATE_IDENTITY and INFRAFLUX_STATE_PASSPHRASE".to_string()
            }
            Error::Other(_) => "run again with -v for details".to_string(),
        }
    }
}

pub use lock::LockInfo;

/// Where an environment's state lives. Implementations write atomically: after a crash
/// the stored document is either the previous one or the new one, never a mix.
pub trait StateStore: Send + Sync {
    /// The stored document, or `None` when the environment has none yet.
    fn load(&self, environment: &str) -> Result<Option<StateDocument>, Error>;
    /// Store a document (the caller has already bumped its serial).
    fn persist(&self, document: &StateDocument) -> Result<(), Error>;
    /// Take the environment's lock; it is released when the guard drops.
    fn lock(&self, environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, Error>;

    /// [`StateStore::lock`], retrying while the lock is held by a live holder, for at most
    /// `timeout` (zero: one attempt). A stale lock is reported at once: it never frees
    /// itself.
    fn lock_with_timeout(
        &self,
        environment: &str,
        info: LockInfo,
        timeout: Duration,
    ) -> Result<Box<dyn LockGuard>, Error> {
        const POLL: Duration = Duration::from_millis(200);
        let deadline = Instant::now() + timeout;
        loop {
            match self.lock(environment, info.clone()) {
                Err(Error::Locked { stale: false, .. }) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tracing::debug!(environment, ?left, "state locked, waiting");
                    std::thread::sleep(POLL.min(left));
                }
                result => return result,
            }
        }
    }

    /// How documents are encrypted at rest (`None`: plaintext). Saved plans hold the same
    /// secrets as state and are encrypted with it too.
    fn encryption(&self) -> Option<&Encryption> {
        None
    }

    /// Break the environment's lock, only when it is the one with this ID; returns who
    /// held it.
    fn force_unlock(&self, environment: &str, id: &str) -> Result<LockInfo, Error> {
        let _ = id;
        Err(Error::Other(format!(
            "this state backend cannot break the lock of environment `{environment}`"
        )))
    }
}

/// Held while a lock is taken; dropping it releases the lock.
pub trait LockGuard: Send {
    fn info(&self) -> &LockInfo;
}

/// Environment names become file names: letters, digits, `-` and `_` only.
pub fn check_environment_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidEnvironment {
            name: name.to_string(),
        })
    }
}
