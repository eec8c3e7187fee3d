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
//!
//! Where the map sends reads to replicas and the default shard has one, a second copy
//! (`<app database>_federation_replicas_<digest>`) serves the reads that may use replicas: built
//! on the default primary like the first, its foreign servers read a replica of each shard, and
//! its reads run on the default shard's replica, which carries it by streaming replication (a
//! hot standby cannot create anything, and needs nothing created: the copy is WAL like any
//! other database). Whether a read may use it is the causal rules' decision, shard by shard
//! (`topology`); each replica must also have replayed its primary as far as it was when the
//! copy was last built, so that every table and column the copy names exists there.

mod cleanup;
mod copies;
pub mod script;

pub use copies::{Copy, CopyPools, ReplicaCopy};
use copies::{database_name, leg_name, replica_target};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use script::Catalog;

use super::{ControlConn, client_config};
use crate::config::{BackendUri, Placement, ShardId, ShardMap};
use crate::error::{Blame, ErrorReport, sqlstate};

/// Schemas of a database that are PostgreSQL's or the proxy's own, never the application's.
const SYSTEM_SCHEMAS: &str = "('pg_catalog', 'information_schema', 'pg_toast', 'shardgate')";

/// The schema the federation keeps postgres_fdw in, apart from the schemas it rebuilds.
const FDW_SCHEMA: &str = "shardgate_fdw";

/// One database's federation: where it lives, what it presents, and its pools.
pub struct Federation {
    /// The copy whose foreign servers read the shards' primaries.
    primaries: Copy,
    /// The copy whose foreign servers read the shards' replicas, where the map has them.
    replicas: Option<ReplicaCopy>,
    /// The default shard's primary, in the application's database (catalog, CREATE DATABASE).
    origin: BackendUri,
    default: usize,
    /// Names of the map's sharded tables.
    sharded: Vec<String>,
    /// Counts the reasons to build it (the first read, each schema change): a read waits until
    /// a build that started after the last of them has finished.
    wanted: AtomicU64,
    /// The value of `wanted` when the last successful build started (0: never built).
    built: AtomicU64,
    building: tokio::sync::Mutex<()>,
    /// The default shard's replicas, which carry the copy on the replicas (whose readers the
    /// cleanup of stale databases must look for there).
    standbys: Vec<BackendUri>,
    /// When its databases were last marked in use, in seconds after `started`.
    marked: AtomicU64,
    started: std::time::Instant,
    connect_timeout: Duration,
}

impl Federation {
    /// The federation of `map`'s shards, reached through `pools`; nothing is built until the
    /// first read needs it.
    pub fn new(map: &ShardMap, pools: CopyPools, connect_timeout: Duration) -> Self {
        let origin = map.shard(map.default_shard).primary.clone();
        Self {
            primaries: Copy::on_primaries(map, pools.primaries),
            replicas: pools.replicas.map(|pool| ReplicaCopy::new(map, pool)),
            sharded: sharded_tables(map),
            origin,
            default: map.default_shard.0 as usize,
            wanted: AtomicU64::new(1),
            built: AtomicU64::new(0),
            building: tokio::sync::Mutex::new(()),
            standbys: map.shard(map.default_shard).replicas.clone(),
            marked: AtomicU64::new(0),
            started: std::time::Instant::now(),
            connect_timeout,
        }
    }

    /// The federation database of `map` that reads primaries: on the default shard's primary.
    pub fn uri(map: &ShardMap) -> BackendUri {
        on_default_primary(map, false)
    }

    /// Where reads of the copy that reads replicas run (the default shard's first replica),
    /// if the map has that copy: where it sends the default shard's reads to a replica.
    pub fn replica_uri(map: &ShardMap) -> Option<BackendUri> {
        let mut uri = replica_target(map.shard(map.default_shard))?.clone();
        uri.database = database_name(map, true);
        Some(uri)
    }

    /// Each copy `map` has, as a fan-out leg's name and where its catalog is read (the
    /// default primary, where both are built).
    pub fn catalogs(map: &ShardMap) -> Vec<(String, BackendUri)> {
        let copies = [Some(false), Self::replica_uri(map).map(|_| true)];
        (copies.into_iter().flatten())
            .map(|replicas| on_default_primary(map, replicas))
            .map(|uri| (leg_name(&uri.database), uri))
            .collect()
    }

    /// The copy that reads primaries.
    pub fn primaries(&self) -> &Copy {
        &self.primaries
    }

