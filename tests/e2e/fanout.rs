//! The differential test of cross-shard reads: the same schema and rows loaded through
//! shardgate (2 shards, each with a streaming replica the reads go to) and into one plain
//! PostgreSQL; every query of `queries` must give the same answer from both: column names and
//! types, rows (in order when ORDER BY fixes it, else as multisets) and the command tag, in
//! text (simple protocol) and binary (extended protocol) formats. Constructs the merge cannot
//! compute are answered by the federation database (PostgreSQL over every shard); what
//! neither can (row locks across shards) must be refused with 0A000, never answered wrongly.
//! Every read runs again inside a transaction block, and some through a portal read in
//! pieces. `planner` and `special_values` hold the same comparison for the planner's edge
//! cases and for special values.
//!
//! Tables `fo_orders`, `fo_customers`, `fo_regions`, `fo_star` and aggregate `fo_total` here,
//! `ic_items` in a database of its own, `rv_*` in the submodules; users 76_001 and up.

mod data;
mod planner;
mod queries;
mod special_values;

use shardgate::config::raw::{RawConsistency, RawReadSettings, RawReads};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{
    TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas, oracle, sqlstate,
    wait_for_replicas,
};
use crate::support::text_rows;
use queries::{Check, Order};

/// A value's bytes exactly as the server sent them in binary, whatever its type.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// What a simple query answered: column names, rows as text, the row count of its tag.
#[derive(Debug, PartialEq, Eq)]
struct TextAnswer {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    count: u64,
}

fn describe(error: tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

async fn text_answer(client: &Client, sql: &str, order: Order) -> Result<TextAnswer, String> {
    let messages = client.simple_query(sql).await.map_err(describe)?;
    let mut answer = TextAnswer {
        columns: Vec::new(),
        rows: Vec::new(),
        count: 0,
    };
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                answer.columns = columns.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => answer.rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => answer.count = n,
            _ => {}
        }
    }
    if order == Order::Any {
        answer.rows.sort();
    }
    Ok(answer)
}

/// What an extended-protocol query answered: column names and types, binary rows.
#[derive(Debug, PartialEq, Eq)]
struct BinaryAnswer {
    columns: Vec<(String, Type)>,
    rows: Vec<Vec<Raw>>,
}

async fn binary_answer(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    order: Order,
) -> Result<BinaryAnswer, String> {
    let statement = client.prepare(sql).await.map_err(describe)?;
    let rows = client.query(&statement, params).await.map_err(describe)?;
    let columns = (statement.columns().iter())
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    let mut rows: Vec<Vec<Raw>> = (rows.iter())
        .map(|row| (0..row.len()).map(|i| row.get::<_, Raw>(i)).collect())
        .collect();
    if order == Order::Any {
        rows.sort();
    }
    Ok(BinaryAnswer { columns, rows })
}

/// Compares `sql` through the proxy and on the oracle as text rows and tag; `ordered`: row
/// order matters. `None` when they agree, else both answers.
async fn differs(proxy: &Client, plain: &Client, sql: &str, ordered: bool) -> Option<String> {
    let (mut got, mut want) = (text_rows(proxy, sql).await, text_rows(plain, sql).await);
    if !ordered {
        for (rows, _) in [&mut got, &mut want].into_iter().flatten() {
            rows.sort();
        }
    }
    (got != want).then(|| format!("{sql}\n   proxy:  {got:?}\n   oracle: {want:?}"))
}

