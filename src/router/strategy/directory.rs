//! Directory placement: explicit key → shard entries, with a fallback for other keys.
//!
//! Part of the router stage. Owns the entries of a [`DirectorySpec`] and its fallback, built
//! once per shard map (a hash fallback is a built [`HashPlacer`]). Pure lookups that never
//! panic. Must never guess for a key without an entry when the fallback is `error`.

use std::collections::HashMap;
use std::sync::Arc;

use super::hash::HashPlacer;
use super::{PendingLookup, PlacementError, describe, sorted_unique};
use crate::config::ShardId;
use crate::config::key::KeyValue;
use crate::config::tables::{DirectorySpec, Fallback};

/// A directory table's key → shard answers as this proxy holds them. The control plane reads
/// the table and keeps the answers fresh (`control::directory`); the router only asks, and
/// asking changes nothing.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The known answer for `key`: `Some(Some(shard))`, `Some(None)` (the table has no row
    /// for it), or `None` (not known here yet: the caller fetches it and routes again).
    fn cached(&self, key: &KeyValue) -> Option<Option<ShardId>>;
}

/// Explicit entries first, then the fallback.
#[derive(Debug, Clone)]
pub struct DirectoryPlacer {
    entries: HashMap<KeyValue, ShardId>,
    /// The directory table's name and its answers, consulted after `entries`.
    lookup: Option<(String, Option<Arc<dyn Directory>>)>,
    fallback: BuiltFallback,
    /// Entry shards and fallback shards, sorted.
    shards: Vec<ShardId>,
}

/// [`Fallback`] ready for lookups.
#[derive(Debug, Clone)]
enum BuiltFallback {
    Error,
    Shard(ShardId),
    Hash(HashPlacer),
}

impl DirectoryPlacer {
    /// Copies the entries and builds the fallback (hashing its ring's points). `directory`
    /// answers for the spec's directory table; without it (offline tools) every key the
    /// entries do not name is [`PlacementError::NeedsLookup`].
    pub fn build(spec: &DirectorySpec, directory: Option<Arc<dyn Directory>>) -> DirectoryPlacer {
        let fallback = match &spec.fallback {
            Fallback::Error => BuiltFallback::Error,
            Fallback::Shard(shard) => BuiltFallback::Shard(*shard),
            Fallback::Hash(ring) => BuiltFallback::Hash(HashPlacer::build(ring)),
        };
        let mut shards: Vec<ShardId> = spec.entries.values().copied().collect();
        // A directory-table row may name any shard.
        let table_shards = spec
            .lookup
            .iter()
            .flat_map(|l| l.shards.iter().map(|(id, _)| *id));
        shards.extend(table_shards);
        let lookup = (spec.lookup.as_deref()).map(|table| (table.table.clone(), directory));
        match &fallback {
            BuiltFallback::Error => {}
            BuiltFallback::Shard(shard) => shards.push(*shard),
            BuiltFallback::Hash(placer) => shards.extend_from_slice(placer.shards()),
        }
        DirectoryPlacer {
            entries: spec.entries.clone(),
            lookup,
            fallback,
            shards: sorted_unique(shards),
        }
    }

    /// The key's entry, else its fallback; [`PlacementError::NoDirectoryEntry`] when it has
    /// no entry and the fallback is `error`.
    pub fn shard_for(&self, key: &KeyValue) -> Result<ShardId, PlacementError> {
        if let Some(shard) = self.entries.get(key) {
            return Ok(*shard);
        }
        if let Some((table, directory)) = &self.lookup {
            match directory.as_ref().and_then(|d| d.cached(key)) {
                Some(Some(shard)) => return Ok(shard),
                Some(None) => {}
                None => {
                    return Err(PlacementError::NeedsLookup(PendingLookup {
                        table: table.clone(),
                        key: key.clone(),
                    }));
                }
            }
        }
        match &self.fallback {
            BuiltFallback::Error => Err(PlacementError::NoDirectoryEntry { key: describe(key) }),
            BuiltFallback::Shard(shard) => Ok(*shard),
            BuiltFallback::Hash(placer) => placer.shard_for(key),
        }
    }

    /// Every shard an entry or the fallback names, sorted.
    pub fn shards(&self) -> &[ShardId] {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tables::HashSpec;

    fn directory(fallback: Fallback) -> DirectoryPlacer {
        let entries = HashMap::from([
            (KeyValue::Text("acme".into()), ShardId(5)),
            (KeyValue::Text("globex".into()), ShardId(1)),
        ]);
        DirectoryPlacer::build(
            &DirectorySpec {
                entries,
                fallback,
                lookup: None,
            },
            None,
        )
    }

    fn ids(ids: &[u32]) -> Vec<ShardId> {
        ids.iter().copied().map(ShardId).collect()
    }

    #[test]
    fn entries_win_over_every_fallback() {
        let ring = HashSpec {
            shards: vec![(ShardId(0), "s0".into())],
            vnodes: 4,
        };
        for fallback in [
            Fallback::Error,
            Fallback::Shard(ShardId(2)),
            Fallback::Hash(ring),
        ] {
            let placer = directory(fallback);
            assert_eq!(
                placer.shard_for(&KeyValue::Text("acme".into())),
                Ok(ShardId(5))
            );
            assert_eq!(
                placer.shard_for(&KeyValue::Text("globex".into())),
                Ok(ShardId(1))
            );
        }
    }

    #[test]
    fn keys_without_an_entry_take_the_fallback() {
        let other = KeyValue::Text("initech".into());
        let refused = directory(Fallback::Error).shard_for(&other);
        let error = PlacementError::NoDirectoryEntry {
            key: "initech".into(),
        };
        assert_eq!(refused, Err(error));
        let fixed = directory(Fallback::Shard(ShardId(2)));
        assert_eq!(fixed.shard_for(&other), Ok(ShardId(2)));
        let ring = HashSpec {
            shards: vec![(ShardId(3), "s3".into()), (ShardId(4), "s4".into())],
            vnodes: 16,
        };
        let hashed = directory(Fallback::Hash(ring.clone()));
        let expected = HashPlacer::build(&ring).shard_for(&other);
        assert_eq!(hashed.shard_for(&other), expected);
        assert_eq!(hashed.shards(), &ids(&[1, 3, 4, 5])[..]);
    }

    #[test]
    fn shards_are_entries_and_fallback_sorted() {
        assert_eq!(directory(Fallback::Error).shards(), &ids(&[1, 5])[..]);
        let fixed = directory(Fallback::Shard(ShardId(1)));
        assert_eq!(fixed.shards(), &ids(&[1, 5])[..]);
        let spec = DirectorySpec {
            entries: HashMap::new(),
            lookup: None,
            fallback: Fallback::Shard(ShardId(0)),
        };
        let empty = DirectoryPlacer::build(&spec, None);
        assert_eq!(empty.shards(), &ids(&[0])[..]);
    }
}
