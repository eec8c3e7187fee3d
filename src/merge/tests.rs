//! Tests of whole merges (plans run over shard rows as the executor feeds them), and the
//! helpers the merge's module tests share.

use super::plan::{Count, Slot, SortKey};
use super::*;

/// The body of a RowDescription of columns (type oid, format code) named c0, c1, ...
pub(super) fn description(columns: &[(u32, i16)]) -> Vec<u8> {
    let mut body = (columns.len() as i16).to_be_bytes().to_vec();
    for (i, &(oid, format)) in columns.iter().enumerate() {
        body.extend_from_slice(format!("c{i}\0").as_bytes());
        body.extend_from_slice(&[0; 6]); // table oid, column number
        body.extend_from_slice(&oid.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes()); // type size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&format.to_be_bytes());
    }
    body
}

/// A DataRow frame.
pub(super) fn row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut body = (fields.len() as i16).to_be_bytes().to_vec();
    for field in fields {
        match field {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                body.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                body.extend_from_slice(bytes);
            }
        }
    }
    let mut frame = vec![b'D'];
    frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A numeric in binary.
pub(super) fn numeric(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    numeric::Numeric::parse(text)
        .unwrap()
        .write_binary(&mut out)
        .unwrap();
    out
}

/// One shard row's fields: text for visible ones, binary bytes for hidden ones.
pub(super) type Fields = Vec<Option<Vec<u8>>>;