/// Runs one check on both sides; `Err` describes the difference.
async fn run_check(proxy: &Client, plain: &Client, check: &Check) -> Result<(), String> {
    match check {
        Check::Same { sql, order } => {
            let (got, want) = (
                text_answer(proxy, sql, *order).await,
                text_answer(plain, sql, *order).await,
            );
            if got != want {
                return Err(format!("text: got {got:?}\nwant {want:?}"));
            }
            let (got, want) = (
                binary_answer(proxy, sql, &[], *order).await,
                binary_answer(plain, sql, &[], *order).await,
            );
            if got != want {
                return Err(format!("binary: got {got:?}\nwant {want:?}"));
            }
        }
        Check::WithParams { sql, order, params } => {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            let (got, want) = (
                binary_answer(proxy, sql, &params, *order).await,
                binary_answer(plain, sql, &params, *order).await,
            );
            if got != want {
                return Err(format!("binary: got {got:?}\nwant {want:?}"));
            }
        }
        Check::Text { sql } => {
            let (got, want) = (
                text_answer(proxy, sql, Order::Any).await,
                text_answer(plain, sql, Order::Any).await,
            );
            if got != want {
                return Err(format!("text: got {got:?}\nwant {want:?}"));
            }
        }
        Check::Refused { sql } => {
            let error = proxy.simple_query(sql).await.err();
            let code = error.as_ref().map(sqlstate);
            if code.as_deref() != Some("0A000") {
                return Err(format!("expected a 0A000 refusal, got {error:?}"));
            }
            plain
                .simple_query(sql)
                .await
                .map_err(|e| format!("the oracle failed: {e}"))?;
        }
    }
    Ok(())
}

/// Reads run through one portal with these row limits in turn, then the rest.
const PORTAL_READS: [(&str, &[i32]); 4] = [
    (
        "SELECT id, amount FROM fo_orders ORDER BY id",
        &[3, 1, 50, 7],
    ),
    (
        "SELECT region, count(*) FROM fo_orders GROUP BY region ORDER BY region",
        &[2],
    ),
    (
        "SELECT id FROM fo_orders ORDER BY id LIMIT 10 OFFSET 5",
        &[4, 4, 4],
    ),
    (
        "SELECT id, rank() OVER (ORDER BY amount, id) FROM fo_orders ORDER BY id LIMIT 40",
        &[5, 5],
    ),
];

/// The rows of `sql` read through one portal inside a transaction, in pieces: an Execute with
/// each row limit of `sizes` in turn, then one for the rest; each piece's rows as raw values.
async fn portal_chunks(
    client: &mut Client,
    sql: &str,
    sizes: &[i32],
) -> Result<Vec<Vec<Vec<Raw>>>, String> {
    let transaction = client.transaction().await.map_err(describe)?;
    let statement = transaction.prepare(sql).await.map_err(describe)?;
    let portal = transaction.bind(&statement, &[]).await.map_err(describe)?;
    let mut chunks = Vec::new();
    for &size in sizes.iter().chain([0].iter()) {
        let rows = (transaction.query_portal(&portal, size).await).map_err(describe)?;
        let values = rows
            .iter()
            .map(|row| (0..row.len()).map(|i| row.get(i)).collect());
        chunks.push(values.collect());
    }
    transaction.rollback().await.map_err(describe)?;
    Ok(chunks)
}

