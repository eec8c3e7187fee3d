//! An immutable snapshot of where everything is: databases, their shard maps and the pools of
//! their backends. A new snapshot with epoch + 1 replaces the old one whole on reload; a
//! session keeps the snapshot it started its transaction with.

mod causal;
mod federated_reads;
pub mod fence;
mod table_columns;

pub use table_columns::TableColumns;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{BackendUri, Config, DatabaseEntry, ReadsFrom, Shard, ShardId, ShardMap};
use crate::control::EpochTask;
use crate::control::catalog_oids::{self, CatalogOids, Catalogs};
use crate::control::deadlock::{self, SpanRegistry};
use crate::control::directory::DirectoryLookup;
use crate::control::federation::{CopyPools, Federation};
use crate::control::health::{self, Watched};
use crate::control::recovery::{self, RecoveryView};
use crate::counters::Counters;
use crate::metrics::{DatabaseMeters, Metrics};
use crate::pool::{EndpointPool, OnFailure, PauseSwitch};
use crate::router::Router;
use crate::router::strategy::Directory;

pub use crate::config::Role;
pub use causal::ReadTicket;
pub use federated_reads::FederatedRead;

/// Everything the proxy routes to, at one epoch.
pub struct Topology {
    /// Increases by one on every reload.
    pub epoch: u64,
    databases: HashMap<String, Arc<Database>>,
}

/// One logical database: its shard map and the pools of every shard's servers.
pub struct Database {
    /// The name clients connect to.
    pub name: String,
    /// The topology epoch this snapshot of the database belongs to.
    pub epoch: u64,
    /// Holds statements back while `RESHARD` moves rows (kept across reloads).
    pub fence: Arc<fence::Fence>,
    /// Routes its statements with its shard map.
    pub router: Router,
    /// Prepared statements some backend of this database has accepted (kept across reloads:
    /// the backends are the same).
    pub known_statements: Arc<KnownStatements>,
    /// What routing and execution decided for this database (kept across reloads).
    pub counters: Arc<Counters>,
    /// Which function names are aggregates in the catalog (kept across reloads).
    pub aggregate_names: Arc<AggregateNames>,
    /// Column counts of cross-shard `SELECT *` statements (kept across reloads).
    pub column_counts: Arc<ColumnCounts>,
    /// Column order of map tables, for INSERTs without a column list (kept across reloads).
    pub table_columns: Arc<TableColumns>,
    /// Metric handles for its statements.
    pub meters: DatabaseMeters,
    /// The directory tables of its shard map by name: the session fetches the keys the
    /// router asks for ([`crate::router::strategy::PendingLookup`]).
    pub directories: HashMap<String, Arc<DirectoryLookup>>,
    /// A transaction that wrote on several shards commits with two-phase commit.
    pub atomic_commit: bool,
    /// What recovery of atomic commits knows of the shards (kept across reloads).
    pub recovery: Arc<RecoveryView>,
    /// Its transactions spanning shards, which the deadlock detector may cancel (kept across
    /// reloads).
    pub spans: Arc<SpanRegistry>,
    /// Translates the oids of other shards' descriptions into the default shard's (kept
    /// across reloads).
    pub catalog_oids: Arc<CatalogOids>,
    shards: Vec<ShardPools>,
    /// Finishes atomic commits left part-way on these shards, for as long as this epoch lives.
    _recovery_task: Option<EpochTask>,
    /// Breaks cycles of lock waits across these shards, for as long as this epoch lives.
    _deadlock_task: Option<EpochTask>,
    /// Reads the shards' catalogs for `catalog_oids`, for as long as this epoch lives.
    _catalog_task: Option<EpochTask>,
    /// Answers the cross-shard reads the merge cannot compute (built anew for each epoch).
    pub federation: Arc<Federation>,
}

