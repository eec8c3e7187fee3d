//! The federation database: PostgreSQL's own planner and executor, through postgres_fdw, as
//! the engine for cross-shard reads the streaming merge cannot compute (subqueries, CTEs,
//! window functions, set operations, joins off the shard key, …).
//!
//! It is a database of its own (`<app database>_federation_<digest of the map>`) on the default
//! shard's primary:
//! the proxy creates it when first needed, with the application database's encoding and
//! collation, and writes nothing into the application's own schemas. In it, every sharded
//! table is a view over its foreign tables on every shard, and every other table a foreign
//! table on the default shard (see `script`). A read it answers is sent there unchanged and
//! its rows stream back to the client as any backend's do; filters, sorts and (where
//! PostgreSQL can) aggregates are pushed down to the shards, which are scanned in parallel.
//!
//! It is built again from the map and the default shard's catalog whenever it may be out of
//! date: at a proxy's first federated read, after a map reload (a new epoch builds anew) and
//! after DDL through this proxy. Several proxies building at once take turns (an advisory
//! lock), and each build replaces the previous one in one transaction.

pub mod script;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use script::{Catalog, ShardServer};

use super::{ControlConn, client_config};
use crate::config::{BackendUri, Placement, ShardMap};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::pool::EndpointPool;

/// Schemas of a database that are PostgreSQL's or the proxy's own, never the application's.
const SYSTEM_SCHEMAS: &str = "('pg_catalog', 'information_schema', 'pg_toast', 'shardgate')";

/// The schema the federation keeps postgres_fdw in, apart from the schemas it rebuilds.
const FDW_SCHEMA: &str = "shardgate_fdw";

/// One database's federation: where it lives, what it presents, and its pool.
pub struct Federation {
    /// Its database name.
    pub database: String,
    /// The default shard's primary, in the application's database (catalog, CREATE DATABASE).
    origin: BackendUri,
    shards: Vec<ShardServer>,
    default: usize,
    /// Names of the map's sharded tables.
    sharded: Vec<String>,
    pool: EndpointPool,
    /// Counts the reasons to build it (the first read, each schema change): a read waits until
    /// a build that started after the last of them has finished.
    wanted: AtomicU64,
    /// The value of `wanted` when the last successful build started (0: never built).
    built: AtomicU64,
    building: tokio::sync::Mutex<()>,
    connect_timeout: Duration,
}

impl Federation {
    /// The federation of `map`'s shards, reached through `pool` (a pool of connections to
    /// [`Federation::uri`]); nothing is built until the first read needs it.
    pub fn new(map: &ShardMap, pool: EndpointPool, connect_timeout: Duration) -> Self {
        let origin = map.shard(map.default_shard).primary.clone();
        let shards = (map.shards.iter())
            .map(|shard| ShardServer {
                name: shard.name.clone(),
                uri: shard.primary.clone(),
            })
            .collect();
        Self {
            database: database_name(map),
            sharded: sharded_tables(map),
            origin,
            shards,
            default: map.default_shard.0 as usize,
            pool,
            wanted: AtomicU64::new(1),
            built: AtomicU64::new(0),
            building: tokio::sync::Mutex::new(()),
            connect_timeout,
        }
    }

    /// The federation database of `map`: the default shard's primary, in its own database.
    pub fn uri(map: &ShardMap) -> BackendUri {
        let mut uri = map.shard(map.default_shard).primary.clone();
        uri.database = database_name(map);
        uri
    }

    /// What its reads are called as fan-out legs (errors, the oids of their descriptions).
    pub fn leg_name(&self) -> String {
        format!("federation {}", self.database)
    }

    /// Its pool (the row path of federated reads).
    pub fn pool(&self) -> &EndpointPool {
        &self.pool
    }

