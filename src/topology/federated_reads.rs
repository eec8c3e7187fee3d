//! Which copy of the federation database a read outside transactions uses: the one reading
//! replicas when the causal rules allow a replica read of every shard it reads through one,
//! the one reading primaries otherwise (all or nothing: a read never mixes a stale shard with
//! fresh ones, and the copy's servers cannot change per read).

use tokio::time::Instant;

use super::{Database, Freshness};
use crate::config::ShardId;
use crate::control::federation::{Copy, ReplicaCopy};
use crate::counters::Event;

impl Database {
    /// The copy that reads replicas, if a federated read outside any transaction may run
    /// there now, for a session whose own writes ask `own[shard]` of each shard (`None`: the
    /// primaries' copy). Counts the read on the server of each shard that copy reads through a
    /// replica (the replica, or the primary if the read falls back), as a merged read counts
    /// its legs.
    pub async fn federation_copy(&self, own: &[Freshness]) -> Option<&Copy> {
        let replicas = self.federation.replicas()?;
        let serves = self.replica_copy_serves(replicas, own).await;
        serves.then(|| replicas.copy())
    }

    async fn replica_copy_serves(&self, copy: &ReplicaCopy, own: &[Freshness]) -> bool {
        let shards: Vec<ShardId> = (0..self.shards.len() as u32)
            .map(ShardId)
            .filter(|&shard| copy.reads_replica(shard))
            .collect();
        let tickets = (shards.iter()).map(|&shard| {
            let own = own.get(shard.0 as usize).copied();
            self.read_freshness(shard, own.unwrap_or(Freshness::Primary))
        });
        let (carried, tickets) = futures::join!(
            self.carries_last_build(copy),
            futures::future::join_all(tickets)
        );
        let first_replica = |shard: ShardId| &self.shards[shard.0 as usize].replicas[0];
        let fresh = carried
            && (shards.iter().zip(&tickets)).all(|(&shard, ticket)| {
                (self.read_pools(shard, ticket.freshness).iter())
                    .any(|(pool, _)| std::ptr::eq(*pool, first_replica(shard)))
            });
        for (&shard, ticket) in shards.iter().zip(&tickets) {
            let (pool, event) = if fresh {
                (first_replica(shard), Event::ReplicaRead)
            } else {
                (self.primary(shard), Event::PrimaryRead)
            };
            ticket.served_by(pool);
            self.counters.count(event);
        }
        fresh
    }

    /// Whether the default shard's replica, where the copy's reads run, has replayed the
    /// copy's last build (waiting for it at most the shard's `reads.causal_wait`).
    async fn carries_last_build(&self, copy: &ReplicaCopy) -> bool {
        let default = &self.shards[self.router.map().default_shard.0 as usize];
        let Some(host) = default.replicas.first() else {
            return false;
        };
        let wal = host.health().wal();
        let built_at = copy.built_at();
        if host.is_down() || built_at == 0 {
            return false;
        }
        wal.has_reached(built_at)
            || wal
                .reaches(built_at, Instant::now() + default.causal_wait)
                .await
    }
}
