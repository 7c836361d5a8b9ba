//! State: what InfraFlux last knew of every resource it manages, one document per
//! environment.
//!
//! - [`document`]: the document (format version, lineage, serial, resources);
//! - [`StateStore`]: where documents live and how they are locked (backends implement it).

pub mod document;

pub use document::{FORMAT_VERSION, ResourceState, ResourceStatus, StateDocument};

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state for environment `{environment}` is locked by {holder}")]
    Locked { environment: String, holder: String },
    #[error("state file `{path}` is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("state changed underneath this run (expected serial {expected}, found {found})")]
    SerialMismatch { expected: u64, found: u64 },
    #[error("cannot {action} `{path}`")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Who holds a lock, recorded so a user can tell a live holder from a stale one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// Where an environment's state lives. Implementations write atomically: after a crash
/// the stored document is either the previous one or the new one, never a mix.
pub trait StateStore: Send + Sync {
    /// The stored document, or `None` when the environment has none yet.
    fn load(&self, environment: &str) -> Result<Option<StateDocument>, Error>;
    /// Store a document (the caller has already bumped its serial).
    fn persist(&self, document: &StateDocument) -> Result<(), Error>;
    /// Take the environment's lock; it is released when the guard drops.
    fn lock(&self, environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, Error>;
}

/// Held while a lock is taken; dropping it releases the lock.
pub trait LockGuard: Send {
    fn info(&self) -> &LockInfo;
}
