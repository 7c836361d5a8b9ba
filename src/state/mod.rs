//! State: what InfraFlux last knew of every resource it manages, one document per
//! environment.
//!
//! - [`document`]: the document (format version, lineage, serial, resources);
//! - [`by_reference`]: values recorded as the other resource's outputs they are, and
//!   resolved again for whoever reads a record;
//! - [`edit`]: the edits `infraflux state rm` and `state mv` make to a document;
//! - [`sensitive`]: masking secret attributes for display;
//! - [`stored`]: a record's attributes as the document holds them: compact JSON text;
//! - encryption at rest is [`crate::encryption`]'s ([`Encryption`], re-exported here as
//!   the type of [`StateStore::encryption`] and the backends' `with_encryption`);
//! - [`format`](mod@format): the file envelope (checksum, format version, migrations), shared by
//!   every backend that stores bytes;
//! - [`parse`]: its JSON text parsed with every object made at its final size;
//! - [`lock`]: who holds a lock ([`LockInfo`]), whether its process is still alive;
//! - [`local`]: the local backend, `.infraflux/state/<env>.json` plus `<env>.lock`;
//! - [`postgres`]: the PostgreSQL backend, one row per environment, leases as locks;
//! - [`select`]: which backend the user chose (`INFRAFLUX_STATE_BACKEND` and friends);
//! - [`migrate`]: copying documents between backends (`infraflux state migrate`);
//! - [`revision`]: which version of a document was read, to skip decoding it twice;
//! - [`StateStore`]: where documents live and how they are locked (backends implement it).

pub mod by_reference;
mod compact;
pub mod document;
pub mod edit;
pub mod format;
pub mod local;
pub mod lock;
pub mod migrate;
pub mod parse;
pub mod postgres;
pub mod revision;
pub mod select;
pub mod sensitive;
pub mod stored;

use std::time::{Duration, Instant};

pub use crate::encryption::{Encryption, IdentitySource};
pub use document::{FORMAT_VERSION, PromotionRecord, ResourceState, ResourceStatus, StateDocument};
pub use local::LocalStore;
pub use postgres::PostgresStore;
pub use revision::{Revision, UnlockedRead};
pub use stored::StoredAttributes;

use crate::vocabulary::ResourceAddr;

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "state for environment `{environment}` is locked by {holder}{}{}",
        if *stale { "; the lock is STALE: its process is gone" } else { "" },
        expires_in.map(|left| format!("; its lease expires in {} unless renewed", lock::format_age(left))).unwrap_or_default()
    )]
    Locked {
        environment: String,
        holder: Box<LockInfo>,
        /// The holder ran on this host and its process no longer exists.
        stale: bool,
        /// A lease-based lock (PostgreSQL): how long until it frees itself if its holder
        /// stops renewing it.
        expires_in: Option<Duration>,
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
    #[error(
        "state of `{environment}` changed underneath you: stored serial {found}, expected {expected}"
    )]
    SerialMismatch {
        environment: String,
        expected: u64,
        found: u64,
    },
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
    #[error("PostgreSQL state database {location}: cannot {action}")]
    Database {
        action: String,
        /// The connection string without its password.
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot copy the state of `{environment}` to {target}: {reason}")]
    MigrateConflict {
        environment: String,
        target: String,
        reason: String,
    },
    #[error("the state backend is misconfigured: {reason}")]
    BackendConfig { reason: String },
    #[error(
        "the lock on environment `{environment}` (lock ID {id}) was lost while this run held it: it expired or was broken with `state unlock`"
    )]
    LeaseLost { environment: String, id: String },
    #[error("{0}")]
    Other(String),
}

