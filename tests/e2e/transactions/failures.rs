//! Failures inside a transaction that spans shards: a shard whose backend cannot be had aborts
//! the whole transaction (status 'E', nothing committed), a lock error keeps its own SQLSTATE,
//! a COMMIT failing on the last shard names the shards that committed, and `COMMIT AND CHAIN`
//! is refused rather than half applied.
//!
//! Users 90_121, 90_131, 90_141, 90_401, 90_511 on (each with a partner on the other shard), in
//! `users`; table `rv_def` (hash on id).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{stored, users_on_two_shards};
use crate::harness::{TestProxy, cluster, sharded_config, sqlstate};
use crate::raw::{Script, raw_login, read_message, sqlstate_of};
use crate::routing::two_users_on_different_shards;
use crate::support::{in_transaction, one_value, proxy_with, reset_users};

/// `COMMIT AND CHAIN` in a transaction spanning shards is not supported yet: refused (0A000),
/// the refusal aborts the transaction, and nothing of it is committed.
#[tokio::test]
async fn commit_and_chain_across_shards_is_refused_and_commits_nothing() {
    let (_proxy, client, a, b) = users_on_two_shards(90_121, false).await;
    client.simple_query("BEGIN").await.unwrap();
    for id in [a, b] {
        client
            .simple_query(&format!(
                "INSERT INTO users (user_id, name) VALUES ({id}, 'chain')"
            ))
            .await
            .unwrap();
    }
    // Not supported across shards yet: refused, and the refusal aborts the transaction.
    let error = client.simple_query("COMMIT AND CHAIN").await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
    client.simple_query("ROLLBACK").await.unwrap();
    let after_rollback = stored(cluster(), &[a, b]).await;
    reset_users(&client, &[a, b], false).await;
    assert_eq!(after_rollback, 0, "nothing half-committed");
}

/// A statement that fails because the next shard's backend cannot be had (pool exhausted,
/// 53300) aborts the transaction as PostgreSQL would: the COMMIT that follows is answered, and
/// commits nothing, not even the write on the shard the transaction started on.
#[tokio::test]
async fn a_transaction_whose_shard_switch_failed_commits_nothing() {
    let cluster = cluster();
    let mut config = sharded_config(cluster);
    config.pool.size = 1;
    config.pool.checkout_timeout = Duration::from_millis(2000);
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_131);
    let setup = proxy.connect().await;
    reset_users(&setup, &[a, b], false).await;
    drop(setup);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = proxy.connect().await;
    // Another client holds shard(b)'s only backend in a transaction.
    let blocker = in_transaction(&proxy, &format!("SELECT 1 FROM users WHERE user_id = {b}")).await;
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'half')"
        ))
        .await
        .unwrap();
    let error = client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({b}, 'half')"
        ))
        .await
        .unwrap_err();
    let code = sqlstate(&error);
    blocker.simple_query("ROLLBACK").await.unwrap();
    // PostgreSQL: the transaction is aborted; COMMIT answers ROLLBACK and nothing stays.
    let commit = client.simple_query("COMMIT").await;
    let kept = stored(cluster, &[a, b]).await;
    let cleanup = proxy.connect().await;
    reset_users(&cleanup, &[a, b], false).await;
    assert_eq!(code, "53300");
    assert!(commit.is_ok(), "{commit:?}");
    assert_eq!(
        kept, 0,
        "nothing of a transaction that failed may be committed"
    );
}

