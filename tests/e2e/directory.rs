//! Directory tables in PostgreSQL: keys placed by rows of a table that every proxy reads, kept
//! fresh by NOTIFY, with the map's fallback for keys without a row.

use std::time::Duration;

use crate::harness::{TestProxy, cluster, config_with_map, connect_direct, demo_map, sqlstate};
use shardgate::config::raw::RawLookup;

const TABLE: &str = "doc_directory";

/// The demo map with `documents` placed by the directory table on shard 0's database.
fn config_with_lookup() -> shardgate::config::Config {
    let cluster = cluster();
    let mut raw = demo_map(cluster);
    let documents = raw.tables.get_mut("documents").unwrap();
    documents.fallback = Some("error".into());
    documents.lookup = Some(RawLookup {
        uri: cluster.primaries[0].clone(),
        table: TABLE.into(),
        channel: None,
        cache_entries: None,
    });
    config_with_map(cluster, &raw)
}

async fn document_shards(tenant: i32, doc: i64) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, uri) in cluster().primaries.iter().enumerate() {
        let sql = "SELECT count(*) FROM documents WHERE tenant_id = $1 AND doc_id = $2";
        let n: i64 = connect_direct(uri)
            .await
            .query_one(sql, &[&tenant, &doc])
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            found.push(i);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_rows_place_keys_and_notify_moves_them() {
    let cluster = cluster();
    let config = config_with_lookup(); // creates the demo tables first
    let directory = connect_direct(&cluster.primaries[0]).await;
    directory
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, shard text NOT NULL);
             DELETE FROM {TABLE};
             INSERT INTO {TABLE} VALUES ('501', 's1');"
        ))
        .await
        .unwrap();
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct
            .execute("DELETE FROM documents WHERE tenant_id IN (501, 502)", &[])
            .await
            .unwrap();
    }
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let insert = "INSERT INTO documents (tenant_id, doc_id, title) VALUES ($1, $2, 'dir')";
    client.execute(insert, &[&501i32, &1i64]).await.unwrap();
    assert_eq!(document_shards(501, 1).await, vec![1], "the row says s1");
    // The table changes and says so: the cached entry is dropped and the next write follows.
    directory
        .batch_execute(&format!(
            "UPDATE {TABLE} SET shard = 's0' WHERE key = '501'; NOTIFY {TABLE}, '501'"
        ))
        .await
        .unwrap();
    let mut doc = 2i64;
    loop {
        client.execute(insert, &[&501i32, &doc]).await.unwrap();
        if document_shards(501, doc).await == vec![0] {
            break;
        }
        assert!(doc < 40, "the NOTIFY never reached the proxy");
        tokio::time::sleep(Duration::from_millis(100)).await;
        doc += 1;
    }
    // No row and fallback `error`: a clear refusal naming the key.
    let error = client.execute(insert, &[&502i32, &1i64]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("documents") && message.contains("502"),
        "{message}"
    );
}
