//! Placement strategies: the lookup structures that say which shard holds a key.
//!
//! Part of the router stage. Owns the built form of a map's [`Strategy`]: a consistent-hashing
//! ring ([`hash`]), sorted key ranges ([`range`]) or a key directory ([`directory`]), each
//! built once per shard map and then only read. Pure: no I/O, no globals, no `await`; a
//! lookup never panics and allocates nothing beyond what an error message needs. Placement
//! of hashed keys is persistent data: it must never change for a given map (see `hash`).

pub mod directory;
pub mod hash;
pub mod range;

use std::ops::Bound;
use std::sync::Arc;

use crate::config::ShardId;
use crate::config::key::{KeyValue, shorten};
use crate::config::tables::Strategy;

pub use directory::{Directory, DirectoryPlacer};
pub use hash::HashPlacer;
pub use range::RangePlacer;

/// Built form of a [`Strategy`], ready for lookups. Build it once per shard map (building a
/// ring hashes every virtual node) and share it.
#[derive(Debug, Clone)]
pub enum Placer {
    /// Consistent hashing.
    Hash(HashPlacer),
    /// Ordered key ranges.
    Range(RangePlacer),
    /// Explicit entries with a fallback.
    Directory(DirectoryPlacer),
}

impl Placer {
    /// Builds the lookup structure for a validated strategy. Never fails: anything a lookup
    /// cannot answer (a key in a range gap, an empty ring) is reported by that lookup.
    pub fn build(spec: &Strategy) -> Placer {
        Placer::build_with(spec, None)
    }

    /// [`Placer::build`], with the live answers of the strategy's directory table (if any).
    pub fn build_with(spec: &Strategy, directory: Option<Arc<dyn Directory>>) -> Placer {
        match spec {
            Strategy::Hash(spec) => Placer::Hash(HashPlacer::build(spec)),
            Strategy::Range(spec) => Placer::Range(RangePlacer::build(spec)),
            Strategy::Directory(spec) => Placer::Directory(DirectoryPlacer::build(spec, directory)),
        }
    }

    /// The one shard a key lives on. The key must be of the table's key type (parsed with
    /// [`KeyValue::parse_text`] or [`KeyValue::from_binary`]).
    pub fn shard_for(&self, key: &KeyValue) -> Result<ShardId, PlacementError> {
        match self {
            Placer::Hash(placer) => placer.shard_for(key),
            Placer::Range(placer) => placer.shard_for(key),
            Placer::Directory(placer) => placer.shard_for(key),
        }
    }

    /// Every shard that may hold keys in the interval, sorted and deduplicated. For hash and
    /// directory strategies that is every shard they place on (order tells nothing); for
    /// ranges only the ranges the interval touches, and an empty vec when it touches none
    /// (including an empty interval such as `> 5 AND < 3`).
    pub fn shards_for_interval(
        &self,
        lower: Bound<&KeyValue>,
        upper: Bound<&KeyValue>,
    ) -> Vec<ShardId> {
        match self {
            Placer::Hash(placer) => placer.shards().to_vec(),
            Placer::Range(placer) => placer.shards_for_interval(lower, upper),
            Placer::Directory(placer) => placer.shards().to_vec(),
        }
    }

    /// Every shard this strategy can place rows on, sorted and deduplicated: where a
    /// statement without a usable key must go.
    pub fn shards(&self) -> Vec<ShardId> {
        match self {
            Placer::Hash(placer) => placer.shards().to_vec(),
            Placer::Range(placer) => placer.shards().to_vec(),
            Placer::Directory(placer) => placer.shards().to_vec(),
        }
    }
}

/// Why a key has no shard. The message names the key (at most 64 characters of it); the
/// caller adds the table. The client is to blame: the map does not place that key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The key falls between ranges or outside all of them.
    #[error("shard key '{key}' is in no range of the shard map")]
    NoRange {
        /// The key in PostgreSQL's text form.
        key: String,
    },
    /// A directory has no entry for the key and its fallback is `error`.
    #[error("shard key '{key}' has no entry in the shard map's directory")]
    NoDirectoryEntry {
        /// The key in PostgreSQL's text form.
        key: String,
    },
    /// A hash ring with no points (no shards, or zero vnodes); validation refuses such maps,
    /// so this only guards against a spec that skipped it.
    #[error("shard key '{key}' cannot be placed: the hash ring has no shards")]
    EmptyRing {
        /// The key in PostgreSQL's text form.
        key: String,
    },
    /// The key's place is in a directory table this proxy has not read yet: fetch it (the
    /// session asks the control plane) and route again.
    #[error("shard key '{}' is not in the directory cache yet", .0.key)]
    NeedsLookup(PendingLookup),
}

/// A directory-table read the router needs before it can place a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLookup {
    /// The directory table (as the shard map names it).
    pub table: String,
    /// The key to read.
    pub key: KeyValue,
}

/// The key as an error message shows it.
fn describe(key: &KeyValue) -> String {
    shorten(&key.to_string())
}

/// `ids` sorted and deduplicated.
fn sorted_unique(mut ids: Vec<ShardId>) -> Vec<ShardId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::tables::{DirectorySpec, Fallback, Gaps, HashSpec, KeyRange, RangeSpec};

    fn ring() -> HashSpec {
        HashSpec {
            shards: vec![(ShardId(2), "s2".into()), (ShardId(0), "s0".into())],
            vnodes: 8,
        }
    }

    #[test]
    fn every_strategy_answers_through_one_placer() {
        let int = KeyValue::Integer;
        let hash = Placer::build(&Strategy::Hash(ring()));
        assert_eq!(hash.shards(), vec![ShardId(0), ShardId(2)]);
        assert!(hash.shard_for(&int(7)).is_ok());
        let everything = hash.shards_for_interval(Bound::Included(&int(1)), Bound::Unbounded);
        assert_eq!(everything, hash.shards());

        let range = Placer::build(&Strategy::Range(RangeSpec {
            ranges: vec![
                KeyRange {
                    from: None,
                    to: Some(int(10)),
                    shard: ShardId(1),
                },
                KeyRange {
                    from: Some(int(20)),
                    to: None,
                    shard: ShardId(0),
                },
            ],
            gaps: Gaps::Allow,
        }));
        assert_eq!(range.shard_for(&int(25)), Ok(ShardId(0)));
        assert_eq!(range.shards(), vec![ShardId(0), ShardId(1)]);
        let gap = range.shards_for_interval(Bound::Included(&int(10)), Bound::Excluded(&int(20)));
        assert_eq!(gap, vec![]);

        let directory = Placer::build(&Strategy::Directory(DirectorySpec {
            entries: HashMap::from([(int(1), ShardId(3))]),
            lookup: None,
            fallback: Fallback::Hash(ring()),
        }));
        assert_eq!(directory.shard_for(&int(1)), Ok(ShardId(3)));
        assert_eq!(directory.shards(), vec![ShardId(0), ShardId(2), ShardId(3)]);
    }

    #[test]
    fn errors_name_the_key_briefly() {
        let error = PlacementError::NoRange {
            key: describe(&KeyValue::Integer(42)),
        };
        assert_eq!(
            error.to_string(),
            "shard key '42' is in no range of the shard map"
        );
        let long = describe(&KeyValue::Text("x".repeat(1000)));
        assert_eq!(long.len(), 64);
    }
}
