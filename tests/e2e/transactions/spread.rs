//! Statements that run on several primaries (UPDATE/DELETE over several shards, reference-table
//! writes, split INSERTs): outside a transaction each is atomic on its own; inside one (the
//! client's, or the implicit one of a batch or a multi-statement query) it joins the
//! transaction on every shard and ends with it, and its failure aborts all of it.
//!
//! Users 92_001 … 92_7xx, a pair per test; countries `q1` … `q9`.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::users_on_two_shards;
use crate::harness::{ClusterInfo, cluster, connect_direct, sharded_config, sqlstate};
use crate::raw::{Script, exchange_to_ready, raw_login};
use crate::support::one_value;

/// The names of `ids` read on every primary directly, by id.
async fn names(cluster: &ClusterInfo, ids: &[i64]) -> Vec<String> {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT name FROM users WHERE user_id IN ({}) ORDER BY user_id",
        list.join(", ")
    );
    let mut found = Vec::new();
    for uri in &cluster.primaries {
        let client = connect_direct(uri).await;
        let rows = client.query(&sql, &[]).await.unwrap();
        found.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    }
    found
}

/// How many primaries hold country `code`.
async fn country_copies(cluster: &ClusterInfo, code: &str) -> usize {
    let mut copies = 0;
    for uri in &cluster.primaries {
        let client = connect_direct(uri).await;
        let sql = "SELECT count(*) FROM countries WHERE code = $1";
        let count: i64 = client.query_one(sql, &[&code]).await.unwrap().get(0);
        copies += usize::try_from(count).unwrap();
    }
    copies
}

/// The command tags of a simple query.
fn tags(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    (messages.iter())
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(count) => Some(*count),
            _ => None,
        })
        .collect()
}

async fn simple(client: &Client, sql: &str) -> Vec<SimpleQueryMessage> {
    client.simple_query(sql).await.unwrap()
}

#[tokio::test]
async fn a_write_without_its_key_runs_on_every_shard_with_counts_summed() {
    let (_proxy, client, a, b) = users_on_two_shards(92_001, true).await;
    let both = format!("UPDATE users SET name = 'sp-92001' WHERE user_id IN ({a}, {b})");
    assert_eq!(tags(&simple(&client, &both).await), [2]);
    let keyless = "UPDATE users SET name = 'sp2-92001' WHERE name = 'sp-92001' RETURNING user_id";
    let messages = simple(&client, keyless).await;
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)));
    assert_eq!((rows.count(), tags(&messages)), (2, vec![2]));
    assert_eq!(names(cluster(), &[a, b]).await, ["sp2-92001", "sp2-92001"]);
    // Through the extended protocol, parameters included.
    let sql = "UPDATE users SET name = $1 WHERE user_id IN ($2, $3)";
    let updated = client.execute(sql, &[&"sp3", &a, &b]).await.unwrap();
    assert_eq!(updated, 2);
    assert_eq!(names(cluster(), &[a, b]).await, ["sp3", "sp3"]);
    let deleted = simple(&client, "DELETE FROM users WHERE name = 'sp3'").await;
    assert_eq!(tags(&deleted), [2]);
}

#[tokio::test]
async fn inside_a_transaction_a_write_to_several_shards_ends_with_it() {
    let (_proxy, client, a, b) = users_on_two_shards(92_101, true).await;
    let update = format!("UPDATE users SET name = 'sp-92101' WHERE user_id IN ({a}, {b})");
    let count = "SELECT count(*) FROM users WHERE name = 'sp-92101'";
    for (end, want) in [("ROLLBACK", "rv"), ("COMMIT", "sp-92101")] {
        simple(&client, "BEGIN").await;
        simple(
            &client,
            "INSERT INTO countries (code, name) VALUES ('q1', 'Q')",
        )
        .await;
        assert_eq!(tags(&simple(&client, &update).await), [2]);
        // The transaction reads its own writes on every shard.
        assert_eq!(one_value(&client, count).await.as_deref(), Some("2"));
        simple(&client, end).await;
        assert_eq!(names(cluster(), &[a, b]).await, [want, want], "{end}");
        let copies = if end == "COMMIT" { 2 } else { 0 };
        assert_eq!(country_copies(cluster(), "q1").await, copies, "{end}");
    }
    simple(&client, "DELETE FROM countries WHERE code = 'q1'").await;
    // The same through the extended protocol (one batch per statement, as drivers send).
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let sql = "UPDATE users SET name = $1 WHERE user_id IN ($2, $3)";
    assert_eq!(tx.execute(sql, &[&"sp2", &a, &b]).await.unwrap(), 2);
    tx.commit().await.unwrap();
    assert_eq!(names(cluster(), &[a, b]).await, ["sp2", "sp2"]);
}

