//! The PostgreSQL backend: one row per environment, leases as locks.
//!
//! - [`connection`]: the connection string (password never shown), TLS (`sslmode`);
//! - [`schema`]: the tables, created on first use and versioned;
//! - [`lease`]: locks as leases renewed by a heartbeat, so a killed run's lock expires;
//! - [`driver`]: the backend's own runtime thread, so the synchronous
//!   [`StateStore`] calls work inside and outside the engine's tokio runtime.
//!
//! ## Writes are compare-and-swap
//! A write runs in one transaction: it locks the environment's row (`SELECT … FOR
//! UPDATE`), checks that the stored serial is the one the document was loaded at (its
//! serial minus one: every write bumps it by one) and the lineage is the same, and only
//! then replaces the row. A concurrent writer that got there first makes the check fail
//! with [`Error::SerialMismatch`] ("changed underneath you"), never a lost update; a
//! connection dropped mid-write rolls the transaction back, leaving the previous serial.
//! While this store holds the environment's lease, the write also renews the lease in
//! the same transaction and fails with [`Error::LeaseLost`] if the lease was broken or
//! taken over: a run that lost its lock cannot overwrite the next holder's state.
//!
//! ## Encryption
//! The `document` column holds the same bytes as a local `<env>.json`: with an
//! [`Encryption`] set, an age file around the checksummed JSON.

pub mod connection;
mod driver;
mod lease;
pub mod schema;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

pub use connection::ConnectionString;
use driver::Driver;
use lease::{Attempt, LeaseGuard};

use super::{
    Error, LockGuard, LockInfo, StateDocument, StateStore, check_document, check_environment_name,
    format,
};
use crate::encryption::{self, Encryption};

/// How long a lease lasts without renewal, unless configured (`INFRAFLUX_STATE_LEASE`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// Shorter leases would need renewals faster than a slow database answers.
pub const MINIMUM_LEASE: Duration = Duration::from_secs(1);
/// One database operation (connect included) that takes longer is an error: a write
/// waiting on a row another session holds locked does not hang the run.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `lock_with_timeout` looks again at a lease held by someone else.
const LOCK_POLL: Duration = Duration::from_millis(250);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// State documents in a PostgreSQL database. Cloning shares the connection.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    driver: Arc<Driver>,
    encryption: Option<Arc<Encryption>>,
    /// Called before each write of a plaintext document (no encryption set).
    plaintext_hook: Option<fn()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("connection", &self.shared.connection)
            .field("lease", &self.shared.lease)
            .field("encrypted", &self.encryption.is_some())
            .finish()
    }
}

/// What the store's tasks share (the heartbeat outlives a single call).
pub(crate) struct Shared {
    connection: ConnectionString,
    /// The connection string without its password, for messages.
    location: String,
    pub(crate) lease: Duration,
    /// One connection, opened on first use and again after it breaks.
    session: tokio::sync::Mutex<Option<Client>>,
    schema_ready: AtomicBool,
    /// Environment → lock ID of the leases this store holds (checked by writes).
    held: Mutex<HashMap<String, String>>,
}

