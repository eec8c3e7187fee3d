//! What the control plane last saw of a replica, read on every replica checkout.
//!
//! The checker (`control::health`) writes an [`Observed`] after each check; a pool whose
//! replica is unreachable, promoted or lagging stops serving reads until a later check finds
//! it healthy again. Pure state: nothing here connects anywhere.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The last check of one replica.
#[derive(Debug, Default)]
pub struct ReplicaHealth(Mutex<Option<Observed>>);

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// When it was made.
    pub at: Instant,
    /// What it found.
    pub verdict: Verdict,
    /// WAL position the replica had replayed (`pg_last_wal_replay_lsn`), if it said.
    pub replay_lsn: Option<u64>,
}

/// Whether a replica may serve reads, and why not.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Reachable, in recovery, within the lag bound.
    Healthy,
    /// Could not be queried.
    Unreachable(String),
    /// `pg_is_in_recovery()` is false: it was promoted, or is not a replica at all.
    NotInRecovery,
    /// Replaying this far behind its primary.
    Lagging(Duration),
}

impl ReplicaHealth {
    /// Records a check.
    pub fn record(&self, observed: Observed) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(observed);
    }

    /// The last check, if any.
    pub fn last(&self) -> Option<Observed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// False when the last check found the replica unfit; true before the first check (the
    /// pool's breaker still protects clients from an unreachable server).
    pub fn serves_reads(&self) -> bool {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_none_or(|o| o.verdict == Verdict::Healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_healthy_or_unchecked_replica_serves_reads() {
        let health = ReplicaHealth::default();
        assert!(health.serves_reads());
        let observe = |verdict| Observed {
            at: Instant::now(),
            verdict,
            replay_lsn: None,
        };
        health.record(observe(Verdict::Lagging(Duration::from_secs(30))));
        assert!(!health.serves_reads());
        health.record(observe(Verdict::NotInRecovery));
        assert!(!health.serves_reads());
        health.record(observe(Verdict::Healthy));
        assert!(health.serves_reads());
    }
}
