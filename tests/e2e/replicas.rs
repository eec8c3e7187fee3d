//! Reads on replicas: cross-shard reads go to the shards' streaming replicas, a session reads
//! its own writes, and a replica that is down costs clients nothing. `safety` covers what a
//! replica must not serve, `causal` that a write is read at once from any connection.
//!
//! Users 70_000–70_019, 71_000–71_059 and 72_001 (in `users`); table `fl_items` in a cluster of
//! the failover test's own.

mod causal;
mod safety;

use shardgate::local_cluster::BackendAuth;

use crate::harness::{
    OwnCluster, TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas,
    own_cluster, wait_for_replicas,
};

/// Server processes of `uri` other than this one whose last statement contained `text`
/// (statistics counters are flushed lazily; pg_stat_activity is current).
async fn ran(uri: &str, text: &str) -> i64 {
    let client = connect_direct(uri).await;
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE pid <> pg_backend_pid() AND position($1 in query) > 0";
    client.query_one(sql, &[&text]).await.unwrap().get(0)
}

#[tokio::test]
async fn cross_shard_reads_run_on_the_replicas() {
    let cluster = cluster();
    let proxy = TestProxy::start(config_with_map(cluster, &demo_map_with_replicas(cluster))).await;
    let writer = proxy.connect().await;
    let ids: Vec<i64> = (70_000..70_020).collect();
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
    let sql = "SELECT user_id FROM users WHERE user_id BETWEEN 70000 AND 70019";
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
        let marker = "BETWEEN 70000 AND 70019";
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

/// The one table of the failover test's map.
const FL_ITEMS: &str = "{fl_items: {strategy: hash, key: id, key_type: bigint}}";

async fn failover_proxy(own: &OwnCluster) -> TestProxy {
    let mut config = crate::harness::config_with_tables(&own.info, FL_ITEMS);
    // Short enough that the stopped primary's error comes quickly, long enough for a loaded
    // machine to open connections.
    config.pool.checkout_timeout = std::time::Duration::from_secs(5);
    config.replicas.max_lag = std::time::Duration::from_millis(300);
    TestProxy::start(config).await
}

/// Rows 1..=100 as a sorted id list, read across both shards.
async fn read_all(client: &tokio_postgres::Client) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = client
        .query("SELECT id FROM fl_items WHERE id BETWEEN 1 AND 100", &[])
        .await?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort();
    Ok(ids)
}

#[tokio::test]
async fn a_stopped_replica_costs_readers_nothing_and_a_stopped_primary_fails_only_its_shard() {
    use shardgate::local_cluster::StopMode;
    let mut own = own_cluster(2, 1, BackendAuth::ScramSha256);
    let proxy = failover_proxy(&own).await;
    let writer = proxy.connect().await;
    writer
        .simple_query("CREATE TABLE fl_items (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=100).map(|i| format!("({i})")).collect();
    let insert = format!("INSERT INTO fl_items (id) VALUES {}", values.join(", "));
    writer.simple_query(&insert).await.unwrap();
    wait_for_replicas(&own.info).await;
    let all: Vec<i64> = (1..=100).collect();
    lagging_replica_serves_no_reads(&own, &proxy, &writer).await;
    a_causal_read_waits_out_a_paused_replica_then_reads_the_primary(&own, &proxy, &writer).await;
    let reader = proxy.connect().await;
    for round in 0..200 {
        if round == 50 {
            own.cluster.shards_mut()[0].replicas[0]
                .stop_with(StopMode::Immediate)
                .unwrap();
        }
        let ids = read_all(&reader)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(ids, all, "round {round}");
    }
    own.cluster.shards_mut()[1]
        .primary
        .stop_with(StopMode::Immediate)
        .unwrap();
    // Shard s1's replica still serves reads; its primary's writes fail with 08006, s0's work.
    assert_eq!(read_all(&proxy.connect().await).await.unwrap(), all);
    let (on_s0, on_s1) = keys_on_each_shard(&own);
    writer
        .simple_query(&format!("INSERT INTO fl_items (id) VALUES ({on_s0})"))
        .await
        .unwrap();
    let error = writer
        .simple_query(&format!("INSERT INTO fl_items (id) VALUES ({on_s1})"))
        .await
        .unwrap_err();
    assert_eq!(crate::harness::sqlstate(&error), "08006", "{error}");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("s1"), "{message}");
}

/// With replay paused on s0's replica, a row written since is still read: the health check
/// finds the replica lagging and reads of s0 go to its primary until it catches up.
async fn lagging_replica_serves_no_reads(
    own: &OwnCluster,
    proxy: &TestProxy,
    writer: &tokio_postgres::Client,
) {
    let on_s0 = pause_s0_replay_and_write(own, writer).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let reader = proxy.connect().await;
    let sql = format!("SELECT id FROM fl_items WHERE id BETWEEN 1 AND 100 OR id = {on_s0}");
    let rows = reader.query(&sql, &[]).await.unwrap();
    assert_eq!(
        rows.len(),
        101,
        "the row written while the replica lags is read"
    );
    resume_s0_replay_and_delete(own, writer, on_s0).await;
}

