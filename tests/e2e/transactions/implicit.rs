//! Batches (up to Sync) and multi-statement queries that need two shards: outside a
//! transaction each is one transaction, as on one server (all of it commits, atomically, or
//! none of it, and the client's status stays idle); inside one, a batch moves between the
//! transaction's shards before its Sync.
//!
//! Users 91_001 … 91_6xx, a pair per test.

use tokio_postgres::SimpleQueryMessage;

use super::stored;
use crate::harness::{TestProxy, cluster, sharded_config, sqlstate};
use crate::raw::{Script, exchange_to_ready, raw_login};
use crate::routing::two_users_on_different_shards;
use crate::support::{one_value, proxy_with, reset_users};

const INSERT: &str = "INSERT INTO users (user_id, name) VALUES ($1, 'batch')";

/// A trust-auth proxy over the demo map (so tests can log in by hand), a client through it,
/// and two users from `first` on different shards, absent.
pub(super) async fn users_on_two_shards(
    first: i64,
) -> (TestProxy, tokio_postgres::Client, i64, i64) {
    let mut config = sharded_config(cluster());
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(first);
    reset_users(&client, &[a, b], false).await;
    (proxy, client, a, b)
}

/// Appends what psycopg and pgjdbc send for one row: Parse, Bind and Execute of the unnamed
/// statement, the key bound as a parameter.
fn insert(script: Script, id: i64) -> Script {
    let id = id.to_string();
    (script.parse("", INSERT).bind_text("", "", &[Some(&id)])).execute("", 0)
}

#[tokio::test]
async fn a_batch_over_two_shards_commits_as_one_transaction() {
    let (proxy, client, a, b) = users_on_two_shards(91_001).await;
    let mut stream = raw_login(&proxy).await;
    let script = insert(insert(Script::new(), a), b).sync();
    let (tags, status) = exchange_to_ready(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "C", "1", "2", "C", "Z"]);
    assert_eq!(status, 'I');
    assert_eq!(stored(cluster(), &[a, b]).await, 2);
    // Back and forth between the shards in one batch, failing on the way back; the session
    // goes on.
    reset_users(&client, &[a, b], false).await;
    let script = insert(insert(insert(Script::new(), a), b), a).sync();
    let (tags, status) = exchange_to_ready(&mut stream, &script).await;
    assert!(tags.iter().any(|t| t.contains("23505")), "{tags:?}");
    assert_eq!(status, 'I');
    assert_eq!(stored(cluster(), &[a, b]).await, 0);
}

#[tokio::test]
async fn an_error_anywhere_in_a_batch_over_two_shards_commits_nothing() {
    let (proxy, _client, a, b) = users_on_two_shards(91_101).await;
    let mut stream = raw_login(&proxy).await;
    // The error after the batch moved to the second shard, and before it.
    for script in [
        insert(insert(insert(Script::new(), a), b), b),
        insert(insert(insert(Script::new(), a), a), b),
    ] {
        let (tags, status) = exchange_to_ready(&mut stream, &script.sync()).await;
        let errors: Vec<_> = tags.iter().filter(|t| t.starts_with('E')).collect();
        assert_eq!(errors.len(), 1, "{tags:?}");
        assert!(errors[0].contains("23505"), "{tags:?}");
        assert_eq!(tags.last().map(String::as_str), Some("Z"));
        assert_eq!(status, 'I');
        assert_eq!(stored(cluster(), &[a, b]).await, 0, "{tags:?}");
    }
}