#[tokio::test]
async fn a_write_to_several_shards_failing_on_one_aborts_the_transaction_everywhere() {
    let (_proxy, client, a, b) = users_on_two_shards(92_201, true).await;
    // The failing shard first in shard order, and last.
    for failing in [a, b] {
        for end in ["ROLLBACK", "COMMIT"] {
            simple(&client, "BEGIN").await;
            simple(
                &client,
                &format!("UPDATE users SET name = 'x' WHERE user_id = {a}"),
            )
            .await;
            let update = format!(
                "UPDATE users SET name = (1 / (user_id - {failing}))::text \
                 WHERE user_id IN ({a}, {b})"
            );
            let error = client.simple_query(&update).await.unwrap_err();
            assert_eq!(sqlstate(&error), "22012", "{error}");
            let error = client.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(sqlstate(&error), "25P02", "{error}");
            simple(&client, end).await;
            assert_eq!(names(cluster(), &[a, b]).await, ["rv", "rv"], "{end}");
        }
    }
    simple(&client, "SELECT 1").await;
}

#[tokio::test]
async fn a_multi_statement_query_with_a_write_to_several_shards_is_one_transaction() {
    let (_proxy, client, a, b) = users_on_two_shards(92_301, true).await;
    let sql = format!(
        "UPDATE users SET name = 'ms' WHERE user_id IN ({a}, {b}); \
         INSERT INTO countries (code, name) VALUES ('q2', 'Q'); \
         SELECT count(*) FROM users WHERE name = 'ms'"
    );
    let messages = simple(&client, &sql).await;
    assert_eq!(tags(&messages), [2, 1, 1]);
    assert_eq!(names(cluster(), &[a, b]).await, ["ms", "ms"]);
    assert_eq!(country_copies(cluster(), "q2").await, 2);
    // A failure after it: nothing of the query stays.
    let failing = format!(
        "UPDATE users SET name = 'ms2' WHERE user_id IN ({a}, {b}); \
         INSERT INTO countries (code, name) VALUES ('q2', 'again')"
    );
    let error = client.simple_query(&failing).await.unwrap_err();
    assert_eq!(sqlstate(&error), "23505", "{error}");
    assert_eq!(names(cluster(), &[a, b]).await, ["ms", "ms"]);
    simple(&client, "DELETE FROM countries WHERE code = 'q2'").await;
}

#[tokio::test]
async fn a_batch_with_a_write_to_several_shards_is_one_transaction_up_to_its_sync() {
    let (proxy, client, a, b) = super::implicit::users_on_two_shards(92_401).await;
    crate::support::reset_users(&client, &[a, b], true).await;
    let mut stream = raw_login(&proxy).await;
    let update = format!("UPDATE users SET name = 'bt' WHERE user_id IN ({a}, {b})");
    let insert_q3 = "INSERT INTO countries (code, name) VALUES ('q3', 'Q')";
    let single_shard = format!("UPDATE users SET name = 'bt0' WHERE user_id = {a}");
    let batch = |first: &str, last: &str| {
        let script = Script::new().parse("", first).bind("", "").execute("", 0);
        let script = script.parse("", &update).bind("", "").execute("", 0);
        script.parse("", last).bind("", "").execute("", 0).sync()
    };
    // The last statement fails: the update and the statement before it (on every shard, or
    // on one still waiting for its Sync) are rolled back too.
    for (first, last, code) in [
        (insert_q3, insert_q3, "23505"),
        (&single_shard, "SELECT 1/0", "22012"),
        (insert_q3, "SELECT 1/0", "22012"),
    ] {
        let (tags, status) = exchange_to_ready(&mut stream, &batch(first, last)).await;
        let errors: Vec<_> = tags.iter().filter(|t| t.starts_with('E')).collect();
        assert_eq!(errors.len(), 1, "{tags:?}");
        assert!(errors[0].contains(code), "{tags:?}");
        assert_eq!(status, 'I');
        assert_eq!(names(cluster(), &[a, b]).await, ["rv", "rv"]);
        assert_eq!(country_copies(cluster(), "q3").await, 0);
    }
    let (tags, status) = exchange_to_ready(&mut stream, &batch(insert_q3, "SELECT 1")).await;
    assert_eq!(
        tags,
        ["1", "2", "C", "1", "2", "C", "1", "2", "D×1", "C", "Z"],
        "{tags:?}"
    );
    assert_eq!(status, 'I');
    assert_eq!(names(cluster(), &[a, b]).await, ["bt", "bt"]);
    assert_eq!(country_copies(cluster(), "q3").await, 2);
    let cleanup = Script::new().query("DELETE FROM countries WHERE code = 'q3'");
    exchange_to_ready(&mut stream, &cleanup).await;
}

