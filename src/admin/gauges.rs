//! The metrics read at scrape time from live state: clients by state, each server's pool and
//! health, replica lag, the shard-map epoch, and the counters each database keeps
//! (`crate::counters`). Built fresh for each scrape, so nothing here is kept up to date on the
//! request path.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::clients::StateCounts;
use crate::metrics::SERVER_LABELS;
use crate::reshard::HeldEdit;
use crate::topology::{Database, Topology};

/// What scrape-time gauges read.
pub struct ScrapeState<'a> {
    /// The topology in force.
    pub topology: &'a Topology,
    /// Client sessions by state.
    pub clients: StateCounts,
    /// Shard-map edits held because they would move stored rows.
    pub held: Vec<Arc<HeldEdit>>,
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// Every scrape-time family that has samples.
pub(super) fn gauges(state: &ScrapeState<'_>) -> Vec<MetricFamily> {
    let servers = ServerGauges::new();
    let counters = DatabaseCounters::new();
    for database in state.topology.databases() {
        servers.record(database);
        counters.record(database);
    }
    let epoch = IntGauge::new(
        "shardgate_shard_map_epoch",
        "The shard-map epoch in force (1 at start, +1 per accepted reload).",
    )
    .expect("valid metric");
    epoch.set(state.topology.epoch as i64);
    let held = gauge_vec(
        "shardgate_shard_map_edit_held",
        "1 while a database's edited shard map is held (not in force) because it would move stored rows; SHOW PLAN says which.",
        &["database"],
    );
    for database in state.topology.databases() {
        let is_held = state.held.iter().any(|edit| edit.database == database.name);
        held.with_label_values(&[&database.name])
            .set(is_held as i64);
    }
    let mut families = clients(&state.clients).collect();
    families.extend(servers.collect());
    families.extend(counters.collect());
    families.extend(epoch.collect());
    families.extend(held.collect());
    families.retain(|family| !family.get_metric().is_empty());
    families
}

fn clients(counts: &StateCounts) -> IntGaugeVec {
    let clients = gauge_vec(
        "shardgate_client_connections",
        "Client sessions now: active (holding a backend), waiting (for one), idle.",
        &["state"],
    );
    let states = [
        ("active", counts.active),
        ("waiting", counts.waiting),
        ("idle", counts.idle),
    ];
    for (label, n) in states {
        clients.with_label_values(&[label]).set(n as i64);
    }
    clients
}

/// Pools, health and lag of every server.
struct ServerGauges {
    pools: IntGaugeVec,
    waiting: IntGaugeVec,
    paused: IntGaugeVec,
    up: IntGaugeVec,
    lag: GaugeVec,
}

impl ServerGauges {
    fn new() -> Self {
        let lag = GaugeVec::new(
            Opts::new(
                "shardgate_replica_lag_seconds",
                "How long ago a replica had received WAL it has not replayed yet (last check).",
            ),
            &["database", "shard", "endpoint"],
        )
        .expect("valid metric");
        Self {
            pools: gauge_vec(
                "shardgate_pool_connections",
                "Backend connections of a pool, in use by a session or idle.",
                &["database", "shard", "role", "endpoint", "state"],
            ),
            waiting: gauge_vec(
                "shardgate_pool_waiting",
                "Sessions waiting for a connection of a pool.",
                SERVER_LABELS,
            ),
            paused: gauge_vec(
                "shardgate_pool_paused",
                "1 while a pool is paused from the admin console.",
                SERVER_LABELS,
            ),
            up: gauge_vec(
                "shardgate_backend_up",
                "1 when the last health check reached the server in its role (a lagging \
                 replica is up; see shardgate_replica_lag_seconds).",
                SERVER_LABELS,
            ),
            lag,
        }
    }

