//! Aggregates, GROUP BY and HAVING across shards.

use super::{check, desc, rows};
use crate::merge::plan::{
    Aggregate, Aggregation, CompareOp, Count, Function, MergePlan, Operand, Output, Predicate,
    Slot, SortKey,
};

fn aggregate(function: Function, inputs: &[usize]) -> Aggregate {
    Aggregate {
        function,
        inputs: inputs.to_vec(),
    }
}

/// A grouped merge with no HAVING, order or window.
fn groups(
    hidden: usize,
    keys: &[usize],
    aggregates: Vec<Aggregate>,
    columns: &[Output],
) -> MergePlan {
    MergePlan {
        aggregation: Some(Aggregation {
            group_keys: keys.to_vec(),
            aggregates,
            columns: columns.to_vec(),
            having: None,
        }),
        ..rows(hidden)
    }
}

fn having(mut plan: MergePlan, predicate: Predicate) -> MergePlan {
    if let Some(aggregation) = &mut plan.aggregation {
        aggregation.having = Some(predicate);
    }
    plan
}

fn compare(left: Slot, op: CompareOp, right: Operand) -> Predicate {
    Predicate::Compare {
        left: Operand::Slot(left),
        op,
        right,
    }
}

#[test]
fn aggregates_without_group_by_combine_one_row_per_shard() {
    check(&[
        (
            "SELECT count(*), sum(amount), avg(amount) AS a, min(o.amount), max(amount) FROM orders o",
            "SELECT count(*), sum(amount), avg(amount) AS a, min(o.amount), max(amount), count(*) AS __sg_h0, sum(amount) AS __sg_h1, count(amount) AS __sg_h2, min(o.amount) AS __sg_h3, max(amount) AS __sg_h4 FROM orders o",
            groups(
                5,
                &[],
                vec![
                    aggregate(Function::Count, &[0]),
                    aggregate(Function::Sum, &[1]),
                    aggregate(Function::Avg, &[1, 2]),
                    aggregate(Function::Min, &[3]),
                    aggregate(Function::Max, &[4]),
                ],
                &[
                    Output::Aggregate(0),
                    Output::Aggregate(1),
                    Output::Aggregate(2),
                    Output::Aggregate(3),
                    Output::Aggregate(4),
                ],
            ),
        ),
        (
            "SELECT bool_and(amount > 0), every(amount > 0), bool_or(amount > 9), count(order_id), COUNT(*) FROM orders WHERE amount < $1",
            "SELECT bool_and(amount > 0), every(amount > 0), bool_or(amount > 9), count(order_id), COUNT(*), bool_and(amount > 0) AS __sg_h0, every(amount > 0) AS __sg_h1, bool_or(amount > 9) AS __sg_h2, count(order_id) AS __sg_h3, COUNT(*) AS __sg_h4 FROM orders WHERE amount < $1",
            groups(
                5,
                &[],
                vec![
                    aggregate(Function::BoolAnd, &[0]),
                    aggregate(Function::BoolAnd, &[1]),
                    aggregate(Function::BoolOr, &[2]),
                    aggregate(Function::Count, &[3]),
                    aggregate(Function::Count, &[4]),
                ],
                &[
                    Output::Aggregate(0),
                    Output::Aggregate(1),
                    Output::Aggregate(2),
                    Output::Aggregate(3),
                    Output::Aggregate(4),
                ],
            ),
        ),
        (
            "SELECT 'total', count(*), count(*) AS again FROM users LIMIT 1",
            "SELECT 'total', count(*), count(*) AS again, count(*) AS __sg_h0 FROM users",
            MergePlan {
                limit: Some(Count::Value(1)),
                ..groups(
                    1,
                    &[],
                    vec![aggregate(Function::Count, &[0])],
                    &[
                        Output::GroupValue,
                        Output::Aggregate(0),
                        Output::Aggregate(0),
                    ],
                )
            },
        ),
    ]);
}

