//! Cycles of lock waits across shards (`control::deadlock`): two transactions locking rows on
//! two shards in opposite orders cost exactly one of them (40P01 naming the cycle) and the
//! other commits, through one proxy or two; a long lock wait without a cycle is left to wait,
//! and a client's own `lock_timeout` still applies.
//!
//! Users (in `users`) 74_001, 74_101, 74_201 on, each with a partner on the other shard.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::{TestProxy, cluster, sharded_config, sqlstate};
use crate::routing::two_users_on_different_shards;
use crate::support::{in_transaction, reset_users};

const UPDATE: &str = "UPDATE users SET name = name || '+' WHERE user_id = $1";

/// `first` has locked `a` and `second` has locked `b` (rows on different shards) in open
/// transactions; each now updates the other's row and commits (or rolls back on error).
/// Returns each one's outcome, the SQLSTATE and detail of an error.
async fn cross(first: Client, second: Client, a: i64, b: i64) -> [Result<(), (String, String)>; 2] {
    let crossing = |client: Client, id: i64| async move {
        let outcome = match client.execute(UPDATE, &[&id]).await {
            Ok(_) => client.simple_query("COMMIT").await.map(|_| ()),
            Err(e) => {
                client.simple_query("ROLLBACK").await.unwrap();
                Err(e)
            }
        };
        outcome.map_err(|e| {
            let detail = e.as_db_error().and_then(|db| db.detail()).unwrap_or("");
            (sqlstate(&e), detail.to_owned())
        })
    };
    let both = async { tokio::join!(crossing(first, b), crossing(second, a)) };
    let (one, other) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("a cross-shard lock cycle must not hang");
    [one, other]
}

/// Each client's transaction has updated its own row.
async fn holding(clients: [&Client; 2], ids: [i64; 2]) {
    for (client, id) in clients.into_iter().zip(ids) {
        client.simple_query("BEGIN").await.unwrap();
        client.execute(UPDATE, &[&id]).await.unwrap();
    }
}

/// Exactly one of `outcomes` is a 40P01 naming a cycle across shards; the other committed.
fn one_victim(outcomes: &[Result<(), (String, String)>; 2]) {
    let victims: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(victims.len(), 1, "{outcomes:?}");
    let (code, detail) = victims[0];
    assert_eq!(code, "40P01", "{outcomes:?}");
    assert!(
        detail.contains("cycle") && detail.contains("on shard"),
        "{detail}"
    );
}

/// The names of `ids` now, read through `client`.
async fn names(client: &Client, ids: [i64; 2]) -> Vec<String> {
    let mut names = Vec::new();
    for id in ids {
        let row = client
            .query_one("SELECT name FROM users WHERE user_id = $1", &[&id])
            .await
            .unwrap();
        names.push(row.get(0));
    }
    names
}

/// Two transactions, one through `one` and one through `other`, lock users from `first` on
/// two shards in opposite orders: exactly one is the victim, and the survivor's two updates
/// stay while the victim's are gone (each row got exactly one `+`).
async fn opposite_lock_orders_cost_one(one: &TestProxy, other: &TestProxy, first: i64) {
    let setup = one.connect().await;
    let (a, b) = two_users_on_different_shards(first);
    reset_users(&setup, &[a, b], true).await;
    let (first, second) = (one.connect().await, other.connect().await);
    holding([&first, &second], [a, b]).await;
    let outcomes = cross(first, second, a, b).await;
    one_victim(&outcomes);
    assert_eq!(
        names(&setup, [a, b]).await,
        ["rv+", "rv+"].map(str::to_owned)
    );
}

#[tokio::test]
async fn opposite_lock_orders_on_two_shards_cost_exactly_one_transaction() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    opposite_lock_orders_cost_one(&proxy, &proxy, 74_001).await;
}

#[tokio::test]
async fn a_cycle_through_two_proxies_costs_exactly_one_transaction() {
    let one = TestProxy::start(sharded_config(cluster())).await;
    let other = TestProxy::start(sharded_config(cluster())).await;
    opposite_lock_orders_cost_one(&one, &other, 74_101).await;
}

/// Without a cycle, a transaction spanning shards waits for a lock as long as it takes (no
/// bound of the proxy's), unless the client set `lock_timeout` itself.
#[tokio::test]
async fn a_long_lock_wait_is_not_a_deadlock_and_the_clients_lock_timeout_applies() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let setup = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(74_201);
    reset_users(&setup, &[a, b], true).await;
    let holder = in_transaction(
        &proxy,
        &format!("UPDATE users SET name = 'held' WHERE user_id = {a}"),
    )
    .await;
    // The client's own bound: its 55P03, untouched.
    let bounded = in_transaction(&proxy, "SET LOCAL lock_timeout = '300ms'").await;
    bounded.execute(UPDATE, &[&b]).await.unwrap();
    let error = bounded.execute(UPDATE, &[&a]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "55P03", "{error:?}");
    bounded.simple_query("ROLLBACK").await.unwrap();
    // No bound: it waits until the holder commits, seconds later, then goes on.
    let waiting = proxy.connect().await;
    waiting.simple_query("BEGIN").await.unwrap();
    waiting.execute(UPDATE, &[&b]).await.unwrap();
    let wait = tokio::spawn(async move {
        let updated = waiting.execute(UPDATE, &[&a]).await;
        let committed = waiting.simple_query("COMMIT").await;
        (updated.map_err(|e| format!("{e:?}")), committed.is_ok())
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !wait.is_finished(),
        "the wait ended while the lock was held"
    );
    holder.simple_query("COMMIT").await.unwrap();
    let (updated, committed) = wait.await.unwrap();
    assert_eq!(updated, Ok(1));
    assert!(committed);
    assert_eq!(
        names(&setup, [a, b]).await,
        ["held+", "rv+"].map(str::to_owned)
    );
}

/// A savepoint opened before the transaction spans shards, then rolled back to, takes the tag
/// of the first shard's backend with it (`pg_locks` no longer shows it as spanning): the
/// proxy still knows that backend as the transaction's, and breaks the cycle.
#[tokio::test]
async fn a_cycle_after_a_rollback_to_a_savepoint_from_before_spanning_is_broken() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let setup = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(74_301);
    reset_users(&setup, &[a, b], true).await;
    let (first, second) = (proxy.connect().await, proxy.connect().await);
    first.simple_query("BEGIN").await.unwrap();
    first
        .simple_query("SAVEPOINT before_spanning")
        .await
        .unwrap();
    first.execute(UPDATE, &[&a]).await.unwrap();
    first.execute(UPDATE, &[&b]).await.unwrap();
    first
        .simple_query("ROLLBACK TO SAVEPOINT before_spanning")
        .await
        .unwrap();
    first.execute(UPDATE, &[&a]).await.unwrap();
    second.simple_query("BEGIN").await.unwrap();
    second.execute(UPDATE, &[&b]).await.unwrap();
    let outcomes = cross(first, second, a, b).await;
    one_victim(&outcomes);
    assert_eq!(
        names(&setup, [a, b]).await,
        ["rv+", "rv+"].map(str::to_owned)
    );
}
