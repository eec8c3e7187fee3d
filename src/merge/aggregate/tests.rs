use super::*;
use crate::merge::Buffered;
use crate::merge::tests::{description, numeric, row};

/// Combines shard rows of hidden columns of types `oids` for `function` over `inputs`; the
/// final in binary (`None`: NULL).
fn combine(
    function: Function,
    oids: &[u32],
    rows: &[Vec<Option<Vec<u8>>>],
) -> Result<Option<Vec<u8>>, MergeError> {
    let columns: Vec<(u32, i16)> = oids.iter().map(|&oid| (oid, 1)).collect();
    let layout = Layout::parse(&description(&columns), oids.len())?;
    let aggregate = Aggregate {
        function,
        inputs: (0..oids.len()).collect(),
    };
    let combiner = Combiner::resolve(&aggregate, &layout)?;
    let mut state = combiner.start();
    let mut budget = Budget::new(1 << 20, Buffered::GroupBy);
    for fields in rows {
        let fields: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
        let frame = row(&fields);
        combiner.add(&mut state, &Row::parse(&frame, &layout)?, &mut budget)?;
    }
    let mut out = Vec::new();
    Ok(combiner.finish(&state, &mut out)?.then_some(out))
}

fn b(value: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    Some(value.as_ref().to_vec())
}

fn text(ty: SqlType, value: Option<Vec<u8>>) -> Option<String> {
    let mut out = Vec::new();
    crate::merge::encode::write_value(ty, &value?, false, &mut out).unwrap();
    Some(String::from_utf8(out).unwrap())
}

fn one_column(
    function: Function,
    oid: u32,
    partials: &[Option<Vec<u8>>],
) -> Result<Option<Vec<u8>>, MergeError> {
    let rows: Vec<_> = partials.iter().map(|p| vec![p.clone()]).collect();
    combine(function, &[oid], &rows)
}

#[test]
fn count_sums_int8_partials_and_overflow_is_bigint_out_of_range() {
    let total = one_column(
        Function::Count,
        20,
        &[b(2i64.to_be_bytes()), b(0i64.to_be_bytes())],
    );
    assert_eq!(total.unwrap(), b(2i64.to_be_bytes()));
    assert_eq!(
        one_column(Function::Count, 20, &[]).unwrap(),
        b(0i64.to_be_bytes())
    );
    let error = one_column(
        Function::Sum,
        20,
        &[b(i64::MAX.to_be_bytes()), b(1i64.to_be_bytes())],
    )
    .unwrap_err();
    let report = error.report();
    assert_eq!(
        (report.code.as_str(), report.message.as_str()),
        ("22003", "bigint out of range")
    );
}

#[test]
fn sum_skips_null_partials_and_is_null_without_any() {
    let partials = [b(numeric("1.5")), None, b(numeric("2.250"))];
    let sum = one_column(Function::Sum, 1700, &partials).unwrap();
    assert_eq!(text(SqlType::Numeric, sum).as_deref(), Some("3.750"));
    assert_eq!(
        one_column(Function::Sum, 1700, &[None, None]).unwrap(),
        None
    );
    let single_negative_zero = one_column(Function::Sum, 701, &[b((-0f64).to_be_bytes())]).unwrap();
    assert_eq!(
        text(SqlType::Float8, single_negative_zero).as_deref(),
        Some("-0")
    );
}

#[test]
fn float_sums_overflow_as_float8pl_and_float4pl_do() {
    let big = b(1e308f64.to_be_bytes());
    let error = one_column(Function::Sum, 701, &[big.clone(), big]).unwrap_err();
    assert_eq!(error.report().message, "value out of range: overflow");
    let infinite = one_column(
        Function::Sum,
        701,
        &[b(f64::INFINITY.to_be_bytes()), b(1f64.to_be_bytes())],
    );
    assert_eq!(
        text(SqlType::Float8, infinite.unwrap()).as_deref(),
        Some("Infinity")
    );
    let big4 = b(3e38f32.to_be_bytes());
    assert!(one_column(Function::Sum, 700, &[big4.clone(), big4]).is_err());
    let small = one_column(
        Function::Sum,
        700,
        &[b(0.5f32.to_be_bytes()), b(0.25f32.to_be_bytes())],
    );
    assert_eq!(
        text(SqlType::Float4, small.unwrap()).as_deref(),
        Some("0.75")
    );
}

