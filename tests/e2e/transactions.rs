//! Transactions that span shards: one backend per shard, committed or rolled back together
//! (through the simple and the extended protocol); an error anywhere aborts all of it; a client
//! that leaves leaves nothing open. `settings` covers SET inside such a transaction, `failures`
//! the errors that end one, `deadlocks` cycles of lock waits across shards.
//!
//! Users (in `users`) 73_001, 75_001, 90_411, 90_421 and 90_431 on, each with a partner on
//! the other shard; the submodules name theirs.

mod deadlocks;
mod failures;
mod implicit;
mod savepoints;
mod settings;
mod spread;

use std::time::Duration;

use crate::harness::{ClusterInfo, TestProxy, cluster, connect_direct, sharded_config, sqlstate};
use crate::routing::two_users_on_different_shards;
use crate::support::{open_transactions, reset_users};

/// How many of `ids` exist, counted on every shard directly.
async fn stored(cluster: &ClusterInfo, ids: &[i64]) -> i64 {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT count(*) FROM users WHERE user_id IN ({})",
        list.join(", ")
    );
    let mut total = 0;
    for uri in &cluster.primaries {
        let client = connect_direct(uri).await;
        total += client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0);
    }
    total
}

/// A proxy over the demo map, a client through it, and two users from `first` on that live on
/// different shards, present (`present`) or absent.
async fn users_on_two_shards(
    first: i64,
    present: bool,
) -> (TestProxy, tokio_postgres::Client, i64, i64) {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(first);
    reset_users(&client, &[a, b], present).await;
    (proxy, client, a, b)
}

async fn delete(client: &tokio_postgres::Client, ids: &[i64]) {
    for id in ids {
        client
            .execute("DELETE FROM users WHERE user_id = $1", &[id])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_transaction_spanning_shards_commits_or_rolls_back_everywhere() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let mut client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(73_001);
    delete(&client, &[a, b]).await;
    let insert = "INSERT INTO users (user_id, name) VALUES ($1, 'span')";
    // Rolled back: neither row stays.
    let tx = client.transaction().await.unwrap();
    tx.execute(insert, &[&a]).await.unwrap();
    tx.execute(insert, &[&b]).await.unwrap();
    let seen: i64 = tx
        .query_one("SELECT count(*) FROM users WHERE user_id = $1", &[&a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 1,
        "back on the first shard, the transaction sees its own row"
    );
    tx.rollback().await.unwrap();
    assert_eq!(stored(cluster, &[a, b]).await, 0);
    // Committed: both rows, through the simple protocol too.
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO users (user_id, name) VALUES ({a}, 'span')"
        ))
        .await
        .unwrap();
    client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({b}, 'span')"
        ))
        .await
        .unwrap();
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(stored(cluster, &[a, b]).await, 2);
    // An error on the second shard aborts the whole transaction; COMMIT rolls back.
    delete(&client, &[a, b]).await;
    client.simple_query("BEGIN").await.unwrap();
    client.execute(insert, &[&a]).await.unwrap();
    client.execute(insert, &[&b]).await.unwrap();
    let duplicate = client.execute(insert, &[&b]).await.unwrap_err();
    assert_eq!(sqlstate(&duplicate), "23505");
    let back = client.execute(insert, &[&(a + 1000)]).await.unwrap_err();
    assert_eq!(sqlstate(&back), "25P02", "{back}");
    let messages = client.simple_query("COMMIT").await.unwrap();
    assert!(matches!(
        messages.last(),
        Some(tokio_postgres::SimpleQueryMessage::CommandComplete(_))
    ));
    assert_eq!(
        stored(cluster, &[a, b]).await,
        0,
        "nothing of the failed transaction stays"
    );
}

#[tokio::test]
async fn cross_shard_reads_inside_a_transaction_see_its_own_writes() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let mut client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(75_001);
    delete(&client, &[a, b]).await;
    let count_sql = "SELECT count(*) FROM users WHERE user_id = ANY($1)";
    let ids = vec![a, b];
    // A cross-shard read as the transaction's first statement, then writes and reads again.
    let tx = client.transaction().await.unwrap();
    let before: i64 = tx.query_one(count_sql, &[&ids]).await.unwrap().get(0);
    assert_eq!(before, 0);
    for id in [a, b] {
        tx.execute(
            "INSERT INTO users (user_id, name) VALUES ($1, 'tx-read')",
            &[&id],
        )
        .await
        .unwrap();
    }
    let during: i64 = tx.query_one(count_sql, &[&ids]).await.unwrap().get(0);
    assert_eq!(
        during, 2,
        "the read sees the transaction's uncommitted rows on both shards"
    );
    tx.rollback().await.unwrap();
    assert_eq!(stored(cluster, &[a, b]).await, 0);
    // Simple protocol: a write on one shard, a merged read over both, COMMIT.
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'tx-read')"
        ))
        .await
        .unwrap();
    let rows = client
        .simple_query(&format!(
            "SELECT user_id FROM users WHERE user_id IN ({a}, {b}) ORDER BY user_id"
        ))
        .await
        .unwrap();
    let seen = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(seen, 1);
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(stored(cluster, &[a, b]).await, 1);
    delete(&client, &[a, b]).await;
}