/// Encryption errors are state errors with the same messages, codes and help.
impl From<crate::encryption::Error> for Error {
    fn from(error: crate::encryption::Error) -> Self {
        use crate::encryption::Error as E;
        match error {
            E::NoKey { path, passphrase } => Error::NoKey { path, passphrase },
            E::WrongKey { path, passphrase } => Error::WrongKey { path, passphrase },
            E::Config { reason } => Error::EncryptionConfig { reason },
            E::Corrupt { path, reason } => Error::Corrupt {
                path,
                reason,
                source: None,
            },
            E::Other(message) => Error::Other(message),
        }
    }
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
            Error::Database { .. } => "state::database",
            Error::BackendConfig { .. } => "state::backend-config",
            Error::MigrateConflict { .. } => "state::migrate-conflict",
            Error::LeaseLost { .. } => "state::lease-lost",
            Error::Other(_) => "state::other",
        }
    }

    /// What the user can do about it, for the `help:` line of a diagnostic.
    pub fn help(&self) -> String {
        match self {
            Error::Locked {
                environment,
                holder,
                expires_in: Some(left),
                ..
            } => format!(
                "wait for that run to finish, or wait for it with --lock-timeout (e.g. --lock-timeout {}); if it was killed, its lock expires by itself; only if it is gone and you cannot wait, break the lock with `infraflux state unlock {} --env {environment}`",
                lock::format_age(*left + Duration::from_secs(1)),
                holder.id
            ),
            Error::Locked {
                environment,
                holder,
                stale: true,
                ..
            } => format!(
                "process {} on {} no longer runs; if no other infraflux run is active, break the lock with `infraflux state unlock {} --env {environment}`",
                holder.pid, holder.host, holder.id
            ),
            Error::Locked {
                environment,
                holder,
                stale: false,
                ..
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
                "another run changed the state since this one read it; re-run plan (or the command) so it starts from the current state".to_string()
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
            Error::Database { .. } => format!(
                "check {} (host, port, user, database, sslmode) and that the server is reachable; run again with -v for details",
                select::POSTGRES_URL_VAR
            ),
            Error::BackendConfig { .. } => format!(
                "{} is `local` (the default) or `postgres`; postgres needs {} (postgres://user@host:5432/database?sslmode=verify-full) and takes {} (e.g. 2m)",
                select::BACKEND_VAR,
                select::POSTGRES_URL_VAR,
                select::LEASE_VAR
            ),
            Error::MigrateConflict { environment, .. } => format!(
                "compare both copies (`infraflux state list --env {environment}` with each backend selected); the target's copy is kept, remove it there first only if the source is the one to keep"
            ),
            Error::LeaseLost { .. } => {
                "another run may have taken the lock and changed the state; run plan again, and raise INFRAFLUX_STATE_LEASE if the connection to the database is slow or flaky".to_string()
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
    /// [`StateStore::load`] with the revision read (`None`: this backend cannot tell).
    fn load_with_revision(
        &self,
        environment: &str,
    ) -> Result<Option<(StateDocument, Option<Revision>)>, Error> {
        Ok(self.load(environment)?.map(|document| (document, None)))
    }
    /// The revision stored now, without decoding it (`None`: no document, or this
    /// backend cannot tell, so the caller loads it again).
    fn revision(&self, environment: &str) -> Result<Option<Revision>, Error> {
        let _ = environment;
        Ok(None)
    }
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

    /// Where the documents live, for messages (a directory, a database without its
    /// password).
    fn location(&self) -> String {
        "this state backend".to_string()
    }

    /// The environments that have a document, sorted.
    fn environments(&self) -> Result<Vec<String>, Error> {
        Err(Error::Other(format!(
            "{} cannot list its environments",
            self.location()
        )))
    }

    /// The environments that are locked, with their holders, sorted by environment.
    fn locks(&self) -> Result<Vec<(String, LockInfo)>, Error> {
        Ok(Vec::new())
    }

    /// Re-encrypt the environment's document to the configured recipients, keeping the
    /// document and its serial (the caller holds the lock). `false` when there is none.
    fn rekey(&self, environment: &str) -> Result<bool, Error> {
        let _ = environment;
        Err(Error::EncryptionConfig {
            reason: format!("{} cannot re-encrypt state", self.location()),
        })
    }

    /// Store a document copied from another backend (`state migrate`) in place of the
    /// stored one of the same lineage whose serial is `replacing` (`None`: there is none).
    /// The caller holds the lock and has checked lineage and serials.
    fn import(&self, document: &StateDocument, replacing: Option<u64>) -> Result<(), Error> {
        let _ = replacing;
        self.persist(document)
    }
}

/// Held while a lock is taken; dropping it releases the lock.
pub trait LockGuard: Send {
    fn info(&self) -> &LockInfo;
}

/// What every backend checks before storing a document: a valid environment name, and
/// only resources of that environment.
pub(crate) fn check_document(document: &StateDocument) -> Result<(), Error> {
    let environment = document.environment.as_str();
    check_environment_name(environment)?;
    match document
        .resources
        .keys()
        .find(|a| a.environment != environment)
    {
        Some(address) => Err(Error::ForeignResource {
            environment: environment.to_string(),
            address: address.clone(),
        }),
        None => Ok(()),
    }
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
