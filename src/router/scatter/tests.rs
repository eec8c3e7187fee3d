//! SQL → (shard SQL, merge plan) and SQL → refusal, table-driven, on the demo shard map
//! (`shard-maps/demo.yaml`, tables of `shard-maps/demo.sql`).

mod grouped;
mod refusals;

use std::path::Path;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::config::parse_shard_map;
use crate::merge::plan::{Count, MergePlan, ScatterPlan, Slot, SortKey};
use crate::router::{RouteError, Router};

fn router() -> Router {
    let map = include_str!("../../../shard-maps/demo.yaml");
    Router::new(&parse_shard_map(map, Path::new("demo.yaml")).expect("the demo map is valid"))
}

/// The plan of `sql`, after checking that its shard SQL parses back to the same text.
fn planned(router: &Router, sql: &str) -> ScatterPlan {
    let plan = match router.scatter(sql) {
        Ok(plan) => plan,
        Err(e) => panic!("{sql}: expected a plan, got {e}"),
    };
    let reparsed = Parser::parse_sql(&PostgreSqlDialect {}, &plan.shard_sql)
        .unwrap_or_else(|e| panic!("{sql}: shard SQL {:?} does not parse: {e}", plan.shard_sql));
    assert_eq!(reparsed.len(), 1, "{sql}");
    assert_eq!(
        reparsed[0].to_string(),
        plan.shard_sql,
        "{sql}: shard SQL round-trip"
    );
    (*plan).clone()
}

