//! The shard map in force, recorded in PostgreSQL: so that a proxy that starts (a restart, a
//! second proxy of the fleet) knows which map was serving, and holds an edit of the file that
//! would move stored rows instead of serving it, as a running proxy does.
//!
//! One row per fleet and database in `shardgate.maps_in_force` on every primary of the map in
//! force (the default shard may change with an edit; any primary answers). A record carries a
//! version: the newest version any primary answers wins, and a write never replaces a newer
//! one. The record keeps placement and endpoints, never passwords ([`redact`]): a recorded map
//! serves only with the passwords of the same endpoints in the file ([`with_file_secrets`]),
//! so a record cannot send the proxy anywhere its file does not.

use std::time::Duration;

use super::ControlConn;
use crate::config::BackendUri;
use crate::config::raw::RawShardMap;

/// The table, created once (the advisory lock lets two proxies starting at once take turns).
macro_rules! table_ddl {
    () => {
        "SELECT pg_advisory_xact_lock(hashtext('shardgate.maps_in_force')); \
         CREATE SCHEMA IF NOT EXISTS shardgate; \
         CREATE TABLE IF NOT EXISTS shardgate.maps_in_force (\
         fleet text NOT NULL, database text NOT NULL, version bigint NOT NULL, map text NOT NULL, \
         recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (fleet, database))"
    };
}
/// The table, for the fleet's tables that read it (`fleet`).
pub(crate) const TABLE_DDL: &str = table_ddl!();

/// Run only when the table is missing, so a role without CREATE can use one made for it.
const DDL: &str = concat!(
    table_ddl!(),
    "; REVOKE ALL ON shardgate.maps_in_force FROM PUBLIC"
);

const EXISTS: &str = "SELECT to_regclass('shardgate.maps_in_force') IS NOT NULL";

/// How long one question to a primary may take once connected.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

const READ: &str = "SELECT version, map FROM shardgate.maps_in_force \
     WHERE fleet = $1 AND database = $2";

/// A newer record of the same map counts as taken (a fleet's move records its map with the
/// step to switched, and its coordinator records it again as it switches); its version stays.
const WRITE: &str = "INSERT INTO shardgate.maps_in_force AS m (fleet, database, version, map) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (fleet, database) DO UPDATE \
     SET version = greatest(m.version, EXCLUDED.version), map = EXCLUDED.map, \
     recorded_at = now() WHERE m.version < EXCLUDED.version OR m.map = EXCLUDED.map";

/// A recorded map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Increases with every map put in force.
    pub version: i64,
    /// The map file's text with every password removed ([`redact`]).
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
        let answers = futures::future::join_all(primaries.iter().map(|uri| self.read_one(uri)));
        let mut newest: Option<Recorded> = None;
        let mut asked = 0;
        let mut last_error = String::from("no primary");
        for (uri, answer) in primaries.iter().zip(answers.await) {
            match answer {
                Ok(found) => {
                    asked += 1;
                    if let Some(found) = found
                        && newest.as_ref().is_none_or(|n| n.version < found.version)
                    {
                        newest = Some(found);
                    }
                }
                Err(why) => last_error = format!("{uri}: {why}"),
            }
        }
        match asked {
            0 => Err(last_error),
            _ => Ok(newest),
        }
    }

    async fn read_one(&self, uri: &BackendUri) -> Result<Option<Recorded>, String> {
        let conn = self.connect(uri).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.fleet, &self.database];
        let rows = tokio::time::timeout(ANSWER_WAIT, conn.client.query(READ, &params)).await;
        let rows = rows.map_err(|_| format!("no answer in {ANSWER_WAIT:?}"))?;
        match rows {
            Ok(rows) => match rows.first() {
                None => Ok(None),
                Some(row) => Ok(Some(Recorded {
                    version: row.try_get(0).map_err(|e| e.to_string())?,
                    text: row.try_get(1).map_err(|e| e.to_string())?,
                })),
            },
            Err(error) if missing(&error) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Records `recorded` on every one of `primaries`, at once. `Ok` when at least one
    /// primary took it; the ones that failed are logged.
    pub async fn write(
        &self,
        primaries: &[&BackendUri],
        recorded: &Recorded,
    ) -> Result<(), String> {
        let writes = primaries.iter().map(|uri| self.write_one(uri, recorded));
        let outcomes = futures::future::join_all(writes).await;
        let mut taken = false;
        let mut failed = Vec::new();
        for (uri, outcome) in primaries.iter().zip(outcomes) {
            match outcome {
                Ok(true) => taken = true,
                Ok(false) => failed.push(format!("{uri}: a newer record is there")),
                Err(why) => failed.push(format!("{uri}: {why}")),
            }
        }
        for why in &failed {
            tracing::warn!(
                database = self.database,
                why,
                "could not record the shard map in force"
            );
        }
        match taken {
            true => Ok(()),
            false => Err(failed.join("; ")),
        }
    }

    /// Whether `uri` took the record (`false`: it holds a newer one).
    async fn write_one(&self, uri: &BackendUri, recorded: &Recorded) -> Result<bool, String> {
        let conn = self.connect(uri).await?;
        let text = |e: tokio_postgres::Error| e.to_string();
        let asked = async {
            let exists: bool = conn
                .client
                .query_one(EXISTS, &[])
                .await
                .map_err(text)?
                .get(0);
            if !exists {
                conn.client.batch_execute(DDL).await.map_err(text)?;
            }
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                &self.fleet,
                &self.database,
                &recorded.version,
                &recorded.text,
            ];
            conn.client.execute(WRITE, &params).await.map_err(text)
        };
        let written = tokio::time::timeout(ANSWER_WAIT, asked).await;
        Ok(written.map_err(|_| format!("no answer in {ANSWER_WAIT:?}"))?? == 1)
    }

    async fn connect(&self, uri: &BackendUri) -> Result<ControlConn, String> {
        ControlConn::connect(uri, "shardgate map record", self.timeout).await
    }
}