#[tokio::test]
async fn a_batch_inside_a_transaction_moves_between_its_shards_before_sync() {
    let (proxy, _client, a, b) = users_on_two_shards(91_201).await;
    let mut stream = raw_login(&proxy).await;
    for (end, want) in [("ROLLBACK", 0), ("COMMIT", 2)] {
        let begin = exchange_to_ready(&mut stream, &Script::new().query("BEGIN")).await;
        assert_eq!(begin.1, 'T');
        let (tags, status) =
            exchange_to_ready(&mut stream, &insert(insert(Script::new(), a), b).sync()).await;
        assert_eq!((tags.len(), status), (7, 'T'), "{tags:?}");
        let (_, status) = exchange_to_ready(&mut stream, &Script::new().query(end)).await;
        assert_eq!(status, 'I');
        assert_eq!(stored(cluster(), &[a, b]).await, want, "{end}");
    }
    // One Sync per statement (psycopg 3), the unnamed statement parsed with each.
    let (a2, b2) = two_users_on_different_shards(91_251);
    exchange_to_ready(&mut stream, &Script::new().query("BEGIN")).await;
    for id in [a2, b2, a] {
        let (tags, status) =
            exchange_to_ready(&mut stream, &insert(Script::new(), id).sync()).await;
        let want = if id == a { 'E' } else { 'T' };
        assert_eq!(status, want, "{id}: {tags:?}");
    }
    let (_, status) = exchange_to_ready(&mut stream, &Script::new().query("COMMIT")).await;
    assert_eq!(status, 'I');
    assert_eq!(
        stored(cluster(), &[a2, b2]).await,
        0,
        "the failed transaction rolled back"
    );
}

#[tokio::test]
async fn a_multi_statement_query_over_two_shards_is_one_transaction() {
    let (proxy, client, a, b) = users_on_two_shards(91_301).await;
    let insert = |id: i64| format!("INSERT INTO users (user_id, name) VALUES ({id}, 'm')");
    let sql = format!(
        "{}; {}; SELECT name FROM users WHERE user_id = {b}",
        insert(a),
        insert(b)
    );
    let messages = client.simple_query(&sql).await.unwrap();
    let completed: Vec<u64> = (messages.iter())
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completed, [1, 1, 1], "results in order");
    assert_eq!(stored(cluster(), &[a, b]).await, 2);
    reset_users(&client, &[a, b], false).await;
    // An error in the middle: nothing stays, the statements after it never ran.
    let sql = format!("{}; {}; {}; {}", insert(a), insert(b), insert(b), insert(a));
    let error = client.simple_query(&sql).await.unwrap_err();
    assert_eq!(sqlstate(&error), "23505");
    assert_eq!(stored(cluster(), &[a, b]).await, 0);
    // The client is idle after it, and inside its own transaction the statements join it.
    let mut stream = raw_login(&proxy).await;
    let (_, status) = exchange_to_ready(&mut stream, &Script::new().query(&sql)).await;
    assert_eq!(status, 'I');
    let spanning = format!("{}; {}", insert(a), insert(b));
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query(&spanning).await.unwrap();
    client.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(stored(cluster(), &[a, b]).await, 0);
}

#[tokio::test]
async fn what_cannot_run_statement_by_statement_is_refused_by_name() {
    let (_proxy, client, a, b) = users_on_two_shards(91_401).await;
    let insert = |id: i64| format!("INSERT INTO users (user_id, name) VALUES ({id}, 'm')");
    for (sql, says) in [
        (
            format!("BEGIN; {}; {}; COMMIT", insert(a), insert(b)),
            "controls its transaction",
        ),
        (
            format!("SET work_mem = '8MB'; {}; {}", insert(a), insert(b)),
            "changes the session",
        ),
    ] {
        let error = client.simple_query(&sql).await.unwrap_err();
        let message = error.as_db_error().map(|e| e.message().to_owned());
        assert_eq!(sqlstate(&error), "0A000", "{sql}");
        assert!(message.unwrap_or_default().contains(says), "{sql}: {error}");
        assert_eq!(stored(cluster(), &[a, b]).await, 0, "{sql}");
    }
    // A read of several shards among them reads the query's own writes.
    let sql = format!(
        "{}; SELECT count(*) FROM users WHERE user_id IN ({a}, {b}); {}",
        insert(a),
        insert(b)
    );
    let messages = client.simple_query(&sql).await.unwrap();
    let counts: Vec<&str> = (messages.iter())
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(counts, ["1"]);
    assert_eq!(stored(cluster(), &[a, b]).await, 2);
    reset_users(&client, &[a, b], false).await;
}