/// The refusal of `sql`.
fn refusal(router: &Router, sql: &str) -> String {
    match router.scatter(sql) {
        Err(RouteError::Unsupported(why)) => why.to_string(),
        Err(error @ RouteError::CrossShard { .. }) => error.to_string(),
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

/// The kind of construct `sql` is refused for.
fn refused_kind(router: &Router, sql: &str) -> &'static str {
    match router.scatter(sql) {
        Err(RouteError::CrossShard { construct, .. }) => construct.kind(),
        other => panic!("{sql}: expected a construct refusal, got {other:?}"),
    }
}

/// Rows passed through, `hidden` columns appended.
fn rows(hidden: usize) -> MergePlan {
    MergePlan {
        hidden,
        ..MergePlan::default()
    }
}

fn asc(hidden: usize) -> SortKey {
    SortKey {
        value: Slot::Hidden(hidden),
        descending: false,
        nulls_first: false,
        bytewise: false,
    }
}

fn desc(value: Slot) -> SortKey {
    SortKey {
        value,
        descending: true,
        nulls_first: true,
        bytewise: false,
    }
}

/// Checks each (client SQL, shard SQL, merge plan).
fn check(cases: &[(&str, &str, MergePlan)]) {
    let r = router();
    for (sql, shard_sql, merge) in cases {
        let plan = planned(&r, sql);
        assert_eq!(plan.shard_sql, *shard_sql, "{sql}");
        assert_eq!(plan.merge, *merge, "{sql}");
    }
}

#[test]
fn rows_without_aggregates_pass_through() {
    check(&[
        ("SELECT * FROM users", "SELECT * FROM users", rows(0)),
        (
            "SELECT name FROM users WHERE name <> 'x' AND user_id > $1",
            "SELECT name FROM users WHERE name <> 'x' AND user_id > $1",
            rows(0),
        ),
        (
            "SELECT u.name, c.name FROM users u JOIN countries c ON c.code = u.country",
            "SELECT u.name, c.name FROM users u JOIN countries c ON c.code = u.country",
            rows(0),
        ),
        (
            "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.user_id LEFT JOIN countries c ON c.code = u.country",
            "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.user_id LEFT JOIN countries c ON c.code = u.country",
            rows(0),
        ),
        (
            "SELECT * FROM users u FULL JOIN orders o USING (user_id)",
            "SELECT * FROM users u FULL JOIN orders o USING(user_id)",
            rows(0),
        ),
        (
            "SELECT * FROM users u, orders o WHERE o.user_id = u.user_id AND o.amount > 10",
            "SELECT * FROM users u, orders o WHERE o.user_id = u.user_id AND o.amount > 10",
            rows(0),
        ),
        (
            // WHERE pairs the rows by key: NULL-extended and cross-shard pairs both fail it.
            "SELECT * FROM users u LEFT JOIN orders o ON o.amount > 0 WHERE o.user_id = u.user_id",
            "SELECT * FROM users u LEFT JOIN orders o ON o.amount > 0 WHERE o.user_id = u.user_id",
            rows(0),
        ),
        (
            "SELECT * FROM users u LEFT JOIN (orders o JOIN countries c ON c.code = 'FR') ON o.user_id = u.user_id",
            "SELECT * FROM users u LEFT JOIN (orders o JOIN countries c ON c.code = 'FR') ON o.user_id = u.user_id",
            rows(0),
        ),
        (
            "SELECT * FROM documents, LATERAL unnest(ARRAY[1, 2]) AS n",
            "SELECT * FROM documents, LATERAL unnest(ARRAY[1, 2]) AS n",
            rows(0),
        ),
    ]);
    let r = router();
    assert_eq!(planned(&r, "SELECT * FROM users").visible, None);
    assert_eq!(planned(&r, "SELECT u.*, 1 FROM users u").visible, None);
    assert_eq!(
        planned(&r, "SELECT name, 1 AS one FROM users").visible,
        Some(2)
    );
}

#[test]
fn subqueries_of_reference_tables_run_on_each_shard() {
    for sql in [
        "SELECT * FROM users WHERE country IN (SELECT code FROM countries WHERE name LIKE 'F%')",
        "SELECT u.name, (SELECT c.name FROM countries c WHERE c.code = u.country) FROM users u",
        "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM public.countries c WHERE c.code = u.country)",
        "SELECT * FROM users u JOIN (SELECT code FROM countries) c ON c.code = u.country",
        "SELECT * FROM users WHERE user_id = ANY(ARRAY(SELECT generate_series(1, 3)))",
        "SELECT * FROM users WHERE (SELECT 1) = 1",
    ] {
        assert_eq!(planned(&router(), sql).shard_sql, sql, "{sql}");
    }
}

#[test]
fn order_by_keys_become_hidden_columns() {
    check(&[
        (
            "SELECT name FROM users ORDER BY name COLLATE \"C\" DESC",
            "SELECT name, name COLLATE \"C\" AS __sg_h0 FROM users ORDER BY name COLLATE \"C\" DESC",
            MergePlan {
                order: vec![SortKey {
                    bytewise: true,
                    ..desc(Slot::Hidden(0))
                }],
                ..rows(1)
            },
        ),
        (
            "SELECT user_id AS id, name FROM users ORDER BY id, 2 NULLS FIRST, lower(country) DESC NULLS LAST",
            "SELECT user_id AS id, name, user_id AS __sg_h0, name AS __sg_h1, lower(country) AS __sg_h2 FROM users ORDER BY id, 2 NULLS FIRST, lower(country) DESC NULLS LAST",
            MergePlan {
                order: vec![
                    asc(0),
                    SortKey {
                        nulls_first: true,
                        bytewise: false,
                        ..asc(1)
                    },
                    SortKey {
                        nulls_first: false,
                        bytewise: false,
                        ..desc(Slot::Hidden(2))
                    },
                ],
                ..rows(3)
            },
        ),
        (
            "SELECT * FROM users u ORDER BY u.name, name",
            "SELECT *, u.name AS __sg_h0, name AS __sg_h1 FROM users u ORDER BY u.name, name",
            MergePlan {
                order: vec![asc(0), asc(1)],
                ..rows(2)
            },
        ),
        (
            "SELECT name, name FROM users ORDER BY name",
            "SELECT name, name, name AS __sg_h0 FROM users ORDER BY name",
            MergePlan {
                order: vec![asc(0)],
                ..rows(1)
            },
        ),
    ]);
}

#[test]
fn limits_reach_the_shards_as_offset_plus_limit() {
    let window = |offset, limit, hidden| MergePlan {
        offset,
        limit,
        ..rows(hidden)
    };
    let (value, param) = (|n| Some(Count::Value(n)), |n| Some(Count::Param(n)));
    check(&[
        (
            "SELECT * FROM users LIMIT 10 OFFSET 5",
            "SELECT * FROM users LIMIT 15",
            window(value(5), value(10), 0),
        ),
        (
            "SELECT * FROM users LIMIT $1 OFFSET $2",
            "SELECT * FROM users LIMIT ($2::BIGINT + $1::BIGINT)",
            window(param(2), param(1), 0),
        ),
        (
            "SELECT * FROM users LIMIT $1",
            "SELECT * FROM users LIMIT $1",
            window(None, param(1), 0),
        ),
        (
            "SELECT * FROM users LIMIT 5 OFFSET $1",
            "SELECT * FROM users LIMIT ($1::BIGINT + 5)",
            window(param(1), value(5), 0),
        ),
        (
            "SELECT * FROM users OFFSET $1",
            "SELECT *, $1::BIGINT AS __sg_h0 FROM users",
            window(param(1), None, 1),
        ),
        (
            "SELECT * FROM users OFFSET 3 ROWS",
            "SELECT * FROM users",
            window(value(3), None, 0),
        ),
        (
            "SELECT * FROM users LIMIT ALL OFFSET 3",
            "SELECT * FROM users",
            window(value(3), None, 0),
        ),
        (
            "SELECT * FROM users LIMIT NULL",
            "SELECT * FROM users",
            window(None, None, 0),
        ),
        (
            "SELECT * FROM users LIMIT 4 OFFSET 0",
            "SELECT * FROM users LIMIT 4",
            window(value(0), value(4), 0),
        ),
        (
            "SELECT * FROM users OFFSET 2 ROWS FETCH FIRST 3 ROWS ONLY",
            "SELECT * FROM users LIMIT 5",
            window(value(2), value(3), 0),
        ),
        (
            "SELECT * FROM users FETCH FIRST ROW ONLY",
            "SELECT * FROM users LIMIT 1",
            window(None, value(1), 0),
        ),
        (
            "SELECT * FROM users FETCH NEXT $2 ROWS ONLY",
            "SELECT * FROM users LIMIT $2",
            window(None, param(2), 0),
        ),
        (
            "SELECT * FROM users LIMIT 9223372036854775807 OFFSET 1",
            "SELECT * FROM users",
            window(value(1), value(i64::MAX as u64), 0),
        ),
    ]);
}

#[test]
fn distinct_compares_hidden_copies_of_every_item() {
    check(&[
        (
            "SELECT DISTINCT name, country FROM users",
            "SELECT DISTINCT name, country, name AS __sg_h0, country AS __sg_h1 FROM users",
            MergePlan {
                distinct: Some(vec![0, 1]),
                ..rows(2)
            },
        ),
        (
            "SELECT DISTINCT u.name AS n, country FROM users u ORDER BY country DESC, n LIMIT 3",
            "SELECT DISTINCT u.name AS n, country, u.name AS __sg_h0, country AS __sg_h1 FROM users u ORDER BY country DESC, n LIMIT 3",
            MergePlan {
                distinct: Some(vec![0, 1]),
                order: vec![desc(Slot::Hidden(1)), asc(0)],
                limit: Some(Count::Value(3)),
                ..rows(2)
            },
        ),
        (
            "SELECT DISTINCT u.name FROM users u ORDER BY name",
            "SELECT DISTINCT u.name, u.name AS __sg_h0 FROM users u ORDER BY name",
            MergePlan {
                distinct: Some(vec![0]),
                order: vec![asc(0)],
                ..rows(1)
            },
        ),
    ]);
}

#[test]
fn plans_are_cached_per_text() {
    let r = router();
    let sql = "SELECT * FROM users ORDER BY name";
    let first = r.scatter(sql).expect("planned");
    assert!(Arc::ptr_eq(&first, &r.scatter(sql).expect("planned")));
    let refused = "SELECT rank() OVER () FROM users";
    assert_eq!(r.scatter(refused), r.scatter(refused));
}
