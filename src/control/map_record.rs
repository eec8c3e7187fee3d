//! The shard map in force, recorded in PostgreSQL: so that a proxy that starts (a restart, a
//! second proxy of the fleet) knows which map was serving, and holds an edit of the file that
//! would move stored rows instead of serving it, as a running proxy does.
//!
//! One row per fleet and database in `shardgate.maps_in_force` on every primary of the map in
//! force (the default shard may change with an edit; any primary answers). A record carries a
//! version: the newest version any primary answers wins, and a write never replaces a newer
//! one. The map's text includes the shards' connection URIs, so the table is readable only by
//! its owner (the proxy's user), as postgres_fdw keeps user mappings.

use std::time::Duration;

use super::{ControlConn, client_config};
use crate::config::BackendUri;

/// Creates the table once (the advisory lock lets two proxies starting at once take turns).
const DDL: &str = "SELECT pg_advisory_xact_lock(hashtext('shardgate.maps_in_force')); \
     CREATE SCHEMA IF NOT EXISTS shardgate; \
     CREATE TABLE IF NOT EXISTS shardgate.maps_in_force (\
     fleet text NOT NULL, database text NOT NULL, version bigint NOT NULL, map text NOT NULL, \
     recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (fleet, database)); \
     REVOKE ALL ON shardgate.maps_in_force FROM PUBLIC";

const READ: &str = "SELECT version, map FROM shardgate.maps_in_force \
     WHERE fleet = $1 AND database = $2";

const WRITE: &str = "INSERT INTO shardgate.maps_in_force AS m (fleet, database, version, map) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (fleet, database) DO UPDATE \
     SET version = EXCLUDED.version, map = EXCLUDED.map, recorded_at = now() \
     WHERE m.version < EXCLUDED.version";

/// A recorded map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Increases with every map put in force.
    pub version: i64,
    /// The map file's text.
    pub text: String,
}

/// Where a fleet's map of one database is recorded.
pub struct MapRecord<'a> {
    /// The fleet (`fleet` in the config).
    pub fleet: &'a str,
    /// The database clients connect to.
    pub database: &'a str,
    /// Connecting to a primary waits this long.
    pub timeout: Duration,
}

impl MapRecord<'_> {
    /// The newest record any of `primaries` holds; `None` when none holds one. Fails only
    /// when no primary could be asked.
    pub async fn read(&self, primaries: &[&BackendUri]) -> Result<Option<Recorded>, String> {
        let mut newest: Option<Recorded> = None;
        let mut asked = 0;
        let mut last_error = String::from("no primary");
        for uri in primaries {
            match self.read_one(uri).await {
                Ok(found) => {
                    asked += 1;
                    if let Some(found) = found
                        && newest.as_ref().is_none_or(|n| n.version < found.version)
                    {
                        newest = Some(found);
                    }
                }
                Err(why) => last_error = format!("{}:{}: {why}", uri.host, uri.port),
            }
        }
        match asked {
            0 => Err(last_error),
            _ => Ok(newest),
        }
    }

    async fn read_one(&self, uri: &BackendUri) -> Result<Option<Recorded>, String> {
        let conn = self.connect(uri).await?;
        let rows = conn
            .client
            .query(READ, &[&self.fleet, &self.database])
            .await;
        match rows {
            Ok(rows) => Ok(rows.first().map(|row| Recorded {
                version: row.get(0),
                text: row.get(1),
            })),
            Err(error) if missing(&error) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Records `recorded` on every one of `primaries`; the ones that failed, with why.
    pub async fn write(&self, primaries: &[&BackendUri], recorded: &Recorded) -> Vec<String> {
        let mut failed = Vec::new();
        for uri in primaries {
            if let Err(why) = self.write_one(uri, recorded).await {
                failed.push(format!("{}:{}: {why}", uri.host, uri.port));
            }
        }
        failed
    }

    async fn write_one(&self, uri: &BackendUri, recorded: &Recorded) -> Result<(), String> {
        let conn = self.connect(uri).await?;
        let text = |e: tokio_postgres::Error| e.to_string();
        conn.client.batch_execute(DDL).await.map_err(text)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &self.fleet,
            &self.database,
            &recorded.version,
            &recorded.text,
        ];
        conn.client.execute(WRITE, &params).await.map_err(text)?;
        Ok(())
    }

    async fn connect(&self, uri: &BackendUri) -> Result<ControlConn, String> {
        let config = client_config(uri, "shardgate map record", self.timeout);
        ControlConn::open(&config, self.timeout)
            .await
            .map_err(|error| {
                error.map_or_else(
                    || format!("no answer in {:?}", self.timeout),
                    |e| e.to_string(),
                )
            })
    }
}

/// The table (or its schema) does not exist yet: nothing was recorded there.
fn missing(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let code = error.code();
    code == Some(&SqlState::UNDEFINED_TABLE) || code == Some(&SqlState::INVALID_SCHEMA_NAME)
}
