//! Helpers the feature modules share: a proxy over the demo map plus tables of the test's own,
//! query answers as text, rows of the shared cluster's `users` table, and the backends left
//! inside a transaction. No tests here; nothing here owns a table or an id range.

use std::collections::BTreeMap;

use shardgate::config::raw::RawTable;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas};

/// A config with the demo map (replicas included) plus the tables of `yaml`, a YAML mapping
/// of shard-map table entries.
pub fn config_with_extra_tables(yaml: &str) -> shardgate::config::Config {
    let cluster = cluster();
    let mut map = demo_map_with_replicas(cluster);
    let extra: BTreeMap<String, RawTable> = serde_yaml::from_str(yaml).unwrap();
    map.tables.extend(extra);
    config_with_map(cluster, &map)
}

/// A proxy with the demo map (replicas included) plus `yaml` tables.
pub async fn proxy_with(yaml: &str) -> TestProxy {
    TestProxy::start(config_with_extra_tables(yaml)).await
}

/// Rows and tag of a simple query, as text; `Err` is "SQLSTATE: message".
pub async fn text_rows(
    client: &Client,
    sql: &str,
) -> Result<(Vec<Vec<Option<String>>>, u64), String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })?;
    let mut rows = Vec::new();
    let mut count = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    Ok((rows, count))
}

/// Inserts rows with the ids of `ids` into `table (id)` in one multi-row INSERT.
pub async fn insert_ids(client: &Client, table: &str, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i})")).collect();
    client
        .simple_query(&format!(
            "INSERT INTO {table} (id) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
}

/// The single text value of a one-row simple query.
pub async fn one_value(client: &Client, sql: &str) -> Option<String> {
    let (rows, _) = text_rows(client, sql).await.unwrap();
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0][0].clone()
}

/// Deletes the `users` rows of `ids` through `client`, and inserts them again (name 'rv')
/// when `insert`.
pub async fn reset_users(client: &Client, ids: &[i64], insert: bool) {
    for id in ids {
        client
            .simple_query(&format!("DELETE FROM users WHERE user_id = {id}"))
            .await
            .unwrap();
        if insert {
            client
                .simple_query(&format!(
                    "INSERT INTO users (user_id, name) VALUES ({id}, 'rv')"
                ))
                .await
                .unwrap();
        }
    }
}

/// A new client through `proxy` inside a transaction that has run `sql`.
pub async fn in_transaction(proxy: &TestProxy, sql: &str) -> Client {
    let client = proxy.connect().await;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query(sql).await.unwrap();
    client
}

/// Backends of every primary of the test cluster that are idle in a transaction after a
/// statement containing `marker` (other tests' transactions run at the same time).
pub async fn open_transactions(marker: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (shard, uri) in cluster().primaries.iter().enumerate() {
        let client = connect_direct(uri).await;
        let rows = client
            .query(
                "SELECT state || ': ' || query FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                 AND backend_type = 'client backend' AND state LIKE 'idle in transaction%' \
                 AND position($1 in query) > 0",
                &[&marker],
            )
            .await
            .unwrap();
        found.extend(rows.iter().map(|r| (shard, r.get::<_, String>(0))));
    }
    found
}
