//! Constructs whose cross-shard answer could differ from one server's: each refusal names
//! the construct.

use super::{refusal, refused_kind, router};

#[test]
fn refusals_say_where_the_rows_are_and_what_to_do() {
    assert_eq!(
        refusal(&router(), "SELECT rank() OVER (ORDER BY name) FROM users"),
        "window functions cannot be computed across shards (users has rows on shards s0, s1); \
         add the shard key user_id to WHERE or name a shard with /* shard: NAME */"
    );
    assert_eq!(
        refusal(
            &router(),
            "SELECT * FROM users u JOIN events e ON e.kind = u.name"
        ),
        "this read cannot be computed across shards: users and events are sharded by different \
         keys; send it to one shard with its shard key in WHERE, or name a shard with /* shard: NAME */"
    );
}

#[test]
fn query_forms_other_than_one_select_are_refused() {
    check(&[
        (
            "WITH x AS (SELECT 1) SELECT * FROM users",
            "WITH (common table expressions)",
        ),
        ("SELECT * FROM users FOR UPDATE", "FOR UPDATE / FOR SHARE"),
        ("SELECT * FROM users FOR SHARE", "FOR UPDATE / FOR SHARE"),
        ("EXPLAIN SELECT * FROM users", "EXPLAIN"),
        (
            "SELECT * FROM users UNION SELECT * FROM users",
            "users is read in a subquery or CTE",
        ),
        ("SELECT * FROM users; SELECT 1", "only a single SELECT"),
        ("DELETE FROM users", "only a single SELECT"),
        ("SELECT * FROM countries", "only reads of sharded tables"),
        (
            "SELECT * FROM (SELECT * FROM users) u",
            "users is read in a subquery or CTE",
        ),
        (
            "SELECT DISTINCT ON (country) name FROM users",
            "DISTINCT ON",
        ),
        (
            "SELECT name FROM users WINDOW w AS (ORDER BY name)",
            "window functions",
        ),
        (
            "SELECT * FROM users FETCH FIRST 3 ROWS WITH TIES",
            "WITH TIES",
        ),
        (
            "SELECT * FROM users ORDER BY name USING <",
            "ORDER BY … USING",
        ),
        (
            "SELECT country ISNULL FROM users",
            "ISNULL after a select item",
        ),
    ]);
}

#[test]
fn from_clauses_each_shard_cannot_answer_alone_are_refused() {
    check(&[
        (
            "SELECT * FROM users u JOIN orders o ON o.amount = u.user_id",
            "joined other than on their shard key",
        ),
        (
            "SELECT * FROM users u JOIN plain p ON p.id = u.user_id",
            "joining plain (not in the shard map",
        ),
        (
            "SELECT * FROM users, pg_catalog.pg_class",
            "joining pg_catalog.pg_class",
        ),
        (
            "SELECT * FROM countries c LEFT JOIN users u ON u.country = c.code",
            "keeps the rows of reference tables",
        ),
        (
            "SELECT * FROM users u RIGHT JOIN countries c ON u.country = c.code",
            "keeps the rows of reference tables",
        ),
        (
            "SELECT * FROM users u FULL JOIN countries c ON u.country = c.code",
            "keeps the rows of reference tables",
        ),
        (
            "SELECT * FROM users u JOIN orders o ON o.amount > 0 LEFT JOIN orders p ON p.user_id = u.user_id AND p.user_id = o.user_id",
            "outer joins where sharded tables are joined other than by their shard key",
        ),
        ("SELECT * FROM users TABLESAMPLE SYSTEM (10)", "TABLESAMPLE"),
        (
            "SELECT * FROM users AS u (id, n)",
            "column aliases on a sharded table",
        ),
    ]);
}

#[test]
fn subqueries_that_differ_between_shards_are_refused() {
    check(&[
        (
            "SELECT * FROM users WHERE user_id IN (SELECT user_id FROM orders)",
            "orders is read in a subquery",
        ),
        (
            "SELECT * FROM users WHERE country IN (SELECT code FROM plain)",
            "a subquery reading plain (not in the shard map",
        ),
        (
            "SELECT (SELECT count(*) FROM pg_stat_activity) FROM users",
            "a subquery reading pg_stat_activity",
        ),
        (
            "SELECT * FROM users u JOIN (WITH c AS (SELECT 1) SELECT * FROM c) x ON true",
            "WITH inside a subquery",
        ),
    ]);
}

#[test]
fn aggregates_the_merge_cannot_combine_are_refused() {
    check(&[
        (
            "SELECT count(*) + 1 FROM users",
            "an aggregate inside an expression (count(*) + 1)",
        ),
        (
            "SELECT sum(user_id) / count(user_id) FROM users",
            "an aggregate inside an expression",
        ),
        (
            "SELECT coalesce(max(name), '') FROM users",
            "an aggregate inside an expression",
        ),
        (
            "SELECT string_agg(name, ',') FROM users",
            "the aggregate string_agg",
        ),
        (
            "SELECT array_agg(name) FROM users",
            "the aggregate array_agg",
        ),
        ("SELECT json_agg(u) FROM users u", "the aggregate json_agg"),
        ("SELECT stddev(user_id) FROM users", "the aggregate stddev"),
        (
            "SELECT country, jsonb_agg(name) FROM users GROUP BY country",
            "the aggregate jsonb_agg",
        ),
        (
            "SELECT count(DISTINCT country) FROM users",
            "DISTINCT inside aggregates",
        ),
        (
            "SELECT count(*) FILTER (WHERE name > 'a') FROM users",
            "aggregates with FILTER",
        ),
        (
            "SELECT max(name ORDER BY name) FROM users",
            "ORDER BY or other clauses inside aggregate",
        ),
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY user_id) FROM users",
            "ordered-set aggregates",
        ),
        (
            "SELECT mode() WITHIN GROUP (ORDER BY name) FROM users",
            "ordered-set aggregates",
        ),
        (
            "SELECT 1 + count(*) FILTER (WHERE true) FROM users",
            "aggregates with FILTER",
        ),
        ("SELECT count(*) OVER () FROM users", "window functions"),
        (
            "SELECT name FROM users ORDER BY row_number() OVER ()",
            "window functions",
        ),
        (
            "SELECT count(name, country) FROM users",
            "the call count(name, country)",
        ),
    ]);
}

