//! Savepoints in transactions that span shards: SAVEPOINT, RELEASE and ROLLBACK TO reach every
//! shard the transaction reached, and a shard it reaches after the savepoint gets it too, so
//! ROLLBACK TO undoes what the transaction did there since, and a failure after a savepoint
//! can be rolled back to it and the transaction go on (what ORMs' nested transactions and
//! pgjdbc's autosave do).
//!
//! Users 93_001 … 93_4xx, a pair per test.

use tokio_postgres::Client;

use super::{stored, users_on_two_shards};
use crate::harness::{cluster, sqlstate};
use crate::raw::{Script, exchange_to_ready, raw_login};

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn insert(id: i64, name: &str) -> String {
    format!("INSERT INTO users (user_id, name) VALUES ({id}, '{name}')")
}

#[tokio::test]
async fn rollback_to_a_savepoint_undoes_work_on_every_shard_even_one_reached_after_it() {
    let (_proxy, client, a, b) = users_on_two_shards(93_001, false).await;
    run(&client, "BEGIN").await;
    run(&client, &insert(a, "kept")).await;
    run(&client, "SAVEPOINT sp").await;
    // The transaction reaches b's shard only after the savepoint.
    run(&client, &insert(b, "undone")).await;
    run(
        &client,
        &format!("UPDATE users SET name = 'undone' WHERE user_id = {a}"),
    )
    .await;
    run(&client, "ROLLBACK TO SAVEPOINT sp").await;
    run(&client, "COMMIT").await;
    assert_eq!(stored(cluster(), &[a]).await, 1);
    assert_eq!(
        stored(cluster(), &[b]).await,
        0,
        "b's insert was after the savepoint"
    );
    let name = client
        .query_one("SELECT name FROM users WHERE user_id = $1", &[&a])
        .await
        .unwrap();
    assert_eq!(name.get::<_, String>(0), "kept");
}

#[tokio::test]
async fn a_failure_after_a_savepoint_is_rolled_back_to_it_and_the_transaction_goes_on() {
    let (_proxy, client, a, b) = users_on_two_shards(93_101, false).await;
    run(&client, "BEGIN").await;
    run(&client, &insert(a, "first")).await;
    run(&client, &insert(b, "first")).await;
    run(&client, "SAVEPOINT sp").await;
    let error = client.batch_execute(&insert(a, "again")).await.unwrap_err();
    assert_eq!(sqlstate(&error), "23505", "{error}");
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02", "{error}");
    run(&client, "ROLLBACK TO sp").await;
    // A savepoint command that fails (on the parked shard first) aborts the transaction, as
    // on one server, and rolling back to an open savepoint recovers it on every shard.
    let error = client
        .batch_execute("ROLLBACK TO nowhere")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "3B001", "{error}");
    run(&client, "ROLLBACK TO sp").await;
    run(
        &client,
        &format!("UPDATE users SET name = 'second' WHERE user_id IN ({a}, {b})"),
    )
    .await;
    run(&client, "RELEASE SAVEPOINT sp").await;
    run(&client, "COMMIT").await;
    let names = client
        .query(
            "SELECT name FROM users WHERE user_id IN ($1, $2)",
            &[&a, &b],
        )
        .await
        .unwrap();
    let names: Vec<String> = names.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["second", "second"]);
}

/// pgjdbc's autosave and other drivers send savepoint commands through the extended protocol.
#[tokio::test]
async fn savepoint_commands_through_the_extended_protocol_reach_every_shard() {
    let (proxy, _client, a, b) = super::implicit::users_on_two_shards(93_201).await;
    let mut stream = raw_login(&proxy).await;
    let statement = |sql: &str| {
        Script::new()
            .parse("", sql)
            .bind("", "")
            .execute("", 0)
            .sync()
    };
    for sql in [
        "BEGIN".to_owned(),
        insert(a, "x"),
        insert(b, "x"),
        "SAVEPOINT PGJDBC_AUTOSAVE".to_owned(),
        format!("DELETE FROM users WHERE user_id IN ({a}, {b})"),
        "ROLLBACK TO SAVEPOINT PGJDBC_AUTOSAVE".to_owned(),
        "RELEASE SAVEPOINT PGJDBC_AUTOSAVE".to_owned(),
    ] {
        let (tags, status) = exchange_to_ready(&mut stream, &statement(&sql)).await;
        assert_eq!(status, 'T', "{sql}: {tags:?}");
    }
    let (tags, status) = exchange_to_ready(&mut stream, &statement("COMMIT")).await;
    assert_eq!(status, 'I', "{tags:?}");
    assert_eq!(
        stored(cluster(), &[a, b]).await,
        2,
        "the delete was rolled back"
    );
}

/// Savepoint commands among other statements of one query: once the transaction spans
/// shards, each runs on every shard (statement by statement); before that, the query runs
/// whole on its shard and its savepoints still reach the shards joined later.
#[tokio::test]
async fn savepoints_among_other_statements_reach_every_shard() {
    let (_proxy, client, a, b) = users_on_two_shards(93_301, false).await;
    let rename =
        |id: i64, name: &str| format!("UPDATE users SET name = '{name}' WHERE user_id = {id}");
    // Not spanning yet: the whole query runs on a's shard; `one` must still reach b's.
    run(&client, "BEGIN").await;
    run(
        &client,
        &format!(
            "{}; SAVEPOINT one; {}",
            insert(a, "kept"),
            rename(a, "undone")
        ),
    )
    .await;
    run(&client, &insert(b, "undone")).await;
    run(&client, "ROLLBACK TO SAVEPOINT one").await;
    // Spanning now: a savepoint among statements on both shards, then undone to it.
    let query = format!(
        "{}; SAVEPOINT two; {}; {}",
        insert(b, "kept"),
        rename(a, "undone"),
        rename(b, "undone")
    );
    run(&client, &query).await;
    run(&client, "ROLLBACK TO two; RELEASE two").await;
    run(&client, "COMMIT").await;
    let names = client
        .query(
            "SELECT name FROM users WHERE user_id = ANY($1) ORDER BY user_id",
            &[&vec![a, b]],
        )
        .await
        .unwrap();
    let names: Vec<String> = names.iter().map(|row| row.get(0)).collect();
    assert_eq!(names, ["kept", "kept"]);
}