/// A failure inside a database task: from the driver, or one of ours.
pub(crate) enum Failure {
    Database(tokio_postgres::Error),
    State(Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::Database(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::State(error)
    }
}

impl From<crate::encryption::Error> for Failure {
    fn from(error: crate::encryption::Error) -> Self {
        Failure::State(error.into())
    }
}

pub(crate) fn database_error(action: &str, location: &str, error: tokio_postgres::Error) -> Error {
    Error::Database {
        action: action.to_string(),
        location: location.to_string(),
        source: Box::new(error),
    }
}

impl Shared {
    /// Run `work` with the connection (opened, and the schema ensured, if needed), bounded
    /// by [`OPERATION_TIMEOUT`].
    pub(crate) async fn with_client<T>(
        &self,
        action: &str,
        work: impl for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, Error> {
        self.attempt(action, work).await.map_err(|(error, _)| error)
    }

    /// [`Shared::with_client`] for work that is safe to repeat (reads, renewing or
    /// deleting our own lease): when the connection turns out to be broken (the server
    /// restarted, the session was terminated, the network dropped it), once more on a
    /// new connection.
    pub(crate) async fn with_client_retrying<T>(
        &self,
        action: &str,
        work: impl for<'c> Fn(&'c mut Client) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, Error> {
        match self.attempt(action, &work).await {
            Err((_, true)) => self.with_client(action, &work).await,
            other => other.map_err(|(error, _)| error),
        }
    }

    /// One try; an error comes with whether the connection broke.
    async fn attempt<T>(
        &self,
        action: &str,
        work: impl for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, (Error, bool)> {
        let mut session = self.session.lock().await;
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let client = self.connect(&mut session).await.map_err(Failure::State)?;
            work(client).await
        })
        .await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::State(error))) => Err((error, false)),
            Ok(Err(Failure::Database(error))) => {
                // `is_closed` can lag behind a terminated session: after any database
                // error, the next operation starts on a new connection.
                *session = None;
                let broken = error.is_closed()
                    || error
                        .as_db_error()
                        .is_none_or(|db| db.severity() == "FATAL");
                Err((database_error(action, &self.location, error), broken))
            }
            Err(_) => {
                // The server may still be working on our statement: closing the
                // connection makes it roll back.
                *session = None;
                let error = Error::Database {
                    action: action.to_string(),
                    location: self.location.clone(),
                    source: format!("no answer within {}s", OPERATION_TIMEOUT.as_secs()).into(),
                };
                Err((error, false))
            }
        }
    }

    async fn connect<'s>(&self, session: &'s mut Option<Client>) -> Result<&'s mut Client, Error> {
        if session.as_ref().is_none_or(Client::is_closed) {
            *session = None;
            let mut client = self.open().await?;
            if !self.schema_ready.load(Ordering::Acquire) {
                schema::ensure(&mut client, &self.location).await?;
                self.schema_ready.store(true, Ordering::Release);
            }
            *session = Some(client);
        }
        Ok(session.as_mut().expect("connected above"))
    }

    async fn open(&self) -> Result<Client, Error> {
        let failed = |e| database_error("connect", &self.location, e);
        let config = self.connection.config();
        let client = match self.connection.client_config()? {
            None => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(failed)?;
                tokio::spawn(drive(connection));
                client
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                let (client, connection) = config.connect(tls).await.map_err(failed)?;
                tokio::spawn(drive(connection));
                client
            }
        };
        tracing::debug!(location = self.location, "connected to the state database");
        Ok(client)
    }

    /// The lock ID of our lease on `environment`, if we hold one.
    fn held_lease(&self, environment: &str) -> Option<String> {
        self.held
            .lock()
            .expect("lease map")
            .get(environment)
            .cloned()
    }

    pub(crate) fn forget_lease(&self, environment: &str) {
        self.held.lock().expect("lease map").remove(environment);
    }
}

/// The connection's I/O: runs until the client is dropped or the connection breaks.
async fn drive(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "state database connection closed");
    }
}

impl PostgresStore {
    /// A store on this database; leases last `lease` without renewal. Connects on first
    /// use, so building one does no I/O.
    pub fn new(connection: ConnectionString, lease: Duration) -> Result<Self, Error> {
        if lease < MINIMUM_LEASE {
            return Err(Error::BackendConfig {
                reason: format!(
                    "the lease must be at least {}s (got {}ms)",
                    MINIMUM_LEASE.as_secs(),
                    lease.as_millis()
                ),
            });
        }
        Ok(PostgresStore {
            shared: Arc::new(Shared {
                location: connection.to_string(),
                connection,
                lease,
                session: tokio::sync::Mutex::new(None),
                schema_ready: AtomicBool::new(false),
                held: Mutex::new(HashMap::new()),
            }),
            driver: Arc::new(Driver::new()?),
            encryption: None,
            plaintext_hook: None,
        })
    }

    /// Encrypt every write with `encryption` and decrypt on load (`None`: plaintext).
    pub fn with_encryption(mut self, encryption: Option<Encryption>) -> Self {
        self.encryption = encryption.map(Arc::new);
        self
    }

    /// Call `hook` before writing a plaintext document (e.g. to warn about it).
    pub fn on_plaintext_write(mut self, hook: fn()) -> Self {
        self.plaintext_hook = Some(hook);
        self
    }

    pub fn lease(&self) -> Duration {
        self.shared.lease
    }

