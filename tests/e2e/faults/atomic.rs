//! Atomic commit across shards (`transactions.atomic`, the default), broken for real: the
//! coordinator's COMMIT refused, a prepared shard killed before it heard the decision, the
//! proxy gone in the middle of a COMMIT, and a prepared transaction nobody decided. Every
//! transaction ends committed on all of its shards or on none, and recovery (here, of a
//! second proxy) finishes what the first one left.

use std::collections::BTreeSet;
use std::time::Duration;

use shardgate::local_cluster::BackendAuth;

use super::two_shard_transaction;
use super::{ProxyPanics, at_commit_trigger, ids_on, kill_postmaster, restart, stored_ids};
use crate::harness::{TestProxy, config_with_tables, connect_direct, own_cluster};

/// Prepared transactions of shardgate's on the server at `uri`.
pub(super) async fn prepared_on(uri: &str) -> i64 {
    let client = connect_direct(uri).await;
    let sql = "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'shardgate:%'";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits (bounded) until recovery left no prepared transaction on any primary.
pub(super) async fn until_recovered(primaries: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = 0;
        for uri in primaries {
            left += prepared_on(uri).await;
        }
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} prepared transactions left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_across_shards_ends_everywhere_or_nowhere_whatever_breaks() {
    let panics = ProxyPanics::watch();
    let mut own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let mut config = config_with_tables(
        &own.info,
        "{fa_items: {strategy: hash, key: id, key_type: bigint}}",
    );
    config.transactions.recovery_interval = Duration::from_millis(200);
    config.transactions.recover_after = Duration::from_millis(500);
    let proxy = TestProxy::start(config.clone()).await;
    let setup = proxy.connect().await;
    setup
        .batch_execute("CREATE TABLE fa_items (id bigint PRIMARY KEY, note text)")
        .await
        .unwrap();
    connect_direct(&own.info.primaries[1])
        .await
        .batch_execute(&at_commit_trigger("fa_items", 2))
        .await
        .unwrap();
    let (on_s0, on_s1) = (
        ids_on(&config, "fa_items", 0, 3),
        ids_on(&config, "fa_items", 1, 3),
    );
    let mut expected = BTreeSet::new();
    // The CREATE TABLE above (on both shards) was an atomic commit too.
    let counters = || proxy.proxy.counters(crate::harness::DATABASE).unwrap();
    let before = counters().atomic_commits;

    // 1. The coordinator (s1) refuses the COMMIT: s0's prepared part rolls back too.
    let client = proxy.connect().await;
    two_shard_transaction(
        &client,
        "fa_items",
        [(on_s0[0], "ok"), (on_s1[0], "refuse")],
    )
    .await;
    let error = client.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(super::code_of(&error), "23514", "{error:?}");
    assert_eq!(
        prepared_on(&own.info.primaries[0]).await,
        0,
        "s0 rolled back at once"
    );
    assert_eq!(stored_ids(&own.info.primaries, "fa_items").await, expected);

    // 2. s0 (prepared) is killed while s1 commits: the client hears COMMIT (the decision is
    //    s1's commit), and once s0 is back, recovery commits its part.
    two_shard_transaction(&client, "fa_items", [(on_s0[1], "ok"), (on_s1[1], "slow")]).await;
    let committing = tokio::spawn(async move {
        let outcome = client.batch_execute("COMMIT").await;
        (client, outcome)
    });
    tokio::time::sleep(Duration::from_millis(700)).await; // s0 prepared, s1 in pg_sleep
    let s0 = &mut own.cluster.shards_mut()[0].primary;
    tokio::task::block_in_place(|| kill_postmaster(s0));
    let (client, outcome) = committing.await.unwrap();
    outcome.expect("the decision committed: the client is told COMMIT");
    tokio::task::block_in_place(|| restart(s0));
    until_recovered(&own.info.primaries).await;
    expected.extend([on_s0[1], on_s1[1]]);
    assert_eq!(stored_ids(&own.info.primaries, "fa_items").await, expected);
    drop(client);
    let stats = counters();
    assert_eq!(
        stats.atomic_commits - before,
        2,
        "both decisions were recorded: {stats:?}"
    );

    // 3. The proxy is gone in the middle of a COMMIT (s0 prepared, s1 committing): a second
    //    proxy's recovery ends s0's part as s1's commit decided.
    let client = proxy.connect().await;
    two_shard_transaction(&client, "fa_items", [(on_s0[2], "ok"), (on_s1[2], "slow")]).await;
    let committing = tokio::spawn(async move { client.batch_execute("COMMIT").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(proxy);
    committing.abort();
    let second = TestProxy::start(config.clone()).await;
    until_recovered(&own.info.primaries).await;
    expected.extend([on_s0[2], on_s1[2]]);
    assert_eq!(stored_ids(&own.info.primaries, "fa_items").await, expected);

    // 4. A prepared transaction of shardgate's that no coordinator decided (its proxy died
    //    before recording the decision): recovery rolls it back.
    let orphan = on_s0[0];
    let s0 = connect_direct(&own.info.primaries[0]).await;
    s0.batch_execute(&format!(
        "BEGIN; INSERT INTO fa_items (id, note) VALUES ({orphan}, 'orphan'); \
         PREPARE TRANSACTION 'shardgate:00000000000000aa:s1:s0'"
    ))
    .await
    .unwrap();
    until_recovered(&own.info.primaries).await;
    assert_eq!(stored_ids(&own.info.primaries, "fa_items").await, expected);
    drop(second);

    // 5. A shard that allows no prepared transactions makes the proxy not ready, and says why.
    let s1 = &mut own.cluster.shards_mut()[1].primary;
    let direct = connect_direct(&own.info.primaries[1]).await;
    direct
        .batch_execute("ALTER SYSTEM SET max_prepared_transactions = 0")
        .await
        .unwrap();
    tokio::task::block_in_place(|| restart(s1));
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let third = TestProxy::start(config).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = crate::operations::http_get(&third, "/ready").await;
        if status == 503 && body.contains("max_prepared_transactions") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("/s1: max_prepared_transactions is 0"),
        "{body}"
    );
    panics.assert_none();
}
