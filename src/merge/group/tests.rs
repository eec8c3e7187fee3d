//! Whole grouped merges; expected rows are the same query's output on one PostgreSQL 15
//! holding every shard's rows.

use crate::merge::plan::{
    Aggregate, Aggregation, CompareOp, Count, Function, Operand, Output, Predicate, Slot, SortKey,
};
use crate::merge::tests::{Fields, LIMITS, description, i8b, numeric, row, run, run_frames, t};
use crate::merge::{MergeError, MergeLimits, MergePlan, Merger};

fn agg(function: Function, inputs: &[usize]) -> Aggregate {
    Aggregate {
        function,
        inputs: inputs.to_vec(),
    }
}

fn by(value: Slot, descending: bool) -> SortKey {
    SortKey {
        value,
        descending,
        nulls_first: descending,
        bytewise: false,
    }
}

/// `SELECT g, count(*), count(i), sum(i), avg(i), min(s), max(s), sum(f), avg(n),
/// bool_and(b), bool_or(b) FROM t GROUP BY g ORDER BY g`: visible columns in text, then
/// the hidden g and partials.
const COLUMNS: [(u32, i16); 24] = [
    (23, 0),
    (20, 0),
    (20, 0),
    (20, 0),
    (1700, 0),
    (25, 0),
    (25, 0),
    (701, 0),
    (1700, 0),
    (16, 0),
    (16, 0),
    (23, 1),
    (20, 1),
    (20, 1),
    (20, 1),
    (20, 1),
    (20, 1),
    (25, 1),
    (25, 1),
    (701, 1),
    (1700, 1),
    (20, 1),
    (16, 1),
    (16, 1),
];

fn plan() -> MergePlan {
    let aggregates = vec![
        agg(Function::Count, &[1]),
        agg(Function::Count, &[2]),
        agg(Function::Sum, &[3]),
        agg(Function::Avg, &[4, 5]),
        agg(Function::Min, &[6]),
        agg(Function::Max, &[7]),
        agg(Function::Sum, &[8]),
        agg(Function::Avg, &[9, 10]),
        agg(Function::BoolAnd, &[11]),
        agg(Function::BoolOr, &[12]),
    ];
    let mut columns = vec![Output::GroupValue];
    columns.extend((0..10).map(Output::Aggregate));
    MergePlan {
        hidden: 13,
        aggregation: Some(Aggregation {
            group_keys: vec![0],
            aggregates,
            columns,
            having: None,
        }),
        order: vec![by(Slot::Hidden(0), false)],
        ..MergePlan::default()
    }
}

/// One shard's row for group `g`: counts, sum(i), min/max(s), sum(f), avg(n)'s sum and
/// count, bool_and, bool_or. Visible aggregates the merge recomputes are sent as "x".
#[allow(clippy::too_many_arguments)]
fn partial(
    g: i32,
    counts: (i64, i64),
    sum_i: Option<i64>,
    min_max: Option<(&str, &str)>,
    sum_f: Option<f64>,
    avg_n: (Option<&str>, i64),
    bools: Option<(bool, bool)>,
) -> Fields {
    let x = t("x");
    let (min, max) = (min_max.map(|m| m.0), min_max.map(|m| m.1));
    let bool_field = |b: Option<bool>| b.map(|b| vec![u8::from(b)]);
    let text = |s: Option<&str>| s.and_then(t);
    let mut fields = vec![
        t(&g.to_string()),
        x.clone(),
        x.clone(),
        x.clone(),
        x.clone(),
    ];
    fields.extend([text(min), text(max), x.clone(), x.clone(), x.clone(), x]);
    fields.extend([
        Some(g.to_be_bytes().to_vec()),
        i8b(counts.0),
        i8b(counts.1),
        sum_i.and_then(i8b),
    ]);
    fields.extend([sum_i.and_then(i8b), i8b(counts.1), text(min), text(max)]);
    fields.extend([
        sum_f.map(|f| f.to_be_bytes().to_vec()),
        avg_n.0.map(numeric),
        i8b(avg_n.1),
    ]);
    fields.extend([
        bool_field(bools.map(|b| b.0)),
        bool_field(bools.map(|b| b.1)),
    ]);
    fields
}