#[tokio::test]
async fn cross_shard_reads_answer_as_one_postgres_would() {
    let cluster = cluster();
    let mut map = demo_map_with_replicas(cluster);
    map.tables.extend(data::tables());
    // Session consistency, so that the reads after the writes run on the primaries and both
    // paths are compared (causal reads would wait for the replicas instead).
    map.reads = Some(RawReads::Settings(RawReadSettings {
        consistency: Some(RawConsistency::Session),
        ..RawReadSettings::default()
    }));
    let proxy = TestProxy::start(config_with_map(cluster, &map)).await;
    let through_proxy = proxy.connect().await;
    let mut plain = connect_direct(&oracle().primaries[0]).await;
    data::load(&through_proxy, &plain).await;
    wait_for_replicas(cluster).await;
    // A session that never wrote: its reads go to the replicas.
    let reader = proxy.connect().await;
    let mut failures = Vec::new();
    let checks = queries::reads();
    for check in &checks {
        if let Err(difference) = run_check(&reader, &plain, check).await {
            failures.push(format!("{}\n  {difference}", check.sql()));
        }
    }
    // Writes by key and without it, then the reads again from the session that wrote (its
    // reads of those shards now go to the primaries).
    for check in queries::writes() {
        if let Err(difference) = run_check(&through_proxy, &plain, &check).await {
            failures.push(format!("{}\n  {difference}", check.sql()));
        }
    }
    for check in &checks {
        if let Err(difference) = run_check(&through_proxy, &plain, check).await {
            failures.push(format!("after writes: {}\n  {difference}", check.sql()));
        }
    }
    // Each read again inside a READ COMMITTED transaction block that has not written: the
    // merge runs on the transaction's backends, the federation answers as the block would.
    // Both sides start from default settings, and each block's SETs roll back with it.
    let mut in_block = proxy.connect().await;
    plain.batch_execute("RESET ALL").await.unwrap();
    for check in &checks {
        for client in [&in_block, &plain] {
            client.batch_execute("BEGIN").await.unwrap();
        }
        if let Err(difference) = run_check(&in_block, &plain, check).await {
            failures.push(format!("in a transaction: {}\n  {difference}", check.sql()));
        }
        for client in [&in_block, &plain] {
            client.batch_execute("ROLLBACK").await.unwrap();
        }
    }
    // Portals read in pieces (an Execute with a row limit, then the next), as one server
    // answers them: merged, grouped, windowed by LIMIT/OFFSET, and federated reads.
    for (sql, sizes) in PORTAL_READS {
        let (got, want) = (
            portal_chunks(&mut in_block, sql, sizes).await,
            portal_chunks(&mut plain, sql, sizes).await,
        );
        if got.is_err() || got != want {
            failures.push(format!(
                "portal {sql} {sizes:?}\n  got {got:?}\n  want {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks differ:\n{}",
        failures.len(),
        3 * checks.len() + queries::writes().len() + PORTAL_READS.len(),
        failures.join("\n")
    );
    let counted = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    let refusals = checks
        .iter()
        .filter(|c| matches!(c, Check::Refused { .. }))
        .count() as u64;
    assert!(counted.refused_unsupported >= 2 * refusals, "{counted:?}");
    let federated = queries::federated_count() as u64;
    // Each federated check runs in both protocols, before and after the writes, and in a
    // transaction block.
    assert!(counted.federated_reads >= 3 * federated, "{counted:?}");
    assert!(
        counted.scatter_reads >= checks.len() as u64 - federated,
        "{counted:?}"
    );
    assert_eq!(
        counted.scatter_legs,
        2 * counted.scatter_reads,
        "two shards a read"
    );
    assert!(
        counted.replica_reads > 0 && counted.primary_reads > 0,
        "{counted:?}"
    );
}

/// A database of every shard whose default collation is not C (ICU en-US): the merge, which
/// compares text bytewise, must refuse to order text there unless the query says COLLATE "C".
#[tokio::test]
async fn text_is_merged_in_order_only_where_the_collation_is_bytewise() {
    let cluster = cluster();
    for uri in &cluster.primaries {
        let admin = connect_direct(uri).await;
        admin
            .simple_query("DROP DATABASE IF EXISTS app_icu")
            .await
            .unwrap();
        admin
            .simple_query(
                "CREATE DATABASE app_icu TEMPLATE template0 LOCALE 'C' \
                 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
            )
            .await
            .unwrap();
    }
    let icu = crate::harness::ClusterInfo {
        primaries: (cluster.primaries.iter())
            .map(|uri| format!("{uri}_icu"))
            .collect(),
        replicas: vec![Vec::new(); cluster.primaries.len()],
    };
    let tables = "{ic_items: {strategy: hash, key: id, key_type: bigint}}";
    let config = crate::harness::config_with_tables(&icu, tables);
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute("CREATE TABLE ic_items (id bigint PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO ic_items (id, name) VALUES (1, 'b'), (2, 'B'), (3, 'a'), (4, 'A'), \
             (5, 'é'), (6, 'z'), (7, 'Z'), (8, 'e')",
        )
        .await
        .unwrap();
    // The merge refuses these; the federation database, made with the shards' collation,
    // answers them as one server with that collation would (all rows as a VALUES list).
    let shard = connect_direct(&icu.primaries[0]).await;
    let all_rows = "(VALUES (1, 'b'), (2, 'B'), (3, 'a'), (4, 'A'), (5, 'é'), (6, 'z'), \
                    (7, 'Z'), (8, 'e')) AS ic_items (id, name)";
    for sql in [
        "SELECT name FROM ic_items ORDER BY name",
        "SELECT min(name), max(name) FROM ic_items",
        "SELECT name, count(*) FROM ic_items GROUP BY name HAVING name > 'b' ORDER BY name",
    ] {
        let one_server = sql.replacen("ic_items", all_rows, 1);
        let (got, want) = (
            text_rows(&client, sql).await,
            text_rows(&shard, &one_server).await,
        );
        assert_eq!(got, want, "{sql}");
    }
    let rows = client
        .query("SELECT name FROM ic_items ORDER BY name COLLATE \"C\"", &[])
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut bytewise = names.clone();
    bytewise.sort();
    assert_eq!(
        names, bytewise,
        "COLLATE \"C\" orders bytewise on every shard and in the merge"
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM ic_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 8, "what does not order text still merges");
}

/// An aggregate made with CREATE AGGREGATE looks like any function in the text; the catalog
/// says what it is, and the proxy refuses to let each shard answer it with a row of its own.
#[tokio::test]
async fn user_defined_aggregates_are_refused_across_shards() {
    let cluster = cluster();
    for uri in &cluster.primaries {
        connect_direct(uri)
            .await
            .batch_execute(
                "CREATE OR REPLACE AGGREGATE fo_total (bigint) (sfunc = int8pl, stype = bigint)",
            )
            .await
            .unwrap();
    }
    let proxy = TestProxy::start(crate::harness::sharded_config(cluster)).await;
    let client = proxy.connect().await;
    for sql in [
        "SELECT fo_total(user_id) FROM users",
        "SELECT fo_total(user_id) AS total FROM users ORDER BY 1",
    ] {
        let error = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&error), "0A000", "{sql}: {error:?}");
    }
    // Plain functions still fan out.
    client
        .simple_query("SELECT upper(name), length(name) FROM users WHERE user_id < 0")
        .await
        .unwrap();
    // Grouped by the shard key, each group lives on one shard: the aggregate is exact there.
    client
        .simple_query("SELECT user_id, fo_total(user_id) FROM users GROUP BY user_id")
        .await
        .unwrap();
}

/// A CancelRequest reaches every shard of a cross-shard read.
#[tokio::test]
async fn a_cross_shard_read_can_be_cancelled() {
    let cluster = cluster();
    let proxy = TestProxy::start(crate::harness::sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let (a, b) = crate::routing::two_users_on_different_shards(76_001);
    for id in [a, b] {
        let sql = format!(
            "DELETE FROM users WHERE user_id = {id}; \
             INSERT INTO users (user_id, name) VALUES ({id}, 'cancel')"
        );
        client.batch_execute(&sql).await.unwrap();
    }
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let sql = format!("SELECT user_id, pg_sleep(20)::text FROM users WHERE user_id IN ({a}, {b})");
    let error = client.simple_query(&sql).await.unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(sqlstate(&error), "57014", "{error:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "cancelled, not waited out"
    );
    client
        .simple_query("SELECT 1")
        .await
        .expect("the session goes on");
}

/// The column count of a cross-shard `SELECT *` is learned once; a schema change that
/// outdates it costs one recount, never a client error.
#[tokio::test]
async fn a_star_read_follows_a_schema_change() {
    let cluster = cluster();
    let mut map = crate::harness::demo_map(cluster);
    map.tables.extend(
        serde_yaml::from_str::<std::collections::BTreeMap<_, _>>(
            "fo_star: {strategy: hash, key: id, key_type: bigint}",
        )
        .unwrap(),
    );
    let proxy = TestProxy::start(config_with_map(cluster, &map)).await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS fo_star; CREATE TABLE fo_star (id bigint PRIMARY KEY, a text)",
        )
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO fo_star (id, a) VALUES (1, 'x'), (2, 'y'), (3, 'z'), (4, 'w')")
        .await
        .unwrap();
    // Simple protocol: each execution is planned anew by the shards.
    let sql = "SELECT * FROM fo_star ORDER BY id LIMIT 3";
    let shape = |messages: Vec<SimpleQueryMessage>| {
        let rows: Vec<_> = (messages.into_iter())
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect();
        let last = rows[0].get(rows[0].len() - 1).map(str::to_owned);
        (rows.len(), rows[0].len(), last)
    };
    for _ in 0..2 {
        let got = shape(client.simple_query(sql).await.unwrap());
        assert_eq!(got, (3, 2, Some("x".to_owned())));
    }
    client
        .batch_execute("ALTER TABLE fo_star ADD COLUMN b int DEFAULT 7")
        .await
        .unwrap();
    let got = shape(client.simple_query(sql).await.unwrap());
    assert_eq!(got, (3, 3, Some("7".to_owned())));
}