#[test]
fn group_keys_by_name_position_and_alias() {
    let by_country = groups(
        2,
        &[0],
        vec![aggregate(Function::Count, &[1])],
        &[Output::GroupValue, Output::Aggregate(0)],
    );
    check(&[
        (
            "SELECT country, count(*) FROM users GROUP BY country",
            "SELECT country, count(*), country AS __sg_h0, count(*) AS __sg_h1 FROM users GROUP BY country",
            by_country.clone(),
        ),
        (
            "SELECT u.country, count(*) FROM users u GROUP BY 1",
            "SELECT u.country, count(*), u.country AS __sg_h0, count(*) AS __sg_h1 FROM users u GROUP BY 1",
            by_country.clone(),
        ),
        (
            "SELECT u.country AS c, count(*) FROM users u GROUP BY country",
            "SELECT u.country AS c, count(*), country AS __sg_h0, count(*) AS __sg_h1 FROM users u GROUP BY country",
            by_country.clone(),
        ),
        (
            "SELECT date_trunc('day', o.created_at) AS day, count(*) FROM orders o GROUP BY 1",
            "SELECT date_trunc('day', o.created_at) AS day, count(*), date_trunc('day', o.created_at) AS __sg_h0, count(*) AS __sg_h1 FROM orders o GROUP BY 1",
            by_country,
        ),
        (
            "SELECT count(*) FROM orders GROUP BY created_at, amount",
            "SELECT count(*), created_at AS __sg_h0, amount AS __sg_h1, count(*) AS __sg_h2 FROM orders GROUP BY created_at, amount",
            groups(
                3,
                &[0, 1],
                vec![aggregate(Function::Count, &[2])],
                &[Output::Aggregate(0)],
            ),
        ),
    ]);
}

#[test]
fn having_is_evaluated_on_merged_groups() {
    check(&[
        (
            "SELECT country, count(*) FROM users GROUP BY country HAVING count(*) > 5 AND (country <> 'FR' OR max(name) IS NOT NULL)",
            "SELECT country, count(*), country AS __sg_h0, count(*) AS __sg_h1, max(name) AS __sg_h2 FROM users GROUP BY country",
            having(
                groups(
                    3,
                    &[0],
                    vec![
                        aggregate(Function::Count, &[1]),
                        aggregate(Function::Max, &[2]),
                    ],
                    &[Output::GroupValue, Output::Aggregate(0)],
                ),
                Predicate::And(vec![
                    compare(
                        Slot::Aggregate(0),
                        CompareOp::Gt,
                        Operand::Literal("5".into()),
                    ),
                    Predicate::Or(vec![
                        compare(
                            Slot::Hidden(0),
                            CompareOp::NotEq,
                            Operand::Literal("FR".into()),
                        ),
                        Predicate::IsNull {
                            value: Slot::Aggregate(1),
                            negated: true,
                        },
                    ]),
                ]),
            ),
        ),
        (
            // The HAVING condition stays as an ignored column so `$1` keeps its type.
            "SELECT count(*) FROM orders HAVING NOT avg(amount) >= $1",
            "SELECT count(*), count(*) AS __sg_h0, sum(amount) AS __sg_h1, count(amount) AS __sg_h2, (NOT avg(amount) >= $1) AS __sg_h3 FROM orders",
            having(
                groups(
                    4,
                    &[],
                    vec![
                        aggregate(Function::Count, &[0]),
                        aggregate(Function::Avg, &[1, 2]),
                    ],
                    &[Output::Aggregate(0)],
                ),
                Predicate::Not(Box::new(compare(
                    Slot::Aggregate(1),
                    CompareOp::GtEq,
                    Operand::Param(1),
                ))),
            ),
        ),
        (
            "SELECT count(*) FROM users HAVING -1 < count(*)",
            "SELECT count(*), count(*) AS __sg_h0 FROM users",
            having(
                groups(
                    1,
                    &[],
                    vec![aggregate(Function::Count, &[0])],
                    &[Output::Aggregate(0)],
                ),
                Predicate::Compare {
                    left: Operand::Literal("-1".into()),
                    op: CompareOp::Lt,
                    right: Operand::Slot(Slot::Aggregate(0)),
                },
            ),
        ),
    ]);
}

