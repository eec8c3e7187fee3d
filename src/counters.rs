//! Counts of what the router and executor decided, per database: every fan-out, every
//! replica read and fallback, every statement run on several primaries, every refusal.
//!
//! Relaxed atomics, bumped on the request path (a few nanoseconds each) and read whole by
//! [`Counters::snapshot`]; the metrics endpoint exports them. They survive shard-map reloads
//! (the database keeps one `Counters` across epochs).

use std::sync::atomic::{AtomicU64, Ordering};

/// One database's counters.
#[derive(Debug, Default)]
pub struct Counters {
    scatter_reads: AtomicU64,
    scatter_legs: AtomicU64,
    scatter_retries: AtomicU64,
    replica_reads: AtomicU64,
    primary_reads: AtomicU64,
    causal_waits: AtomicU64,
    causal_fallbacks: AtomicU64,
    multi_primary_statements: AtomicU64,
    refused_unsupported: AtomicU64,
    refused_other: AtomicU64,
    atomic_commits: AtomicU64,
    recovered_commits: AtomicU64,
    recovered_rollbacks: AtomicU64,
    cross_shard_deadlocks: AtomicU64,
    federated_reads: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Reads fanned out to several shards.
    pub scatter_reads: u64,
    /// Shard legs of those reads.
    pub scatter_legs: u64,
    /// Fan-outs run again after a replica failed before the client saw anything.
    pub scatter_retries: u64,
    /// Backends taken from a replica for a read (single shard or one leg).
    pub replica_reads: u64,
    /// Replica-safe reads that used a primary (no fresh, healthy replica, or none at all).
    pub primary_reads: u64,
    /// Causal replica reads that waited for a WAL position (the writes before them, or a
    /// replica to replay them).
    pub causal_waits: u64,
    /// Causal reads sent to the primary because no replica had replayed the writes before
    /// them within `reads.causal_wait`.
    pub causal_fallbacks: u64,
    /// Statements run on several primaries (DDL, reference or broadcast writes, split INSERTs).
    pub multi_primary_statements: u64,
    /// Statements refused as unsupported (SQLSTATE 0A000).
    pub refused_unsupported: u64,
    /// Statements refused for another reason (bad key, pool exhausted, shard down, …).
    pub refused_other: u64,
    /// Transactions that wrote on several shards and committed in two phases.
    pub atomic_commits: u64,
    /// Prepared transactions recovery committed, as their coordinator had decided.
    pub recovered_commits: u64,
    /// Prepared transactions recovery rolled back (their coordinator never committed).
    pub recovered_rollbacks: u64,
    /// Transactions cancelled to break a cycle of lock waits across shards.
    pub cross_shard_deadlocks: u64,
    /// Cross-shard reads the merge cannot compute, answered by the federation database.
    pub federated_reads: u64,
}

/// Something worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A fan-out over this many shards.
    Scatter(usize),
    /// A fan-out run again.
    ScatterRetry,
    /// A read served by a replica.
    ReplicaRead,
    /// A replica-safe read served by a primary.
    PrimaryRead,
    /// A causal read waited for a WAL position.
    CausalWait,
    /// A causal read went to the primary: no replica caught up in time.
    CausalFallback,
    /// A statement on several primaries.
    MultiPrimary,
    /// A refusal with this SQLSTATE.
    Refused(crate::error::SqlState),
    /// A COMMIT in two phases (the decision recorded).
    AtomicCommit,
    /// A transaction cancelled to break a cycle of lock waits across shards.
    CrossShardDeadlock,
    /// A read answered by the federation database.
    Federated,
}

impl Counters {
    /// Counts `event`.
    pub fn count(&self, event: Event) {
        let bump = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        match event {
            Event::Scatter(legs) => {
                bump(&self.scatter_reads, 1);
                bump(&self.scatter_legs, legs as u64);
            }
            Event::ScatterRetry => bump(&self.scatter_retries, 1),
            Event::ReplicaRead => bump(&self.replica_reads, 1),
            Event::PrimaryRead => bump(&self.primary_reads, 1),
            Event::CausalWait => bump(&self.causal_waits, 1),
            Event::CausalFallback => bump(&self.causal_fallbacks, 1),
            Event::MultiPrimary => bump(&self.multi_primary_statements, 1),
            Event::Refused(code) if code == crate::error::sqlstate::FEATURE_NOT_SUPPORTED => {
                bump(&self.refused_unsupported, 1)
            }
            Event::Refused(_) => bump(&self.refused_other, 1),
            Event::AtomicCommit => bump(&self.atomic_commits, 1),
            Event::CrossShardDeadlock => bump(&self.cross_shard_deadlocks, 1),
            Event::Federated => bump(&self.federated_reads, 1),
        }
    }

    /// Counts what a run of recovery ended: `committed` and `rolled_back` prepared
    /// transactions.
    pub fn recovered(&self, committed: u64, rolled_back: u64) {
        self.recovered_commits
            .fetch_add(committed, Ordering::Relaxed);
        (self.recovered_rollbacks).fetch_add(rolled_back, Ordering::Relaxed);
    }

    /// Every counter now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterSnapshot {
            scatter_reads: read(&self.scatter_reads),
            scatter_legs: read(&self.scatter_legs),
            scatter_retries: read(&self.scatter_retries),
            replica_reads: read(&self.replica_reads),
            primary_reads: read(&self.primary_reads),
            causal_waits: read(&self.causal_waits),
            causal_fallbacks: read(&self.causal_fallbacks),
            multi_primary_statements: read(&self.multi_primary_statements),
            refused_unsupported: read(&self.refused_unsupported),
            refused_other: read(&self.refused_other),
            atomic_commits: read(&self.atomic_commits),
            recovered_commits: read(&self.recovered_commits),
            recovered_rollbacks: read(&self.recovered_rollbacks),
            cross_shard_deadlocks: read(&self.cross_shard_deadlocks),
            federated_reads: read(&self.federated_reads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_counters() {
        let counters = Counters::default();
        counters.count(Event::Scatter(3));
        counters.count(Event::Scatter(2));
        counters.count(Event::Refused(
            crate::error::sqlstate::FEATURE_NOT_SUPPORTED,
        ));
        counters.count(Event::Refused(crate::error::sqlstate::TOO_MANY_CONNECTIONS));
        counters.count(Event::ReplicaRead);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.scatter_reads, snapshot.scatter_legs), (2, 5));
        assert_eq!(
            (snapshot.refused_unsupported, snapshot.refused_other),
            (1, 1)
        );
        assert_eq!(snapshot.replica_reads, 1);
        assert_eq!(snapshot.primary_reads, 0);
    }
}