#[test]
fn groupings_the_merge_cannot_rebuild_are_refused() {
    check(&[
        (
            "SELECT count(*) FROM users GROUP BY ROLLUP (country)",
            "GROUPING SETS, ROLLUP, CUBE",
        ),
        (
            "SELECT count(*) FROM users GROUP BY CUBE (country, name)",
            "GROUPING SETS, ROLLUP, CUBE",
        ),
        (
            "SELECT count(*) FROM users GROUP BY GROUPING SETS ((country), ())",
            "GROUPING SETS, ROLLUP, CUBE",
        ),
        (
            "SELECT count(*) FROM users GROUP BY ()",
            "GROUPING SETS, ROLLUP, CUBE",
        ),
        (
            "SELECT lower(name), count(*) FROM users GROUP BY name",
            "the select item lower(name) (neither",
        ),
        (
            "SELECT * FROM users GROUP BY country",
            "SELECT * with aggregates or GROUP BY",
        ),
        (
            "SELECT country, count(*) FROM users GROUP BY country HAVING count(*) + 1 > 2",
            "the HAVING condition count(*) + 1 > 2",
        ),
        (
            "SELECT count(*) FROM users HAVING 1 = 1",
            "the HAVING condition 1 = 1",
        ),
        (
            "SELECT count(*) FROM users HAVING count(*) > (SELECT 1)",
            "the HAVING condition",
        ),
        (
            "SELECT count(*) FROM users HAVING count(*) IN (1, 2)",
            "the HAVING condition",
        ),
        (
            "SELECT country, count(*) FROM users GROUP BY country ORDER BY lower(country)",
            "ORDER BY lower(country) (neither",
        ),
        (
            "SELECT 'x', count(*) FROM users GROUP BY country ORDER BY 1",
            "ORDER BY 1 (neither",
        ),
        (
            "SELECT DISTINCT country, count(*) FROM users GROUP BY country",
            "SELECT DISTINCT with GROUP BY",
        ),
        (
            "SELECT count(*) AS n FROM users GROUP BY 1",
            "an aggregate in GROUP BY",
        ),
        (
            "SELECT country AS name, count(*) FROM users GROUP BY name",
            "GROUP BY name where name is a select-list alias",
        ),
        (
            "SELECT (SELECT max(u.user_id)) FROM users u",
            "an aggregate inside a subquery",
        ),
    ]);
}

#[test]
fn sort_keys_the_merge_cannot_compare_are_refused() {
    check(&[
        (
            "SELECT name FROM users ORDER BY name COLLATE \"de_DE\"",
            "sorting by name COLLATE \"de_DE\"",
        ),
        (
            "SELECT name FROM users ORDER BY lower(name COLLATE \"en_US\") COLLATE \"C\"",
            "sorting by",
        ),
        (
            "SELECT * FROM users ORDER BY 1",
            "the position 1 in ORDER BY or GROUP BY",
        ),
        ("SELECT name FROM users ORDER BY 2", "the position 2"),
        (
            "SELECT DISTINCT name FROM users ORDER BY country",
            "SELECT DISTINCT ordered by country (not in the select list)",
        ),
        (
            "SELECT DISTINCT name FROM users ORDER BY name COLLATE \"C\"",
            "SELECT DISTINCT ordered by",
        ),
        ("SELECT DISTINCT * FROM users", "SELECT * with DISTINCT"),
        (
            "SELECT name AS x, country AS x FROM users ORDER BY x",
            "the ambiguous ORDER BY name x",
        ),
    ]);
}

#[test]
fn counts_other_than_numbers_and_parameters_are_refused() {
    let refused = "a LIMIT, OFFSET or FETCH count that is not a number or a $n parameter";
    check(&[
        ("SELECT * FROM users LIMIT 2 + 3", refused),
        ("SELECT * FROM users LIMIT -1", refused),
        ("SELECT * FROM users LIMIT 1.5", refused),
        ("SELECT * FROM users LIMIT $1::int", refused),
        ("SELECT * FROM users OFFSET (SELECT 1)", refused),
    ]);
}

/// Checks that each statement is refused with a message containing the text given.
fn check(cases: &[(&str, &str)]) {
    let r = router();
    for (sql, expected) in cases {
        let why = refusal(&r, sql);
        assert!(
            why.contains(expected),
            "{sql}: {why:?} does not name {expected:?}"
        );
    }
}

#[test]
fn refusals_are_counted_by_kind() {
    let router = router();
    for (sql, kind) in [
        (
            "SELECT rank() OVER (ORDER BY name) FROM users",
            "window_function",
        ),
        ("WITH x AS (SELECT 1) SELECT * FROM users", "cte"),
        ("SELECT DISTINCT ON (name) name FROM users", "distinct_on"),
        ("SELECT count(DISTINCT name) FROM users", "aggregate"),
        (
            "SELECT name, count(*) FROM users GROUP BY ROLLUP (name)",
            "group_by",
        ),
        ("SELECT * FROM users LIMIT (SELECT 1)", "limit"),
        ("SELECT * FROM users FOR UPDATE", "row_locks"),
    ] {
        assert_eq!(refused_kind(&router, sql), kind, "{sql}");
    }
}
