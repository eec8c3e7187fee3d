//! Range placement: which shard holds a key, and which shards an interval of keys touches.
//!
//! Part of the router stage. Owns the sorted ranges of a [`RangeSpec`]; validation has made
//! them sorted and non-overlapping, each `from <= key < to`. Lookups are binary searches and
//! never panic, even on a spec that skipped validation (they then give some answer, not a
//! crash). Must never leave out a shard that holds keys of an interval: a statement narrowed
//! by `WHERE key BETWEEN …` would silently miss rows.

use std::borrow::Cow;
use std::ops::Bound;

use super::{PlacementError, describe, sorted_unique};
use crate::config::ShardId;
use crate::config::key::KeyValue;
use crate::config::tables::{KeyRange, RangeSpec};

/// Ordered key ranges, each on one shard; keys in a gap have no shard.
#[derive(Debug, Clone)]
pub struct RangePlacer {
    /// Sorted by `from` (and so by `to`); no two overlap.
    ranges: Vec<KeyRange>,
    /// Every shard some range is on, sorted.
    shards: Vec<ShardId>,
}

impl RangePlacer {
    /// Takes the validated ranges as they are (sorted, non-overlapping).
    pub fn build(spec: &RangeSpec) -> RangePlacer {
        let shards = sorted_unique(spec.ranges.iter().map(|range| range.shard).collect());
        RangePlacer {
            ranges: spec.ranges.clone(),
            shards,
        }
    }

    /// The shard of the range holding `key`; [`PlacementError::NoRange`] when the key is in a
    /// gap or outside every range.
    pub fn shard_for(&self, key: &KeyValue) -> Result<ShardId, PlacementError> {
        // The last range starting at or below the key is the only one that can hold it.
        let starts_at_or_below = self
            .ranges
            .partition_point(|range| range.from.as_ref().is_none_or(|from| from <= key));
        starts_at_or_below
            .checked_sub(1)
            .and_then(|index| self.ranges.get(index))
            .filter(|range| range.to.as_ref().is_none_or(|to| key < to))
            .map(|range| range.shard)
            .ok_or_else(|| PlacementError::NoRange { key: describe(key) })
    }

    /// Shards of every range holding at least one key of the interval, sorted and
    /// deduplicated; empty when the interval holds no key or touches only gaps. Exact for
    /// integer, date, timestamp, uuid and text keys: an exclusive bound is first turned into
    /// an inclusive one on the next (or previous) key, so `(4, 5)` over integers is empty.
    pub fn shards_for_interval(
        &self,
        lower: Bound<&KeyValue>,
        upper: Bound<&KeyValue>,
    ) -> Vec<ShardId> {
        let Some(lower) = AtLeast::from_bound(lower) else {
            return Vec::new();
        };
        let Some(upper) = Upper::from_bound(upper) else {
            return Vec::new();
        };
        if let AtLeast::Key(low) = &lower
            && !upper.admits(low)
        {
            return Vec::new();
        }
        let first = self.ranges.partition_point(|range| lower.above(range));
        let end = self
            .ranges
            .partition_point(|range| range.from.as_ref().is_none_or(|from| upper.admits(from)));
        let touched = self.ranges.get(first..end).unwrap_or_default();
        sorted_unique(touched.iter().map(|range| range.shard).collect())
    }

    /// Every shard some range is on, sorted.
    pub fn shards(&self) -> &[ShardId] {
        &self.shards
    }
}

/// A lower bound made inclusive: keys `>= Key`, or no bound.
enum AtLeast<'a> {
    Unbounded,
    Key(Cow<'a, KeyValue>),
}

