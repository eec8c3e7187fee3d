//! Which copy of the federation database a read outside transactions uses: the one reading
//! replicas when the causal rules allow a replica read of every shard it reads through one,
//! the one reading primaries otherwise (all or nothing: a read never mixes a stale shard with
//! fresh ones, and the copy's servers cannot change per read).

use tokio::time::Instant;

use super::{Database, Freshness, ReadTicket};
use crate::config::ShardId;
use crate::control::federation::{Copy, ReplicaCopy};
use crate::counters::Event;
use crate::pool::EndpointPool;

/// Where a federated read outside transactions may run, with the tickets of the shards it
/// reads through a replica, to count once it is known where it ran.
pub struct FederatedRead<'a> {
    /// The copy on the replicas, if the read may run there.
    pub on_replicas: Option<&'a Copy>,
    tickets: Vec<(ShardId, ReadTicket)>,
}

impl Database {
    /// Where a federated read outside any transaction may run now, for a session whose own
    /// writes ask `own[shard]` of each shard.
    pub async fn federated_read(&self, own: &[Freshness]) -> FederatedRead<'_> {
        let Some(replicas) = self.federation.replicas() else {
            let tickets = Vec::new();
            return FederatedRead {
                on_replicas: None,
                tickets,
            };
        };
        let shards = (0..self.shards.len() as u32)
            .map(ShardId)
            .filter(|&shard| replicas.reads_replica(shard));
        let reads = shards.map(|shard| async move {
            let own = own.get(shard.0 as usize).copied();
            let ticket = self.read_freshness(shard, own.unwrap_or(Freshness::Primary));
            let (ticket, built) = futures::join!(ticket, self.has_build(replicas, shard));
            let fit = built
                && (self.read_pools(shard, ticket.freshness).iter())
                    .any(|(pool, _)| std::ptr::eq(*pool, self.first_replica(shard)));
            (shard, ticket, fit)
        });
        let reads = futures::future::join_all(reads).await;
        let fit = reads.iter().all(|&(_, _, fit)| fit);
        FederatedRead {
            on_replicas: fit.then(|| replicas.copy()),
            tickets: (reads.into_iter())
                .map(|(shard, ticket, _)| (shard, ticket))
                .collect(),
        }
    }

    /// Counts `read` on the server of each shard it read through a replica in the copy on the
    /// replicas (`ran_there`), or on that shard's primary, as a merged read counts its legs.
    pub fn count_federated_read(&self, read: FederatedRead<'_>, ran_there: bool) {
        for (shard, ticket) in read.tickets {
            let (pool, event) = if ran_there {
                (self.first_replica(shard), Event::ReplicaRead)
            } else {
                (self.primary(shard), Event::PrimaryRead)
            };
            ticket.served_by(pool);
            self.counters.count(event);
        }
    }

    fn first_replica(&self, shard: ShardId) -> &EndpointPool {
        &self.shards[shard.0 as usize].replicas[0]
    }

    /// Whether `shard`'s first replica replayed the copy's last build (its tables and columns,
    /// and for the default shard the copy itself), waiting at most the shard's
    /// `reads.causal_wait`.
    async fn has_build(&self, copy: &ReplicaCopy, shard: ShardId) -> bool {
        let replica = self.first_replica(shard);
        let built_at = copy.built_at(shard);
        if replica.is_down() || built_at == 0 {
            return false;
        }
        let wal = replica.health().wal();
        if wal.has_reached(built_at) {
            return true;
        }
        wal.want(built_at); // Learned for the reads that follow, even without waiting.
        let deadline = Instant::now() + self.shards[shard.0 as usize].causal_wait;
        wal.reaches(built_at, deadline).await
    }
}
