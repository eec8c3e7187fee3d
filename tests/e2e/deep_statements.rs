//! Statements deep or long enough to overflow a naive parser walk: answered exactly, forwarded
//! untouched, or refused with PostgreSQL's own codes, while the session and every other client
//! keep working (the proxy runs on tokio workers with 2 MiB stacks here, as in production).

use crate::harness::{TestProxy, cluster, sharded_config, sqlstate};

/// Keys of this module's rows (other modules use other ranges).
const BASE: i64 = 7_700_000;

fn chain(term: impl Fn(usize) -> String, glue: &str, count: usize) -> String {
    (1..=count).map(term).collect::<Vec<_>>().join(glue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_statements_never_take_the_proxy_down() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let bystander = proxy.connect().await;
    for i in 0..20 {
        let delete = format!("DELETE FROM users WHERE user_id = {}", BASE + i);
        client.simple_query(&delete).await.unwrap();
        let insert = format!(
            "INSERT INTO users (user_id, name) VALUES ({}, 'deep')",
            BASE + i
        );
        client.simple_query(&insert).await.unwrap();
    }

    // 2,000 ORs on the shard key: both shards, merged, exact (simple and extended protocol).
    let keys = chain(
        |i| format!("user_id = {}", BASE + i as i64 % 40),
        " OR ",
        2_000,
    );
    let count_sql = format!("SELECT count(*) FROM users WHERE {keys}");
    let row = client.query_one(count_sql.as_str(), &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 20);
    let rows = client.simple_query(&count_sql).await.unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("20"))
    );

    // 10,000 ANDs on a sharded table: deeper than the proxy parses, refused by name.
    let ands = chain(|_| format!("user_id = {BASE}"), " AND ", 10_000);
    let deep = format!("SELECT count(*) FROM users WHERE {ands}");
    let error = client.simple_query(&deep).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54001", "{error}");
    let error = client.query(deep.as_str(), &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54001", "{error}");

    // 100,000 `+` naming no map table: sent untouched, PostgreSQL answers with its own 54001.
    let sum = format!("SELECT {}", chain(|_| "1".into(), "+", 100_000));
    let error = client.simple_query(&sum).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54001", "{error}");
    // A catalog query with 3,000 ORs: answered by the default shard.
    let catalog = format!(
        "SELECT count(*) FROM pg_class WHERE {}",
        chain(|i| format!("oid = {i}"), " OR ", 3_000)
    );
    client.query_one(catalog.as_str(), &[]).await.unwrap();

    // Over limits.max_statement_bytes (256 KiB): routed by the tables it names, not parsed.
    let rows = chain(
        |i| format!("({}, 'bulk')", BASE + 50 + i as i64),
        ", ",
        20_000,
    );
    let bulk = format!("INSERT INTO users (user_id, name) VALUES {rows}");
    assert!(bulk.len() > 256 * 1024);
    let error = client.simple_query(&bulk).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54000", "{error}");
    let unmapped = format!("SELECT count(*) FROM (VALUES {}) AS v(a, b)", rows);
    let row = client.query_one(unmapped.as_str(), &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 20_000);

    // Everyone is still served.
    for c in [&client, &bystander] {
        let row = c
            .query_one("SELECT count(*) FROM users WHERE user_id = $1", &[&BASE])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
    }
}
