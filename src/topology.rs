//! An immutable snapshot of where everything is: databases, their shard maps and the pools of
//! their backends. A new snapshot with epoch + 1 replaces the old one whole on reload; a
//! session keeps the snapshot it started its transaction with.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::config::{BackendUri, Config, DatabaseEntry, ShardId};
use crate::pool::EndpointPool;
use crate::router::Router;

/// Everything the proxy routes to, at one epoch.
pub struct Topology {
    /// Increases by one on every reload.
    pub epoch: u64,
    databases: HashMap<String, Arc<Database>>,
}

/// One logical database: its shard map and a pool per shard primary.
pub struct Database {
    /// The name clients connect to.
    pub name: String,
    /// Routes its statements with its shard map.
    pub router: Router,
    /// Prepared statements some backend of this database has accepted (kept across reloads:
    /// the backends are the same).
    pub known_statements: Arc<KnownStatements>,
    primaries: Vec<EndpointPool>,
}

/// Backend names of prepared statements that a server of this database has parsed without
/// error. A client's Parse of a known statement is answered by the proxy without taking a
/// backend (the statement is prepared on a backend when first bound), so clients that prepare
/// on connect do not compete for backends. Bounded: when full it starts over.
#[derive(Default)]
pub struct KnownStatements(Mutex<HashSet<Arc<str>>>);

const MAX_KNOWN_STATEMENTS: usize = 100_000;

impl KnownStatements {
    /// Whether a backend accepted `backend_name`.
    pub fn contains(&self, backend_name: &str) -> bool {
        self.lock().contains(backend_name)
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
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Topology {
    /// Builds pools for every shard of every database. Opens no connection yet.
    pub fn build(config: &Config, epoch: u64) -> Self {
        Self::rebuild(config, &config.databases, epoch, None)
    }

    /// A topology for `databases` (the config's, with shard maps possibly reloaded) that keeps
    /// the pools of `previous` for every shard whose primary did not change, so a reload drops
    /// no idle connection and no client.
    pub fn rebuild(
        config: &Config,
        databases: &[DatabaseEntry],
        epoch: u64,
        previous: Option<&Topology>,
    ) -> Self {
        let databases = databases
            .iter()
            .map(|db| {
                let old = previous.and_then(|p| p.databases.get(&db.name));
                (
                    db.name.clone(),
                    Arc::new(Database::build(config, db, old.map(|o| &**o))),
                )
            })
            .collect();
        Self { epoch, databases }
    }

    /// The database clients call `name`.
    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.databases.get(name).cloned()
    }
}

impl Database {
    fn build(config: &Config, db: &DatabaseEntry, old: Option<&Database>) -> Self {
        let primaries = (db.shard_map.shards.iter())
            .map(|shard| {
                let kept = old.and_then(|old| old.primary_of(&shard.name, &shard.primary));
                kept.unwrap_or_else(|| {
                    let endpoint = format!("{}/{} primary", db.name, shard.name);
                    EndpointPool::new(endpoint, shard.primary.clone(), &config.pool)
                })
            })
            .collect();
        Database {
            name: db.name.clone(),
            router: Router::new(&db.shard_map),
            known_statements: old.map(|o| o.known_statements.clone()).unwrap_or_default(),
            primaries,
        }
    }

    /// The pool of the shard called `name`, if its primary is still `uri`.
    fn primary_of(&self, name: &str, uri: &BackendUri) -> Option<EndpointPool> {
        let shard = self.router.map().shard_by_name(name)?;
        (shard.primary == *uri).then(|| self.primaries[shard.id.0 as usize].clone())
    }

    /// The pool of a shard's primary.
    pub fn primary(&self, shard: ShardId) -> &EndpointPool {
        &self.primaries[shard.0 as usize]
    }
}
