use super::*;
use crate::merge::MergePlan;
use crate::merge::frame::Layout;
use crate::merge::plan::Slot;
use crate::merge::tests::{NAMED, description, i8b, row, rows_of, run_frames, sort, t};

fn key(descending: bool, nulls_first: bool) -> SortKey {
    SortKey {
        value: Slot::Hidden(0),
        descending,
        nulls_first,
        bytewise: false,
    }
}

#[test]
fn nulls_go_where_the_key_says_whatever_the_direction() {
    let one = Value::Int(1);
    let two = Value::Int(2);
    let cases = [
        (key(false, false), None, Some(one), Ordering::Greater),
        (key(false, true), None, Some(one), Ordering::Less),
        (key(true, true), None, Some(one), Ordering::Less),
        (key(true, false), Some(one), None, Ordering::Less),
        (key(false, false), None, None, Ordering::Equal),
        (key(false, false), Some(one), Some(two), Ordering::Less),
        (key(true, false), Some(one), Some(two), Ordering::Greater),
    ];
    for (key, a, b, expected) in cases {
        assert_eq!(
            compare_sort_values(a.as_ref(), b.as_ref(), &key),
            expected,
            "{key:?} {a:?} {b:?}"
        );
    }
}

/// Two legs of rows of one hidden int4, merged ascending.
fn int4_merge() -> (Layout, SortedMerge) {
    let layout = Layout::parse(&description(&[(23, 1)]), 1).unwrap();
    let keys = vec![OrderKey {
        column: 0,
        ty: SqlType::Int4,
        key: key(false, false),
    }];
    (layout, SortedMerge::new(keys, 2))
}

#[test]
fn a_head_is_released_only_when_every_open_leg_has_one() {
    let (layout, mut merge) = int4_merge();
    let frames: Vec<Vec<u8>> = [3i32, 1]
        .iter()
        .map(|v| row(&[Some(&v.to_be_bytes())]))
        .collect();
    merge.push(0, Row::parse(&frames[0], &layout).unwrap());
    assert!(merge.pop(&[false, false]).unwrap().is_none());
    assert_eq!(merge.queued_bytes(0), frames[0].len());
    merge.push(1, Row::parse(&frames[1], &layout).unwrap());
    let first = merge.pop(&[false, false]).unwrap().unwrap();
    assert_eq!(first.row().frame(), &frames[1][..]);
    assert!(
        merge.pop(&[false, false]).unwrap().is_none(),
        "leg 1 is open and empty"
    );
    let second = merge.pop(&[false, true]).unwrap().unwrap();
    assert_eq!(second.row().frame(), &frames[0][..]);
    assert!(merge.pop(&[true, true]).unwrap().is_none());
    assert_eq!(merge.queued_bytes(0) + merge.queued_bytes(1), 0);
}

#[test]
fn a_malformed_sort_key_is_an_error_when_compared() {
    let (layout, mut merge) = int4_merge();
    let good = row(&[Some(&1i32.to_be_bytes())]);
    let bad = row(&[Some(&[1, 2])]);
    merge.push(0, Row::parse(&good, &layout).unwrap());
    merge.push(1, Row::parse(&bad, &layout).unwrap());
    assert!(matches!(
        merge.pop(&[false, false]),
        Err(MergeError::Malformed(_))
    ));
}

proptest::proptest! {
    /// The k-way merge of per-shard sorted inputs equals the sort of their union.
    #[test]
    fn merging_sorted_shards_equals_sorting_their_union(
        shards in proptest::collection::vec(
            proptest::collection::vec(proptest::option::weighted(0.9, -20i64..20), 0..12), 1..5),
        descending in proptest::bool::ANY,
        nulls_first in proptest::bool::ANY,
    ) {
        let key = sort(0, descending, nulls_first);
        let order = |a: &Option<i64>, b: &Option<i64>| {
            let (a, b) = (a.map(|v| Value::Int(v.into())), b.map(|v| Value::Int(v.into())));
            compare_sort_values(a.as_ref(), b.as_ref(), &key)
        };
        let mut legs = Vec::new();
        let mut union = Vec::new();
        for (leg, ids) in shards.iter().enumerate() {
            let mut ids = ids.clone();
            ids.sort_by(order);
            legs.push(ids.iter().enumerate().map(|(i, id)| vec![t(&format!("{leg}.{i}")), id.and_then(i8b)]).collect());
            union.extend(ids);
        }
        union.sort_by(order);
        let plan = MergePlan { hidden: 1, order: vec![key], ..MergePlan::default() };
        let (out, _) = run_frames(&plan, &NAMED, &legs, &[]).unwrap();
        let names: Vec<String> = rows_of(&out).into_iter().map(|r| r[0].clone().unwrap()).collect();
        let merged: Vec<Option<i64>> = names.iter().map(|name| {
            let (leg, i) = name.split_once('.').unwrap();
            let ids = &shards[leg.parse::<usize>().unwrap()];
            let mut ids = ids.clone();
            ids.sort_by(order);
            ids[i.parse::<usize>().unwrap()]
        }).collect();
        proptest::prop_assert_eq!(merged, union);
    }
}
