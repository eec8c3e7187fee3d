//! What operators see and steer: the Prometheus metrics endpoint (with `/health` and
//! `/ready`) and the admin console, a pseudo-database clients reach with psql.
//!
//! Both read the same live state ([`AdminContext`]): the topology in force, the connected
//! clients, the pools. Neither is on the row path.

pub mod console;
mod http;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::app::Reloader;
use crate::frontend::clients::ClientRegistry;
use crate::topology::Topology;

pub use http::serve_http;

/// The database name that opens the admin console instead of a sharded database.
pub const CONSOLE_DATABASE: &str = "shardgate";

/// Shared state of the operator surfaces.
pub struct AdminContext {
    /// The proxy's metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The topology in force.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Connected clients.
    pub clients: Arc<ClientRegistry>,
    /// Reloads shard maps on `RELOAD`.
    pub reloader: Arc<Reloader>,
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
        let state = metrics::ScrapeState {
            topology: &topology,
            clients: self.clients.state_counts(),
        };
        self.metrics.render(&state)
    }

    /// Why the proxy is not ready for traffic (empty: ready): every primary of every database
    /// must have answered its last health check.
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
        }
        problems
    }
}