    /// A transaction that changed the schema through the proxy ended: the federation is
    /// built again now (in the background) if it is in use, else before its first read.
    pub fn schema_changed(self: &Arc<Self>) {
        self.wanted.fetch_add(1, Ordering::SeqCst);
        if self.built.load(Ordering::SeqCst) > 0 {
            let federation = self.clone();
            tokio::spawn(async move { federation.ready().await });
        }
    }

    /// Makes sure the federation presents the shards as they are, building it if it may not.
    /// The error names the federation database and why it cannot serve.
    pub async fn ready(&self) -> Result<(), ErrorReport> {
        let current = || self.built.load(Ordering::SeqCst) >= self.wanted.load(Ordering::SeqCst);
        if current() {
            return Ok(());
        }
        let _turn = self.building.lock().await;
        if current() {
            return Ok(()); // Built while this read waited its turn.
        }
        let generation = self.wanted.load(Ordering::SeqCst);
        if let Err(cause) = self.build().await {
            tracing::warn!(database = %self.database, error = %cause, "building the federation database failed");
            return Err(self.unavailable(&cause));
        }
        self.built.store(generation, Ordering::SeqCst);
        Ok(())
    }

    /// The error of a read that needs the federation when it cannot serve.
    pub fn unavailable(&self, cause: &str) -> ErrorReport {
        let message = format!(
            "shardgate: the federation database \"{}\" on {} cannot answer this read: {cause}",
            self.database,
            self.origin.address()
        );
        let report = ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Proxy, message);
        report.with_hint(
            "This read needs PostgreSQL's own executor across shards (postgres_fdw must be \
             installed on the default shard's server); reads the merge computes and \
             single-shard statements are not affected.",
        )
    }

    async fn build(&self) -> Result<(), String> {
        let origin = self.connect(&self.origin).await?;
        self.create_database(&origin).await?;
        let catalog = read_catalog(&origin).await.map_err(|e| e.to_string())?;
        drop(origin);
        let mut uri = self.origin.clone();
        uri.database = self.database.clone();
        let mut federation = self.connect(&uri).await?;
        let statements = self.statements(&catalog, &federation).await?;
        replace(&mut federation, statements).await
    }

    async fn connect(&self, uri: &BackendUri) -> Result<ControlConn, String> {
        let config = client_config(uri, "shardgate federation", self.connect_timeout);
        match ControlConn::open(&config, self.connect_timeout).await {
            Ok(conn) => Ok(conn),
            Err(Some(e)) => Err(format!("connecting to {}: {e}", uri.address())),
            Err(None) => Err(format!("connecting to {} timed out", uri.address())),
        }
    }

    /// Creates the federation database if it is missing, with the application database's
    /// encoding and collation (another proxy creating it at the same moment is fine).
    async fn create_database(&self, origin: &ControlConn) -> Result<(), String> {
        let client = &origin.client;
        let exists = "SELECT count(*) FROM pg_database WHERE datname = $1";
        let found: i64 = (client.query_one(exists, &[&self.database]).await)
            .map_err(|e| e.to_string())?
            .get(0);
        if found > 0 {
            return Ok(());
        }
        let locale = "SELECT pg_encoding_to_char(encoding), datcollate, datctype, \
                      datlocprovider::text, coalesce(daticulocale, '') \
                      FROM pg_database WHERE datname = current_database()";
        let row = (client.query_one(locale, &[]).await).map_err(|e| e.to_string())?;
        let text = |i: usize| row.get::<_, String>(i).replace('\'', "''");
        let mut create = format!(
            "CREATE DATABASE \"{}\" TEMPLATE template0 ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'",
            self.database.replace('"', "\"\""),
            text(0),
            text(1),
            text(2)
        );
        if text(3) == "i" {
            create.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE '{}'", text(4)));
        }
        match client.batch_execute(&create).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(())
            }
            Err(e) => Err(format!("creating database \"{}\": {e}", self.database)),
        }
    }

    /// What replaces the federation's current contents.
    async fn statements(
        &self,
        catalog: &Catalog,
        federation: &ControlConn,
    ) -> Result<Vec<String>, String> {
        let client = &federation.client;
        let servers = "SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'shardgate\\_%'";
        let schemas = format!(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN {SYSTEM_SCHEMAS} \
             AND nspname <> '{FDW_SCHEMA}' AND nspname NOT LIKE 'pg\\_%'"
        );
        let names = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        };
        let servers = names(
            client
                .query(servers, &[])
                .await
                .map_err(|e| e.to_string())?,
        );
        let schemas = names(
            client
                .query(&schemas, &[])
                .await
                .map_err(|e| e.to_string())?,
        );
        let mut statements = vec![
            "SELECT pg_advisory_xact_lock(hashtext('shardgate.federation'))".to_owned(),
            format!("CREATE SCHEMA IF NOT EXISTS {FDW_SCHEMA}"),
            format!("CREATE EXTENSION IF NOT EXISTS postgres_fdw SCHEMA {FDW_SCHEMA}"),
        ];
        statements.extend(script::teardown(&servers, &schemas));
        statements.extend(script::build(
            &self.shards,
            self.default,
            &self.sharded,
            catalog,
        ));
        Ok(statements)
    }
}

