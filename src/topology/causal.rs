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

use std::time::Duration;

use tokio::time::Instant;

use super::{Database, Freshness};
use crate::config::{Consistency, ReadsFrom, ShardId};
use crate::counters::Event;
use crate::pool::{EndpointPool, WalClock};

/// Where a read may go, and what finding out cost: the server that serves it counts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTicket {
    /// How recent what it reads must be.
    pub freshness: Freshness,
    /// How long it waited for a WAL position, if it did.
    pub waited: Option<Duration>,
    /// It goes to the primary because no replica replayed the writes before it in time.
    pub fell_back: bool,
}

impl ReadTicket {
    /// A read that needs no causal position.
    fn plain(freshness: Freshness) -> Self {
        Self {
            freshness,
            waited: None,
            fell_back: false,
        }
    }

    /// Counts the read on the server that serves it.
    pub fn served_by(&self, pool: &EndpointPool) {
        pool.meters().read_served(self.waited, self.fell_back);
    }
}

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
    pub async fn read_freshness(&self, shard: ShardId, own: Freshness) -> ReadTicket {
        let pools = &self.shards[shard.0 as usize];
        if own == Freshness::Primary
            || pools.reads != ReadsFrom::Replica
            || pools.replicas.is_empty()
        {
            return ReadTicket::plain(own);
        }
        match pools.consistency {
            Consistency::Session => ReadTicket::plain(own),
            Consistency::Eventual => ReadTicket::plain(Freshness::Any),
            Consistency::Causal => self.causal_freshness(shard, false).await,
            Consistency::Global => self.causal_freshness(shard, true).await,
        }
    }

    /// `global`: the primary's current position, not only what this proxy's writes need.
    async fn causal_freshness(&self, shard: ShardId, global: bool) -> ReadTicket {
        let pools = &self.shards[shard.0 as usize];
        let began = Instant::now();
        let mut read = CausalRead {
            deadline: began + pools.causal_wait,
            may_wait: !pools.causal_wait.is_zero(),
            global,
            waited: false,
        };
        let primary = pools.primary.health().wal();
        let mut ticket = match read.position(primary).await {
            Some(needed) if read.replica_reaches(&pools.replicas, needed).await => {
                ReadTicket::plain(Freshness::Replayed(needed))
            }
            _ => {
                self.counters.count(Event::CausalFallback);
                ReadTicket {
                    fell_back: true,
                    ..ReadTicket::plain(Freshness::Primary)
                }
            }
        };
        if read.waited {
            self.counters.count(Event::CausalWait);
            ticket.waited = Some(began.elapsed());
        }
        ticket
    }
}

/// One causal read on its way to a replica.
struct CausalRead {
    /// When it stops waiting and reads the primary.
    deadline: Instant,
    /// `reads.causal_wait` is not zero.
    may_wait: bool,
    /// `consistency: global`.
    global: bool,
    /// It waited for a position.
    waited: bool,
}

impl CausalRead {
    /// The primary's position a replica must have replayed, if known in time: past every
    /// write acknowledged through this proxy before the read (`causal`), or past everything
    /// the primary had committed when the read began (`global`: a probe started now, so
    /// without waiting there is none).
    async fn position(&mut self, primary: &WalClock) -> Option<u64> {
        if self.global {
            if !self.may_wait {
                return None;
            }
            self.waited = true;
            return primary.current(self.deadline).await;
        }
        match primary.covering_now() {
            Ok(lsn) => Some(lsn),
            Err(_) if !self.may_wait => None,
            Err(_) => {
                self.waited = true;
                primary.covering(self.deadline).await
            }
        }
    }

    /// Whether one of the `replicas` in service replayed up to `needed` (by the deadline).
    /// Without waiting, their probes are asked to find out for the reads that follow.
    async fn replica_reaches(&mut self, replicas: &[EndpointPool], needed: u64) -> bool {
        let fit = || (replicas.iter().filter(|r| !r.is_down())).map(|r| r.health().wal());
        if fit().any(|r| r.has_reached(needed)) {
            return true; // The common case: no allocation, one lock per replica.
        }
        if !self.may_wait {
            fit().for_each(|r| r.want(needed));
            return false;
        }
        let mut pending: Vec<_> = fit()
            .map(|r| Box::pin(r.reaches(needed, self.deadline)))
            .collect();
        self.waited = !pending.is_empty();
        while !pending.is_empty() {
            let (reached, _, rest) = futures::future::select_all(pending).await;
            if reached {
                return true;
            }
            pending = rest;
        }
        false
    }
}
