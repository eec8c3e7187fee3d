//! The copies of a federation database: the one whose foreign servers read the shards'
//! primaries, and where the map has replicas the one whose servers read them; their names and
//! what a read needs to know to use them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::script::ShardServer;
use super::sharded_tables;
use crate::config::{BackendUri, ReadsFrom, Shard, ShardId, ShardMap};
use crate::pool::EndpointPool;

/// One copy of the federation database: what its foreign servers read, and the pool of the
/// server its reads run on.
pub struct Copy {
    /// Its database name.
    pub database: String,
    /// The server of each shard its foreign servers read.
    pub(super) targets: Vec<ShardServer>,
    /// The login its reads use (where they run, which may not be the one that built it).
    pub(super) reader: String,
    pub(super) pool: EndpointPool,
}

impl Copy {
    /// The copy of `map` whose servers read the shards' primaries, read through `pool`.
    pub(super) fn on_primaries(map: &ShardMap, pool: EndpointPool) -> Self {
        let origin = &map.shard(map.default_shard).primary;
        Self {
            database: database_name(map, false),
            targets: (map.shards.iter())
                .map(|shard| target(shard, &shard.primary))
                .collect(),
            reader: origin.user.clone(),
            pool,
        }
    }

    /// What its reads are called as fan-out legs (errors, the oids of their descriptions).
    pub fn leg_name(&self) -> String {
        leg_name(&self.database)
    }

    /// Its pool (the row path of federated reads).
    pub fn pool(&self) -> &EndpointPool {
        &self.pool
    }
}

/// The copy that reads replicas, and what a read must know before it may use it.
pub struct ReplicaCopy {
    pub(super) copy: Copy,
    /// Per shard, whether its foreign server reads the shard's first replica (else its
    /// primary: a shard without replicas, or whose map sends reads to the primary).
    pub(super) on_replica: Vec<bool>,
    /// Per shard read through a replica, its primary's WAL position after the copy's last
    /// build: the replica must have replayed it, else the copy may name a table or column the
    /// replica does not have yet (the default shard's also covers the copy itself, which its
    /// replica carries).
    pub(super) built_at: Vec<AtomicU64>,
}

