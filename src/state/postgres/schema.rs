//! The database schema, created on first use and versioned.
//!
//! ```sql
//! infraflux_schema      (singleton, version)           -- which migrations ran
//! infraflux_state       (environment PK, serial, lineage, document, updated_at)
//! infraflux_state_lease (environment PK, id, owner, host, pid, operation, acquired, expires)
//! ```
//!
//! `document` holds exactly the bytes the local backend would write to `<env>.json`
//! (checksummed JSON, or an age file around it when encryption is configured); `serial`
//! and `lineage` repeat the document's so a write can compare-and-swap without reading it.
//! The tables live in the connection's `search_path` (default `public`); another schema
//! is chosen with `options=-csearch_path=<schema>` in the connection string.

use tokio_postgres::Client;

use crate::state::Error;

/// The newest schema this infraflux knows.
pub const SCHEMA_VERSION: i32 = 1;

/// Serialises schema changes of concurrent first runs (CREATE TABLE IF NOT EXISTS alone
/// can still fail when two sessions race). Any constant works; this one is "infraflux".
const MIGRATION_LOCK: i64 = 0x696e_6672_6166_6c78;

/// Migration `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE IF NOT EXISTS infraflux_state (
        environment text PRIMARY KEY,
        serial bigint NOT NULL CHECK (serial > 0),
        lineage uuid NOT NULL,
        document bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE IF NOT EXISTS infraflux_state_lease (
        environment text PRIMARY KEY,
        id text NOT NULL,
        owner text NOT NULL,
        host text NOT NULL,
        pid bigint NOT NULL,
        operation text NOT NULL,
        acquired timestamptz NOT NULL,
        expires timestamptz NOT NULL
     );",
];

/// Bring the schema to [`SCHEMA_VERSION`], in one transaction; refuse a newer one.
pub async fn ensure(client: &mut Client, location: &str) -> Result<(), Error> {
    let failed =
        |e: tokio_postgres::Error| super::database_error("prepare the schema", location, e);
    // Fast path: an up-to-date schema needs no lock and no CREATE privilege.
    if current_version(client).await.map_err(failed)? == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let transaction = client.transaction().await.map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS infraflux_schema (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                version integer NOT NULL
             )",
        )
        .await
        .map_err(failed)?;
    let found: i32 = transaction
        .query_opt("SELECT version FROM infraflux_schema", &[])
        .await
        .map_err(failed)?
        .map(|row| row.get(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Error::BackendConfig {
            reason: format!(
                "the state database {location} has schema version {found}, newer than this infraflux supports ({SCHEMA_VERSION}); upgrade infraflux"
            ),
        });
    }
    for migration in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        transaction.batch_execute(migration).await.map_err(failed)?;
    }
    transaction
        .execute(
            "INSERT INTO infraflux_schema (version) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)?;
    tracing::debug!(
        location,
        from = found,
        to = SCHEMA_VERSION,
        "state database schema ready"
    );
    Ok(())
}

/// The recorded version, `None` before the first run.
async fn current_version(client: &Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('infraflux_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM infraflux_schema", &[])
        .await?
        .map(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_migration_per_version() {
        assert_eq!(MIGRATIONS.len(), SCHEMA_VERSION as usize);
    }
}