/// The status the client is shown after that failed shard switch is PostgreSQL's 'E' (failed
/// transaction), and the next statement, on the first shard, is refused with 25P02 instead of
/// running outside the transaction; ROLLBACK ends it ('I').
#[tokio::test]
async fn a_failed_shard_switch_leaves_the_transaction_failed() {
    let mut config = sharded_config(cluster());
    config.pool.size = 2;
    config.pool.checkout_timeout = Duration::from_millis(2000);
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_511);
    reset_users(&proxy.connect().await, &[a, b], false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = raw_login(&proxy).await;
    // Both of shard(b)'s backends held by other clients' transactions.
    let mut blockers = Vec::new();
    for _ in 0..2 {
        let sql = format!("SELECT 1 FROM users WHERE user_id = {b}");
        blockers.push(in_transaction(&proxy, &sql).await);
    }
    let mut statuses = Vec::new();
    for sql in [
        "BEGIN".to_owned(),
        format!("INSERT INTO users (user_id, name) VALUES ({a}, 'st')"),
        format!("INSERT INTO users (user_id, name) VALUES ({b}, 'st')"),
        format!("SELECT count(*) FROM users WHERE user_id = {a}"),
        "ROLLBACK".to_owned(),
    ] {
        let query = Script::new().query(&sql);
        stream.write_all(query.bytes()).await.unwrap();
        // Errors by SQLSTATE, rows by value, ReadyForQuery by transaction status.
        let mut seen = Vec::new();
        while let Some((tag, body)) = read_message(&mut stream).await {
            match tag {
                b'E' => seen.push(format!("E{}", sqlstate_of(&body))),
                b'D' => seen.push(format!("D{}", String::from_utf8_lossy(&body[6..]))),
                b'Z' => {
                    seen.push(format!("Z{}", body[0] as char));
                    break;
                }
                _ => {}
            }
        }
        statuses.push(seen.join(" "));
    }
    for blocker in &blockers {
        blocker.simple_query("ROLLBACK").await.unwrap();
    }
    reset_users(&proxy.connect().await, &[a, b], false).await;
    assert_eq!(
        statuses,
        ["ZT", "ZT", "E53300 ZE", "E25P02 ZE", "ZI"],
        "statuses after each statement"
    );
}

/// `FOR UPDATE NOWAIT` failing (55P03 lock_not_available) inside a transaction spanning shards
/// keeps its 55P03: only a statement the deadlock detector cancels becomes 40P01
/// (`spanning::deadlock_report`).
#[tokio::test]
async fn a_nowait_failure_in_a_spanning_transaction_keeps_55p03() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let (a, b) = two_users_on_different_shards(90_141);
    let setup = proxy.connect().await;
    reset_users(&setup, &[a, b], true).await;
    let lock = format!("SELECT 1 FROM users WHERE user_id = {a} FOR UPDATE");
    let holder = in_transaction(&proxy, &lock).await;
    let client = in_transaction(&proxy, &format!("SELECT 1 FROM users WHERE user_id = {b}")).await;
    let error = client
        .simple_query(&format!(
            "SELECT 1 FROM users WHERE user_id = {a} FOR UPDATE NOWAIT"
        ))
        .await
        .unwrap_err();
    client.simple_query("ROLLBACK").await.unwrap();
    holder.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(sqlstate(&error), "55P03", "{error:?}");
}

/// A COMMIT failing on the shard in use (a deferred constraint; its COMMIT is the client's
/// own, run after the parked shard was prepared) keeps the server's SQLSTATE, and the
/// prepared shard rolls back with it: nothing is committed anywhere.
#[tokio::test]
async fn a_commit_failing_on_the_last_shard_commits_nothing_anywhere() {
    let proxy = proxy_with("rv_def: {strategy: hash, key: id, key_type: bigint}").await;
    let client = proxy.connect().await;
    client
        .simple_query("DROP TABLE IF EXISTS rv_def")
        .await
        .unwrap();
    client
        .simple_query(
            "CREATE TABLE rv_def (id bigint NOT NULL, code int NOT NULL, \
             UNIQUE (id, code) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .unwrap();
    // Two ids on different shards, by the users table's placement (same hash ring).
    let (a, b) = two_users_on_different_shards(90_401);
    client.simple_query("BEGIN").await.unwrap();
    for sql in [
        format!("INSERT INTO rv_def (id, code) VALUES ({a}, 1)"),
        format!("INSERT INTO rv_def (id, code) VALUES ({b}, 1)"),
        format!("INSERT INTO rv_def (id, code) VALUES ({b}, 1)"),
    ] {
        client.simple_query(&sql).await.unwrap();
    }
    let error = client.simple_query("COMMIT").await.unwrap_err();
    let db = error.as_db_error().unwrap();
    let count = one_value(
        &client,
        &format!("SELECT count(*) FROM rv_def WHERE id = {a}"),
    )
    .await;
    assert_eq!(db.code().code(), "23505");
    assert_eq!(count.as_deref(), Some("0"), "shard of {a} rolled back too");
}
