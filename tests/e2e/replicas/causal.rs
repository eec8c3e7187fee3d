//! Causal replica reads (`reads.consistency: causal`, the default): a write acknowledged on
//! one connection is seen by a read that starts on another connection right after, although
//! the read is served by a replica. (That an `eventual` read of a lagging replica is stale,
//! so these reads could have been, is shown with replay paused, in `replicas.rs`: how far a
//! replica lags on its own depends on the machine's load.)
//!
//! Users 600_001 and 600_100–600_160 (in `users`); tables `causal_ddl_*`.

use shardgate::config::raw::{RawConsistency, RawReadSettings, RawReads};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestProxy, cluster, config_with_map, demo_map_with_replicas};

/// Write-then-read rounds per loop.
const ROUNDS: usize = 60;

async fn proxy(consistency: RawConsistency) -> TestProxy {
    let cluster = cluster();
    let mut map = demo_map_with_replicas(cluster);
    map.reads = Some(RawReads::Settings(RawReadSettings {
        consistency: Some(consistency),
        causal_wait: Some("2s".into()),
        ..RawReadSettings::default()
    }));
    let mut config = config_with_map(cluster, &map);
    crate::operations::with_admin(&mut config);
    TestProxy::start(config).await
}

/// The first column of the first row of a simple query, as text.
async fn first(client: &Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.unwrap();
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// Rounds of: update one user's name on `writer`, read it at once on `reader` (simple and
/// extended protocol, alternating). Returns how many reads saw an older name.
async fn stale_single_key_reads(writer: &Client, reader: &Client, id: i64) -> usize {
    let insert = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'v0')");
    writer
        .simple_query(&format!("DELETE FROM users WHERE user_id = {id}"))
        .await
        .unwrap();
    writer.simple_query(&insert).await.unwrap();
    let read = format!("SELECT name FROM users WHERE user_id = {id}");
    let mut stale = 0;
    for round in 1..=ROUNDS {
        let update = format!("UPDATE users SET name = 'v{round}' WHERE user_id = {id}");
        writer.simple_query(&update).await.unwrap();
        let name = if round % 2 == 0 {
            first(reader, &read).await
        } else {
            let row = reader.query_one(&read, &[]).await.unwrap();
            row.get::<_, Option<String>>(0)
        };
        stale += usize::from(name.as_deref() != Some(&format!("v{round}")));
    }
    stale
}

/// Rounds of: insert a user on `writer` (the ids spread over both shards), count the range
/// at once on `reader` (a cross-shard read). Returns how many counts were short.
async fn stale_cross_shard_counts(writer: &Client, reader: &Client, base: i64) -> usize {
    let range = format!("user_id BETWEEN {base} AND {}", base + ROUNDS as i64);
    for id in base..=base + ROUNDS as i64 {
        let delete = format!("DELETE FROM users WHERE user_id = {id}");
        writer.simple_query(&delete).await.unwrap();
    }
    let count = format!("SELECT count(*) FROM users WHERE {range}");
    let mut stale = 0;
    for round in 1..=ROUNDS {
        let id = base + round as i64;
        let insert = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'c')");
        writer.simple_query(&insert).await.unwrap();
        let counted = first(reader, &count).await;
        stale += usize::from(counted != Some(round.to_string()));
    }
    stale
}

#[tokio::test]
async fn a_write_on_one_connection_is_read_on_another_at_once() {
    let proxy = proxy(RawConsistency::Causal).await;
    let (writer, reader) = (proxy.connect().await, proxy.connect().await);
    assert_eq!(stale_single_key_reads(&writer, &reader, 600_001).await, 0);
    assert_eq!(stale_cross_shard_counts(&writer, &reader, 600_100).await, 0);
    let counters = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    assert!(
        counters.replica_reads > 0,
        "replicas served reads: {counters:?}"
    );
    assert_pools_add_up_to_stats(&proxy).await;
}

/// `SHOW POOLS` counts each read once, on the server that served it: its replicas' and
/// primaries' reads, waits and fallbacks add up to the database's totals.
async fn assert_pools_add_up_to_stats(proxy: &TestProxy) {
    use crate::operations::{console, field, rows};
    let counters = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    let pools = rows(&console(proxy).await, "SHOW POOLS").await;
    let sum = |role: &str, column: &str| -> u64 {
        let of_role = pools
            .iter()
            .filter(|p| role.is_empty() || field(p, "role") == role);
        of_role
            .map(|p| field(p, column).parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(sum("replica", "reads"), counters.replica_reads, "{pools:?}");
    assert_eq!(sum("primary", "reads"), counters.primary_reads, "{pools:?}");
    assert_eq!(sum("", "causal_waits"), counters.causal_waits, "{pools:?}");
    assert_eq!(sum("replica", "causal_fallbacks"), 0, "{pools:?}");
    let fallbacks = sum("primary", "causal_fallbacks");
    assert_eq!(fallbacks, counters.causal_fallbacks, "{pools:?}");
    let waited_ms = pools
        .iter()
        .map(|p| field(p, "causal_wait_ms").parse::<f64>().unwrap());
    assert_eq!(
        waited_ms.sum::<f64>() > 0.0,
        counters.causal_waits > 0,
        "{pools:?}"
    );
}

#[tokio::test]
async fn a_table_created_on_one_connection_exists_for_the_next_read_on_another() {
    let proxy = proxy(RawConsistency::Causal).await;
    let (writer, reader) = (proxy.connect().await, proxy.connect().await);
    for round in 0..20 {
        let table = format!("causal_ddl_{round}");
        let create = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)");
        writer.batch_execute(&create).await.unwrap();
        let read = format!("SELECT count(*) FROM {table}");
        let counted = reader.simple_query(&read).await;
        assert!(counted.is_ok(), "round {round}: {counted:?}");
        writer
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
    // A replica that did not replay the DDL within `causal_wait` sends its read to the primary
    // (counted as a fallback): correct, and seen on a loaded machine; most reads stay on replicas.
    let counters = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    assert!(
        counters.replica_reads + counters.causal_fallbacks >= 20 && counters.replica_reads >= 15,
        "replicas served the reads: {counters:?}"
    );
}