/// One control-plane reader per directory table of `map` (a new map gets fresh ones, so
/// nothing cached under the old map's entries survives a reload).
fn directories(map: &ShardMap) -> HashMap<String, Arc<DirectoryLookup>> {
    let tables = map
        .tables
        .values()
        .filter_map(|table| match &table.placement {
            crate::config::Placement::Sharded(sharding) => sharding.strategy.lookup_table(),
            crate::config::Placement::Reference => None,
        });
    tables
        .map(|lookup| (lookup.table.clone(), DirectoryLookup::new(lookup.clone())))
        .collect()
}

/// The catalogs `catalog_oids` reads: the default shard's primary's, the other shards' and
/// the federation databases' (whose views and types are their own objects).
fn catalogs_of(map: &ShardMap, connect_timeout: std::time::Duration) -> Catalogs {
    let default = map.shard(map.default_shard);
    let shards = (map.shards.iter())
        .filter(|shard| shard.id != map.default_shard)
        .map(|shard| (shard.name.clone(), shard.primary.clone()));
    let others = shards.chain(Federation::catalogs(map)).collect();
    Catalogs {
        default: default.primary.clone(),
        others,
        connect_timeout,
    }
}

/// The federation of `db`'s shards, with pools of its own (fail-fast: a federation that
/// cannot be reached fails its reads at once).
fn federation(config: &Config, db: &DatabaseEntry, metrics: &Metrics) -> Arc<Federation> {
    let map = &db.shard_map;
    let pool = |uri: BackendUri, role: Role, endpoint: &str| {
        let meters = metrics.for_endpoint(&db.name, "federation", role, endpoint);
        let name = format!("{}/{endpoint}", db.name);
        EndpointPool::new(name, uri, &config.pool, OnFailure::FailFast, meters, None)
    };
    let pools = CopyPools {
        primaries: pool(Federation::uri(map), Role::Primary, "federation"),
        replicas: (Federation::replica_uri(map))
            .map(|uri| pool(uri, Role::Replica, "federation_replicas")),
    };
    Arc::new(Federation::new(map, pools, config.pool.connect_timeout))
}

/// One server of a database, for the operator surfaces (metrics, `SHOW POOLS`).
pub struct ServerRef<'a> {
    /// Its shard's name.
    pub shard: &'a str,
    /// Primary or replica.
    pub role: Role,
    /// `primary` or `replica N`.
    pub endpoint: String,
    /// Its pool.
    pub pool: &'a EndpointPool,
}

/// The pools of one shard: its primary and each replica.
struct ShardPools {
    /// A replica must have replayed what the primary had written this long ago.
    max_lag: std::time::Duration,
    primary: EndpointPool,
    replicas: Vec<EndpointPool>,
    reads: ReadsFrom,
    /// What a replica read must reflect, and how long it waits for a replica to (`causal`).
    consistency: crate::config::Consistency,
    causal_wait: std::time::Duration,
    /// Round-robin position among the replicas.
    next_replica: AtomicUsize,
}

/// How recent the rows a session reads from a shard must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The session never wrote there: any healthy replica will do.
    Any,
    /// The session's writes there completed at this moment: only replicas known to have
    /// replayed them (read-your-writes).
    After(std::time::Instant),
    /// A write of the session there has not completed yet: the primary only.
    Primary,
    /// Only replicas known to have replayed the primary's WAL up to here (causal reads).
    Replayed(u64),
}

/// Function names this database's catalog was asked about: whether each is an aggregate, and
/// when that was learned. Kept a short while, so a `CREATE AGGREGATE` is noticed soon.
#[derive(Default)]
pub struct AggregateNames(Mutex<HashMap<String, (bool, std::time::Instant)>>);