fn expect(rows: &[&str]) -> Vec<Vec<Option<String>>> {
    (rows.iter())
        .map(|row| {
            row.split('|')
                .map(|f| (!f.is_empty()).then(|| f.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn groups_combine_every_aggregate_as_one_postgres_would() {
    let shard_a = vec![
        partial(
            1,
            (2, 2),
            Some(30),
            Some(("a", "b")),
            Some(0.1 + 0.2),
            (Some("3.75"), 2),
            Some((true, true)),
        ),
        partial(
            2,
            (1, 1),
            Some(5),
            Some(("z", "z")),
            Some(1e20),
            (Some("0.001"), 1),
            Some((false, false)),
        ),
    ];
    let shard_b = vec![
        partial(
            1,
            (1, 1),
            Some(30),
            Some(("c", "c")),
            Some(0.3),
            (Some("1.0"), 1),
            None,
        ),
        partial(3, (1, 0), None, None, None, (None, 0), None),
        partial(
            2,
            (1, 1),
            Some(7),
            Some(("y", "y")),
            Some(1.0),
            (Some("0.002"), 1),
            Some((true, true)),
        ),
    ];
    let rows = run(&plan(), &COLUMNS, &[shard_a, shard_b], &[]).unwrap();
    assert_eq!(
        rows,
        expect(&[
            "1|3|3|60|20.0000000000000000|a|c|0.6000000000000001|1.5833333333333333|t|t",
            "2|2|2|12|6.0000000000000000|y|z|1e+20|0.00150000000000000000|f|t",
            "3|1|0||||||||",
        ])
    );
}

fn count_plan(group_keys: Vec<usize>, having: Option<Predicate>, order: Vec<SortKey>) -> MergePlan {
    let hidden = 1 + group_keys.len();
    let columns = if group_keys.is_empty() {
        vec![Output::Aggregate(0)]
    } else {
        vec![Output::GroupValue, Output::Aggregate(0)]
    };
    let count = agg(Function::Count, &[hidden - 1]);
    MergePlan {
        hidden,
        aggregation: Some(Aggregation {
            group_keys,
            aggregates: vec![count],
            columns,
            having,
        }),
        order,
        ..MergePlan::default()
    }
}

/// `SELECT g, count(*) ... GROUP BY g`: visible g (text) and count, hidden g and count.
fn counted(rows: &[(&str, i64)]) -> Vec<Fields> {
    (rows.iter())
        .map(|&(g, n)| vec![t(g), t("x"), Some(numeric(g)), i8b(n)])
        .collect()
}

const COUNTED: [(u32, i16); 4] = [(1700, 0), (20, 0), (1700, 1), (20, 1)];

#[test]
fn having_order_by_an_aggregate_and_limit_apply_to_merged_groups() {
    let having = Predicate::Compare {
        left: Operand::Slot(Slot::Aggregate(0)),
        op: CompareOp::Gt,
        right: Operand::Literal("1".into()),
    };
    let order = vec![by(Slot::Aggregate(0), true), by(Slot::Hidden(0), false)];
    let mut plan = count_plan(vec![0], Some(having), order);
    plan.limit = Some(Count::Value(2));
    let legs = [
        counted(&[("1.0", 2), ("2", 1), ("3", 1)]),
        counted(&[("2", 1), ("1.00", 1), ("4", 5)]),
    ];
    let rows = run(&plan, &COUNTED, &legs, &[]).unwrap();
    assert_eq!(rows, expect(&["4|5", "1.0|3"]));
}

#[test]
fn an_aggregate_without_group_by_answers_one_row_even_without_rows() {
    let plan = count_plan(vec![], None, vec![]);
    let columns = [(20, 0), (20, 1)];
    let zero = vec![vec![t("0"), i8b(0)]];
    assert_eq!(
        run(&plan, &columns, &[zero.clone(), zero], &[]).unwrap(),
        expect(&["0"])
    );
    assert_eq!(run(&plan, &columns, &[], &[]).unwrap(), expect(&["0"]));
    let grouped = count_plan(vec![0], None, vec![]);
    assert_eq!(
        run(&grouped, &COUNTED, &[vec![], vec![]], &[]).unwrap(),
        expect(&[])
    );
}

#[test]
fn a_binary_column_gets_the_final_in_binary() {
    let plan = count_plan(vec![], None, vec![]);
    let legs = [vec![vec![i8b(2), i8b(2)]], vec![vec![i8b(3), i8b(3)]]];
    let (out, _) = run_frames(&plan, &[(20, 1), (20, 1)], &legs, &[]).unwrap();
    assert_eq!(&out[..], &row(&[Some(&5i64.to_be_bytes())])[..]);
}

#[test]
fn groups_past_the_buffer_fail_with_54000_naming_the_limit() {
    let plan = count_plan(vec![0], None, vec![]);
    let limits = MergeLimits {
        max_buffered_bytes: 1000,
        bytewise_text: true,
    };
    let mut merger = Merger::new(&plan, &description(&COUNTED), 1, &[], limits).unwrap();
    let mut outcome = Ok(());
    for g in 0..100 {
        let fields = &counted(&[(&g.to_string(), 1)])[0];
        let fields: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref()).collect();
        outcome = outcome.and_then(|()| merger.push_row(0, &row(&fields)));
    }
    let report = outcome.unwrap_err().report();
    assert_eq!(report.code, "54000");
    assert!(
        report.message.contains("GROUP BY") && report.message.contains("1000 bytes"),
        "{report}"
    );
}

#[test]
fn plans_the_merge_cannot_run_exactly_are_refused() {
    let mut distinct = count_plan(vec![0], None, vec![]);
    distinct.distinct = Some(vec![0, 1]);
    let error = Merger::new(&distinct, &description(&COUNTED), 2, &[], LIMITS).unwrap_err();
    assert_eq!(error.report().code, "0A000");
    let int4_count = [(1700, 0), (23, 0), (1700, 1), (20, 1)];
    let plan = count_plan(vec![0], None, vec![]);
    let error = Merger::new(&plan, &description(&int4_count), 2, &[], LIMITS).unwrap_err();
    assert!(matches!(error, MergeError::Unsupported(_)), "{error}");
    let mut few_columns = count_plan(vec![0], None, vec![]);
    if let Some(aggregation) = few_columns.aggregation.as_mut() {
        aggregation.columns.pop();
    }
    let error = Merger::new(&few_columns, &description(&COUNTED), 2, &[], LIMITS).unwrap_err();
    assert!(matches!(error, MergeError::Contract(_)), "{error}");
}

#[test]
fn an_int8_overflow_across_shards_is_bigint_out_of_range() {
    let plan = count_plan(vec![], None, vec![]);
    let legs = [
        vec![vec![t("x"), i8b(i64::MAX)]],
        vec![vec![t("x"), i8b(1)]],
    ];
    let error = run(&plan, &[(20, 0), (20, 1)], &legs, &[]).unwrap_err();
    assert_eq!(error.report().message, "bigint out of range");
}
