//! Cross-shard reads at the edges of the scatter planner: names that may be an input column or
//! an output name, aggregates hidden in subqueries, every built-in aggregate, and LIMIT,
//! OFFSET and HAVING parameters typed by the client and sent in binary. Each read is answered
//! as the oracle answers it, or refused with 0A000, never answered wrongly.
//!
//! Tables `rv_gba`, `rv_obc`, `rv_oas`, `rv_tp` (hash on id, the same 60 rows through the proxy
//! and in the oracle), one per test.

use tokio_postgres::Client;

use super::differs;
use crate::harness::{TestProxy, cluster, connect_direct, oracle, wait_for_replicas};
use crate::support::proxy_with;

/// `rv_*` table `name` (hash on id) with the same 60 rows through the proxy and in the oracle.
async fn load_items(proxy: &Client, plain: &Client, name: &str) {
    let ddl = format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id bigint PRIMARY KEY, qty int NOT NULL, \
         region text NOT NULL, amount numeric NOT NULL)"
    );
    let regions = ["north", "south", "east", "west"];
    let values: Vec<String> = (1..=60)
        .map(|i: i64| {
            format!(
                "({i}, {}, '{}', {}.{})",
                i % 13,
                regions[(i % 4) as usize],
                i % 7,
                i % 10
            )
        })
        .collect();
    let insert = format!(
        "INSERT INTO {name} (id, qty, region, amount) VALUES {}",
        values.join(", ")
    );
    for client in [proxy, plain] {
        for statement in ddl.split("; ") {
            client.simple_query(statement).await.unwrap();
        }
        client.simple_query(&insert).await.unwrap();
    }
}

/// A proxy with `table` (hash on id) loaded by [`load_items`], a client through it and one on
/// the oracle.
async fn planner_setup(table: &str) -> (TestProxy, Client, Client) {
    let proxy = proxy_with(&format!(
        "{table}: {{strategy: hash, key: id, key_type: bigint}}"
    ))
    .await;
    let through = proxy.connect().await;
    let plain = connect_direct(&oracle().primaries[0]).await;
    load_items(&through, &plain, table).await;
    wait_for_replicas(cluster()).await;
    (proxy, through, plain)
}

/// GROUP BY NAME where NAME may be both an input column and a select-list alias: PostgreSQL
/// groups by the input column, but whether the table has a column of that name is not in the
/// text, so the merge does not guess the alias: the federation database answers, as
/// PostgreSQL does.
#[tokio::test]
async fn group_by_a_name_that_may_be_a_column_or_an_alias_answers_as_postgres_does() {
    let (_proxy, through, plain) = planner_setup("rv_gba").await;
    for sql in [
        "SELECT 'all' AS region, count(*) FROM rv_gba GROUP BY region",
        "SELECT region, upper(region) AS qty, count(*) FROM rv_gba GROUP BY region, qty",
    ] {
        let difference = differs(&through, &plain, sql, false).await;
        assert!(difference.is_none(), "\n{}", difference.unwrap_or_default());
    }
}

/// ORDER BY NAME where NAME is the output name PostgreSQL gives a cast (`qty::text` is called
/// "qty"): the merge sorts by that output column (text order), as each shard does, not by the
/// input column of the same name.
#[tokio::test]
async fn order_by_the_output_name_of_a_cast_sorts_as_postgres_does() {
    let (_proxy, through, plain) = planner_setup("rv_obc").await;
    let sql = "SELECT qty::text, id FROM rv_obc ORDER BY qty, id";
    let difference = differs(&through, &plain, sql, true).await;
    assert!(difference.is_none(), "\n{}", difference.unwrap_or_default());
}

/// An aggregate of outer columns inside a scalar subquery is an aggregate of the outer query
/// (one row in PostgreSQL): never passed through as one row per shard, but answered whole by
/// the federation database.
#[tokio::test]
async fn an_outer_aggregate_inside_a_subquery_is_one_row() {
    let (_proxy, through, plain) = planner_setup("rv_oas").await;
    let sql = "SELECT (SELECT max(o.qty)) FROM rv_oas o";
    let difference = differs(&through, &plain, sql, true).await;
    assert!(difference.is_none(), "\n{}", difference.unwrap_or_default());
}

/// Every built-in aggregate must be known to the planner by name, or a cross-shard read
/// calling it passes through unmerged (one row per shard).
#[tokio::test]
async fn every_builtin_aggregate_is_known_to_the_planner() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/router/scatter/aggregate.rs"
    ))
    .unwrap();
    let plain = connect_direct(&oracle().primaries[0]).await;
    let rows = plain
        .query(
            "SELECT DISTINCT proname::text FROM pg_proc WHERE prokind = 'a' \
             AND pronamespace = 'pg_catalog'::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let missing: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| !source.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "aggregates the planner does not know: {missing:?}"
    );
}

/// LIMIT/OFFSET/HAVING parameters declared int4/int2/int8 and sent in binary (NULL included)
/// get the oracle's answer: the same row count, or the same error.
#[tokio::test]
async fn typed_binary_parameters_in_limit_offset_and_having_answer_as_postgres_does() {
    use tokio_postgres::types::{ToSql, Type};
    let (_proxy, through, plain) = planner_setup("rv_tp").await;
    type Case = (&'static str, Vec<Type>, Vec<Box<dyn ToSql + Sync>>);
    let cases: Vec<Case> = vec![
        (
            "SELECT id FROM rv_tp ORDER BY id LIMIT $1 OFFSET $2",
            vec![Type::INT4, Type::INT2],
            vec![Box::new(7i32), Box::new(3i16)],
        ),
        (
            "SELECT region, count(*) FROM rv_tp GROUP BY region HAVING count(*) > $1 ORDER BY 1 LIMIT $2",
            vec![Type::INT4, Type::INT4],
            vec![Box::new(14i32), Box::new(2i32)],
        ),
        (
            "SELECT qty, sum(amount) FROM rv_tp GROUP BY qty HAVING sum(amount) >= $1 ORDER BY 1",
            vec![Type::INT8],
            vec![Box::new(20i64)],
        ),
        (
            "SELECT id FROM rv_tp ORDER BY id DESC LIMIT $1",
            vec![Type::INT8],
            vec![Box::new(None::<i64>)],
        ),
    ];
    let mut failures = Vec::new();
    for (sql, types, params) in &cases {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut answers = Vec::new();
        for client in [&through, &plain] {
            let answer = match client.prepare_typed(sql, types).await {
                Ok(statement) => client
                    .query(&statement, &params)
                    .await
                    .map(|rows| rows.iter().map(|r| format!("{r:?}").len()).count())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            answers.push(answer);
        }
        if answers[0] != answers[1] {
            failures.push(format!("{sql}: {answers:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
