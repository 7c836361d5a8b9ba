//! Locks as leases: a row in `infraflux_state_lease` per locked environment, valid until
//! its `expires`. The holder renews it every third of the lease while it runs; a holder
//! that is killed stops renewing, and its lease frees itself when it expires, instead of
//! blocking the team until someone runs `state unlock`.
//!
//! All times are the database server's (`now()`), so the clocks of the machines running
//! infraflux do not matter.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, GenericClient, Row};

use super::{Shared, database_error};
use crate::state::{Error, LockGuard, LockInfo};

/// How a lock attempt ended.
pub enum Attempt {
    Taken,
    /// Held by a live lease: its holder, and how long until it expires.
    Held(LockInfo, Duration),
    /// The holder released it between our insert and our look: try again.
    Vanished,
}

const HOLDER_COLUMNS: &str = "id, owner, host, pid, operation, acquired, \
     greatest(extract(epoch FROM expires - now()), 0)::float8";

fn holder(row: &Row) -> (LockInfo, Duration) {
    let pid: i64 = row.get(3);
    let info = LockInfo {
        id: row.get(0),
        owner: row.get(1),
        host: row.get(2),
        pid: u32::try_from(pid).unwrap_or(0),
        operation: row.get(4),
        created: row.get(5),
        // Not stored: a lease expires by itself, the holder's pid only informs the user.
        process_started: None,
    };
    let left: f64 = row.get(6);
    (info, Duration::from_secs_f64(left.max(0.0)))
}

/// Insert a lease for `info`, or take over an expired one, in one statement.
pub async fn acquire(
    client: &Client,
    environment: &str,
    info: &LockInfo,
    lease: Duration,
) -> Result<Attempt, tokio_postgres::Error> {
    let taken = client
        .query_opt(
            "INSERT INTO infraflux_state_lease AS l
                 (environment, id, owner, host, pid, operation, acquired, expires)
             VALUES ($1, $2, $3, $4, $5, $6, now(), now() + make_interval(secs => $7))
             ON CONFLICT (environment) DO UPDATE
                 SET id = excluded.id, owner = excluded.owner, host = excluded.host,
                     pid = excluded.pid, operation = excluded.operation,
                     acquired = excluded.acquired, expires = excluded.expires
                 WHERE l.expires <= now()
             RETURNING id",
            &[
                &environment,
                &info.id,
                &info.owner,
                &info.host,
                &i64::from(info.pid),
                &info.operation,
                &lease.as_secs_f64(),
            ],
        )
        .await?;
    if taken.is_some() {
        return Ok(Attempt::Taken);
    }
    let query =
        format!("SELECT {HOLDER_COLUMNS} FROM infraflux_state_lease WHERE environment = $1");
    Ok(match client.query_opt(&query, &[&environment]).await? {
        Some(row) => {
            let (holder, left) = holder(&row);
            Attempt::Held(holder, left)
        }
        None => Attempt::Vanished,
    })
}

/// Extend our lease; `false` when it is no longer ours (broken, or expired and taken).
pub async fn renew(
    client: &impl GenericClient,
    environment: &str,
    id: &str,
    lease: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let renewed = client
        .execute(
            "UPDATE infraflux_state_lease SET expires = now() + make_interval(secs => $3)
             WHERE environment = $1 AND id = $2",
            &[&environment, &id, &lease.as_secs_f64()],
        )
        .await?;
    Ok(renewed == 1)
}

/// Delete our lease (if it is still ours).
pub async fn release(
    client: &Client,
    environment: &str,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let deleted = client
        .execute(
            "DELETE FROM infraflux_state_lease WHERE environment = $1 AND id = $2",
            &[&environment, &id],
        )
        .await?;
    Ok(deleted == 1)
}

/// Every lease, expired ones included (they still name the run that held it last).
pub async fn all(client: &Client) -> Result<Vec<(String, LockInfo)>, tokio_postgres::Error> {
    let query = format!(
        "SELECT {HOLDER_COLUMNS}, environment FROM infraflux_state_lease ORDER BY environment"
    );
    let rows = client.query(&query, &[]).await?;
    Ok(rows.iter().map(|row| (row.get(7), holder(row).0)).collect())
}

/// Break the lease of `environment` when it has this ID (`state unlock`).
pub async fn force_release(
    client: &mut Client,
    environment: &str,
    id: &str,
    location: &str,
) -> Result<LockInfo, Error> {
    let failed = |e| database_error("break the lock", location, e);
    let transaction = client.transaction().await.map_err(failed)?;
    let query = format!(
        "SELECT {HOLDER_COLUMNS} FROM infraflux_state_lease WHERE environment = $1 FOR UPDATE"
    );
    let row = transaction
        .query_opt(&query, &[&environment])
        .await
        .map_err(failed)?
        .ok_or_else(|| Error::NotLocked {
            environment: environment.to_string(),
        })?;
    let (holder, _) = holder(&row);
    if holder.id != id {
        return Err(Error::LockIdMismatch {
            environment: environment.to_string(),
            given: id.to_string(),
            holder: Box::new(holder),
        });
    }
    transaction
        .execute(
            "DELETE FROM infraflux_state_lease WHERE environment = $1",
            &[&environment],
        )
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)?;
    Ok(holder)
}

/// Held while the lease is ours: renews it in the background, deletes it on drop.
pub struct LeaseGuard {
    pub(super) info: LockInfo,
    pub(super) environment: String,
    pub(super) shared: Arc<Shared>,
    pub(super) driver: Arc<super::driver::Driver>,
    pub(super) heartbeat: JoinHandle<()>,
}

impl LockGuard for LeaseGuard {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

/// Renew the lease every third of its length until it is lost or the task is aborted.
/// A failed renewal (the database is briefly unreachable) is retried at the next beat:
/// two more chances before the lease runs out.
pub async fn heartbeat(shared: Arc<Shared>, environment: String, id: String) {
    let interval = shared.lease / 3;
    loop {
        tokio::time::sleep(interval).await;
        let renewed = shared
            .with_client_retrying("renew the lock", |client| {
                let (environment, id, lease) = (environment.clone(), id.clone(), shared.lease);
                Box::pin(async move { Ok(renew(client, &environment, &id, lease).await?) })
            })
            .await;
        match renewed {
            Ok(true) => tracing::trace!(environment, "state lease renewed"),
            Ok(false) => {
                tracing::warn!(
                    environment,
                    id,
                    "the state lock was broken or expired while held; writes to this state will be refused"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(environment, error = %e, "cannot renew the state lease; retrying")
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.shared.forget_lease(&self.environment);
        let shared = self.shared.clone();
        let (environment, id) = (self.environment.clone(), self.info.id.clone());
        let released = self.driver.run(async move {
            shared
                .with_client_retrying("release the lock", |client| {
                    let (environment, id) = (environment.clone(), id.clone());
                    Box::pin(async move { Ok(release(client, &environment, &id).await?) })
                })
                .await
        });
        match released {
            Ok(true) => tracing::debug!(environment = self.environment, "state lease released"),
            Ok(false) => tracing::warn!(
                environment = self.environment,
                "the state lock was broken or taken over while held; left the current one alone"
            ),
            // It expires by itself.
            Err(e) => tracing::warn!(
                environment = self.environment,
                error = %e,
                "cannot release the state lease; it expires by itself"
            ),
        }
    }
}
