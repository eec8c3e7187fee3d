//! The proxy's Prometheus metrics: counters and histograms bumped on the request path.
//!
//! A bottom layer: every stage counts here, and it uses nothing above `config`. Gauges of
//! live state (pools, clients, health) are read by `admin` at scrape time and handed to
//! [`Metrics::render`].
//!
//! One [`Metrics`] per proxy (tests run several proxies in one process, each with its own).
//! Labelled children are resolved once, when a database's topology is built
//! ([`DatabaseMeters`]) or a pool is made ([`EndpointMeters`]), so a statement pays an
//! atomic add, not a label lookup. Gauges (pools, clients, health, lag, epoch) are not kept
//! up to date on every change: [`Metrics::render`] reads them from the topology and the client
//! registry when Prometheus asks. Labels stay low-cardinality: database, shard, role, server
//! endpoint, SQLSTATE class, configured user names.

use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::config::Role;

/// Latency buckets in seconds: 100 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Where a statement ran, for its metrics: one shard, or several at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// One shard (by id in the database's map), on this role.
    Shard(crate::config::ShardId, Role),
    /// Several shards (a fan-out or a statement on several primaries).
    Shards(Role),
}

/// How the router placed a statement (`shardgate_routes_total{kind}`); the order is
/// [`RouteKind::ALL`]'s, which indexes the handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// One shard, by its key.
    SingleShard,
    /// A read merged from several shards.
    MultiShard,
    /// Several primaries (DDL, reference or broadcast writes, split INSERTs).
    Broadcast,
    /// No key needed: the default shard or the backend already held.
    Fallback,
    /// Refused.
    Refused,
}

impl RouteKind {
    const ALL: [RouteKind; 5] = [
        RouteKind::SingleShard,
        RouteKind::MultiShard,
        RouteKind::Broadcast,
        RouteKind::Fallback,
        RouteKind::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            RouteKind::SingleShard => "single_shard",
            RouteKind::MultiShard => "multi_shard",
            RouteKind::Broadcast => "broadcast",
            RouteKind::Fallback => "fallback",
            RouteKind::Refused => "refused",
        }
    }
}

/// Every metric the proxy pushes; gauges are added at scrape time.
pub struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    query_seconds: HistogramVec,
    transactions: IntCounterVec,
    transaction_seconds: HistogramVec,
    routes: IntCounterVec,
    checkout_wait: HistogramVec,
    reads_served: IntCounterVec,
    causal_wait: HistogramVec,
    causal_fallbacks: IntCounterVec,
    errors: IntCounterVec,
    slow_statements: IntCounterVec,
    rate_limited: IntCounterVec,
    refused_connections: IntCounterVec,
    cross_shard_refusals: IntCounterVec,
    unsupported: IntCounterVec,
    reloads: IntCounterVec,
    /// Client connections accepted since start.
    pub connections: IntCounter,
    /// Bytes read from clients.
    pub bytes_received: IntCounter,
    /// Bytes written to clients.
    pub bytes_sent: IntCounter,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("unique metric");
    vec
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(vec.clone()))
        .expect("unique metric");
    vec
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

/// Outcomes of a shard-map reload, as counted.
pub const RELOAD_RESULTS: [&str; 3] = ["ok", "failed", "held"];

/// Labels of per-server metrics, in order (the admin gauges use them too).
pub const SERVER_LABELS: &[&str] = &["database", "shard", "role", "endpoint"];
const SHARD_LABELS: &[&str] = &["database", "shard", "role"];

/// Reasons a logged-in client is refused, exported at zero from the start.
const REFUSAL_REASONS: &[&str] = &[
    "max_client_connections",
    "max_connections_per_user",
    "not_admin",
    "shutting_down",
    "unknown_database",
];

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self::unset();
        for reason in REFUSAL_REASONS {
            metrics.refused_connections.with_label_values(&[reason]);
        }
        for result in RELOAD_RESULTS {
            metrics.reloads.with_label_values(&[result]);
        }
        metrics
    }
}