/// The statements that record `text` (redacted) as the map in force, newer than any record
/// there: run inside a move's decision to commit, on the server that keeps its decision.
pub fn write_sql(fleet: &str, database: &str, text: &str) -> String {
    use crate::sql::quote::literal;
    format!(
        "{}; INSERT INTO shardgate.maps_in_force AS m (fleet, database, version, map) \
         VALUES ({}, {}, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, {}) \
         ON CONFLICT (fleet, database) DO UPDATE \
         SET version = greatest(m.version + 1, EXCLUDED.version), map = EXCLUDED.map, \
         recorded_at = now()",
        table_ddl!(),
        literal(fleet),
        literal(database),
        literal(text)
    )
}

/// The table (or its schema) does not exist yet: nothing was recorded there.
fn missing(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let code = error.code();
    code == Some(&SqlState::UNDEFINED_TABLE) || code == Some(&SqlState::INVALID_SCHEMA_NAME)
}

/// `text` (a shard-map file) with every password taken out of its URIs: what is recorded.
pub fn redact(text: &str) -> Result<String, String> {
    let mut raw: RawShardMap = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let redacted = |uri: &mut String| -> Result<(), String> {
        *uri = BackendUri::parse(uri)
            .map_err(|e| e.to_string())?
            .to_string();
        Ok(())
    };
    for shard in &mut raw.shards {
        redacted(&mut shard.primary)?;
        shard.replicas.iter_mut().try_for_each(redacted)?;
    }
    serde_yaml::to_string(&raw).map_err(|e| e.to_string())
}

/// The recorded map `recorded` (redacted) with each endpoint's password from the file's map
/// `file`, ready to parse; why not when it names an endpoint (server, port, database, user)
/// the file does not: the proxy connects only where its file says.
pub fn with_file_secrets(recorded: &str, file: &str) -> Result<String, String> {
    let mut raw: RawShardMap = serde_yaml::from_str(recorded).map_err(|e| e.to_string())?;
    let file: RawShardMap = serde_yaml::from_str(file).map_err(|e| e.to_string())?;
    let known: Vec<(BackendUri, &str)> = (file.shards.iter())
        .flat_map(|shard| std::iter::once(&shard.primary).chain(&shard.replicas))
        .filter_map(|uri| Some((BackendUri::parse(uri).ok()?, uri.as_str())))
        .collect();
    let secret = |uri: &mut String| -> Result<(), String> {
        let wanted = BackendUri::parse(uri).map_err(|e| e.to_string())?;
        let same = |(known, _): &&(BackendUri, &str)| {
            (known.host == wanted.host && known.port == wanted.port)
                && (known.database == wanted.database && known.user == wanted.user)
        };
        let found = known.iter().find(same);
        *uri = found
            .ok_or_else(|| format!("{wanted} is not in the file"))?
            .1
            .to_owned();
        Ok(())
    };
    for shard in &mut raw.shards {
        secret(&mut shard.primary)?;
        shard.replicas.iter_mut().try_for_each(secret)?;
    }
    serde_yaml::to_string(&raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
