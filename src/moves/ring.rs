//! The exact share of the hash space that two consistent-hashing rings place differently.
//!
//! Part of the router stage (pure). Owns the walk over the union of both rings' points: between
//! two consecutive points of the union, each ring gives every key the same owner (the owner
//! of the next point of that ring at or after it), so comparing owners segment by segment
//! counts exactly the keys that move, without sampling. Must agree with
//! `HashPlacer::shard_for` on every key (a test checks it on many).

use std::collections::{BTreeMap, HashMap};

use super::{Flow, RingMove, Share};
use crate::config::ShardId;
use crate::config::tables::HashSpec;
use crate::router::strategy::HashPlacer;

/// What replacing ring `old` by ring `new` moves, by shard name.
pub(super) fn diff(old: &HashSpec, new: &HashSpec) -> RingMove {
    let (old, new) = (named_points(old), named_points(new));
    let mut cuts: Vec<u64> = old.iter().chain(&new).map(|(point, _)| *point).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (Some(&first), Some(&last)) = (cuts.first(), cuts.last()) else {
        return RingMove::default();
    };
    let mut flows: BTreeMap<(Option<&str>, Option<&str>), u128> = BTreeMap::new();
    let (mut in_old, mut in_new) = (0, 0);
    let mut previous: Option<u64> = None;
    for &cut in &cuts {
        in_old = next_at_or_after(&old, in_old, cut);
        in_new = next_at_or_after(&new, in_new, cut);
        // The first segment wraps: keys above the last cut and up to the first one.
        let width = match previous {
            Some(previous) => u128::from(cut - previous),
            None => Share::WHOLE.0 - u128::from(last) + u128::from(first),
        };
        previous = Some(cut);
        let owners = (owner(&old, in_old), owner(&new, in_new));
        if owners.0 != owners.1 {
            *flows.entry(owners).or_default() += width;
        }
    }
    let moved = Share(flows.values().sum());
    let flows = (flows.into_iter())
        .map(|((from, to), width)| Flow {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            share: Share(width),
        })
        .collect();
    RingMove { moved, flows }
}

/// The ring's points, ascending, with the owner's name (what placement depends on).
pub(super) fn named_points(spec: &HashSpec) -> Vec<(u64, &str)> {
    let names: HashMap<ShardId, &str> = (spec.shards.iter())
        .map(|(id, name)| (*id, name.as_str()))
        .collect();
    let placer = HashPlacer::build(spec);
    (placer.points().iter())
        .map(|(point, id)| (*point, names.get(id).copied().unwrap_or("?")))
        .collect()
}

/// Index of the first point `>= cut`, searching forward from `from` (cuts only grow).
fn next_at_or_after(points: &[(u64, &str)], from: usize, cut: u64) -> usize {
    let mut index = from;
    while points.get(index).is_some_and(|(point, _)| *point < cut) {
        index += 1;
    }
    index
}

/// The owner of the point at `index`, wrapping to the first point past the end; `None` for
/// an empty ring.
pub(super) fn owner<'a>(points: &[(u64, &'a str)], index: usize) -> Option<&'a str> {
    points.get(index).or(points.first()).map(|(_, name)| *name)
}