/// How long a catalog answer about a function name is trusted.
const AGGREGATE_NAMES_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl AggregateNames {
    /// The names among `names` the catalog has not been asked about lately.
    pub fn unknown(&self, names: &[String]) -> Vec<String> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |name: &String| {
            known
                .get(name)
                .is_some_and(|(_, at)| at.elapsed() < AGGREGATE_NAMES_TTL)
        };
        names.iter().filter(|name| !fresh(name)).cloned().collect()
    }

    /// Records what the catalog said of `asked`: those in `aggregates` are aggregates.
    pub fn learn(&self, asked: &[String], aggregates: &[String]) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() > 10_000 {
            known.clear();
        }
        let now = std::time::Instant::now();
        for name in asked {
            known.insert(name.clone(), (aggregates.contains(name), now));
        }
    }

    /// The first of `names` known to be an aggregate.
    pub fn first_aggregate<'a>(&self, names: &'a [String]) -> Option<&'a String> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .find(|name| known.get(*name).is_some_and(|(aggregate, _)| *aggregate))
    }
}

/// How many columns a cross-shard `SELECT *` returns, by shard SQL and the client settings it
/// was counted under, so the count costs a round trip once, not per execution. An entry is
/// dropped when a fan-out of its statement fails (the schema may have changed).
#[derive(Default)]
pub struct ColumnCounts(Mutex<HashMap<u64, HashMap<Box<str>, usize>>>);

/// Counts kept at most, all settings together (then it starts over).
const MAX_COLUMN_COUNTS: usize = 10_000;

impl ColumnCounts {
    /// The count learned for `sql` under settings `fingerprint`.
    pub fn get(&self, sql: &str, fingerprint: u64) -> Option<usize> {
        let counts = self.lock();
        counts.get(&fingerprint)?.get(sql).copied()
    }

    /// Remembers a count (bounded: starts over when full).
    pub fn insert(&self, sql: &str, fingerprint: u64, columns: usize) {
        let mut counts = self.lock();
        if counts.values().map(HashMap::len).sum::<usize>() >= MAX_COLUMN_COUNTS {
            counts.clear();
        }
        counts
            .entry(fingerprint)
            .or_default()
            .insert(sql.into(), columns);
    }

