//! When a replica may serve a read: a SELECT that writes through a function or takes a lock is
//! not a read (it runs on the primary, and its session reads its own write), a SERIALIZABLE
//! session still reads, and a replica cut off from its primary stops serving reads once it
//! falls behind.
//!
//! Functions `rv_rename`, `rv_rename2` on every primary; users 90_201 on, 90_211, 90_221 on and
//! 90_501 on (with a partner on the other shard), in `users`; table `rv_lag` in a cluster of
//! the test's own.

use std::time::Duration;

use crate::harness::{
    TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas, wait_for_replicas,
};
use crate::routing::{shard_of_user, two_users_on_different_shards};
use crate::support::{insert_ids, one_value, reset_users, text_rows};

/// A proxy reading from replicas whose health checks tolerate a loaded machine.
async fn replica_proxy() -> TestProxy {
    let cluster = cluster();
    let mut config = config_with_map(cluster, &demo_map_with_replicas(cluster));
    config.replicas.check_interval = Duration::from_secs(1);
    TestProxy::start(config).await
}

/// `name(id, n)`: a SQL function that updates `users`, on every primary.
async fn create_writing_function(name: &str) {
    for uri in &cluster().primaries {
        connect_direct(uri)
            .await
            .simple_query(&format!(
                "CREATE OR REPLACE FUNCTION {name}(id bigint, n text) RETURNS bigint \
                 LANGUAGE sql AS $$ UPDATE users SET name = n WHERE user_id = id RETURNING user_id $$"
            ))
            .await
            .unwrap();
    }
}

/// A write done by a function called from a SELECT (`SELECT rv_rename(…)`) counts as a write:
/// the session's next read of that shard sees it although the replica has not replayed it.
#[tokio::test]
async fn a_write_through_a_function_is_read_back_by_its_session() {
    let proxy = replica_proxy().await;
    create_writing_function("rv_rename").await;
    // A user on the default shard, where statements naming no map table run.
    let user = (90_201..).find(|&id| shard_of_user(id) == 0).unwrap();
    reset_users(&proxy.connect().await, &[user], true).await;
    wait_for_replicas(cluster()).await;
    // A session that has not written yet.
    let client = proxy.connect().await;
    let replica = connect_direct(&cluster().replicas[0][0]).await;
    replica
        .simple_query("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let outcome = async {
        let renamed = one_value(&client, &format!("SELECT rv_rename({user}, 'after')")).await;
        let name = one_value(
            &client,
            &format!("SELECT name FROM users WHERE user_id = {user}"),
        )
        .await;
        (renamed, name)
    }
    .await;
    replica
        .simple_query("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        (Some(user.to_string()), Some("after".to_owned())),
        "the session reads the row it just updated"
    );
}

/// A single-shard SELECT that calls a writing function with the shard key in WHERE runs where
/// it can write: it succeeds instead of failing on a replica with 25006 (read-only
/// transaction).
#[tokio::test]
async fn a_keyed_select_calling_a_writing_function_does_not_fail_on_a_replica() {
    let proxy = replica_proxy().await;
    create_writing_function("rv_rename2").await;
    let client = proxy.connect().await;
    let user = 90_211;
    reset_users(&client, &[user], true).await;
    wait_for_replicas(cluster()).await;
    let reader = proxy.connect().await;
    let outcome = text_rows(
        &reader,
        &format!("SELECT rv_rename2(user_id, 'x') FROM users WHERE user_id = {user}"),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// `Router::may_write` takes none of these statements for a read (reads go to replicas, and
/// writes done by them would not be tracked for read-your-writes).
#[test]
fn statements_that_write_are_never_taken_for_reads() {
    use shardgate::router::Router;
    let config = crate::harness::demo_config_for_unit();
    let router = Router::new(&config);
    let writes = [
        "SELECT nextval('users_seq')",
        "SELECT rv_rename(user_id, 'x') FROM users WHERE user_id = 1",
        "CALL rv_proc(1)",
        "WITH u AS (UPDATE users SET name = 'x' WHERE user_id = 1 RETURNING *) SELECT * FROM u",
        "EXPLAIN ANALYZE DELETE FROM users WHERE user_id = 1",
        "SELECT * INTO rv_copy FROM users WHERE user_id = 1",
        "SELECT * FROM users WHERE user_id = 1 FOR NO KEY UPDATE",
        "SELECT * FROM users WHERE user_id = 1 FOR KEY SHARE",
        "COPY users FROM STDIN",
        "SELECT lo_create(0)",
        "SELECT pg_advisory_xact_lock(1)",
    ];
    let missed: Vec<&str> = writes
        .iter()
        .copied()
        .filter(|sql| !router.may_write(sql, true))
        .collect();
    assert!(missed.is_empty(), "taken for reads: {missed:#?}");
}

/// A session advisory lock taken by a single-shard SELECT (`pg_try_advisory_lock(…)
/// … WHERE key = …`) pins, so it runs on the primary, not a replica.
#[tokio::test]
async fn an_advisory_lock_in_a_keyed_select_runs_on_the_primary() {
    let proxy = replica_proxy().await;
    let user = (90_221..).find(|&id| shard_of_user(id) == 0).unwrap();
    reset_users(&proxy.connect().await, &[user], true).await;
    wait_for_replicas(cluster()).await;
    let client = proxy.connect().await;
    let got = one_value(
        &client,
        &format!("SELECT pg_try_advisory_lock(user_id) FROM users WHERE user_id = {user}"),
    )
    .await;
    let other = connect_direct(&cluster().primaries[0]).await;
    let also: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&user])
        .await
        .unwrap()
        .get(0);
    if also {
        other
            .simple_query(&format!("SELECT pg_advisory_unlock({user})"))
            .await
            .unwrap();
    }
    // And a write of the pinned session afterwards.
    let write = text_rows(
        &client,
        &format!("UPDATE users SET name = 'locked' WHERE user_id = {user}"),
    )
    .await;
    assert_eq!(got.as_deref(), Some("t"));
    assert!(write.is_ok(), "{write:?}");
    assert!(
        !also,
        "the lock the session holds must exclude other sessions on the primary"
    );
}