/// With replay paused on s0's replica, a read right after a write on s0 (from another
/// connection) waits at most `reads.causal_wait` for the replica, then reads the primary:
/// never a stale row. The same read through a proxy with `consistency: eventual` over the same
/// servers misses the row (proof that the read could have been stale).
async fn a_causal_read_waits_out_a_paused_replica_then_reads_the_primary(
    own: &OwnCluster,
    proxy: &TestProxy,
    writer: &tokio_postgres::Client,
) {
    let mut config = crate::harness::config_with_tables(&own.info, FL_ITEMS);
    for shard in &mut config.databases[0].shard_map.shards {
        shard.consistency = shardgate::config::Consistency::Eventual;
    }
    let eventual = TestProxy::start(config.clone()).await;
    for shard in &mut config.databases[0].shard_map.shards {
        shard.consistency = shardgate::config::Consistency::Global;
    }
    let global = TestProxy::start(config).await;
    // Each proxy builds its federation at its first read that needs it: before the pause, so
    // the replica carries it.
    let (eventual_client, global_client) = (eventual.connect().await, global.connect().await);
    for client in [&eventual_client, &global_client, writer] {
        assert_eq!(federated_ids(client).await, Vec::<i64>::new());
    }
    wait_for_replicas(&own.info).await;
    let before = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    let on_s0 = pause_s0_replay_and_write(own, writer).await;
    let sql = format!("SELECT id FROM fl_items WHERE id = {on_s0}");
    let stale = eventual.connect().await.query(&sql, &[]).await.unwrap();
    assert!(
        stale.is_empty(),
        "an eventual read of the paused replica misses the row"
    );
    // A proxy that saw no write: with `global` it learns the primary's position first.
    let fresh = global.connect().await.query(&sql, &[]).await.unwrap();
    assert_eq!(
        fresh.len(),
        1,
        "a global read through another proxy sees the row"
    );
    // It waits for the replica (unless the health check already took it out of reads for
    // lagging), then reads the primary.
    let reader = proxy.connect().await;
    let rows = reader.query(&sql, &[]).await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the row written while replay is paused is read"
    );
    let after = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    assert!(
        after.causal_fallbacks > before.causal_fallbacks,
        "{after:?}"
    );
    // The same for a read only the federation answers: it runs on the replicas (so the
    // eventual proxy misses the row) unless the causal rules send it to the primaries.
    let replica_reads = eventual.proxy.counters(crate::harness::DATABASE).unwrap();
    let replica_reads = replica_reads.replica_reads;
    assert_eq!(federated_ids(&eventual_client).await, Vec::<i64>::new());
    let counted = eventual.proxy.counters(crate::harness::DATABASE).unwrap();
    assert_eq!(counted.replica_reads, replica_reads + 2, "{counted:?}");
    assert_eq!(federated_ids(&global_client).await, [on_s0]);
    let before = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    assert_eq!(federated_ids(&reader).await, [on_s0]);
    let counted = proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    assert_eq!(
        counted.primary_reads,
        before.primary_reads + 2,
        "{counted:?}"
    );
    // A column added through the causal proxy rebuilds the copy every proxy of this map
    // shares; the paused replica has neither. The eventual proxy's read on the replicas fails
    // before any row, and the primaries' copy answers.
    writer
        .batch_execute("ALTER TABLE fl_items ADD COLUMN note text")
        .await
        .unwrap();
    let with_note = "SELECT id, note, count(*) OVER () FROM fl_items WHERE id > 100";
    assert_eq!(writer.query(with_note, &[]).await.unwrap().len(), 1);
    let rows = eventual_client.query(with_note, &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "answered by the primaries' copy");
    writer
        .batch_execute("ALTER TABLE fl_items DROP COLUMN note")
        .await
        .unwrap();
    resume_s0_replay_and_delete(own, writer, on_s0).await;
}

