//! Which backend holds the state: chosen with `--state-backend` / `INFRAFLUX_STATE_BACKEND`
//! (`local`, the default, or `postgres`). The PostgreSQL connection string comes only
//! from the environment (`INFRAFLUX_STATE_POSTGRES_URL`), never from a flag, so its
//! password stays out of shell history and `ps`.

use std::time::Duration;

use super::postgres::{ConnectionString, DEFAULT_LEASE, PostgresStore};
use super::{Error, LockGuard, LockInfo, StateDocument, StateStore};

/// `local` or `postgres`.
pub const BACKEND_VAR: &str = "INFRAFLUX_STATE_BACKEND";
/// `postgres://user:password@host:5432/database?sslmode=verify-full`.
pub const POSTGRES_URL_VAR: &str = "INFRAFLUX_STATE_POSTGRES_URL";
/// How long a PostgreSQL lease lasts without renewal (e.g. `2m`).
pub const LEASE_VAR: &str = "INFRAFLUX_STATE_LEASE";
/// libpq's password variable, used when the URL carries no password.
pub const PASSWORD_VAR: &str = "PGPASSWORD";

/// The PostgreSQL store the environment variables describe (`variable` looks one up);
/// `lease` overrides the default.
pub fn postgres_from(
    variable: impl Fn(&str) -> Option<String>,
    lease: Option<Duration>,
) -> Result<PostgresStore, Error> {
    let url = variable(POSTGRES_URL_VAR)
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| Error::BackendConfig {
            reason: format!("the postgres backend needs {POSTGRES_URL_VAR}"),
        })?;
    let connection = ConnectionString::parse(&url, variable(PASSWORD_VAR))?;
    PostgresStore::new(connection, lease.unwrap_or(DEFAULT_LEASE))
}

/// Stands in for a backend whose settings are wrong, so that commands which build their
/// context before touching state still report the problem: every operation fails with
/// it, the first one (taking the lock or loading) before anything else happens.
pub struct Misconfigured {
    reason: String,
}

impl Misconfigured {
    pub fn new(error: Error) -> Self {
        let reason = match error {
            Error::BackendConfig { reason } => reason,
            other => other.to_string(),
        };
        Misconfigured { reason }
    }

    fn error(&self) -> Error {
        Error::BackendConfig {
            reason: self.reason.clone(),
        }
    }
}

impl StateStore for Misconfigured {
    fn load(&self, _environment: &str) -> Result<Option<StateDocument>, Error> {
        Err(self.error())
    }

    fn persist(&self, _document: &StateDocument) -> Result<(), Error> {
        Err(self.error())
    }

    fn lock(&self, _environment: &str, _info: LockInfo) -> Result<Box<dyn LockGuard>, Error> {
        Err(self.error())
    }

    fn environments(&self) -> Result<Vec<String>, Error> {
        Err(self.error())
    }

    fn locks(&self) -> Result<Vec<(String, LockInfo)>, Error> {
        Err(self.error())
    }

    fn force_unlock(&self, _environment: &str, _id: &str) -> Result<LockInfo, Error> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_a_url_and_a_sane_lease() {
        let none = |_: &str| None;
        let error = postgres_from(none, None).unwrap_err();
        assert!(error.to_string().contains(POSTGRES_URL_VAR), "{error}");
        let url = |name: &str| {
            (name == POSTGRES_URL_VAR).then(|| "postgres://ci:pw@127.0.0.1:1/state".to_string())
        };
        let store = postgres_from(url, None).unwrap();
        assert_eq!(store.lease(), DEFAULT_LEASE);
        let shown = format!("{store:?} {}", store.location());
        assert!(shown.contains("postgres://ci@127.0.0.1:1/state"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(
            postgres_from(url, Some(Duration::from_secs(5)))
                .unwrap()
                .lease(),
            Duration::from_secs(5)
        );
        let error = postgres_from(url, Some(Duration::from_millis(10))).unwrap_err();
        assert!(matches!(error, Error::BackendConfig { .. }), "{error}");
    }

    #[test]
    fn a_misconfigured_backend_fails_every_operation_with_its_reason() {
        let store = Misconfigured::new(Error::BackendConfig {
            reason: "the postgres backend needs a URL".into(),
        });
        let error = store.lock("dev", LockInfo::new("apply")).err().unwrap();
        assert_eq!(error.code(), "state::backend-config");
        assert!(error.to_string().contains("needs a URL"), "{error}");
        assert!(store.load("dev").is_err());
        assert!(store.environments().is_err());
    }
}
