//! Causal replica reads (`reads.consistency: causal`, the default): a read served by a
//! replica reflects every write acknowledged through this proxy, by any session, before the
//! read began.
//!
//! A session that finishes a write on a shard tells that shard's primary clock
//! ([`Database::write_acknowledged`]); a read asks [`Database::read_freshness`], which waits
//! (at most `reads.causal_wait`) for the primary's WAL position covering those writes and for
//! a replica that has replayed it, else sends the read to the primary. Positions come from the
//! control plane's probes (`control::causal`), so the health check's interval never sets how
//! soon a replica can serve a read after a write.

use tokio::time::Instant;

use super::{Database, Freshness};
use crate::config::{Consistency, ReadsFrom, ShardId};
use crate::counters::Event;

impl Database {
    /// A write of a session on `shard` was acknowledged to its client: later causal reads of
    /// the shard must reflect it.
    pub fn write_acknowledged(&self, shard: ShardId) {
        let pools = &self.shards[shard.0 as usize];
        if pools.consistency == Consistency::Causal && self.reads_from_replicas(shard) {
            pools.primary.health().wal().write_acked();
        }
    }

    /// How fresh a replica read of `shard` must be, for a session whose own writes ask for
    /// `own`: under causal consistency, past every write acknowledged before now (waiting for
    /// that position and for a replica that replayed it, at most `reads.causal_wait`, and the
    /// primary otherwise).
    pub async fn read_freshness(&self, shard: ShardId, own: Freshness) -> Freshness {
        let pools = &self.shards[shard.0 as usize];
        if own == Freshness::Primary
            || pools.reads != ReadsFrom::Replica
            || pools.replicas.is_empty()
        {
            return own;
        }
        match pools.consistency {
            Consistency::Session => own,
            Consistency::Eventual => Freshness::Any,
            Consistency::Causal => self.causal_freshness(shard).await,
        }
    }

    async fn causal_freshness(&self, shard: ShardId) -> Freshness {
        let pools = &self.shards[shard.0 as usize];
        let deadline = Instant::now() + pools.causal_wait;
        let fit = || pools.replicas.iter().filter(|r| !r.is_down());
        let primary = pools.primary.health().wal();
        let waits = !pools.causal_wait.is_zero();
        let needed = match primary.covering_now() {
            Ok(lsn) => lsn,
            Err(_) if !waits => return self.causal_fallback(),
            Err(_) => {
                self.counters.count(Event::CausalWait);
                match primary.covering(deadline).await {
                    Some(lsn) => lsn,
                    None => return self.causal_fallback(),
                }
            }
        };
        if fit().any(|r| r.health().wal().has_reached(needed)) {
            return Freshness::Replayed(needed);
        }
        if !waits {
            fit().for_each(|r| r.health().wal().want(needed));
            return self.causal_fallback();
        }
        self.counters.count(Event::CausalWait);
        let waits = fit().map(|r| Box::pin(r.health().wal().reaches(needed, deadline)));
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            return self.causal_fallback();
        }
        let mut pending = waits;
        while !pending.is_empty() {
            let (reached, _, rest) = futures::future::select_all(pending).await;
            if reached {
                return Freshness::Replayed(needed);
            }
            pending = rest;
        }
        self.causal_fallback()
    }

    fn causal_fallback(&self) -> Freshness {
        self.counters.count(Event::CausalFallback);
        Freshness::Primary
    }
}
