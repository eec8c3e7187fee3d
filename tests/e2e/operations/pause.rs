//! PAUSE and RESUME: PAUSE waits for open transactions, then holds new work and work already
//! queued for a connection without an error until RESUME, also across a reload that replaces
//! the paused pools; waiting sessions show as `waiting`, may leave, and their wait counts as
//! checkout wait.
//!
//! Users 300_200, 400_001, 400_010, 400_030, 400_050 and 400_090 (in `users`).

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::{
    console, field, finished, http_get, ops_proxy, read_waiting_on_a_pause, rows, sample,
    select_user, start_read, until_a_read_waits,
};
use crate::harness::{USER, cluster, demo_map, sqlstate};
use crate::limits::SOON;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_transactions_and_holds_new_work_until_resume() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let id = 300_200;
    let writer = proxy.connect().await;
    writer
        .simple_query(&format!("DELETE FROM users WHERE user_id = {id}"))
        .await
        .unwrap();
    writer.simple_query("BEGIN").await.unwrap();
    writer
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({id}, 'paused')"
        ))
        .await
        .unwrap();
    let admin = console(&proxy).await;
    // Connected before the pause: a login needs a backend too, and would wait as well.
    let reader = proxy.connect().await;
    let pause = tokio::spawn(async move { admin.simple_query("PAUSE").await.map(|_| admin) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!pause.is_finished(), "PAUSE waits for the open transaction");
    writer.simple_query("COMMIT").await.unwrap();
    let admin = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("PAUSE returns once the transaction ended")
        .unwrap()
        .unwrap();
    let pools = rows(&admin, "SHOW POOLS").await;
    assert!(
        pools.iter().all(|p| field(p, "paused") == "true"),
        "{pools:?}"
    );
    // New work waits instead of failing, for longer than the checkout timeout would allow
    // a busy pool.
    let read = tokio::spawn(async move {
        let sql = format!("SELECT name FROM users WHERE user_id = {id}");
        let messages = reader.simple_query(&sql).await?;
        let rows = messages.iter();
        Ok::<_, tokio_postgres::Error>(
            rows.filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                .count(),
        )
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!read.is_finished(), "the read waits while paused");
    let metrics = http_get(&proxy, "/metrics").await.1;
    assert!(
        sample(&metrics, "shardgate_pool_waiting", &[]) >= 1.0,
        "{metrics}"
    );
    admin.simple_query("RESUME").await.unwrap();
    let messages = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read runs after RESUME")
        .unwrap()
        .expect("and succeeds");
    assert_eq!(messages, 1, "the row committed before the pause");
    let error = admin.simple_query("PAUSE app nowhere").await.unwrap_err();
    assert_eq!(sqlstate(&error), "42704");
}

/// Sessions that were already queued for a busy pool's connection when PAUSE came must wait
/// too: a paused pool hands out no connection until RESUME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_sessions_already_queued_for_a_connection() {
    let (proxy, _dir, _) = ops_proxy(|config| config.pool.size = 1).await;
    let id = 400_001;
    // Logged in first: a login needs a backend too.
    let writer = proxy.connect().await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    writer.simple_query("BEGIN").await.unwrap();
    writer.simple_query(&select_user(id)).await.unwrap();
    let read = start_read(reader, select_user(id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !read.is_finished(),
        "the reader queues for the one connection"
    );
    let pause = tokio::spawn(async move { admin.simple_query("PAUSE").await.map(|_| admin) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.simple_query("COMMIT").await.unwrap();
    let admin = tokio::time::timeout(SOON, pause)
        .await
        .expect("PAUSE returns")
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran_while_paused = read.is_finished();
    admin.simple_query("RESUME").await.unwrap();
    assert!(
        !ran_while_paused,
        "a session queued before PAUSE ran its statement on the paused pool"
    );
    finished(read).await;
}

/// A session waiting on a paused pool when a reload replaces that pool (the shard's primary
/// changed) does not wait for ever: RESUME, which reaches the new topology's pools, lets it run.
#[tokio::test]
async fn sessions_waiting_on_a_pool_replaced_by_a_reload_run_after_resume() {
    let (proxy, _dir, path) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    admin.simple_query("PAUSE").await.unwrap();
    let read = start_read(reader, select_user(400_010));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read waits while paused");
    // Each shard's "primary" moves to its (hot standby) replica: reads work there.
    let mut map = demo_map(cluster());
    for (shard, replicas) in map.shards.iter_mut().zip(&cluster().replicas) {
        shard.primary = replicas[0].clone();
    }
    std::fs::write(&path, serde_yaml::to_string(&map).unwrap()).unwrap();
    admin.simple_query("RELOAD").await.unwrap();
    admin.simple_query("RESUME").await.unwrap();
    let pools = rows(&admin, "SHOW POOLS").await;
    assert!(
        pools.iter().all(|p| field(p, "paused") == "false"),
        "{pools:?}"
    );
    let outcome = tokio::time::timeout(SOON, read).await;
    assert!(
        outcome.is_ok(),
        "the read that waited on the replaced (still paused) pool never ran after RESUME"
    );
}

/// A client waiting for a paused pool is `waiting` in SHOW CLIENTS and the client gauge,
/// whichever kind of read it is.
async fn waiting_shows(sql: &'static str) {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    admin.simple_query("PAUSE").await.unwrap();
    let read = start_read(reader, sql.to_owned());
    until_a_read_waits(&admin).await;
    let clients = rows(&admin, "SHOW CLIENTS").await;
    let metrics = http_get(&proxy, "/metrics").await.1;
    admin.simple_query("RESUME").await.unwrap();
    finished(read).await;
    let app = clients.iter().find(|c| field(c, "user") == USER).unwrap();
    assert_eq!(field(app, "state"), "waiting", "{clients:?}");
    let waiting = sample(
        &metrics,
        "shardgate_client_connections",
        &[("state", "waiting")],
    );
    assert_eq!(waiting, 1.0, "{metrics}");
}

#[tokio::test]
async fn a_session_waiting_on_a_paused_pool_shows_waiting() {
    waiting_shows("SELECT name FROM users WHERE user_id = 400030").await;
}

#[tokio::test]
async fn a_cross_shard_read_waiting_on_a_paused_pool_shows_waiting() {
    waiting_shows("SELECT count(*) FROM users").await;
}

/// A client that disconnects while its statement waits on a paused pool leaves SHOW CLIENTS
/// (and frees its per-user connection slot) without waiting for RESUME.
#[tokio::test]
async fn a_client_that_leaves_while_paused_leaves_the_registry() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let (admin, read, connection) = read_waiting_on_a_pause(&proxy, 400_050).await;
    read.abort();
    connection.abort(); // The socket closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clients = rows(&admin, "SHOW CLIENTS").await;
    admin.simple_query("RESUME").await.unwrap();
    assert_eq!(clients.len(), 1, "only the admin is connected: {clients:?}");
}

/// `shardgate_pool_checkout_wait_seconds` is "Time a session waited for a backend
/// connection": a wait on a paused pool is such a wait, and is counted in it.
#[tokio::test]
async fn checkout_wait_includes_the_wait_on_a_paused_pool() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    let before = http_get(&proxy, "/metrics").await.1;
    admin.simple_query("PAUSE").await.unwrap();
    let read = start_read(reader, select_user(400_090));
    tokio::time::sleep(Duration::from_millis(700)).await;
    admin.simple_query("RESUME").await.unwrap();
    finished(read).await;
    let after = http_get(&proxy, "/metrics").await.1;
    let name = "shardgate_pool_checkout_wait_seconds_sum";
    let waited = sample(&after, name, &[]) - sample(&before, name, &[]);
    assert!(
        waited >= 0.5,
        "checkout wait recorded: {waited} s after a 0.7 s pause"
    );
}