    fn record(&self, database: &Database) {
        let db = database.name.as_str();
        for server in database.servers() {
            let (shard, endpoint) = (server.shard, server.endpoint.as_str());
            let labels = [db, shard, server.role.as_str(), endpoint];
            let stats = server.pool.stats();
            for (state, n) in [("in_use", stats.in_use), ("idle", stats.idle)] {
                let with_state = [db, shard, server.role.as_str(), endpoint, state];
                self.pools.with_label_values(&with_state).set(n as i64);
            }
            let set = |gauge: &IntGaugeVec, value: usize| {
                gauge.with_label_values(&labels).set(value as i64);
            };
            set(&self.waiting, stats.waiting);
            set(&self.paused, server.pool.is_paused() as usize);
            set(&self.up, server.pool.health().is_up() as usize);
            if let Some(lag) = server.pool.health().lag() {
                let labels = [db, shard, endpoint];
                self.lag.with_label_values(&labels).set(lag.as_secs_f64());
            }
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let collectors: [&dyn Collector; 5] = [
            &self.pools,
            &self.waiting,
            &self.paused,
            &self.up,
            &self.lag,
        ];
        collectors.iter().flat_map(|c| c.collect()).collect()
    }
}

/// The counters each database keeps itself, exported as counters.
struct DatabaseCounters {
    legs: IntCounterVec,
    retries: IntCounterVec,
    refusals: IntCounterVec,
    atomic_commits: IntCounterVec,
    recovered: IntCounterVec,
    deadlocks: IntCounterVec,
    federated: IntCounterVec,
}

impl DatabaseCounters {
    fn new() -> Self {
        Self {
            legs: counter_vec(
                "shardgate_scatter_legs_total",
                "Shard legs of cross-shard reads.",
                &["database"],
            ),
            retries: counter_vec(
                "shardgate_scatter_retries_total",
                "Cross-shard reads run again after a replica failed before any result.",
                &["database"],
            ),
            refusals: counter_vec(
                "shardgate_refusals_total",
                "Statements the proxy refused: unsupported (0A000) or for another reason.",
                &["database", "reason"],
            ),
            atomic_commits: counter_vec(
                "shardgate_atomic_commits_total",
                "Transactions that wrote on several shards and committed in two phases.",
                &["database"],
            ),
            recovered: counter_vec(
                "shardgate_recovered_transactions_total",
                "Prepared transactions left part-way that recovery ended, by outcome (committed, rolled_back).",
                &["database", "outcome"],
            ),
            deadlocks: counter_vec(
                "shardgate_cross_shard_deadlocks_total",
                "Transactions cancelled (40P01) to break a cycle of lock waits across shards.",
                &["database"],
            ),
            federated: counter_vec(
                "shardgate_federated_reads_total",
                "Cross-shard reads the merge cannot compute, answered by the federation database.",
                &["database"],
            ),
        }
    }

    fn record(&self, database: &Database) {
        let db = database.name.as_str();
        let counters = database.counters.snapshot();
        self.legs
            .with_label_values(&[db])
            .inc_by(counters.scatter_legs);
        (self.retries.with_label_values(&[db])).inc_by(counters.scatter_retries);
        let refused = [
            ("unsupported", counters.refused_unsupported),
            ("other", counters.refused_other),
        ];
        for (reason, n) in refused {
            self.refusals.with_label_values(&[db, reason]).inc_by(n);
        }
        (self.atomic_commits.with_label_values(&[db])).inc_by(counters.atomic_commits);
        let recovered = [
            ("committed", counters.recovered_commits),
            ("rolled_back", counters.recovered_rollbacks),
        ];
        for (outcome, n) in recovered {
            self.recovered.with_label_values(&[db, outcome]).inc_by(n);
        }
        (self.deadlocks.with_label_values(&[db])).inc_by(counters.cross_shard_deadlocks);
        (self.federated.with_label_values(&[db])).inc_by(counters.federated_reads);
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let collectors: [&dyn Collector; 7] = [
            &self.legs,
            &self.retries,
            &self.refusals,
            &self.atomic_commits,
            &self.recovered,
            &self.deadlocks,
            &self.federated,
        ];
        collectors.iter().flat_map(|c| c.collect()).collect()
    }
}