/// A deferred constraint that fails at the implicit COMMIT, on the shard that coordinates it
/// or on one that was prepared: the whole query rolls back everywhere.
#[tokio::test]
async fn a_commit_failing_at_the_end_of_a_multi_statement_query_commits_nothing() {
    let proxy = proxy_with("rv_imp: {strategy: hash, key: id, key_type: bigint}").await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS rv_imp; CREATE TABLE rv_imp (id bigint NOT NULL, \
             code int NOT NULL, UNIQUE (id, code) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .unwrap();
    let (a, b) = two_users_on_different_shards(91_501);
    let insert = |id: i64| format!("INSERT INTO rv_imp (id, code) VALUES ({id}, 1)");
    for sql in [
        format!("{}; {}; {}", insert(a), insert(b), insert(b)),
        format!("{}; {}; {}", insert(a), insert(a), insert(b)),
    ] {
        let error = client.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&error), "23505", "{sql}");
        let count = one_value(&client, "SELECT count(*) FROM rv_imp").await;
        assert_eq!(count.as_deref(), Some("0"), "{sql}");
    }
    let prepared = one_value(&client, "SELECT count(*) FROM pg_prepared_xacts").await;
    assert_eq!(prepared.as_deref(), Some("0"));
}

/// pgjdbc's batch with autocommit off: its BEGIN, then every row, in one batch before Sync;
/// also behind a SET, so the BEGIN reaches a backend before the proxy sees its status.
#[tokio::test]
async fn a_batch_starting_its_own_transaction_moves_between_shards() {
    let (proxy, _client, a, b) = users_on_two_shards(91_601).await;
    let mut stream = raw_login(&proxy).await;
    let begin = |script: Script| script.parse("", "BEGIN").bind("", "").execute("", 0);
    let set = Script::new()
        .parse("", "SET application_name = 'batch'")
        .bind("", "")
        .execute("", 0);
    for first in [begin(Script::new()), begin(set)] {
        let (tags, status) =
            exchange_to_ready(&mut stream, &insert(insert(first, a), b).sync()).await;
        assert_eq!(status, 'T', "{tags:?}");
        assert!(!tags.iter().any(|t| t.starts_with('E')), "{tags:?}");
        let (_, status) = exchange_to_ready(&mut stream, &Script::new().query("COMMIT")).await;
        assert_eq!(status, 'I');
        assert_eq!(stored(cluster(), &[a, b]).await, 2, "{tags:?}");
        let delete = Script::new().query(&format!("DELETE FROM users WHERE user_id = {a}"));
        exchange_to_ready(&mut stream, &delete).await;
        let delete = Script::new().query(&format!("DELETE FROM users WHERE user_id = {b}"));
        exchange_to_ready(&mut stream, &delete).await;
    }
}

/// A read of several shards in a batch after a write (a pipeline, an ORM's flush and query):
/// the batch is one transaction, the read joins it on every shard and sees the write, and an
/// error later in the batch takes the write back.
#[tokio::test]
async fn a_cross_shard_read_in_a_batch_sees_the_writes_before_it() {
    let (proxy, client, a, b) = users_on_two_shards(91_701).await;
    let mut stream = raw_login(&proxy).await;
    // A row only when the write is seen.
    let count =
        format!("SELECT count(*) FROM users WHERE user_id IN ({a}, {b}) HAVING count(*) = 1");
    let batch = |last: &str| {
        let script = insert(Script::new(), a);
        let script = script.parse("", &count).bind("", "").execute("", 0);
        script.parse("", last).bind("", "").execute("", 0).sync()
    };
    let (tags, status) = exchange_to_ready(&mut stream, &batch("SELECT 1")).await;
    assert_eq!(
        tags,
        [
            "1", "2", "C", "1", "2", "D×1", "C", "1", "2", "D×1", "C", "Z"
        ],
        "{tags:?}"
    );
    assert_eq!(status, 'I');
    assert_eq!(stored(cluster(), &[a, b]).await, 1);
    reset_users(&client, &[a, b], false).await;
    let (tags, status) = exchange_to_ready(&mut stream, &batch("SELECT 1/0")).await;
    assert!(tags.iter().any(|t| t.contains("22012")), "{tags:?}");
    assert_eq!(status, 'I');
    assert_eq!(
        stored(cluster(), &[a, b]).await,
        0,
        "the write was rolled back"
    );
}