impl Metrics {
    /// Exports `users`' rate-limit counters at zero, so a dashboard shows them before the
    /// first refusal.
    pub fn know_users<'a>(&self, users: impl Iterator<Item = &'a str>) {
        for user in users {
            self.rate_limited.with_label_values(&[user]);
        }
    }

    fn unset() -> Self {
        let r = Registry::new();
        Self {
            queries: counter_vec(
                &r,
                "shardgate_queries_total",
                "Client queries completed (a simple Query, or an extended-protocol batch up to Sync), by where they ran.",
                SHARD_LABELS,
            ),
            query_seconds: histogram_vec(
                &r,
                "shardgate_query_duration_seconds",
                "Time from a client's query reaching the proxy to its ReadyForQuery.",
                SHARD_LABELS,
            ),
            transactions: counter_vec(
                &r,
                "shardgate_transactions_total",
                "Client transactions ended (a statement outside BEGIN counts as one).",
                &["database"],
            ),
            transaction_seconds: histogram_vec(
                &r,
                "shardgate_transaction_duration_seconds",
                "Time from a transaction's first statement to its end.",
                &["database"],
            ),
            routes: counter_vec(
                &r,
                "shardgate_routes_total",
                "Routing decisions by kind.",
                &["database", "kind"],
            ),
            checkout_wait: histogram_vec(
                &r,
                "shardgate_pool_checkout_wait_seconds",
                "Time a session waited for a backend connection.",
                SERVER_LABELS,
            ),
            reads_served: counter_vec(
                &r,
                "shardgate_reads_total",
                "Replica-safe reads (single-shard reads and legs of cross-shard reads outside transactions) this server served.",
                SERVER_LABELS,
            ),
            causal_wait: histogram_vec(
                &r,
                "shardgate_causal_wait_seconds",
                "How long a causal read this server then served waited for a WAL position (the writes before it, or a replica that replayed them).",
                SERVER_LABELS,
            ),
            causal_fallbacks: counter_vec(
                &r,
                "shardgate_causal_fallbacks_total",
                "Causal reads a primary served because none of its replicas replayed the writes before them within reads.causal_wait.",
                SERVER_LABELS,
            ),
            errors: counter_vec(
                &r,
                "shardgate_errors_total",
                "Errors sent to clients, by SQLSTATE class (its first two characters).",
                &["class"],
            ),
            slow_statements: counter_vec(
                &r,
                "shardgate_slow_statements_total",
                "Queries slower than log.slow_statement.",
                &["database"],
            ),
            rate_limited: counter_vec(
                &r,
                "shardgate_rate_limited_total",
                "Statements refused by a user's rate limit.",
                &["user"],
            ),
            refused_connections: counter_vec(
                &r,
                "shardgate_client_connections_refused_total",
                "Client connections refused after authentication, by reason.",
                &["reason"],
            ),
            cross_shard_refusals: counter_vec(
                &r,
                "shardgate_cross_shard_refusals_total",
                "Reads needing several shards refused for a construct the merge cannot compute, by kind.",
                &["construct"],
            ),
            unsupported: counter_vec(
                &r,
                "shardgate_unsupported_total",
                "Statements refused as not supported (0A000) for anything but a cross-shard read construct, by kind.",
                &["kind"],
            ),
            reloads: counter_vec(
                &r,
                "shardgate_shard_map_reloads_total",
                "Shard-map reloads: accepted (ok), rejected as invalid (failed), or with an edit held because it would move stored rows (held).",
                &["result"],
            ),
            connections: counter(
                &r,
                "shardgate_client_connections_total",
                "Client connections accepted.",
            ),
            bytes_received: counter(
                &r,
                "shardgate_client_bytes_received_total",
                "Bytes read from clients.",
            ),
            bytes_sent: counter(
                &r,
                "shardgate_client_bytes_sent_total",
                "Bytes written to clients.",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// Handles for one database's statements, for the shards of `map`.
    pub fn for_database<'a>(
        &self,
        database: &str,
        shards: impl Iterator<Item = &'a str>,
    ) -> DatabaseMeters {
        let meter = |shard: &str, role: Role| StatementMeter {
            queries: self
                .queries
                .with_label_values(&[database, shard, role.as_str()]),
            seconds: self
                .query_seconds
                .with_label_values(&[database, shard, role.as_str()]),
        };
        let both = |shard: &str| [meter(shard, Role::Primary), meter(shard, Role::Replica)];
        DatabaseMeters {
            shards: shards.map(both).collect(),
            several: both("multi"),
            transactions: self.transactions.with_label_values(&[database]),
            transaction_seconds: self.transaction_seconds.with_label_values(&[database]),
            routes: RouteKind::ALL
                .map(|kind| self.routes.with_label_values(&[database, kind.label()])),
            slow_statements: self.slow_statements.with_label_values(&[database]),
        }
    }

    /// Handles for one backend endpoint's pool.
    pub fn for_endpoint(
        &self,
        database: &str,
        shard: &str,
        role: Role,
        endpoint: &str,
    ) -> EndpointMeters {
        let labels = [database, shard, role.as_str(), endpoint];
        EndpointMeters {
            checkout_wait: self.checkout_wait.with_label_values(&labels),
            reads: self.reads_served.with_label_values(&labels),
            causal_wait: self.causal_wait.with_label_values(&labels),
            causal_fallbacks: self.causal_fallbacks.with_label_values(&labels),
        }
    }

    /// Counts an error sent to a client, by its SQLSTATE's class.
    pub fn error(&self, sqlstate: crate::error::SqlState) {
        self.errors.with_label_values(&[sqlstate.class()]).inc();
    }

    /// Counts a statement refused by `user`'s rate limit.
    pub fn rate_limited(&self, user: &str) {
        self.rate_limited.with_label_values(&[user]).inc();
    }

    /// Counts a cross-shard read refused for a construct (`kind`: the router's fixed word for it).
    pub fn cross_shard_refused(&self, kind: &'static str) {
        self.cross_shard_refusals.with_label_values(&[kind]).inc();
    }

    /// Counts a statement refused as not supported (`kind`: `error::Unsupported::kind`).
    pub fn unsupported(&self, kind: &'static str) {
        self.unsupported.with_label_values(&[kind]).inc();
    }

    /// Counts a client refused after authentication (`reason`: a short fixed word).
    pub fn refused_connection(&self, reason: &'static str) {
        self.refused_connections.with_label_values(&[reason]).inc();
    }

    /// Counts a shard-map reload (`result`: one of [`RELOAD_RESULTS`]).
    pub fn reload(&self, result: &'static str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Every metric in the Prometheus text format, with `gauges` read from live state now.
    pub fn render(&self, gauges: Vec<MetricFamily>) -> String {
        let mut families = self.registry.gather();
        families.extend(gauges);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding to a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counter and histogram of one (database, shard, role).
#[derive(Clone)]
pub struct StatementMeter {
    queries: IntCounter,
    seconds: Histogram,
}

/// One database's statement, transaction and routing handles.
pub struct DatabaseMeters {
    /// Per shard id: [primary, replica].
    shards: Vec<[StatementMeter; 2]>,
    several: [StatementMeter; 2],
    transactions: IntCounter,
    transaction_seconds: Histogram,
    routes: [IntCounter; 5],
    slow_statements: IntCounter,
}

impl DatabaseMeters {
    /// Records a query that took `took`, run where `ran` says.
    pub fn query(&self, ran: Ran, took: std::time::Duration) {
        let (pair, role) = match ran {
            Ran::Shard(shard, role) => match self.shards.get(shard.0 as usize) {
                Some(pair) => (pair, role),
                None => return,
            },
            Ran::Shards(role) => (&self.several, role),
        };
        let meter = &pair[(role == Role::Replica) as usize];
        meter.queries.inc();
        meter.seconds.observe(took.as_secs_f64());
    }

    /// Records a transaction that took `took`.
    pub fn transaction(&self, took: std::time::Duration) {
        self.transactions.inc();
        self.transaction_seconds.observe(took.as_secs_f64());
    }

    /// Counts a routing decision.
    pub fn route(&self, kind: RouteKind) {
        self.routes[kind as usize].inc();
    }

    /// Counts a slow query.
    pub fn slow_statement(&self) {
        self.slow_statements.inc();
    }

    /// Totals since start, for `SHOW STATS`.
    pub fn totals(&self) -> MeterTotals {
        let meters = self.shards.iter().chain([&self.several]).flatten();
        let (mut queries, mut query_seconds) = (0, 0.0);
        for meter in meters {
            queries += meter.queries.get();
            query_seconds += meter.seconds.get_sample_sum();
        }
        MeterTotals {
            queries,
            query_seconds,
            transactions: self.transactions.get(),
            transaction_seconds: self.transaction_seconds.get_sample_sum(),
            routes: self.routes.each_ref().map(|c| c.get()),
            slow_statements: self.slow_statements.get(),
        }
    }
}

/// A database's totals since start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterTotals {
    /// Queries completed.
    pub queries: u64,
    /// Their summed duration.
    pub query_seconds: f64,
    /// Transactions ended.
    pub transactions: u64,
    /// Their summed duration.
    pub transaction_seconds: f64,
    /// Routing decisions: single shard, multi shard, broadcast, fallback, refused.
    pub routes: [u64; 5],
    /// Slow queries logged.
    pub slow_statements: u64,
}

/// One pool's handles. A pool that replaces it on a reload gets the same ones, so its
/// totals survive the reload.
#[derive(Clone)]
pub struct EndpointMeters {
    checkout_wait: Histogram,
    reads: IntCounter,
    causal_wait: Histogram,
    causal_fallbacks: IntCounter,
}

impl EndpointMeters {
    /// Records how long a checkout waited.
    pub fn checkout_waited(&self, waited: std::time::Duration) {
        self.checkout_wait.observe(waited.as_secs_f64());
    }

    /// Counts a replica-safe read this server serves, which first waited `waited` for a WAL
    /// position (causal reads), and came here because no replica caught up (`fell_back`).
    pub fn read_served(&self, waited: Option<std::time::Duration>, fell_back: bool) {
        self.reads.inc();
        if let Some(waited) = waited {
            self.causal_wait.observe(waited.as_secs_f64());
        }
        if fell_back {
            self.causal_fallbacks.inc();
        }
    }

    /// This server's reads since start, for `SHOW POOLS`.
    pub fn reads(&self) -> ReadTotals {
        ReadTotals {
            served: self.reads.get(),
            causal_waits: self.causal_wait.get_sample_count(),
            causal_wait_seconds: self.causal_wait.get_sample_sum(),
            causal_fallbacks: self.causal_fallbacks.get(),
        }
    }
}

/// One server's replica-safe reads since start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadTotals {
    /// Reads it served.
    pub served: u64,
    /// Of those, reads that waited for a WAL position first.
    pub causal_waits: u64,
    /// Their summed wait.
    pub causal_wait_seconds: f64,
    /// Reads it served (a primary) because no replica caught up in time.
    pub causal_fallbacks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ShardId;
    use std::time::Duration;

    #[test]
    fn a_query_lands_in_its_shard_and_role() {
        let metrics = Metrics::default();
        let meters = metrics.for_database("app", ["s0", "s1"].into_iter());
        meters.query(
            Ran::Shard(ShardId(1), Role::Replica),
            Duration::from_millis(3),
        );
        meters.query(Ran::Shards(Role::Primary), Duration::from_millis(5));
        meters.query(
            Ran::Shard(ShardId(9), Role::Primary),
            Duration::from_millis(5),
        );
        meters.transaction(Duration::from_millis(8));
        meters.route(RouteKind::Fallback);
        let child = |shard: &str, role: &str| {
            metrics
                .queries
                .with_label_values(&["app", shard, role])
                .get()
        };
        assert_eq!(child("s1", "replica"), 1);
        assert_eq!(child("s1", "primary"), 0);
        assert_eq!(child("multi", "primary"), 1);
        let totals = meters.totals();
        assert_eq!(totals.queries, 2, "an unknown shard id is not counted");
        assert_eq!(totals.routes, [0, 0, 0, 1, 0]);
        assert_eq!(totals.transactions, 1);
        assert!((totals.query_seconds - 0.008).abs() < 1e-9);
    }

    #[test]
    fn errors_are_counted_by_class() {
        let metrics = Metrics::default();
        let code = |c| crate::error::SqlState::parse(c).unwrap();
        metrics.error(code("42P01"));
        metrics.error(code("42601"));
        metrics.error(code("08006"));
        let class = |c: &str| metrics.errors.with_label_values(&[c]).get();
        assert_eq!((class("42"), class("08")), (2, 1));
    }
}
