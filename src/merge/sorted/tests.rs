use super::*;
use crate::merge::frame::Layout;
use crate::merge::plan::Slot;
use crate::merge::tests::{description, row};

fn key(descending: bool, nulls_first: bool) -> SortKey {
    SortKey {
        value: Slot::Hidden(0),
        descending,
        nulls_first,
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

#[test]
fn a_head_is_released_only_when_every_open_leg_has_one() {
    let layout = Layout::parse(&description(&[(23, 1)]), 1).unwrap();
    let keys = vec![OrderKey {
        column: 0,
        ty: SqlType::Int4,
        key: key(false, false),
    }];
    let mut merge = SortedMerge::new(keys, 2);
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
    let layout = Layout::parse(&description(&[(23, 1)]), 1).unwrap();
    let keys = vec![OrderKey {
        column: 0,
        ty: SqlType::Int4,
        key: key(false, false),
    }];
    let mut merge = SortedMerge::new(keys, 2);
    let good = row(&[Some(&1i32.to_be_bytes())]);
    let bad = row(&[Some(&[1, 2])]);
    merge.push(0, Row::parse(&good, &layout).unwrap());
    merge.push(1, Row::parse(&bad, &layout).unwrap());
    assert!(matches!(
        merge.pop(&[false, false]),
        Err(MergeError::Malformed(_))
    ));
}
