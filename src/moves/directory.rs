//! The directory keys and fallback keys that two directory maps place differently.
//!
//! Part of the router stage (pure: a directory table in PostgreSQL is never read). Every key
//! with an entry in either map is placed as each map places it (entry, else directory table,
//! else fallback), so an entry added for a key the fallback already put on that shard moves
//! nothing. Keys without an entry follow the fallbacks, compared ring to ring when both hash;
//! keys a directory table places are unknown here, and a changed table is reported as such.

use super::{DirectoryMove, EntryMove, FallbackMove, Maps, Placed, ring, shard_name};
use crate::config::ShardMap;
use crate::config::key::KeyValue;
use crate::config::tables::{DirectorySpec, Fallback};
use crate::router::strategy::HashPlacer;

/// What replacing directory `old` by `new` moves.
pub(super) fn diff(maps: Maps<'_>, old: &DirectorySpec, new: &DirectorySpec) -> DirectoryMove {
    let (before, after) = (Side::new(maps.old, old), Side::new(maps.new, new));
    let mut keys: Vec<&KeyValue> = old.entries.keys().chain(new.entries.keys()).collect();
    keys.sort();
    keys.dedup();
    let entries = (keys.into_iter())
        .filter_map(|key| {
            let (old, new) = (before.place(key), after.place(key));
            (old != new).then(|| EntryMove {
                key: key.clone(),
                old,
                new,
            })
        })
        .collect();
    let lookup = (lookup_text(old), lookup_text(new));
    DirectoryMove {
        entries,
        lookup: (lookup.0 != lookup.1).then_some(lookup),
        fallback: fallback_move(maps, &old.fallback, &new.fallback),
    }
}

/// One map's directory, ready to place keys.
struct Side<'a> {
    map: &'a ShardMap,
    spec: &'a DirectorySpec,
    ring: Option<HashPlacer>,
}

impl<'a> Side<'a> {
    fn new(map: &'a ShardMap, spec: &'a DirectorySpec) -> Side<'a> {
        let ring = match &spec.fallback {
            Fallback::Hash(ring) => Some(HashPlacer::build(ring)),
            Fallback::Error | Fallback::Shard(_) => None,
        };
        Side { map, spec, ring }
    }

    /// Entry, else directory table, else fallback: the order the router follows.
    fn place(&self, key: &KeyValue) -> Placed {
        if let Some(shard) = self.spec.entries.get(key) {
            return Placed::Shard(shard_name(self.map, *shard));
        }
        if self.spec.lookup.is_some() {
            return Placed::Lookup;
        }
        let shard = match (&self.spec.fallback, &self.ring) {
            (Fallback::Shard(shard), _) => Some(*shard),
            (Fallback::Hash(_), Some(ring)) => ring.shard_for(key).ok(),
            _ => None,
        };
        shard.map_or(Placed::Refused, |shard| {
            Placed::Shard(shard_name(self.map, shard))
        })
    }
}

/// The directory table in words (`none` without one); never the credentials.
fn lookup_text(spec: &DirectorySpec) -> String {
    match &spec.lookup {
        Some(lookup) => format!(
            "{} at {}/{}",
            lookup.table,
            lookup.uri.address(),
            lookup.uri.database
        ),
        None => "none".to_owned(),
    }
}

fn fallback_move(maps: Maps<'_>, old: &Fallback, new: &Fallback) -> Option<FallbackMove> {
    if let (Fallback::Hash(old), Fallback::Hash(new)) = (old, new) {
        let moved = ring::diff(old, new);
        return (!moved.flows.is_empty()).then_some(FallbackMove::Ring(moved));
    }
    let (old, new) = (describe(maps.old, old), describe(maps.new, new));
    (old != new).then_some(FallbackMove::Changed { old, new })
}

/// A fallback in words, naming shards by name (so equal words mean equal placement).
fn describe(map: &ShardMap, fallback: &Fallback) -> String {
    match fallback {
        Fallback::Error => "error".to_owned(),
        Fallback::Shard(shard) => format!("shard {}", shard_name(map, *shard)),
        Fallback::Hash(ring) => {
            let mut names: Vec<&str> = ring.shards.iter().map(|(_, n)| n.as_str()).collect();
            names.sort_unstable();
            format!("hash ring of {} ({} vnodes)", names.join(", "), ring.vnodes)
        }
    }
}