#[test]
fn grouped_order_by_reads_group_keys_and_aggregates() {
    let ordered = |order: Vec<SortKey>, hidden, aggregates, offset, limit| MergePlan {
        order,
        offset,
        limit,
        ..groups(
            hidden,
            &[0],
            aggregates,
            &[Output::GroupValue, Output::Aggregate(0)],
        )
    };
    check(&[
        (
            "SELECT country AS c, count(*) AS n FROM users GROUP BY 1 ORDER BY n DESC, country COLLATE \"C\" LIMIT $1 OFFSET $2",
            "SELECT country AS c, count(*) AS n, country AS __sg_h0, count(*) AS __sg_h1, $2::BIGINT AS __sg_h2, $1::BIGINT AS __sg_h3 FROM users GROUP BY 1",
            ordered(
                vec![
                    desc(Slot::Aggregate(0)),
                    SortKey {
                        bytewise: true,
                        ..super::asc(0)
                    },
                ],
                4,
                vec![aggregate(Function::Count, &[1])],
                Some(Count::Param(2)),
                Some(Count::Param(1)),
            ),
        ),
        (
            "SELECT country, count(*) FROM users GROUP BY country ORDER BY 2, sum(user_id) DESC, users.country LIMIT 3",
            "SELECT country, count(*), country AS __sg_h0, count(*) AS __sg_h1, sum(user_id) AS __sg_h2 FROM users GROUP BY country",
            ordered(
                vec![
                    SortKey {
                        value: Slot::Aggregate(0),
                        descending: false,
                        nulls_first: false,
                        bytewise: false,
                    },
                    desc(Slot::Aggregate(1)),
                    super::asc(0),
                ],
                3,
                vec![
                    aggregate(Function::Count, &[1]),
                    aggregate(Function::Sum, &[2]),
                ],
                None,
                Some(Count::Value(3)),
            ),
        ),
    ]);
}

#[test]
fn groups_of_one_shard_key_pass_through_whole() {
    check(&[
        (
            "SELECT u.user_id, count(*) AS n, count(DISTINCT o.amount), string_agg(o.amount::text, ',') FROM users u JOIN orders o ON o.user_id = u.user_id GROUP BY u.user_id HAVING count(*) > $1 ORDER BY n DESC LIMIT 5 OFFSET 5",
            "SELECT u.user_id, count(*) AS n, count(DISTINCT o.amount), string_agg(o.amount::TEXT, ','), count(*) AS __sg_h0 FROM users u JOIN orders o ON o.user_id = u.user_id GROUP BY u.user_id HAVING count(*) > $1 ORDER BY n DESC LIMIT 10",
            MergePlan {
                order: vec![desc(Slot::Hidden(0))],
                offset: Some(Count::Value(5)),
                limit: Some(Count::Value(5)),
                ..rows(1)
            },
        ),
        (
            "SELECT DISTINCT count(*) FROM orders GROUP BY user_id, created_at",
            "SELECT DISTINCT count(*), count(*) AS __sg_h0 FROM orders GROUP BY user_id, created_at",
            MergePlan {
                distinct: Some(vec![0]),
                ..rows(1)
            },
        ),
        (
            "SELECT created_at, count(*) FROM events GROUP BY 1",
            "SELECT created_at, count(*) FROM events GROUP BY 1",
            rows(0),
        ),
        (
            // The alias names its own expression's input column: PostgreSQL groups by the column.
            "SELECT date_trunc('day', created_at) AS created_at, count(*) FROM events GROUP BY created_at",
            "SELECT date_trunc('day', created_at) AS created_at, count(*) FROM events GROUP BY created_at",
            rows(0),
        ),
    ]);
}

#[test]
fn a_null_extended_shard_key_does_not_keep_groups_on_one_shard() {
    check(&[(
        "SELECT o.user_id, count(*) FROM users u LEFT JOIN orders o ON o.user_id = u.user_id GROUP BY o.user_id",
        "SELECT o.user_id, count(*), o.user_id AS __sg_h0, count(*) AS __sg_h1 FROM users u LEFT JOIN orders o ON o.user_id = u.user_id GROUP BY o.user_id",
        groups(
            2,
            &[0],
            vec![aggregate(Function::Count, &[1])],
            &[Output::GroupValue, Output::Aggregate(0)],
        ),
    )]);
}