    /// Run `work` with the connection, from synchronous code.
    fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        work: impl for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, Failure>> + Send + 'static,
    ) -> Result<T, Error> {
        let shared = self.shared.clone();
        self.driver
            .run(async move { shared.with_client(action, work).await })
    }

    /// [`PostgresStore::run`] for work safe to repeat on a new connection.
    fn run_retrying<T: Send + 'static>(
        &self,
        action: &'static str,
        work: impl for<'c> Fn(&'c mut Client) -> BoxFuture<'c, Result<T, Failure>>
        + Send
        + Sync
        + 'static,
    ) -> Result<T, Error> {
        let shared = self.shared.clone();
        self.driver
            .run(async move { shared.with_client_retrying(action, work).await })
    }

    /// How a stored document is named in errors.
    fn shown(&self, environment: &str) -> String {
        format!("{} (environment `{environment}`)", self.shared.location)
    }

    /// The stored bytes of `document`: encoded, encrypted when configured.
    fn seal(&self, document: &StateDocument) -> Result<Vec<u8>, Error> {
        let bytes = format::encode(document)?;
        match &self.encryption {
            Some(encryption) => Ok(encryption.encrypt(&bytes)?),
            None => {
                if let Some(hook) = self.plaintext_hook {
                    hook();
                }
                Ok(bytes)
            }
        }
    }

    /// Replace the stored document of `document.environment` whose serial is `expected`
    /// (0: none is stored) with `document`, in one transaction.
    fn write(&self, document: &StateDocument, expected: u64) -> Result<(), Error> {
        check_document(document)?;
        let bytes = self.seal(document)?;
        let environment = document.environment.clone();
        let lineage = document.lineage;
        let serial = to_sql_serial(document.serial)?;
        let expected_sql = to_sql_serial(expected)?;
        let fence = self.shared.held_lease(&environment);
        let lease = self.shared.lease;
        let location = self.shared.location.clone();
        self.run("write the state", move |client| {
            Box::pin(async move {
                let transaction = client.transaction().await?;
                if let Some(id) = &fence
                    && !lease::renew(&transaction, &environment, id, lease).await?
                {
                    return Err(Error::LeaseLost {
                        environment,
                        id: id.clone(),
                    }
                    .into());
                }
                let mismatch = |found: i64| Error::SerialMismatch {
                    environment: environment.clone(),
                    expected,
                    found: u64::try_from(found).unwrap_or(0),
                };
                let stored = transaction
                    .query_opt(
                        "SELECT serial, lineage FROM infraflux_state WHERE environment = $1 FOR UPDATE",
                        &[&environment],
                    )
                    .await?;
                match stored {
                    None if expected_sql == 0 => {
                        let inserted = transaction
                            .execute(
                                "INSERT INTO infraflux_state (environment, serial, lineage, document)
                                 VALUES ($1, $2, $3, $4) ON CONFLICT (environment) DO NOTHING",
                                &[&environment, &serial, &lineage, &bytes],
                            )
                            .await?;
                        if inserted == 0 {
                            // Another writer created it since our look.
                            let found: i64 = transaction
                                .query_one(
                                    "SELECT serial FROM infraflux_state WHERE environment = $1",
                                    &[&environment],
                                )
                                .await?
                                .get(0);
                            return Err(mismatch(found).into());
                        }
                    }
                    None => return Err(mismatch(0).into()),
                    Some(row) => {
                        let (found, found_lineage): (i64, uuid::Uuid) = (row.get(0), row.get(1));
                        if found_lineage != lineage {
                            return Err(Error::LineageMismatch {
                                path: location,
                                environment: environment.clone(),
                                expected: lineage,
                                found: found_lineage,
                            }
                            .into());
                        }
                        if found != expected_sql {
                            return Err(mismatch(found).into());
                        }
                        transaction
                            .execute(
                                "UPDATE infraflux_state
                                 SET serial = $2, document = $3, updated_at = now()
                                 WHERE environment = $1",
                                &[&environment, &serial, &bytes],
                            )
                            .await?;
                    }
                }
                transaction.commit().await?;
                Ok(())
            })
        })
    }

    fn decode(
        &self,
        environment: &str,
        serial: i64,
        bytes: Vec<u8>,
    ) -> Result<StateDocument, Error> {
        let shown = self.shown(environment);
        let plain = encryption::open(self.encryption.as_deref(), bytes, &shown)?;
        let document = format::decode(&plain, &shown)?;
        let problem = if document.environment != environment {
            Some(format!("it holds environment `{}`", document.environment))
        } else if u64::try_from(serial).ok() != Some(document.serial) {
            Some(format!(
                "its row says serial {serial}, the document {}",
                document.serial
            ))
        } else {
            None
        };
        match problem {
            Some(reason) => Err(Error::Corrupt {
                path: shown,
                reason,
                source: None,
            }),
            None => Ok(document),
        }
    }
}

/// Serials are `bigint` in the database.
fn to_sql_serial(serial: u64) -> Result<i64, Error> {
    i64::try_from(serial)
        .map_err(|_| Error::Other(format!("serial {serial} is too large to store")))
}

