//! The key ranges that two range maps place on different shards.
//!
//! Part of the router stage (pure). Owns the merge of both maps' bounds: between two
//! consecutive bounds of the union no range starts or ends, so each map puts the whole
//! interval on one shard (or in a gap) and comparing owners interval by interval is exact.
//! Adjacent intervals with the same move are reported as one.

use super::{Maps, RangeMove, shard_name};
use crate::config::ShardMap;
use crate::config::key::KeyValue;
use crate::config::tables::RangeSpec;

/// The intervals whose shard name changes, in key order.
pub(super) fn diff(maps: Maps<'_>, old: &RangeSpec, new: &RangeSpec) -> Vec<RangeMove> {
    let mut bounds: Vec<&KeyValue> = (old.ranges.iter().chain(&new.ranges))
        .flat_map(|range| range.from.iter().chain(range.to.iter()))
        .collect();
    bounds.sort();
    bounds.dedup();
    let lowers = std::iter::once(None).chain(bounds.iter().copied().map(Some));
    let uppers = bounds
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None));
    let mut moves: Vec<RangeMove> = Vec::new();
    for (from, to) in lowers.zip(uppers) {
        let old_shard = owner(maps.old, old, from);
        let new_shard = owner(maps.new, new, from);
        if old_shard == new_shard {
            continue;
        }
        if let Some(last) = moves.last_mut()
            && last.to.as_ref() == from
            && (last.old.as_ref(), last.new.as_ref()) == (old_shard.as_ref(), new_shard.as_ref())
        {
            last.to = to.cloned();
            continue;
        }
        moves.push(RangeMove {
            from: from.cloned(),
            to: to.cloned(),
            old: old_shard,
            new: new_shard,
        });
    }
    moves
}

/// The shard name of the range holding the interval that starts at `from` (`None`: the
/// unbounded start) and ends at the next bound; `None` when it is in a gap.
fn owner(map: &ShardMap, spec: &RangeSpec, from: Option<&KeyValue>) -> Option<String> {
    let holds = |range: &&crate::config::tables::KeyRange| {
        let starts_at_or_below = match (&range.from, from) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(start), Some(key)) => start <= key,
        };
        let ends_above = match (&range.to, from) {
            (None, _) | (Some(_), None) => true,
            (Some(end), Some(key)) => key < end,
        };
        starts_at_or_below && ends_above
    };
    let range = spec.ranges.iter().find(holds)?;
    Some(shard_name(map, range.shard))
}