    /// The copy that reads replicas, if the map has one.
    pub fn replicas(&self) -> Option<&ReplicaCopy> {
        self.replicas.as_ref()
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

    /// Its copies: the primaries', then the replicas' where there is one.
    fn copies(&self) -> impl Iterator<Item = &Copy> {
        std::iter::once(&self.primaries).chain(self.replicas.iter().map(|r| &r.copy))
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
        // Once more after a failure: another proxy's cleanup may have dropped a database
        // between its creation here and its mark, or a shard may have blinked.
        let built = match self.build().await {
            Err(cause) => {
                tracing::debug!(error = %cause, "building the federation database failed; once more");
                self.build().await
            }
            built => built,
        };
        if let Err(cause) = built {
            let database = &self.primaries.database;
            tracing::warn!(%database, error = %cause, "building the federation database failed");
            return Err(self.unavailable(&cause));
        }
        self.built.store(generation, Ordering::SeqCst);
        let now = self.started.elapsed().as_secs();
        self.marked.store(now, Ordering::SeqCst); // The build marked its databases.
        Ok(())
    }

    /// The error of a read that needs the federation when it cannot serve.
    pub fn unavailable(&self, cause: &str) -> ErrorReport {
        let message = format!(
            "shardgate: the federation database \"{}\" on {} cannot answer this read: {cause}",
            self.primaries.database,
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
        for copy in self.copies() {
            create_database(&origin, &copy.database).await?;
            // At once: another proxy's cleanup must not take it for stale while it is rebuilt.
            cleanup::mark_in_use(&origin, &copy.database).await?;
        }
        let catalog = read_catalog(&origin).await.map_err(|e| e.to_string())?;
        self.build_copy(&self.primaries, &catalog).await?;
        if let Some(replicas) = &self.replicas {
            self.build_copy(&replicas.copy, &catalog).await?;
            self.note_positions(replicas, &origin).await;
        }
        let stale = cleanup::Stale {
            application: self.origin.database.clone(),
            own: self.copies().map(|copy| copy.database.clone()).collect(),
            standbys: self.standbys.clone(),
            connect_timeout: self.connect_timeout,
        };
        tokio::spawn(async move { stale.drop_unused(origin).await });
        Ok(())
    }

    /// Its database was found missing (another proxy dropped it as stale while this one held
    /// no connection to it): the next read builds it again.
    pub fn lost(&self) {
        self.wanted.fetch_add(1, Ordering::SeqCst);
    }

    /// Records where each shard's primary's WAL is now that `replicas` is built (on the
    /// default one, `origin`): a replica that replayed that far has every table and column
    /// the copy names. A shard whose position cannot be had keeps the copy out of use.
    async fn note_positions(&self, replicas: &ReplicaCopy, origin: &ControlConn) {
        for (shard, target) in self.primaries.targets.iter().enumerate() {
            if !replicas.reads_replica(ShardId(shard as u32)) {
                continue;
            }
            let lsn = if shard == self.default {
                wal_position(origin).await
            } else {
                match self.connect(&target.uri).await {
                    Ok(conn) => wal_position(&conn).await,
                    Err(e) => Err(e),
                }
            };
            let lsn = lsn.unwrap_or_else(|e| {
                let shard = &target.name;
                tracing::warn!(%shard, error = %e, "the federation's copy on the replicas stays out of use");
                0
            });
            replicas.built(shard, lsn);
        }
    }

    /// Replaces `copy`'s contents on the default primary. Its foreign tables are imported
    /// from the primaries (a replica may not have replayed a table the catalog just named),
    /// then its servers are pointed where the copy reads, and the login its reads use there
    /// may read it.
    async fn build_copy(&self, copy: &Copy, catalog: &Catalog) -> Result<(), String> {
        let mut uri = self.origin.clone();
        uri.database = copy.database.clone();
        let mut federation = self.connect(&uri).await?;
        let mut statements = self.statements(catalog, &federation).await?;
        let reader = &copy.reader;
        if !std::ptr::eq(copy, &self.primaries) {
            statements.extend(script::repoint(&copy.targets));
        }
        if *reader != self.origin.user {
            let schemas = catalog.schemas.iter().map(|(schema, _)| schema.clone());
            statements.extend(script::grant_reads(schemas, reader));
        }
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
            &self.primaries.targets,
            self.default,
            &self.sharded,
            catalog,
        ));
        Ok(statements)
    }
}

/// Creates the federation database `database` if it is missing, with the application database's
/// encoding and collation (another proxy creating it at the same moment is fine).
async fn create_database(origin: &ControlConn, database: &str) -> Result<(), String> {
    let client = &origin.client;
    let exists = "SELECT count(*) FROM pg_database WHERE datname = $1";
    let found: i64 = (client.query_one(exists, &[&database]).await)
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
        database.replace('"', "\"\""),
        text(0),
        text(1),
        text(2)
    );
    if text(3) == "i" {
        create.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE '{}'", text(4)));
    }
    match client.batch_execute(&create).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(format!("creating database \"{}\": {e}", database)),
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

/// A copy of `map`'s federation (the one reading `replicas` or primaries) on the default
/// shard's primary, where both are built.
fn on_default_primary(map: &ShardMap, replicas: bool) -> BackendUri {
    let mut uri = map.shard(map.default_shard).primary.clone();
    uri.database = database_name(map, replicas);
    uri
}

/// Where the server's WAL is: past every commit that has returned.
async fn wal_position(conn: &ControlConn) -> Result<u64, String> {
    let position = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text";
    let row = conn.client.query_one(position, &[]).await;
    let lsn = row.map_err(|e| e.to_string())?.get::<_, String>(0);
    lsn.parse().map_err(|_| format!("WAL position {lsn}"))
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