/// The names of `map`'s sharded tables, sorted.
fn sharded_tables(map: &ShardMap) -> Vec<String> {
    let mut sharded: Vec<String> = (map.tables.iter())
        .filter(|(_, table)| matches!(table.placement, Placement::Sharded(_)))
        .map(|(name, _)| name.clone())
        .collect();
    sharded.sort();
    sharded
}

/// `<application database>_federation_<digest>`: the digest covers what the federation
/// presents (the shards, the default one, the sharded tables), so proxies with different
/// maps (during a reload, or tests side by side) never rebuild each other's.
fn database_name(map: &ShardMap) -> String {
    let origin = &map.shard(map.default_shard).primary;
    let mut facts = vec![map.default_shard.0.to_string()];
    for shard in &map.shards {
        let uri = &shard.primary;
        facts.push(format!(
            "{}={}:{}/{}",
            shard.name, uri.host, uri.port, uri.database
        ));
    }
    facts.extend(sharded_tables(map));
    // FNV-1a: stable across builds and platforms, unlike the standard hasher.
    let digest = (facts.join("\n").bytes()).fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_federation_{:08x}", origin.database, digest as u32)
}

/// Runs `statements` as one transaction.
async fn replace(federation: &mut ControlConn, statements: Vec<String>) -> Result<(), String> {
    let transaction = (federation.client.transaction().await).map_err(|e| e.to_string())?;
    for statement in &statements {
        if let Err(e) = transaction.batch_execute(statement).await {
            let reason = e
                .as_db_error()
                .map_or(e.to_string(), |db| db.message().to_owned());
            return Err(format!("building it failed at `{statement}`: {reason}"));
        }
    }
    transaction.commit().await.map_err(|e| e.to_string())
}

/// The schemas, relations and enum types of the application database on the default shard.
async fn read_catalog(origin: &ControlConn) -> Result<Catalog, tokio_postgres::Error> {
    let client = &origin.client;
    let relations = format!(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT c.relispartition \
         AND n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
    );
    let enums = format!(
        "SELECT n.nspname, t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid \
         JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE n.nspname NOT IN {SYSTEM_SCHEMAS} GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let mut catalog = Catalog::default();
    for row in client.query(&relations, &[]).await? {
        let (schema, relation): (String, String) = (row.get(0), row.get(1));
        match catalog.schemas.last_mut() {
            Some((last, names)) if *last == schema => names.push(relation),
            _ => catalog.schemas.push((schema, vec![relation])),
        }
    }
    for row in client.query(&enums, &[]).await? {
        let schema: String = row.get(0);
        if !catalog.schemas.iter().any(|(s, _)| *s == schema) {
            catalog.schemas.push((schema.clone(), Vec::new()));
        }
        catalog.enums.push((schema, row.get(1), row.get(2)));
    }
    Ok(catalog)
}
