//! Reads on replicas: cross-shard reads go to the shards' streaming replicas, a session reads
//! its own writes, and a replica that is down costs clients nothing.

use std::time::{Duration, Instant};

use crate::harness::{TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas};

/// Server processes of `uri` other than this one whose last statement contained `text`
/// (statistics counters are flushed lazily; pg_stat_activity is current).
async fn ran(uri: &str, text: &str) -> i64 {
    let client = connect_direct(uri).await;
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE pid <> pg_backend_pid() AND position($1 in query) > 0";
    client.query_one(sql, &[&text]).await.unwrap().get(0)
}

/// Waits until every replica has replayed everything its primary has written so far.
async fn wait_for_replicas(cluster: &crate::harness::ClusterInfo) {
    for (primary, replicas) in cluster.primaries.iter().zip(&cluster.replicas) {
        let lsn: String = (connect_direct(primary).await)
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        for replica in replicas {
            let client = connect_direct(replica).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
                let caught_up: bool = client.query_one(&sql, &[]).await.unwrap().get(0);
                if caught_up {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {replica} did not catch up"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn cross_shard_reads_run_on_the_replicas() {
    let cluster = cluster();
    let proxy = TestProxy::start(config_with_map(cluster, &demo_map_with_replicas(cluster))).await;
    let writer = proxy.connect().await;
    let ids: Vec<i64> = (20_000..20_020).collect();
    for id in &ids {
        let sql = format!(
            "DELETE FROM users WHERE user_id = {id}; \
             INSERT INTO users (user_id, name) VALUES ({id}, 'replica-read')"
        );
        writer.simple_query(&sql).await.unwrap();
    }
    wait_for_replicas(cluster).await;
    let reader = proxy.connect().await;
    // Simple protocol, so not even a Describe reaches a primary.
    let sql = "SELECT user_id FROM users WHERE user_id BETWEEN 20000 AND 20019";
    for _ in 0..10 {
        let messages = reader.simple_query(sql).await.unwrap();
        let mut got: Vec<i64> = (messages.iter())
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
                _ => None,
            })
            .collect();
        got.sort();
        assert_eq!(got, ids);
    }
    for (shard, (primary, replicas)) in cluster.primaries.iter().zip(&cluster.replicas).enumerate()
    {
        let marker = "BETWEEN 20000 AND 20019";
        assert!(
            ran(&replicas[0], marker).await > 0,
            "shard {shard}'s replica ran the read"
        );
        assert_eq!(
            ran(primary, marker).await,
            0,
            "shard {shard}'s primary did not"
        );
    }
}