/// Drivers prepare a statement (Parse, Describe, Sync) before they run it. Right after a BEGIN
/// the proxy answered (no shard reached yet) that Describe runs outside the transaction; the
/// client still hears status `T`, and the statement then runs inside the transaction.
#[tokio::test]
async fn a_statement_described_right_after_begin_still_runs_inside_the_transaction() {
    let (proxy, _client, a, b) = super::implicit::users_on_two_shards(92_501).await;
    let mut stream = raw_login(&proxy).await;
    let (_, status) = exchange_to_ready(&mut stream, &Script::new().query("BEGIN")).await;
    assert_eq!(status, 'T');
    let update = format!("UPDATE users SET name = 'd2' WHERE user_id IN ({a}, {b})");
    let prepare = Script::new()
        .parse("u", &update)
        .describe_statement("u")
        .sync();
    let (_, status) = exchange_to_ready(&mut stream, &prepare).await;
    assert_eq!(status, 'T');
    let insert = format!("INSERT INTO users (user_id, name) VALUES ({a}, 'd'), ({b}, 'd')");
    let (tags, status) = exchange_to_ready(&mut stream, &Script::new().query(&insert)).await;
    assert_eq!(status, 'T', "{tags:?}");
    let run = Script::new().bind("", "u").execute("", 0).sync();
    let (tags, status) = exchange_to_ready(&mut stream, &run).await;
    assert_eq!(status, 'T', "{tags:?}");
    assert!(tags.contains(&"C".to_owned()), "{tags:?}");
    let (_, status) = exchange_to_ready(&mut stream, &Script::new().query("ROLLBACK")).await;
    assert_eq!(status, 'I');
    assert!(
        names(cluster(), &[a, b]).await.is_empty(),
        "nothing committed"
    );
}

/// Table maintenance and locks of map tables run on every shard: one command tag, as from one
/// server; `LOCK` only inside a transaction (PostgreSQL's own `25P01` outside one), where it
/// holds the lock on every shard until the transaction ends; `VACUUM` only outside one.
#[tokio::test]
async fn maintenance_and_locks_of_map_tables_reach_every_shard() {
    let (_proxy, client, _a, _b) = users_on_two_shards(92_601, false).await;
    for sql in [
        "ANALYZE users",
        "VACUUM countries",
        "VACUUM (ANALYZE) orders",
    ] {
        assert_eq!(simple(&client, sql).await.len(), 1, "{sql}: one tag");
    }
    let lock = "LOCK TABLE countries IN SHARE ROW EXCLUSIVE MODE";
    let error = client.simple_query(lock).await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P01", "{error}");
    simple(&client, "BEGIN").await;
    simple(&client, lock).await;
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                WHERE c.relname = 'countries' AND l.mode = 'ShareRowExclusiveLock' AND l.granted";
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let count: i64 = direct.query_one(held, &[]).await.unwrap().get(0);
        assert_eq!(count, 1, "{uri}: the lock is held there");
    }
    simple(&client, "COMMIT").await;
    let error = (client.simple_query("BEGIN; VACUUM countries; COMMIT").await).unwrap_err();
    assert_eq!(sqlstate(&error), "25001", "{error}");
}

