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
use crate::control::directory::DirectoryLookup;

/// Explicit entries first, then the fallback.
#[derive(Debug, Clone)]
pub struct DirectoryPlacer {
    entries: HashMap<KeyValue, ShardId>,
    /// The directory table, consulted (through its cache) after `entries`.
    lookup: Option<Arc<DirectoryLookup>>,
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
    /// Copies the entries and builds the fallback (hashing its ring's points).
    pub fn build(spec: &DirectorySpec) -> DirectoryPlacer {
        let fallback = match &spec.fallback {
            Fallback::Error => BuiltFallback::Error,
            Fallback::Shard(shard) => BuiltFallback::Shard(*shard),
            Fallback::Hash(ring) => BuiltFallback::Hash(HashPlacer::build(ring)),
        };
        let lookup = spec.lookup.as_deref().cloned().map(DirectoryLookup::new);
        let mut shards: Vec<ShardId> = spec.entries.values().copied().collect();
        // A directory-table row may name any shard.
        shards.extend(lookup.iter().flat_map(|l| l.shards()));
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
        if let Some(lookup) = &self.lookup {
            match lookup.cached(key) {
                Some(Some(shard)) => return Ok(shard),
                Some(None) => {}
                None => {
                    return Err(PlacementError::NeedsLookup(PendingLookup {
                        lookup: lookup.clone(),
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
        DirectoryPlacer::build(&DirectorySpec {
            entries,
            fallback,
            lookup: None,
        })
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
        let empty = DirectoryPlacer::build(&DirectorySpec {
            entries: HashMap::new(),
            lookup: None,
            fallback: Fallback::Shard(ShardId(0)),
        });
        assert_eq!(empty.shards(), &ids(&[0])[..]);
    }
}
