//! Copying state between backends (`infraflux state migrate --to postgres|local`): each
//! environment's document as it is — lineage, serial, resources, promotion record — with
//! both backends' locks held, read back from the target to verify.

use std::time::Duration;

use super::{Error, LockInfo, StateStore};

/// What copying one environment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// Stored in the target (`replaced`: over an older serial of the same lineage).
    Copied {
        serial: u64,
        resources: usize,
        replaced: Option<u64>,
    },
    /// The target already holds this very document.
    AlreadyThere { serial: u64 },
    /// The source has no document for the environment.
    NoState,
}

/// Copy `environment`'s document from `source` to `target`. Refuses when the target
/// holds another lineage of the environment, or a newer or different document of the
/// same serial: nothing there is ever overwritten but an older version of the same state.
pub fn copy_environment(
    source: &dyn StateStore,
    target: &dyn StateStore,
    environment: &str,
    lock_timeout: Duration,
) -> Result<Copied, Error> {
    let _source_lock =
        source.lock_with_timeout(environment, LockInfo::new("state migrate"), lock_timeout)?;
    let _target_lock =
        target.lock_with_timeout(environment, LockInfo::new("state migrate"), lock_timeout)?;
    let Some(document) = source.load(environment)? else {
        return Ok(Copied::NoState);
    };
    let conflict = |reason: String| Error::MigrateConflict {
        environment: environment.to_string(),
        target: target.location(),
        reason,
    };
    let replaced = match target.load(environment)? {
        None => None,
        Some(existing) if existing.lineage != document.lineage => {
            return Err(Error::LineageMismatch {
                path: target.location(),
                environment: environment.to_string(),
                expected: document.lineage,
                found: existing.lineage,
            });
        }
        Some(existing) if existing == document => {
            return Ok(Copied::AlreadyThere {
                serial: document.serial,
            });
        }
        Some(existing) if existing.serial < document.serial => Some(existing.serial),
        Some(existing) => {
            return Err(conflict(format!(
                "the target holds serial {} and the source serial {}; the target's copy is newer or differs",
                existing.serial, document.serial
            )));
        }
    };
    target.import(&document, replaced)?;
    match target.load(environment)? {
        Some(stored) if stored == document => Ok(Copied::Copied {
            serial: document.serial,
            resources: document.resources.len(),
            replaced,
        }),
        _ => Err(conflict(
            "the document read back from the target differs from the one written".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{LocalStore, StateDocument};

    fn document(serial: u64) -> StateDocument {
        let mut document = StateDocument::new("dev");
        document.lineage = uuid::Uuid::from_u128(7);
        document.serial = serial;
        document
    }

    #[test]
    fn copies_refreshes_an_older_copy_and_refuses_other_histories() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (LocalStore::new(a.path()), LocalStore::new(b.path()));
        let none = Duration::ZERO;
        assert_eq!(
            copy_environment(&source, &target, "dev", none).unwrap(),
            Copied::NoState
        );
        source.persist(&document(3)).unwrap();
        assert_eq!(
            copy_environment(&source, &target, "dev", none).unwrap(),
            Copied::Copied {
                serial: 3,
                resources: 0,
                replaced: None
            }
        );
        assert_eq!(target.load("dev").unwrap(), Some(document(3)));
        assert_eq!(
            copy_environment(&source, &target, "dev", none).unwrap(),
            Copied::AlreadyThere { serial: 3 }
        );
        source.persist(&document(4)).unwrap();
        assert!(matches!(
            copy_environment(&source, &target, "dev", none).unwrap(),
            Copied::Copied {
                replaced: Some(3),
                ..
            }
        ));
        // The target moved on: refused, and left as it is.
        let mut ahead = document(5);
        ahead.promotion = None;
        target.persist(&ahead).unwrap();
        let error = copy_environment(&source, &target, "dev", none).unwrap_err();
        assert!(matches!(error, Error::MigrateConflict { .. }), "{error}");
        assert_eq!(target.load("dev").unwrap(), Some(ahead));
        // Another history of the environment: refused.
        let other = tempfile::tempdir().unwrap();
        let elsewhere = LocalStore::new(other.path());
        elsewhere
            .persist(&StateDocument {
                serial: 1,
                ..StateDocument::new("dev")
            })
            .unwrap();
        let error = copy_environment(&source, &elsewhere, "dev", none).unwrap_err();
        assert!(matches!(error, Error::LineageMismatch { .. }), "{error}");
        // Both locks were released.
        assert!(source.current_lock("dev").unwrap().is_none());
        assert!(target.current_lock("dev").unwrap().is_none());
    }
}