/// A COMMIT sent through the extended protocol as the unnamed statement (pgbench
/// `-M extended`, pgjdbc), of a transaction that wrote on two shards: recording the decision
/// runs a query of the proxy's on the backend first, which drops the unnamed statement there;
/// the client's is parsed again before its Bind.
#[tokio::test]
async fn an_extended_protocol_commit_of_a_two_shard_transaction_commits() {
    let (proxy, _client, a, b) = super::implicit::users_on_two_shards(92_701).await;
    let mut stream = raw_login(&proxy).await;
    let (_, status) = exchange_to_ready(&mut stream, &Script::new().query("BEGIN")).await;
    assert_eq!(status, 'T');
    for id in [a, b] {
        let insert = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'x')");
        let (tags, status) = exchange_to_ready(&mut stream, &Script::new().query(&insert)).await;
        assert_eq!(status, 'T', "{tags:?}");
    }
    let commit = Script::new()
        .parse("", "COMMIT")
        .bind("", "")
        .execute("", 0)
        .sync();
    let (tags, status) = exchange_to_ready(&mut stream, &commit).await;
    assert_eq!(tags, ["1", "2", "C", "Z"], "{tags:?}");
    assert_eq!(status, 'I');
    assert_eq!(names(cluster(), &[a, b]).await, ["x", "x"]);
}

/// `INSERT … SELECT` from a co-located table: each shard inserts the rows its own source rows
/// give, so every new order lands with its user.
#[tokio::test]
async fn insert_select_between_colocated_tables_puts_rows_with_their_key() {
    let (_proxy, client, a, b) = users_on_two_shards(92_801, true).await;
    let clean = format!("DELETE FROM orders WHERE user_id IN ({a}, {b})");
    simple(&client, &clean).await;
    let insert = format!(
        "INSERT INTO orders (order_id, user_id, amount) \
         SELECT 1, user_id, 9.50 FROM users WHERE user_id IN ({a}, {b}) RETURNING user_id"
    );
    let messages = simple(&client, &insert).await;
    assert_eq!(tags(&messages), [2]);
    let with_user = format!(
        "SELECT count(*) FROM orders o JOIN users u ON u.user_id = o.user_id \
         WHERE o.user_id IN ({a}, {b})"
    );
    let mut placed = 0;
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        placed += direct
            .query_one(&with_user, &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    assert_eq!(placed, 2, "each order is on its user's shard");
    simple(&client, &clean).await;
}

/// UPDATE and DELETE whose subqueries read a co-located table tied to the row by the key run
/// on every shard, each answering for its own rows: exactly the rows one server would change.
#[tokio::test]
async fn writes_with_subqueries_on_colocated_tables_change_exactly_the_right_rows() {
    let (_proxy, client, a, b) = users_on_two_shards(92_901, true).await;
    let clean = format!("DELETE FROM orders WHERE user_id IN ({a}, {b})");
    simple(&client, &clean).await;
    // Only a has a big order.
    simple(
        &client,
        &format!(
            "INSERT INTO orders (order_id, user_id, amount) VALUES (1, {a}, 500), (2, {b}, 5)"
        ),
    )
    .await;
    let vip = format!(
        "UPDATE users u SET name = 'vip' WHERE u.user_id IN ({a}, {b}) AND EXISTS \
         (SELECT 1 FROM orders o WHERE o.user_id = u.user_id AND o.amount > 100)"
    );
    assert_eq!(tags(&simple(&client, &vip).await), [1]);
    assert_eq!(
        names(cluster(), &[a, b])
            .await
            .iter()
            .filter(|n| *n == "vip")
            .count(),
        1
    );
    let dropped = format!(
        "DELETE FROM orders WHERE user_id IN (SELECT user_id FROM users \
         WHERE name = 'vip' AND user_id IN ({a}, {b}))"
    );
    assert_eq!(tags(&simple(&client, &dropped).await), [1]);
    let left = format!("SELECT user_id FROM orders WHERE user_id IN ({a}, {b})");
    assert_eq!(one_value(&client, &left).await, Some(b.to_string()));
    simple(&client, &clean).await;
}

/// An UPDATE that changes a row's shard key moves the row to its new key's shard (deleted on
/// the old one, inserted on the new one, in one transaction), RETURNING what the UPDATE
/// would; inside a transaction it rolls back with it.
#[tokio::test]
async fn an_update_of_the_shard_key_moves_the_row_to_its_new_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(93_501, false).await;
    simple(
        &client,
        &format!("INSERT INTO users (user_id, name, country) VALUES ({a}, 'mover', 'NL')"),
    )
    .await;
    let holder = |id: i64| format!("SELECT count(*) FROM users WHERE user_id = {id}");
    let before = crate::routing::shards_holding(cluster(), &holder(a)).await;
    let moved = format!(
        "UPDATE users SET user_id = {b}, name = upper(name) WHERE user_id = {a} \
         RETURNING user_id, name, country"
    );
    let messages = simple(&client, &moved).await;
    assert_eq!(tags(&messages), [1]);
    let returned: Vec<(Option<&str>, Option<&str>, Option<&str>)> = (messages.iter())
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((row.get(0), row.get(1), row.get(2))),
            _ => None,
        })
        .collect();
    assert_eq!(
        returned,
        [(Some(b.to_string().as_str()), Some("MOVER"), Some("NL"))]
    );
    let after = crate::routing::shards_holding(cluster(), &holder(b)).await;
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "the row changed shards");
    assert!(
        crate::routing::shards_holding(cluster(), &holder(a))
            .await
            .is_empty()
    );
    // Rolled back with its transaction: the row is back where it was.
    simple(&client, "BEGIN").await;
    let back = format!("UPDATE users SET user_id = {a} WHERE user_id = {b}");
    assert_eq!(tags(&simple(&client, &back).await), [1]);
    let read = format!("SELECT name FROM users WHERE user_id = {a}");
    assert_eq!(one_value(&client, &read).await.as_deref(), Some("MOVER"));
    simple(&client, "ROLLBACK").await;
    assert_eq!(
        crate::routing::shards_holding(cluster(), &holder(b)).await,
        after
    );
    // No row matches: nothing moves, and RETURNING still describes its columns.
    let none = format!("UPDATE users SET user_id = {a} WHERE user_id = -1 RETURNING user_id");
    assert_eq!(tags(&simple(&client, &none).await), [0]);
    // Through the extended protocol, with parameters and binary results.
    let sql = "UPDATE users SET user_id = $1 WHERE user_id = $2 RETURNING user_id, name";
    let rows = client.query(sql, &[&a, &b]).await.unwrap();
    let returned: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(returned, [(a, "MOVER".to_owned())]);
    assert_eq!(
        crate::routing::shards_holding(cluster(), &holder(a)).await,
        before
    );
    let none = client.execute(sql, &[&a, &-1i64]).await.unwrap();
    assert_eq!(none, 0);
    simple(
        &client,
        &format!("DELETE FROM users WHERE user_id IN ({a}, {b})"),
    )
    .await;
}