/// A client that disconnects in the middle of a transaction spanning shards leaves no backend
/// in a transaction and no row behind.
#[tokio::test]
async fn a_client_leaving_a_spanning_transaction_leaves_nothing_behind() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let (a, b) = two_users_on_different_shards(90_411);
    reset_users(&proxy.connect().await, &[a, b], false).await;
    {
        let client = proxy.connect().await;
        client.simple_query("BEGIN").await.unwrap();
        for id in [a, b] {
            client
                .simple_query(&format!(
                    "INSERT INTO users (user_id, name) VALUES ({id}, 'gone')"
                ))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = open_transactions("'gone'").await;
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(stored(cluster(), &[a, b]).await, 0);
}

/// COMMIT and ROLLBACK sent through the extended protocol (as pgjdbc and tokio-postgres
/// `execute("COMMIT")` do) end every shard of the transaction.
#[tokio::test]
async fn extended_protocol_commit_and_rollback_end_every_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(90_421, false).await;
    let insert = "INSERT INTO users (user_id, name) VALUES ($1, 'ext')";
    for (end, want) in [("ROLLBACK", 0), ("COMMIT", 2)] {
        client.execute("BEGIN", &[]).await.unwrap();
        client.execute(insert, &[&a]).await.unwrap();
        client.execute(insert, &[&b]).await.unwrap();
        client.execute(end, &[]).await.unwrap();
        assert_eq!(stored(cluster(), &[a, b]).await, want, "{end}");
    }
    reset_users(&client, &[a, b], false).await;
}

/// Multi-statement simple queries naming two shards: refused or all applied, never half.
#[tokio::test]
async fn a_multi_statement_query_over_two_shards_is_refused_or_applied_whole() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_431);
    for sql in [
        format!(
            "BEGIN; INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             INSERT INTO users (user_id, name) VALUES ({b}, 'm'); COMMIT"
        ),
        format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             INSERT INTO users (user_id, name) VALUES ({b}, 'm')"
        ),
        format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             SELECT count(*) FROM users WHERE user_id IN ({a}, {b})"
        ),
    ] {
        reset_users(&client, &[a, b], false).await;
        let outcome = client.simple_query(&sql).await;
        let kept = stored(cluster(), &[a, b]).await;
        match outcome {
            Ok(_) => assert_eq!(kept, if sql.contains("SELECT") { 1 } else { 2 }, "{sql}"),
            Err(e) => assert_eq!((sqlstate(&e), kept), ("0A000".to_owned(), 0), "{sql}: {e}"),
        }
    }
    reset_users(&client, &[a, b], false).await;
}

/// `SHOW TRANSACTIONS` lists a prepared transaction of shardgate's that recovery left in place
/// (too recent to touch), with its coordinator and why it is there.
#[tokio::test]
async fn show_transactions_lists_prepared_transactions_in_doubt() {
    use crate::operations::{console, field, rows, with_admin};
    let cluster = cluster();
    let mut config = sharded_config(cluster);
    with_admin(&mut config);
    config.transactions.recovery_interval = Duration::from_millis(100);
    config.transactions.recover_after = Duration::from_secs(600);
    let proxy = TestProxy::start(config).await;
    let s0 = connect_direct(&cluster.primaries[0]).await;
    let gid = "shardgate:00000000000000bb:s1:s0";
    s0.batch_execute(&format!("BEGIN; PREPARE TRANSACTION '{gid}'"))
        .await
        .unwrap();
    let admin = console(&proxy).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = rows(&admin, "SHOW TRANSACTIONS").await;
        let ours: Vec<_> = (listed.into_iter())
            .filter(|row| field(row, "transaction") == gid)
            .collect();
        if !ours.is_empty() || std::time::Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = s0
        .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
        .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(field(&listed[0], "shard"), "s0");
    assert_eq!(field(&listed[0], "coordinator"), "s1");
    assert!(
        field(&listed[0], "state").starts_with("recent"),
        "{listed:?}"
    );
}