#[test]
fn avg_divides_the_total_sum_by_the_total_count() {
    let pair = |sum: Option<Vec<u8>>, count: i64| vec![sum, b(count.to_be_bytes())];
    let ints = [
        pair(b(30i64.to_be_bytes()), 2),
        pair(b(30i64.to_be_bytes()), 1),
    ];
    let avg = combine(Function::Avg, &[20, 20], &ints).unwrap();
    assert_eq!(
        text(SqlType::Numeric, avg).as_deref(),
        Some("20.0000000000000000")
    );
    let numerics = [
        pair(b(numeric("1.5")), 1),
        pair(None, 0),
        pair(b(numeric("2.25")), 1),
    ];
    let avg = combine(Function::Avg, &[1700, 20], &numerics).unwrap();
    assert_eq!(
        text(SqlType::Numeric, avg).as_deref(),
        Some("1.8750000000000000")
    );
    let floats = [
        pair(b(1f64.to_be_bytes()), 2),
        pair(b(2f64.to_be_bytes()), 2),
    ];
    let avg = combine(Function::Avg, &[701, 20], &floats).unwrap();
    assert_eq!(text(SqlType::Float8, avg).as_deref(), Some("0.75"));
    let empty = [pair(None, 0), pair(None, 0)];
    assert_eq!(combine(Function::Avg, &[20, 20], &empty).unwrap(), None);
}

#[test]
fn min_and_max_keep_the_winning_row_in_postgres_order() {
    let texts = [b("b"), None, b("a"), b("B")];
    assert_eq!(one_column(Function::Min, 25, &texts).unwrap(), b("B"));
    assert_eq!(one_column(Function::Max, 25, &texts).unwrap(), b("b"));
    let floats = [
        b(1f64.to_be_bytes()),
        b(f64::NAN.to_be_bytes()),
        b(f64::INFINITY.to_be_bytes()),
    ];
    let max = one_column(Function::Max, 701, &floats).unwrap();
    assert_eq!(text(SqlType::Float8, max).as_deref(), Some("NaN"));
    assert_eq!(one_column(Function::Min, 25, &[None]).unwrap(), None);
    let unknown = one_column(Function::Min, 3802, &[b("{}")]).unwrap_err();
    assert_eq!(unknown.report().code, "0A000");
}

#[test]
fn bool_and_and_bool_or_skip_nulls() {
    let values = [b([1]), None, b([0])];
    assert_eq!(one_column(Function::BoolAnd, 16, &values).unwrap(), b([0]));
    assert_eq!(one_column(Function::BoolOr, 16, &values).unwrap(), b([1]));
    assert_eq!(one_column(Function::BoolOr, 16, &[None]).unwrap(), None);
}

#[test]
fn partials_of_the_wrong_shape_are_refused() {
    let money = one_column(Function::Sum, 790, &[]).unwrap_err();
    assert_eq!(money.report().code, "0A000");
    let int4_count = one_column(Function::Count, 23, &[]).unwrap_err();
    assert!(
        matches!(int4_count, MergeError::Contract(_)),
        "{int4_count}"
    );
    let one_input_avg = one_column(Function::Avg, 20, &[]).unwrap_err();
    assert!(
        matches!(one_input_avg, MergeError::Contract(_)),
        "{one_input_avg}"
    );
    let two_input_sum = combine(Function::Sum, &[20, 20], &[]).unwrap_err();
    assert!(
        matches!(two_input_sum, MergeError::Contract(_)),
        "{two_input_sum}"
    );
    let bad_bytes = one_column(Function::Count, 20, &[b([1, 2, 3])]).unwrap_err();
    assert!(matches!(bad_bytes, MergeError::Malformed(_)), "{bad_bytes}");
}