impl ReplicaCopy {
    /// The copy of `map` whose servers read each shard's first replica (a shard without one
    /// its primary), read through `pool` (on the default shard's first replica).
    pub(super) fn new(map: &ShardMap, pool: EndpointPool) -> Self {
        let default = map.shard(map.default_shard);
        let reader = replica_target(default).unwrap_or(&default.primary);
        let copy = Copy {
            database: database_name(map, true),
            targets: (map.shards.iter())
                .map(|shard| target(shard, replica_target(shard).unwrap_or(&shard.primary)))
                .collect(),
            reader: reader.user.clone(),
            pool,
        };
        Self {
            copy,
            on_replica: (map.shards.iter())
                .map(|shard| replica_target(shard).is_some())
                .collect(),
            built_at: map.shards.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The copy itself.
    pub fn copy(&self) -> &Copy {
        &self.copy
    }

    /// Whether its foreign server for `shard` reads the shard's first replica.
    pub fn reads_replica(&self, shard: ShardId) -> bool {
        self.on_replica.get(shard.0 as usize) == Some(&true)
    }

    /// `shard`'s primary's WAL position after its last build (0: not built yet).
    pub fn built_at(&self, shard: ShardId) -> u64 {
        let at = self.built_at.get(shard.0 as usize);
        at.map_or(0, |at| at.load(Ordering::SeqCst))
    }

    /// After its last build, `shard`'s primary's WAL was at `lsn`.
    pub(super) fn built(&self, shard: usize, lsn: u64) {
        if let Some(at) = self.built_at.get(shard) {
            at.store(lsn, Ordering::SeqCst);
        }
    }
}

/// The pools of a federation's copies.
pub struct CopyPools {
    /// Connections to [`Federation::uri`].
    pub primaries: EndpointPool,
    /// Connections to [`Federation::replica_uri`], where there is one.
    pub replicas: Option<EndpointPool>,
}

/// `shard` read at `uri`.
fn target(shard: &Shard, uri: &BackendUri) -> ShardServer {
    ShardServer {
        name: shard.name.clone(),
        uri: uri.clone(),
    }
}

/// The replica a shard's reads use in the copy that reads replicas: its first, where the map
/// sends its reads to replicas.
pub(super) fn replica_target(shard: &Shard) -> Option<&BackendUri> {
    (shard.reads == ReadsFrom::Replica)
        .then(|| shard.replicas.first())
        .flatten()
}

/// `<application database>_federation_<digest>` (`_federation_replicas_<digest>` for the copy
/// that reads replicas): the digest covers what the copy presents and reads (the shards and
/// the logins that read them, the default one, the sharded tables), so proxies with different
/// maps (during a reload, or tests side by side) never rebuild each other's.
pub(super) fn database_name(map: &ShardMap, replicas: bool) -> String {
    let origin = &map.shard(map.default_shard).primary;
    let mut facts = vec![map.default_shard.0.to_string()];
    for shard in &map.shards {
        let uri = match replica_target(shard) {
            Some(replica) if replicas => replica,
            _ => &shard.primary,
        };
        facts.push(format!(
            "{}={}@{}:{}/{}",
            shard.name, uri.user, uri.host, uri.port, uri.database
        ));
    }
    facts.extend(sharded_tables(map));
    // FNV-1a: stable across builds and platforms, unlike the standard hasher.
    let digest = (facts.join("\n").bytes()).fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let copy = if replicas { "replicas_" } else { "" };
    format!("{}_federation_{copy}{:08x}", origin.database, digest as u32)
}

/// A copy's name as a fan-out leg.
pub(super) fn leg_name(database: &str) -> String {
    format!("federation {database}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_shard_map;

    fn map(shards: &str) -> ShardMap {
        let text = format!(
            "shards:\n{shards}\ntables: {{users: {{strategy: hash, key: id, key_type: bigint}}}}\n"
        );
        parse_shard_map(&text, Path::new("map.yaml")).expect("test map is valid")
    }

    const WITHOUT_REPLICAS: &str = "
  - {name: s0, primary: 'postgres://u@h:5433/d'}
  - {name: s1, primary: 'postgres://u@h:5434/d'}";
    const WITH_REPLICAS: &str = "
  - {name: s0, primary: 'postgres://u@h:5433/d', replicas: ['postgres://u@r:6433/d']}
  - {name: s1, primary: 'postgres://u@h:5434/d'}";

    #[test]
    fn the_copy_on_replicas_has_a_name_of_its_own_that_follows_its_replicas() {
        let (plain, replicated) = (map(WITHOUT_REPLICAS), map(WITH_REPLICAS));
        let primaries = database_name(&plain, false);
        assert!(primaries.starts_with("d_federation_"), "{primaries}");
        assert_eq!(database_name(&replicated, false), primaries);
        let replicas = database_name(&replicated, true);
        assert!(replicas.starts_with("d_federation_replicas_"), "{replicas}");
        let moved = map(&WITH_REPLICAS.replace("6433", "6434"));
        assert_ne!(database_name(&moved, true), replicas);
        assert_eq!(
            replica_target(replicated.shard(ShardId(0))).unwrap().port,
            6433
        );
        assert!(replica_target(replicated.shard(ShardId(1))).is_none());
    }

    #[test]
    fn a_shard_reading_its_primary_keeps_its_replica_out_of_the_copy() {
        let text = WITH_REPLICAS.replace(
            "'postgres://u@r:6433/d']",
            "'postgres://u@r:6433/d'], reads: primary",
        );
        assert!(replica_target(map(&text).shard(ShardId(0))).is_none());
    }
}
