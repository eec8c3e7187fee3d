//! What operators see and steer: the Prometheus metrics endpoint (with `/health` and
//! `/ready`) and the admin console, a pseudo-database clients reach with psql.
//!
//! Both read the same live state ([`AdminContext`]): the topology in force, the connected
//! clients, the pools. Neither is on the row path.

pub mod console;
mod gauges;
mod http;

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::clients::ClientRegistry;
use crate::control::fleet::Listed;
use crate::reshard::{HeldEdit, Reshard};
use crate::topology::Topology;

pub use http::serve_http;

pub use crate::config::CONSOLE_DATABASE;

/// Re-reads the shard maps and publishes a new topology (the console's `RELOAD`). The app
/// implements it; admin sees only this, so it depends on nothing above it.
pub trait ReloadMaps: Send + Sync {
    /// Reads every map again (`force`: apply edits that move stored rows as they are); why
    /// the maps were rejected when they were (the previous ones stay in force).
    fn reload_maps(&self, force: bool) -> BoxFuture<'_, Result<Reloaded, String>>;
    /// The edits held now (`SHOW MAP`, `SHOW PLAN`, the held-edit gauge).
    fn held_edits(&self) -> Vec<Arc<HeldEdit>>;
    /// Applies a held edit by moving its rows (`RESHARD [database]`); the move once it ended.
    fn reshard(&self, database: Option<String>) -> BoxFuture<'_, Result<Arc<Reshard>, String>>;
    /// The last move of each database (`SHOW RESHARD`).
    fn reshards(&self) -> Vec<Arc<Reshard>>;
    /// The proxies of this proxy's fleet, as the fleet's tables list them, and this proxy's
    /// name (`SHOW FLEET`).
    fn fleet(&self) -> BoxFuture<'_, Result<(String, Vec<Listed>), String>>;
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The epoch in force afterwards (unchanged when every edit was held).
    pub epoch: u64,
    /// The edits held because they would move stored rows.
    pub held: Vec<Arc<HeldEdit>>,
}

/// Shared state of the operator surfaces.
pub struct AdminContext {
    /// The proxy's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The topology in force.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Connected clients.
    pub clients: Arc<ClientRegistry>,
    /// Reloads shard maps on `RELOAD`.
    pub reloader: Arc<dyn ReloadMaps>,
    /// Each database's shard-map file, for `SHOW MAP`.
    pub map_files: Vec<(String, PathBuf)>,
    /// Users allowed into the console.
    pub admin_users: Vec<String>,
}

impl AdminContext {
    /// The topology in force now.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.borrow().clone()
    }

    /// The metrics text, gauges read now.
    pub fn render_metrics(&self) -> String {
        let topology = self.topology();
        let state = gauges::ScrapeState {
            topology: &topology,
            clients: self.clients.state_counts(),
            held: self.reloader.held_edits(),
        };
        self.metrics.render(gauges::gauges(&state))
    }

    /// Why the proxy is not ready for traffic (empty: ready): every primary of every database
    /// must have answered its last health check, and with atomic commit on, allow prepared
    /// transactions (`max_prepared_transactions` above 0).
    pub fn readiness_problems(&self) -> Vec<String> {
        let topology = self.topology();
        let mut problems = Vec::new();
        for database in topology.databases() {
            for server in database.servers() {
                let primary = server.role == crate::topology::Role::Primary;
                if primary && !server.pool.health().is_up() {
                    problems.push(format!("{} is not reachable", server.pool.endpoint()));
                }
            }
            if database.atomic_commit {
                problems.extend(no_prepared_transactions(database));
            }
        }
        problems
    }
}

/// Shards of `database` whose primary allows no prepared transactions: a transaction writing
/// on several shards cannot commit there.
fn no_prepared_transactions(database: &crate::topology::Database) -> Vec<String> {
    let map = database.router.map();
    (map.shards.iter())
        .filter(|shard| database.recovery.max_prepared_transactions(&shard.name) == Some(0))
        .map(|shard| {
            let problem = crate::control::preflight::PrimaryProblem::NoPreparedTransactions {
                database: database.name.clone(),
                shard: shard.name.clone(),
            };
            problem.to_string()
        })
        .collect()
}