/// Text field.
pub(super) fn t(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

/// Binary int8 field.
pub(super) fn i8b(value: i64) -> Option<Vec<u8>> {
    Some(value.to_be_bytes().to_vec())
}

/// The rows of DataRow frames, each field as text (`None`: NULL).
pub(super) fn rows_of(mut frames: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    while !frames.is_empty() {
        assert_eq!(frames[0], b'D');
        let len = i32::from_be_bytes(frames[1..5].try_into().unwrap()) as usize;
        let (frame, rest) = frames.split_at(len + 1);
        let count = i16::from_be_bytes([frame[5], frame[6]]) as usize;
        let mut at = 7;
        let mut fields = Vec::new();
        for _ in 0..count {
            let flen = i32::from_be_bytes(frame[at..at + 4].try_into().unwrap());
            at += 4;
            if flen < 0 {
                fields.push(None);
                continue;
            }
            let bytes = &frame[at..at + flen as usize];
            fields.push(Some(String::from_utf8_lossy(bytes).into_owned()));
            at += flen as usize;
        }
        assert_eq!(at, frame.len());
        rows.push(fields);
        frames = rest;
    }
    rows
}

/// Runs `plan` over shard results as an executor would (rows taken round-robin from the
/// legs, each leg finished after its last row); the output frames and the merger.
pub(super) fn run_frames(
    plan: &MergePlan,
    columns: &[(u32, i16)],
    legs: &[Vec<Fields>],
    params: &[ParamValue<'_>],
) -> Result<(BytesMut, Merger), MergeError> {
    let mut merger = Merger::new(plan, &description(columns), legs.len(), params, LIMITS)?;
    let mut out = feed(&mut merger, legs)?;
    // With no legs, what `new` answered.
    merger.drain(&mut out)?;
    Ok((out, merger))
}

/// Feeds shard rows to `merger` as an executor would (round-robin, each leg finished after
/// its last row); the frames it made ready.
fn feed(merger: &mut Merger, legs: &[Vec<Fields>]) -> Result<BytesMut, MergeError> {
    let mut out = BytesMut::new();
    let longest = legs.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..=longest {
        for (leg, rows) in legs.iter().enumerate() {
            match rows.get(step) {
                Some(fields) => {
                    let fields: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
                    merger.push_row(leg, &row(&fields))?;
                }
                None if step == rows.len() => merger.finish_leg(leg)?,
                None => {}
            }
            merger.drain(&mut out)?;
        }
    }
    Ok(out)
}

/// [`run_frames`], the output as text rows.
pub(super) fn run(
    plan: &MergePlan,
    columns: &[(u32, i16)],
    legs: &[Vec<Fields>],
    params: &[ParamValue<'_>],
) -> Result<Vec<Vec<Option<String>>>, MergeError> {
    run_frames(plan, columns, legs, params).map(|(out, _)| rows_of(&out))
}

/// A buffer no test merge reaches.
pub(super) const LIMITS: MergeLimits = MergeLimits {
    max_buffered_bytes: 1 << 20,
    bytewise_text: true,
};

/// A plan sorting rows of [`NAMED`] columns by their hidden id.
fn sorted_plan(descending: bool, nulls_first: bool) -> MergePlan {
    MergePlan {
        hidden: 1,
        order: vec![sort(0, descending, nulls_first)],
        ..MergePlan::default()
    }
}

fn texts(rows: &[&[&str]]) -> Vec<Vec<Option<String>>> {
    (rows.iter())
        .map(|row| row.iter().map(|f| Some(f.to_string())).collect())
        .collect()
}

pub(super) fn sort(column: usize, descending: bool, nulls_first: bool) -> SortKey {
    SortKey {
        value: Slot::Hidden(column),
        descending,
        nulls_first,
        bytewise: false,
    }
}

/// Shard rows `(name, id)`: a visible text name and a hidden int8 id.
fn named(rows: &[(&str, Option<i64>)]) -> Vec<Fields> {
    (rows.iter())
        .map(|&(name, id)| vec![t(name), id.and_then(i8b)])
        .collect()
}

/// Columns of [`named`] rows.
pub(super) const NAMED: [(u32, i16); 2] = [(25, 0), (20, 1)];

#[test]
fn rows_without_hidden_columns_are_forwarded_byte_for_byte() {
    let plan = MergePlan::default();
    let legs = vec![vec![vec![t("a")], vec![t("b")]], vec![vec![None]]];
    let (out, merger) = run_frames(&plan, &[(25, 0)], &legs, &[]).unwrap();
    let expected = [row(&[Some(b"a")]), row(&[None]), row(&[Some(b"b")])].concat();
    assert_eq!(&out[..], &expected[..]);
    assert_eq!(merger.rows_sent(), 3);
    assert_eq!(merger.row_description()[0], b'T');
    assert_eq!(&merger.row_description()[5..], &description(&[(25, 0)])[..]);
}

#[test]
fn hidden_columns_are_stripped_from_rows_and_the_description() {
    let plan = MergePlan {
        hidden: 1,
        ..MergePlan::default()
    };
    let legs = vec![named(&[("a", Some(1))]), named(&[("b", None)])];
    let (out, merger) = run_frames(&plan, &NAMED, &legs, &[]).unwrap();
    assert_eq!(rows_of(&out), texts(&[&["a"], &["b"]]));
    let mut visible = description(&[(25, 0)]);
    visible.splice(0..0, [b'T', 0, 0, 0, visible.len() as u8 + 4]);
    assert_eq!(merger.row_description(), &visible[..]);
}

#[test]
fn an_ordered_merge_interleaves_the_shards_sorted_streams() {
    let plan = sorted_plan(false, false);
    let legs = vec![
        named(&[("a1", Some(1)), ("a4", Some(4)), ("a9", Some(9))]),
        named(&[("b2", Some(2)), ("b3", Some(3)), ("bn", None)]),
        named(&[("c5", Some(5))]),
    ];
    let rows = run(&plan, &NAMED, &legs, &[]).unwrap();
    assert_eq!(
        rows,
        texts(&[
            &["a1"],
            &["b2"],
            &["b3"],
            &["a4"],
            &["c5"],
            &["a9"],
            &["bn"]
        ])
    );
}

#[test]
fn descending_nulls_first_and_ties_in_leg_order() {
    let plan = sorted_plan(true, true);
    let legs = vec![
        named(&[("an", None), ("a5", Some(5)), ("a1", Some(1))]),
        named(&[("bn", None), ("b5", Some(5))]),
    ];
    let rows = run(&plan, &NAMED, &legs, &[]).unwrap();
    assert_eq!(rows, texts(&[&["an"], &["bn"], &["a5"], &["b5"], &["a1"]]));
}

#[test]
fn an_ordered_merge_waits_for_every_open_leg_and_reports_queued_bytes() {
    let plan = sorted_plan(false, false);
    let mut merger = Merger::new(&plan, &description(&NAMED), 2, &[], LIMITS).unwrap();
    let first = row(&[Some(b"a"), Some(&1i64.to_be_bytes())]);
    merger.push_row(0, &first).unwrap();
    merger
        .push_row(0, &row(&[Some(b"b"), Some(&2i64.to_be_bytes())]))
        .unwrap();
    let mut out = BytesMut::new();
    merger.drain(&mut out).unwrap();
    assert!(out.is_empty(), "leg 1 may still send a smaller row");
    assert!(merger.queued_bytes(0) >= 2 * first.len());
    assert_eq!(merger.queued_bytes(1), 0);
    merger.finish_leg(1).unwrap();
    merger.drain(&mut out).unwrap();
    assert_eq!(rows_of(&out), texts(&[&["a"], &["b"]]));
    assert_eq!(merger.queued_bytes(0), 0);
}

#[test]
fn distinct_drops_rows_whose_values_were_sent_by_another_shard() {
    let plan = MergePlan {
        hidden: 1,
        distinct: Some(vec![0]),
        ..MergePlan::default()
    };
    let columns = [(1700, 0), (1700, 1)];
    let leg = |texts: &[&str]| -> Vec<Fields> {
        texts.iter().map(|x| vec![t(x), Some(numeric(x))]).collect()
    };
    let legs = vec![leg(&["1.0", "2"]), leg(&["1.00", "3", "2.000"])];
    let rows = run(&plan, &columns, &legs, &[]).unwrap();
    assert_eq!(rows, texts(&[&["1.0"], &["2"], &["3"]]));
}

#[test]
fn offset_and_limit_apply_once_to_the_merged_rows() {
    let plan = MergePlan {
        hidden: 1,
        order: vec![sort(0, false, false)],
        offset: Some(Count::Value(1)),
        limit: Some(Count::Param(1)),
        ..MergePlan::default()
    };
    let legs = vec![
        named(&[("a1", Some(1)), ("a3", Some(3)), ("a5", Some(5))]),
        named(&[("b2", Some(2)), ("b4", Some(4))]),
    ];
    let limit = [ParamValue {
        oid: 0,
        binary: false,
        value: Some(b"2"),
    }];
    let (out, merger) = run_frames(&plan, &NAMED, &legs, &limit).unwrap();
    assert_eq!(rows_of(&out), texts(&[&["b2"], &["a3"]]));
    assert!(merger.satisfied());
    assert_eq!(merger.rows_sent(), 2);
    assert_eq!(merger.queued_bytes(0), 0);
}

#[test]
fn rows_after_an_execute_limit_are_held_in_order_after_the_query_limit() {
    let plan = MergePlan {
        limit: Some(Count::Value(4)),
        ..sorted_plan(false, false)
    };
    let legs = vec![
        named(&[("a1", Some(1)), ("a3", Some(3)), ("a5", Some(5))]),
        named(&[("b2", Some(2)), ("b4", Some(4)), ("b6", Some(6))]),
    ];
    let mut merger = Merger::new(&plan, &description(&NAMED), 2, &[], LIMITS).unwrap();
    merger.hold_after(1, 1 << 20);
    let out = feed(&mut merger, &legs).unwrap();
    assert_eq!(rows_of(&out), texts(&[&["a1"]]));
    assert_eq!(merger.rows_sent(), 1);
    assert!(merger.satisfied(), "the query's LIMIT 4 is reached");
    let held = merger.take_held().unwrap();
    assert_eq!(rows_of(&held.frames), texts(&[&["b2"], &["a3"], &["b4"]]));
    assert_eq!((held.rows, held.complete), (3, true));
}

#[test]
fn held_rows_over_their_budget_are_dropped_and_marked_incomplete() {
    let legs = vec![
        named(&[("a1", Some(1)), ("a3", Some(3)), ("a5", Some(5))]),
        named(&[("b2", Some(2)), ("b4", Some(4)), ("b6", Some(6))]),
    ];
    let mut merger = Merger::new(
        &sorted_plan(false, false),
        &description(&NAMED),
        2,
        &[],
        LIMITS,
    )
    .unwrap();
    merger.hold_after(2, 1);
    let out = feed(&mut merger, &legs).unwrap();
    assert_eq!(rows_of(&out), texts(&[&["a1"], &["b2"]]));
    assert!(
        merger.satisfied(),
        "nothing more is taken once the budget is spent"
    );
    let held = merger.take_held().unwrap();
    // One row fits under the one-byte budget; the next finds it spent.
    assert_eq!(rows_of(&held.frames), texts(&[&["a3"]]));
    assert_eq!((held.rows, held.complete), (1, false));
}

#[test]
fn broken_rows_and_calls_are_errors_with_their_sqlstate() {
    let plan = MergePlan {
        hidden: 1,
        ..MergePlan::default()
    };
    let mut merger = Merger::new(&plan, &description(&NAMED), 1, &[], LIMITS).unwrap();
    let short = row(&[Some(b"a")]);
    assert_eq!(
        merger.push_row(0, &short).unwrap_err().report().code,
        "08P01"
    );
    let mut truncated = row(&[Some(b"a"), Some(&1i64.to_be_bytes())]);
    truncated.pop();
    assert!(merger.push_row(0, &truncated).is_err());
    assert_eq!(
        merger.push_row(1, &short).unwrap_err().report().code,
        "XX000"
    );
    merger.finish_leg(0).unwrap();
    assert_eq!(merger.finish_leg(0).unwrap_err().report().code, "XX000");
}

#[test]
fn a_key_of_a_type_the_merge_cannot_compare_is_refused_by_name_and_oid() {
    let plan = sorted_plan(false, false);
    let error =
        Merger::new(&plan, &description(&[(25, 0), (3802, 1)]), 2, &[], LIMITS).unwrap_err();
    let report = error.report();
    assert_eq!(report.code, "0A000");
    assert!(
        report.message.contains("\"c1\"") && report.message.contains("3802"),
        "{report}"
    );
    let text_hidden = Merger::new(&plan, &description(&[(25, 0), (20, 0)]), 2, &[], LIMITS);
    assert_eq!(text_hidden.unwrap_err().report().code, "XX000");
    let no_keys = MergePlan {
        hidden: 1,
        distinct: Some(vec![]),
        ..MergePlan::default()
    };
    let error = Merger::new(&no_keys, &description(&NAMED), 2, &[], LIMITS).unwrap_err();
    assert!(matches!(error, MergeError::Contract(_)), "{error}");
}

#[test]
fn a_negative_limit_fails_as_postgres_does() {
    let plan = MergePlan {
        limit: Some(Count::Param(1)),
        ..MergePlan::default()
    };
    let minus = (-3i64).to_be_bytes();
    let params = [ParamValue {
        oid: 20,
        binary: true,
        value: Some(&minus),
    }];
    let error = Merger::new(&plan, &description(&[(25, 0)]), 2, &params, LIMITS).unwrap_err();
    let report = error.report();
    assert_eq!(
        (report.code.as_str(), report.message.as_str()),
        ("2201W", "LIMIT must not be negative")
    );
}

#[test]
fn shard_formats_follow_the_clients_and_hidden_columns_are_binary() {
    assert_eq!(shard_result_formats(&[], 2, 1), [0, 0, 1]);
    assert_eq!(shard_result_formats(&[1], 2, 2), [1, 1, 1, 1]);
    assert_eq!(shard_result_formats(&[0, 1], 2, 1), [0, 1, 1]);
}

#[test]
fn text_is_ordered_only_under_a_bytewise_collation() {
    let columns = [(25, 0), (25, 1)];
    let plan = |bytewise| MergePlan {
        hidden: 1,
        order: vec![SortKey {
            bytewise,
            ..sort(0, false, false)
        }],
        ..MergePlan::default()
    };
    let collated = MergeLimits {
        bytewise_text: false,
        ..LIMITS
    };
    let refused = Merger::new(&plan(false), &description(&columns), 2, &[], collated);
    assert!(
        matches!(refused, Err(MergeError::Unsupported(_))),
        "{refused:?}"
    );
    assert!(Merger::new(&plan(true), &description(&columns), 2, &[], collated).is_ok());
    assert!(Merger::new(&plan(false), &description(&columns), 2, &[], LIMITS).is_ok());
    // Numbers order the same under every collation.
    assert!(
        Merger::new(
            &sorted_plan(false, false),
            &description(&NAMED),
            2,
            &[],
            collated
        )
        .is_ok()
    );
}