impl StateStore for PostgresStore {
    fn load(&self, environment: &str) -> Result<Option<StateDocument>, Error> {
        check_environment_name(environment)?;
        let name = environment.to_string();
        let row = self.run_retrying("read the state", move |client| {
            let name = name.clone();
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT serial, document FROM infraflux_state WHERE environment = $1",
                        &[&name],
                    )
                    .await?;
                Ok(row.map(|row| (row.get::<_, i64>(0), row.get::<_, Vec<u8>>(1))))
            })
        })?;
        row.map(|(serial, bytes)| self.decode(environment, serial, bytes))
            .transpose()
    }

    fn persist(&self, document: &StateDocument) -> Result<(), Error> {
        self.write(document, document.serial.saturating_sub(1))
    }

    fn import(&self, document: &StateDocument, replacing: Option<u64>) -> Result<(), Error> {
        self.write(document, replacing.unwrap_or(0))
    }

    fn lock(&self, environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, Error> {
        check_environment_name(environment)?;
        // The holder may release between our insert and our look: try a few times.
        for _ in 0..5 {
            let (name, attempt_info, lease) =
                (environment.to_string(), info.clone(), self.shared.lease);
            let attempt = self.run("take the lock", move |client| {
                Box::pin(
                    async move { Ok(lease::acquire(client, &name, &attempt_info, lease).await?) },
                )
            })?;
            match attempt {
                Attempt::Taken => {
                    self.shared
                        .held
                        .lock()
                        .expect("lease map")
                        .insert(environment.to_string(), info.id.clone());
                    let heartbeat = self.driver.spawn(lease::heartbeat(
                        self.shared.clone(),
                        environment.to_string(),
                        info.id.clone(),
                    ));
                    tracing::debug!(environment, id = %info.id, "state lease taken");
                    return Ok(Box::new(LeaseGuard {
                        info,
                        environment: environment.to_string(),
                        shared: self.shared.clone(),
                        driver: self.driver.clone(),
                        heartbeat,
                    }));
                }
                Attempt::Held(holder, left) => {
                    let stale = holder.is_stale();
                    return Err(Error::Locked {
                        environment: environment.to_string(),
                        holder: Box::new(holder),
                        stale,
                        expires_in: Some(left),
                    });
                }
                Attempt::Vanished => continue,
            }
        }
        Err(Error::Other(format!(
            "the lock of environment `{environment}` keeps appearing and disappearing"
        )))
    }

    /// Waits for any held lease, a stale one included: unlike a lock file, a lease
    /// whose holder is gone frees itself when it expires.
    fn lock_with_timeout(
        &self,
        environment: &str,
        info: LockInfo,
        timeout: Duration,
    ) -> Result<Box<dyn LockGuard>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lock(environment, info.clone()) {
                Err(Error::Locked { expires_in, .. }) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tracing::debug!(environment, ?left, ?expires_in, "state locked, waiting");
                    std::thread::sleep(LOCK_POLL.min(left));
                }
                result => return result,
            }
        }
    }

    fn force_unlock(&self, environment: &str, id: &str) -> Result<LockInfo, Error> {
        check_environment_name(environment)?;
        let (name, id, location) = (
            environment.to_string(),
            id.to_string(),
            self.shared.location.clone(),
        );
        let holder = self.run("break the lock", move |client| {
            Box::pin(async move { Ok(lease::force_release(client, &name, &id, &location).await?) })
        })?;
        tracing::info!(environment, id = %holder.id, "state lock broken");
        Ok(holder)
    }

    fn location(&self) -> String {
        self.shared.location.clone()
    }

    fn environments(&self) -> Result<Vec<String>, Error> {
        self.run_retrying("list the environments", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT environment FROM infraflux_state ORDER BY environment",
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            })
        })
    }

    fn locks(&self) -> Result<Vec<(String, LockInfo)>, Error> {
        self.run_retrying("list the locks", |client| {
            Box::pin(async move { Ok(lease::all(client).await?) })
        })
    }

    fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_deref()
    }

    fn rekey(&self, environment: &str) -> Result<bool, Error> {
        check_environment_name(environment)?;
        let Some(encryption) = self.encryption.clone() else {
            return Err(Error::EncryptionConfig {
                reason: "rekey needs recipients, an identity or a passphrase to encrypt to"
                    .to_string(),
            });
        };
        let name = environment.to_string();
        let shown = self.shown(environment);
        self.run("re-encrypt the state", move |client| {
            Box::pin(async move {
                let transaction = client.transaction().await?;
                let Some(row) = transaction
                    .query_opt(
                        "SELECT document FROM infraflux_state WHERE environment = $1 FOR UPDATE",
                        &[&name],
                    )
                    .await?
                else {
                    return Ok(false);
                };
                let plain = encryption::open(Some(&encryption), row.get(0), &shown)?;
                // Only a sound document is rewritten.
                let document = format::decode(&plain, &shown)?;
                let sealed = encryption.encrypt(&format::encode(&document)?)?;
                transaction
                    .execute(
                        "UPDATE infraflux_state SET document = $2, updated_at = now() WHERE environment = $1",
                        &[&name, &sealed],
                    )
                    .await?;
                transaction.commit().await?;
                Ok(true)
            })
        })
    }
}