    /// Forgets the counts of `sql`.
    pub fn forget(&self, sql: &str) {
        self.lock().values_mut().for_each(|by_sql| {
            by_sql.remove(sql);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, HashMap<Box<str>, usize>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Backend names of prepared statements that a server of this database has parsed without
/// error. A client's Parse of a known statement is answered by the proxy without taking a
/// backend (the statement is prepared on a backend when first bound), so clients that prepare
/// on connect do not compete for backends. Bounded: when full it starts over.
///
/// It also names statements: a text and its parameter types get one backend name
/// (`session::prepared::backend_name`) until a server says the statement's result type
/// changed under it (DDL: "cached plan must not change result type"). The name is then
/// retired: new Parses of the text get a new generation's name, so they are prepared afresh
/// on every backend, while a client's statement prepared before keeps failing, as it would on
/// PostgreSQL.
#[derive(Default)]
pub struct KnownStatements {
    known: Mutex<HashSet<Arc<str>>>,
    generations: Mutex<HashMap<Arc<str>, u32>>,
}

const MAX_KNOWN_STATEMENTS: usize = 100_000;

impl KnownStatements {
    /// Whether a backend accepted `backend_name`.
    pub fn contains(&self, backend_name: &str) -> bool {
        self.lock().contains(backend_name)
    }

    /// The backend name new Parses of the statement named `base` get now: `base` itself, or
    /// `base_N` once it was retired N times.
    pub fn current_name(&self, base: Arc<str>) -> Arc<str> {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        match generations.get(&base) {
            Some(generation) => format!("{base}_{generation}").into(),
            None => base,
        }
    }

    /// A server found the result type of `backend_name` changed: later Parses of its text get
    /// the next generation's name, and it is no longer answered without a backend.
    pub fn retire(&self, backend_name: &str) {
        self.lock().remove(backend_name);
        let base = backend_name
            .split('_')
            .take(2)
            .collect::<Vec<_>>()
            .join("_");
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if generations.len() >= MAX_KNOWN_STATEMENTS {
            generations.clear();
        }
        let retired = backend_name
            .rsplit_once('_')
            .and_then(|(_, n)| n.parse::<u32>().ok());
        let current = generations.entry(base.into()).or_insert(0);
        // Only the name in use moves the generation on (two sessions may report one name).
        if retired.unwrap_or(0) == *current {
            *current += 1;
        }
    }

    /// Records that a backend accepted `backend_name`.
    pub fn insert(&self, backend_name: Arc<str>) {
        let mut known = self.lock();
        if known.len() >= MAX_KNOWN_STATEMENTS {
            known.clear();
        }
        known.insert(backend_name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Topology {
    /// Builds pools for every shard of every database. Opens no connection yet.
    pub fn build(config: &Config, epoch: u64, metrics: &Metrics) -> Self {
        Self::rebuild(config, &config.databases, epoch, None, metrics)
    }

    /// A topology for `databases` (the config's, with shard maps possibly reloaded) that keeps
    /// the pools of `previous` for every shard whose primary did not change, so a reload drops
    /// no idle connection and no client.
    pub fn rebuild(
        config: &Config,
        databases: &[DatabaseEntry],
        epoch: u64,
        previous: Option<&Topology>,
        metrics: &Metrics,
    ) -> Self {
        let databases = databases
            .iter()
            .map(|db| {
                let old = previous.and_then(|p| p.databases.get(&db.name));
                (
                    db.name.clone(),
                    Arc::new(Database::build(
                        config,
                        db,
                        epoch,
                        old.map(|o| &**o),
                        metrics,
                    )),
                )
            })
            .collect();
        Self { epoch, databases }
    }

    /// The database clients call `name`.
    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.databases.get(name).cloned()
    }

    /// Every database, by name.
    pub fn databases(&self) -> Vec<&Arc<Database>> {
        let mut databases: Vec<_> = self.databases.values().collect();
        databases.sort_by(|a, b| a.name.cmp(&b.name));
        databases
    }
}

impl Database {
    fn build(
        config: &Config,
        db: &DatabaseEntry,
        epoch: u64,
        old: Option<&Database>,
        metrics: &Metrics,
    ) -> Self {
        let shards = (db.shard_map.shards.iter())
            .map(|shard| ShardPools::build(config, db, shard, old, metrics))
            .collect();
        let shard_names = db.shard_map.shards.iter().map(|s| s.name.as_str());
        let directories = directories(&db.shard_map);
        let answers = (directories.iter())
            .map(|(table, lookup)| (table.clone(), lookup.clone() as Arc<dyn Directory>))
            .collect();
        let counters: Arc<Counters> = old.map(|o| o.counters.clone()).unwrap_or_default();
        let primaries: Vec<_> = (db.shard_map.shards.iter())
            .map(|shard| (shard.name.clone(), shard.primary.clone()))
            .collect();
        // Also with atomic commit off: what was prepared before still needs ending.
        let settings = config.transactions.clone();
        let view: Arc<RecoveryView> = old.map(|o| o.recovery.clone()).unwrap_or_default();
        let timeout = config.pool.connect_timeout;
        let spans: Arc<SpanRegistry> = old.map(|o| o.spans.clone()).unwrap_or_default();
        let interval = settings.deadlock_check_interval;
        let detector = deadlock::start(
            primaries.clone(),
            interval,
            timeout,
            spans.clone(),
            counters.clone(),
        );
        let catalog_oids: Arc<CatalogOids> =
            old.map(|o| o.catalog_oids.clone()).unwrap_or_default();
        let federation = federation(config, db, metrics);
        let catalogs = catalogs_of(&db.shard_map, timeout);
        let catalog_task = catalog_oids::start(catalogs, catalog_oids.clone());
        let task = recovery::start(primaries, settings, timeout, counters.clone(), view.clone());
        Database {
            name: db.name.clone(),
            epoch,
            fence: old.map(|o| o.fence.clone()).unwrap_or_default(),
            router: Router::with_directories(&db.shard_map, &answers)
                .with_max_statement_bytes(config.limits.max_statement_bytes),
            directories,
            known_statements: old.map(|o| o.known_statements.clone()).unwrap_or_default(),
            counters,
            aggregate_names: old.map(|o| o.aggregate_names.clone()).unwrap_or_default(),
            column_counts: old.map(|o| o.column_counts.clone()).unwrap_or_default(),
            table_columns: old.map(|o| o.table_columns.clone()).unwrap_or_default(),
            meters: metrics.for_database(&db.name, shard_names),
            atomic_commit: config.transactions.atomic,
            recovery: view,
            spans,
            catalog_oids,
            shards,
            _recovery_task: task,
            _deadlock_task: detector,
            _catalog_task: catalog_task,
            federation,
        }
    }

    /// The pool of the backend `uri` in the shard called `name`, if it is still there.
    fn pool_of(&self, name: &str, uri: &BackendUri) -> Option<EndpointPool> {
        let shard = self.router.map().shard_by_name(name)?;
        let pools = &self.shards[shard.id.0 as usize];
        if shard.primary == *uri {
            return Some(pools.primary.clone());
        }
        let replica = shard.replicas.iter().position(|r| r == uri)?;
        pools.replicas.get(replica).cloned()
    }

    /// The pause switch of the pool a reload replaces: shard `name`'s primary, or its replica
    /// number `replica`.
    fn pause_switch_of(&self, name: &str, replica: Option<usize>) -> Option<PauseSwitch> {
        let shard = self.router.map().shard_by_name(name)?;
        let pools = &self.shards[shard.id.0 as usize];
        let pool = match replica {
            None => Some(&pools.primary),
            Some(i) => pools.replicas.get(i),
        };
        pool.map(EndpointPool::pause_switch)
    }

    /// Whether reads of `shard` may use replicas at all (it has some, and the map allows it).
    pub fn reads_from_replicas(&self, shard: ShardId) -> bool {
        let pools = &self.shards[shard.0 as usize];
        pools.reads == ReadsFrom::Replica && !pools.replicas.is_empty()
    }

    /// Pools a replica-safe read of `shard` may use, best first: the shard's replicas whose
    /// breaker is closed and that are as fresh as the reader needs (round-robin) when the map
    /// sends reads to replicas, then the primary, which is always last so a read has somewhere
    /// to go.
    pub fn read_pools(&self, shard: ShardId, freshness: Freshness) -> Vec<(&EndpointPool, Role)> {
        let pools = &self.shards[shard.0 as usize];
        let mut candidates = Vec::with_capacity(pools.replicas.len() + 1);
        let wanted = match freshness {
            Freshness::Any => Some(None),
            Freshness::After(moment) => pools.primary.health().lsn_after(moment).map(Some),
            Freshness::Primary => None,
            Freshness::Replayed(_) => Some(None),
        };
        if pools.reads == ReadsFrom::Replica
            && !pools.replicas.is_empty()
            && let Some(lsn) = wanted
        {
            let start = pools.next_replica.fetch_add(1, Ordering::Relaxed);
            let n = pools.replicas.len();
            let ring = (0..n).map(|i| &pools.replicas[(start + i) % n]);
            // Within the lag bound as the primary sees it, too: a replica cut off from its
            // primary replays nothing new, and its own checks cannot tell.
            let bound = std::time::Instant::now().checked_sub(pools.max_lag);
            let written = bound.and_then(|moment| pools.primary.health().lsn_as_of(moment));
            let fit = |p: &&EndpointPool| {
                let current = written.is_none_or(|lsn| p.health().replayed(lsn));
                let causal = match freshness {
                    Freshness::Replayed(lsn) => p.health().wal().has_reached(lsn),
                    _ => true,
                };
                !p.is_down() && current && causal && lsn.is_none_or(|lsn| p.health().replayed(lsn))
            };
            candidates.extend(ring.filter(fit).map(|p| (p, Role::Replica)));
        }
        candidates.push((&pools.primary, Role::Primary));
        candidates
    }

    /// The pool of a shard's primary.
    pub fn primary(&self, shard: ShardId) -> &EndpointPool {
        &self.shards[shard.0 as usize].primary
    }

    /// Every server of every shard, in shard order, each primary before its replicas.
    pub fn servers(&self) -> Vec<ServerRef<'_>> {
        let map = self.router.map();
        let mut servers = Vec::new();
        for (shard, pools) in map.shards.iter().zip(&self.shards) {
            servers.push(ServerRef {
                shard: &shard.name,
                role: Role::Primary,
                endpoint: "primary".to_owned(),
                pool: &pools.primary,
            });
            for (i, pool) in pools.replicas.iter().enumerate() {
                servers.push(ServerRef {
                    shard: &shard.name,
                    role: Role::Replica,
                    endpoint: format!("replica {i}"),
                    pool,
                });
            }
        }
        servers
    }
}

impl ShardPools {
    /// Pools for `shard`, reusing those of `old` whose backend did not change.
    fn build(
        config: &Config,
        db: &DatabaseEntry,
        shard: &Shard,
        old: Option<&Database>,
        metrics: &Metrics,
    ) -> Self {
        let pool = |uri: &BackendUri, role: String, replica: Option<usize>, on_failure| {
            let kept = old.and_then(|old| old.pool_of(&shard.name, uri));
            kept.unwrap_or_else(|| {
                let endpoint = format!("{}/{} {role}", db.name, shard.name);
                let kind = match on_failure {
                    OnFailure::FailFast => Role::Replica,
                    OnFailure::Retry => Role::Primary,
                };
                let meters = metrics.for_endpoint(&db.name, &shard.name, kind, &role);
                let settings = &config.pool;
                let paused = old.and_then(|old| old.pause_switch_of(&shard.name, replica));
                let pool =
                    EndpointPool::new(endpoint, uri.clone(), settings, on_failure, meters, paused);
                let watched = match on_failure {
                    OnFailure::FailFast => Watched::Replica,
                    OnFailure::Retry => Watched::Primary,
                };
                let (name, health) = (pool.endpoint().clone(), pool.health());
                let connect_timeout = settings.connect_timeout;
                health::watch(
                    watched,
                    name,
                    uri,
                    health,
                    &config.replicas,
                    connect_timeout,
                );
                let check_timeout = config.replicas.check_timeout;
                crate::control::causal::probe(watched, uri, health, connect_timeout, check_timeout);
                pool
            })
        };
        let replicas = (shard.replicas.iter().enumerate())
            .map(|(i, uri)| pool(uri, format!("replica {i}"), Some(i), OnFailure::FailFast))
            .collect();
        ShardPools {
            max_lag: config.replicas.max_lag,
            primary: pool(&shard.primary, "primary".into(), None, OnFailure::Retry),
            replicas,
            reads: shard.reads,
            consistency: shard.consistency,
            causal_wait: shard.causal_wait,
            next_replica: AtomicUsize::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_statement_name_gives_way_to_the_next_generation() {
        let known = KnownStatements::default();
        let base: Arc<str> = "sg_00ff".into();
        assert_eq!(&*known.current_name(base.clone()), "sg_00ff");
        known.insert(base.clone());
        known.retire("sg_00ff");
        assert!(
            !known.contains("sg_00ff"),
            "no longer answered without a backend"
        );
        assert_eq!(&*known.current_name(base.clone()), "sg_00ff_1");
        known.retire("sg_00ff");
        assert_eq!(
            &*known.current_name(base.clone()),
            "sg_00ff_1",
            "a second report of the old name does not skip a generation"
        );
        known.retire("sg_00ff_1");
        assert_eq!(&*known.current_name(base), "sg_00ff_2");
    }
}
