//! Settings inside a transaction that spans shards: `SET LOCAL` and `SET TRANSACTION` follow
//! the transaction to every shard it reaches; a session-level `SET` made inside it cannot yet,
//! so a statement needing another shard is refused rather than run without it.
//!
//! Users 90_101 and 90_111 on (each with a partner on the other shard), in `users`.

use super::users_on_two_shards;
use crate::support::{one_value, text_rows};

/// `SET LOCAL` and `SET TRANSACTION` run on the backend in use; a shard the transaction
/// reaches later gets them too, so its statements run with the same tenant setting and
/// isolation level.
#[tokio::test]
async fn set_local_follows_the_transaction_to_its_next_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(90_101, true).await;
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    client
        .simple_query("SET LOCAL rv.tag = 'tenant-7'")
        .await
        .unwrap();
    let mut seen = Vec::new();
    for id in [a, b] {
        let sql = format!(
            "SELECT coalesce(current_setting('rv.tag', true), '<unset>') || '/' \
             || current_setting('transaction_isolation') FROM users WHERE user_id = {id}"
        );
        seen.push(one_value(&client, &sql).await);
    }
    client.simple_query("ROLLBACK").await.unwrap();
    let want = Some("tenant-7/repeatable read".to_owned());
    assert_eq!(
        seen,
        vec![want.clone(), want],
        "settings of the transaction on both shards"
    );
}

/// A session-level `SET` inside a transaction is staged until COMMIT; it cannot follow the
/// transaction to a shard that joins later, so the shard the transaction started on sees the
/// value and the statement needing the other shard is refused (0A000), never run without it.
#[tokio::test]
async fn a_session_set_inside_a_transaction_is_refused_on_its_next_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(90_111, true).await;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("SET rv.tag2 = 'in-tx'").await.unwrap();
    // The shard the transaction started on (the SET's) sees it; a statement needing the
    // other shard is refused (a session SET cannot follow the transaction there yet), never
    // run without the setting.
    let mut refused = 0;
    for id in [a, b] {
        let sql =
            format!("SELECT current_setting('rv.tag2', true) FROM users WHERE user_id = {id}");
        match text_rows(&client, &sql).await {
            Ok((rows, _)) => assert_eq!(rows, vec![vec![Some("in-tx".to_owned())]]),
            Err(error) => {
                assert!(
                    error.starts_with("0A000") || error.starts_with("25P02"),
                    "{error}"
                );
                refused += usize::from(error.starts_with("0A000"));
            }
        }
    }
    assert_eq!(refused, 1, "the statement on the other shard is refused");
    client.simple_query("ROLLBACK").await.unwrap();
}

/// A session setting the client made before its transaction is replayed on each backend the
/// transaction takes; that replay (a hidden statement answered with status idle) must not end
/// the transaction's part on the shards it reached first.
#[tokio::test]
async fn a_replayed_session_setting_keeps_every_shard_in_the_transaction() {
    let (_proxy, client, a, b) = users_on_two_shards(90_151, false).await;
    // The SET runs on the default shard (s0): start there, so the shard joined second is the
    // one whose backend has not seen the setting.
    let default_first = crate::routing::shard_of_user(a) == 0;
    let (a, b) = if default_first { (a, b) } else { (b, a) };
    client.simple_query("SET work_mem = '7MB'").await.unwrap();
    client.simple_query("BEGIN").await.unwrap();
    for id in [a, b] {
        let sql = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'replayed')");
        client.simple_query(&sql).await.unwrap();
    }
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(super::stored(crate::harness::cluster(), &[a, b]).await, 2);
    crate::support::reset_users(&client, &[a, b], false).await;
}