impl<'a> AtLeast<'a> {
    /// `None` when no key is above an exclusive bound (it is the type's greatest value).
    fn from_bound(bound: Bound<&'a KeyValue>) -> Option<AtLeast<'a>> {
        match bound {
            Bound::Unbounded => Some(AtLeast::Unbounded),
            Bound::Included(key) => Some(AtLeast::Key(Cow::Borrowed(key))),
            Bound::Excluded(key) => successor(key).map(|next| AtLeast::Key(Cow::Owned(next))),
        }
    }

    /// Whether every key of `range` is below this bound.
    fn above(&self, range: &KeyRange) -> bool {
        match (self, &range.to) {
            (AtLeast::Key(low), Some(to)) => to <= low.as_ref(),
            _ => false,
        }
    }
}

/// An upper bound, made inclusive where the key type has a predecessor.
enum Upper<'a> {
    Unbounded,
    AtMost(Cow<'a, KeyValue>),
    /// Text keys have no predecessor ("b" follows "a\u{10FFFF}…" with no end).
    Below(&'a KeyValue),
}

impl<'a> Upper<'a> {
    /// `None` when no key is below an exclusive bound (it is the type's least value).
    fn from_bound(bound: Bound<&'a KeyValue>) -> Option<Upper<'a>> {
        match bound {
            Bound::Unbounded => Some(Upper::Unbounded),
            Bound::Included(key) => Some(Upper::AtMost(Cow::Borrowed(key))),
            Bound::Excluded(key @ KeyValue::Text(_)) => Some(Upper::Below(key)),
            Bound::Excluded(key) => predecessor(key).map(|prev| Upper::AtMost(Cow::Owned(prev))),
        }
    }

    /// Whether `key` satisfies this bound.
    fn admits(&self, key: &KeyValue) -> bool {
        match self {
            Upper::Unbounded => true,
            Upper::AtMost(high) => key <= high.as_ref(),
            Upper::Below(high) => key < *high,
        }
    }
}

/// The least key greater than `key` (text: `key` followed by NUL, the next string in byte
/// order), or `None` at the type's greatest value.
fn successor(key: &KeyValue) -> Option<KeyValue> {
    Some(match key {
        KeyValue::Integer(n) => KeyValue::Integer(n.checked_add(1)?),
        KeyValue::Text(text) => KeyValue::Text(format!("{text}\0")),
        KeyValue::Uuid(bytes) => KeyValue::Uuid(step_uuid(bytes, u128::checked_add)?),
        KeyValue::Date(days) => KeyValue::Date(days.checked_add(1)?),
        KeyValue::Timestamp(micros) => KeyValue::Timestamp(micros.checked_add(1)?),
    })
}

/// The greatest key less than `key`, or `None` at the type's least value. Text has no
/// predecessor and is kept exclusive instead ([`Upper::Below`]); it is never asked for one.
fn predecessor(key: &KeyValue) -> Option<KeyValue> {
    Some(match key {
        KeyValue::Integer(n) => KeyValue::Integer(n.checked_sub(1)?),
        KeyValue::Text(_) => return None,
        KeyValue::Uuid(bytes) => KeyValue::Uuid(step_uuid(bytes, u128::checked_sub)?),
        KeyValue::Date(days) => KeyValue::Date(days.checked_sub(1)?),
        KeyValue::Timestamp(micros) => KeyValue::Timestamp(micros.checked_sub(1)?),
    })
}

/// Uuids order as their bytes, that is as big-endian u128s.
fn step_uuid(bytes: &[u8; 16], step: fn(u128, u128) -> Option<u128>) -> Option<[u8; 16]> {
    step(u128::from_be_bytes(*bytes), 1).map(u128::to_be_bytes)
}

#[cfg(test)]
mod tests {
    use std::ops::RangeBounds;

    use proptest::prelude::*;

    use super::*;
    use crate::config::tables::Gaps;

    fn int(n: i64) -> KeyValue {
        KeyValue::Integer(n)
    }

    fn text(s: &str) -> KeyValue {
        KeyValue::Text(s.into())
    }

    fn range(from: Option<KeyValue>, to: Option<KeyValue>, shard: u32) -> KeyRange {
        KeyRange {
            from,
            to,
            shard: ShardId(shard),
        }
    }

    fn build(ranges: Vec<KeyRange>) -> RangePlacer {
        RangePlacer::build(&RangeSpec {
            ranges,
            gaps: Gaps::Allow,
        })
    }

    /// ..10 on 1, 10..20 on 2, a gap, 30.. on 3.
    fn with_gap() -> RangePlacer {
        build(vec![
            range(None, Some(int(10)), 1),
            range(Some(int(10)), Some(int(20)), 2),
            range(Some(int(30)), None, 3),
        ])
    }

    fn ids(ids: &[u32]) -> Vec<ShardId> {
        ids.iter().copied().map(ShardId).collect()
    }

    #[test]
    fn a_key_lives_in_the_range_that_holds_it() {
        let placer = with_gap();
        for (key, shard) in [
            (i64::MIN, 1),
            (9, 1),
            (10, 2),
            (19, 2),
            (30, 3),
            (i64::MAX, 3),
        ] {
            assert_eq!(placer.shard_for(&int(key)), Ok(ShardId(shard)), "{key}");
        }
        for key in [20, 29] {
            let error = PlacementError::NoRange {
                key: key.to_string(),
            };
            assert_eq!(placer.shard_for(&int(key)), Err(error));
        }
        let bounded = build(vec![range(Some(int(0)), Some(int(5)), 0)]);
        assert!(bounded.shard_for(&int(-1)).is_err() && bounded.shard_for(&int(5)).is_err());
        assert!(build(vec![]).shard_for(&int(0)).is_err());
    }

    #[test]
    fn intervals_touch_only_the_ranges_that_hold_their_keys() {
        use Bound::{Excluded, Included, Unbounded};
        let placer = with_gap();
        let cases: [(Bound<i64>, Bound<i64>, &[u32]); 10] = [
            (Unbounded, Unbounded, &[1, 2, 3]),
            (Included(9), Included(10), &[1, 2]),
            (Excluded(9), Excluded(10), &[]),
            (Excluded(9), Included(10), &[2]),
            (Unbounded, Excluded(10), &[1]),
            (Excluded(19), Unbounded, &[3]),
            (Included(20), Included(29), &[]),
            (Included(5), Included(3), &[]),
            (Excluded(i64::MAX), Unbounded, &[]),
            (Unbounded, Excluded(i64::MIN), &[]),
        ];
        for (lower, upper, expected) in cases {
            let (lower, upper) = (lower.map(int), upper.map(int));
            let shards = placer.shards_for_interval(lower.as_ref(), upper.as_ref());
            assert_eq!(shards, ids(expected), "{lower:?} {upper:?}");
        }
        assert_eq!(placer.shards(), &ids(&[1, 2, 3])[..]);
    }

    #[test]
    fn text_intervals_are_exact_too() {
        use Bound::{Excluded, Included, Unbounded};
        let placer = build(vec![
            range(None, Some(text("m")), 0),
            range(Some(text("m")), None, 1),
        ]);
        let (l, m) = (text("l"), text("m"));
        let at = |lower, upper| placer.shards_for_interval(lower, upper);
        assert_eq!(at(Excluded(&l), Excluded(&m)), ids(&[0]));
        assert_eq!(at(Included(&m), Unbounded), ids(&[1]));
        assert_eq!(at(Excluded(&l), Included(&m)), ids(&[0, 1]));
        assert_eq!(at(Included(&m), Excluded(&m)), ids(&[]));
        assert_eq!(placer.shard_for(&text("lzzz")), Ok(ShardId(0)));
    }

    #[test]
    fn uuid_bounds_step_across_bytes() {
        let (zero_ff, one_00) = ([0xff; 16], [0; 16]);
        let mut low = zero_ff;
        low[0] = 0;
        let mut high = one_00;
        high[0] = 1;
        assert_eq!(successor(&KeyValue::Uuid(low)), Some(KeyValue::Uuid(high)));
        assert_eq!(
            predecessor(&KeyValue::Uuid(high)),
            Some(KeyValue::Uuid(low))
        );
        assert_eq!(successor(&KeyValue::Uuid(zero_ff)), None);
        assert_eq!(predecessor(&KeyValue::Uuid(one_00)), None);
    }

    /// Ranges over sorted boundaries in -50..50: consecutive ones form ranges, some dropped
    /// (gaps), optionally unbounded below and above.
    fn arbitrary_ranges() -> impl Strategy<Value = Vec<KeyRange>> {
        let bounds = proptest::collection::btree_set(-50i64..50, 1..8);
        let pieces = proptest::collection::vec((any::<bool>(), 0u32..4), 9);
        (bounds, pieces).prop_map(|(bounds, pieces)| {
            let mut edges: Vec<Option<KeyValue>> = vec![None];
            edges.extend(bounds.into_iter().map(|b| Some(int(b))));
            edges.push(None);
            let spans = edges.windows(2).zip(pieces);
            spans
                .filter(|(_, (keep, _))| *keep)
                .filter_map(|(pair, (_, shard))| match pair {
                    [from, to] => Some(range(from.clone(), to.clone(), shard)),
                    _ => None,
                })
                .collect()
        })
    }

    fn arbitrary_bound() -> impl Strategy<Value = Bound<i64>> {
        prop_oneof![
            Just(Bound::Unbounded),
            (-60i64..60).prop_map(Bound::Included),
            (-60i64..60).prop_map(Bound::Excluded),
        ]
    }

    fn brute_force_shard(ranges: &[KeyRange], key: &KeyValue) -> Option<ShardId> {
        let holds = |r: &&KeyRange| {
            r.from.as_ref().is_none_or(|from| from <= key)
                && r.to.as_ref().is_none_or(|to| key < to)
        };
        ranges.iter().find(holds).map(|r| r.shard)
    }

    proptest! {
        /// Every boundary is within -60..60, so keys in -70..=70 stand for all keys.
        #[test]
        fn interval_lookups_match_brute_force(
            ranges in arbitrary_ranges(),
            lower in arbitrary_bound(),
            upper in arbitrary_bound(),
        ) {
            let placer = build(ranges.clone());
            let mut expected = Vec::new();
            for n in -70..=70 {
                let key = int(n);
                let found = brute_force_shard(&ranges, &key);
                prop_assert_eq!(placer.shard_for(&key).ok(), found);
                if (lower, upper).contains(&n) {
                    expected.extend(found);
                }
            }
            let (lower, upper) = (lower.map(int), upper.map(int));
            let actual = placer.shards_for_interval(lower.as_ref(), upper.as_ref());
            prop_assert_eq!(actual, sorted_unique(expected));
        }
    }
}
