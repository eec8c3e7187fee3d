//! Settings inside a transaction that spans shards: `SET LOCAL`, `SET TRANSACTION` and
//! session-level `SET` follow the transaction to every shard it reaches, parked ones included.
//!
//! Users 90_101 and 90_111 on (each with a partner on the other shard), in `users`.

use super::users_on_two_shards;
use crate::support::one_value;

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

/// What `rv.tag2` reads as on the shard of user `id` (`<unset>` when never set).
async fn tag_on(client: &tokio_postgres::Client, id: i64) -> String {
    let sql = format!(
        "SELECT coalesce(nullif(current_setting('rv.tag2', true), ''), '<unset>') \
         FROM users WHERE user_id = {id}"
    );
    one_value(client, &sql).await.unwrap()
}

/// The server process serving user `id`'s shard in the open transaction.
async fn pid_on(client: &tokio_postgres::Client, id: i64) -> i32 {
    let sql = format!("SELECT pg_backend_pid() FROM users WHERE user_id = {id}");
    one_value(client, &sql).await.unwrap().parse().unwrap()
}

/// Waits until none of `pids` is connected to its shard any more (the proxy closes the
/// backends of a transaction that spanned shards with a session-level SET, so no other
/// client inherits the setting); panics after 10 s.
async fn wait_until_closed(pids: &[i32]) {
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})",
        list.join(", ")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut open = 0;
        for uri in &crate::harness::cluster().primaries {
            let direct = crate::harness::connect_direct(uri).await;
            open += direct.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0);
        }
        if open == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} of {pids:?} still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A session-level `SET` (and `RESET`) inside a transaction follows it to every shard: the
/// shard it reaches later gets it, a shard already parked in it runs it too, and the session
/// keeps it after COMMIT (or drops it after ROLLBACK) wherever it runs next. The backends of
/// the transaction are closed afterwards, so the setting never reaches another client.
#[tokio::test]
async fn a_session_set_inside_a_transaction_follows_it_to_every_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(90_111, true).await;
    for commit in [false, true] {
        client.simple_query("BEGIN").await.unwrap();
        client.simple_query("SET rv.tag2 = 'in-tx'").await.unwrap();
        let pids = vec![pid_on(&client, a).await, pid_on(&client, b).await];
        assert_eq!(tag_on(&client, a).await, "in-tx", "the first shard");
        assert_eq!(tag_on(&client, b).await, "in-tx", "the shard reached later");
        // Now both shards are in the transaction, one of them parked.
        client
            .simple_query("SET rv.tag2 = 'spanning'")
            .await
            .unwrap();
        assert_eq!(tag_on(&client, a).await, "spanning");
        assert_eq!(tag_on(&client, b).await, "spanning");
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        client.simple_query(end).await.unwrap();
        let want = if commit { "spanning" } else { "<unset>" };
        assert_eq!(tag_on(&client, a).await, want, "after {end}");
        assert_eq!(tag_on(&client, b).await, want, "after {end}");
        wait_until_closed(&pids).await;
    }
    client.simple_query("RESET rv.tag2").await.unwrap();
    let other = _proxy.connect().await;
    for _ in 0..5 {
        assert_eq!(tag_on(&other, a).await, "<unset>", "another client");
        assert_eq!(tag_on(&other, b).await, "<unset>", "another client");
    }
}

/// `SET LOCAL` while the transaction spans shards runs on the parked shards too, so a
/// statement that goes back to one of them sees it (it used to run on the backend in use
/// alone, and a parked shard's statements ran with the old search_path).
#[tokio::test]
async fn set_local_while_spanning_reaches_the_parked_shards() {
    let (_proxy, client, a, b) = users_on_two_shards(90_121, true).await;
    client.simple_query("BEGIN").await.unwrap();
    let _ = (tag_on(&client, a).await, tag_on(&client, b).await);
    client
        .simple_query("SET LOCAL rv.tag2 = 'local'")
        .await
        .unwrap();
    assert_eq!(tag_on(&client, a).await, "local");
    assert_eq!(tag_on(&client, b).await, "local");
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(tag_on(&client, a).await, "<unset>");
    assert_eq!(tag_on(&client, b).await, "<unset>");
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