/// The rows an UPDATE of the shard key moves pass through the proxy: past
/// `limits.max_merge_bytes` the statement fails (`54000`) and nothing moves.
#[tokio::test]
async fn moving_more_rows_than_the_proxy_may_hold_fails_and_moves_nothing() {
    let mut config = sharded_config(cluster());
    config.limits.max_merge_bytes = 200;
    let proxy = crate::harness::TestProxy::start(config).await;
    let client = proxy.connect().await;
    let (a, b) = crate::routing::two_users_on_different_shards(93_601);
    crate::support::reset_users(&client, &[a, b], false).await;
    let long = "x".repeat(150);
    for id in [a, b] {
        let insert = format!("INSERT INTO users (user_id, name) VALUES ({id}, '{long}')");
        simple(&client, &insert).await;
    }
    let moved = format!("UPDATE users SET user_id = user_id + 1000000 WHERE user_id IN ({a}, {b})");
    let error = client.simple_query(&moved).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54000", "{error}");
    assert_eq!(names(cluster(), &[a, b]).await.len(), 2, "nothing moved");
    // Inside the client's transaction it aborts the transaction; COMMIT rolls back.
    simple(&client, "BEGIN").await;
    let error = client.simple_query(&moved).await.unwrap_err();
    assert_eq!(sqlstate(&error), "54000", "{error}");
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02", "{error}");
    simple(&client, "COMMIT").await;
    assert_eq!(names(cluster(), &[a, b]).await.len(), 2, "nothing moved");
    crate::support::reset_users(&client, &[a, b], false).await;
}