/// The keys above 100 of `fl_items`, by a read only the federation answers (a window).
async fn federated_ids(client: &tokio_postgres::Client) -> Vec<i64> {
    let sql = "SELECT id, count(*) OVER () FROM fl_items WHERE id > 100 ORDER BY id";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// Pauses replay on s0's replica, then writes a new row on s0 through `writer`; returns its id.
async fn pause_s0_replay_and_write(own: &OwnCluster, writer: &tokio_postgres::Client) -> i64 {
    let replica = connect_direct(&own.info.replicas[0][0]).await;
    replica
        .simple_query("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let (on_s0, _) = keys_on_each_shard(own);
    let insert = format!("INSERT INTO fl_items (id) VALUES ({on_s0})");
    writer.simple_query(&insert).await.unwrap();
    on_s0
}

/// Undoes [`pause_s0_replay_and_write`] and waits until the replicas caught up.
async fn resume_s0_replay_and_delete(
    own: &OwnCluster,
    writer: &tokio_postgres::Client,
    on_s0: i64,
) {
    let replica = connect_direct(&own.info.replicas[0][0]).await;
    replica
        .simple_query("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let delete = format!("DELETE FROM fl_items WHERE id = {on_s0}");
    writer.simple_query(&delete).await.unwrap();
    wait_for_replicas(&own.info).await;
}

/// A new key on shard s0 and one on s1, by the router of the proxy's map.
fn keys_on_each_shard(own: &OwnCluster) -> (i64, i64) {
    let config = crate::harness::config_with_tables(&own.info, FL_ITEMS);
    let router = shardgate::router::Router::new(&config.databases[0].shard_map);
    let shard_of = |id: i64| {
        let sql = format!("SELECT * FROM fl_items WHERE id = {id}");
        match router.route(&router.plan(&sql), &shardgate::router::Params::none(), None) {
            Ok(shardgate::router::Route::Shard(shard)) => shard.0,
            other => panic!("{other:?}"),
        }
    };
    let on = |shard: u32| (1000..).find(|&id| shard_of(id) == shard).unwrap();
    (on(0), on(1))
}

#[tokio::test]
async fn a_session_always_reads_its_own_writes_and_returns_to_replicas_once_they_caught_up() {
    let cluster = cluster();
    let proxy = TestProxy::start(config_with_map(cluster, &demo_map_with_replicas(cluster))).await;
    let client = proxy.connect().await;
    let (low, high) = (71_000, 71_059);
    for id in low..=high {
        let delete = format!("DELETE FROM users WHERE user_id = {id}");
        client.simple_query(&delete).await.unwrap();
    }
    let count = format!("SELECT count(*) FROM users WHERE user_id BETWEEN {low} AND {high}");
    for (done, id) in (low..=high).enumerate() {
        let insert = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'ryw')");
        client.simple_query(&insert).await.unwrap();
        let seen: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
        assert_eq!(seen, done as i64 + 1, "the read right after write {id}");
    }
    // Once every replica has replayed the writes and the checks saw it, reads leave the
    // primaries again.
    wait_for_replicas(cluster).await;
    let marker = format!("BETWEEN {low} AND {high} AND name = 'ryw'");
    let sql = format!("SELECT user_id FROM users WHERE user_id {marker}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let rows = client.simple_query(&sql).await.unwrap();
        assert!(rows.len() > 60);
        let mut served = 0;
        for replicas in &cluster.replicas {
            served += i64::from(ran(&replicas[0], &marker).await > 0);
        }
        if served == cluster.replicas.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replicas serve the session's reads again once they replayed its writes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn single_shard_reads_use_a_replica_and_writes_pipelined_after_them_the_primary() {
    let cluster = cluster();
    let proxy = TestProxy::start(config_with_map(cluster, &demo_map_with_replicas(cluster))).await;
    let writer = proxy.connect().await;
    let id: i64 = 72_001;
    writer
        .simple_query(&format!("DELETE FROM users WHERE user_id = {id}; INSERT INTO users (user_id, name) VALUES ({id}, 'single-replica')"))
        .await
        .unwrap();
    // The writer reads its own row at once, wherever that is served from.
    let row = writer
        .query_one("SELECT name FROM users WHERE user_id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "single-replica");
    wait_for_replicas(cluster).await;
    let reader = proxy.connect().await;
    let marker = "'single-replica' AS marker_72001";
    let simple = format!("SELECT name, {marker} FROM users WHERE user_id = {id}");
    reader.simple_query(&simple).await.unwrap();
    let extended = format!("SELECT name, {marker} FROM users WHERE user_id = $1");
    let row = reader.query_one(&extended, &[&id]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "single-replica");
    let on_replicas: i64 = {
        let mut total = 0;
        for replicas in &cluster.replicas {
            total += ran(&replicas[0], "marker_72001").await;
        }
        total
    };
    assert!(on_replicas > 0, "a replica served the single-shard reads");
    // A write pipelined right behind a replica read goes to the primary.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let read = reader.query_one(&extended, &params);
    let update = "UPDATE users SET name = 'single-primary' WHERE user_id = $1";
    let write = reader.execute(update, &params);
    let (read, write) = tokio::join!(read, write);
    read.unwrap();
    assert_eq!(write.unwrap(), 1);
    let row = reader
        .query_one("SELECT name FROM users WHERE user_id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "single-primary",
        "and is read back at once"
    );
}