/// A client whose default isolation is SERIALIZABLE (a common setting, also via ALTER ROLE …
/// SET) still reads outside transactions, single-shard and cross-shard alike: a hot standby
/// refuses serializable mode, so the proxy does not let such a read fail there.
#[tokio::test]
async fn a_serializable_session_still_reads_outside_transactions() {
    let proxy = replica_proxy().await;
    let (a, b) = two_users_on_different_shards(90_501);
    reset_users(&proxy.connect().await, &[a, b], true).await;
    wait_for_replicas(cluster()).await;
    let client = proxy.connect().await;
    client
        .simple_query("SET default_transaction_isolation = 'serializable'")
        .await
        .unwrap();
    let single = text_rows(
        &client,
        &format!("SELECT name FROM users WHERE user_id = {a}"),
    )
    .await;
    let merged = text_rows(
        &client,
        &format!("SELECT count(*) FROM users WHERE user_id IN ({a}, {b})"),
    )
    .await;
    assert!(
        single.is_ok() && merged.is_ok(),
        "single: {single:?}\nmerged: {merged:?}"
    );
}

/// A replica whose WAL receiver has stopped (network cut, primary_conninfo broken) has
/// replayed everything it received, so receive and replay positions agree; it must still leave
/// reads once it is more than `replicas.max_lag` behind its primary, so sessions that did not
/// write read the rows written since.
#[tokio::test]
async fn reads_stay_fresh_when_a_replica_is_cut_off_from_its_primary() {
    let own = crate::harness::own_cluster(2, 1, shardgate::local_cluster::BackendAuth::ScramSha256);
    let info = own.info.clone();
    let tables = "{rv_lag: {strategy: hash, key: id, key_type: bigint}}";
    let mut config = crate::harness::config_with_tables(&info, tables);
    config.replicas.max_lag = Duration::from_secs(1);
    config.replicas.check_interval = Duration::from_millis(500);
    let proxy = TestProxy::start(config).await;
    let writer = proxy.connect().await;
    writer
        .simple_query("CREATE TABLE rv_lag (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    insert_ids(&writer, "rv_lag", 1..=10).await;
    wait_for_replicas(&info).await;
    // Cut s0's replica off from its primary.
    let admin = connect_direct(&own.cluster.shards()[0].replicas[0].superuser_uri()).await;
    admin
        .simple_query("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .unwrap();
    admin.simple_query("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    insert_ids(&writer, "rv_lag", 11..=40).await;
    // Well past max_lag and several checks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reader = proxy.connect().await;
    let (rows, _) = text_rows(&reader, "SELECT count(*) FROM rv_lag")
        .await
        .unwrap();
    let state = admin
        .query_one(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
             (SELECT count(*) FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .unwrap();
    let (receive, replay, receivers): (Option<String>, Option<String>, i64) =
        (state.get(0), state.get(1), state.get(2));
    assert_eq!(
        rows[0][0].as_deref(),
        Some("40"),
        "rows written 5 s ago (max_lag 1 s) are read; replica receive {receive:?} replay \
         {replay:?}, wal receivers {receivers}"
    );
}
