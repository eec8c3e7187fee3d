//! Review probes of the operations work (metrics, console, pause, limits, shutdown, prepared
//! statements after DDL). `probe_*` assert the correct behaviour of something found broken
//! (they fail until it is fixed); `fine_*` are suspicions that turned out right, kept as
//! regression tests.
//!
//! User ids 400_000–400_999 (the shared cluster's `users` table), tables `opr_*`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_postgres::SimpleQueryMessage;

use crate::harness::{
    DATABASE, TestProxy, USER, cluster, config, demo_map, sharded_config, sqlstate,
};
use crate::operations::{
    ADMIN, console, eventually, field, http_get, login_error, ops_proxy, rows, sample,
};

const SOON: Duration = Duration::from_secs(10);

fn select_user(id: i64) -> String {
    format!("SELECT name FROM users WHERE user_id = {id}")
}

/// Sessions that were already queued for a busy pool's connection when PAUSE came must wait
/// too: a paused pool hands out no connection until RESUME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_pause_holds_sessions_already_queued_for_a_connection() {
    let (proxy, _dir, _) = ops_proxy(|config| config.pool.size = 1).await;
    let id = 400_001;
    // Logged in first: a login needs a backend too.
    let writer = proxy.connect().await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    writer.simple_query("BEGIN").await.unwrap();
    writer.simple_query(&select_user(id)).await.unwrap();
    let read = tokio::spawn(async move { reader.simple_query(&select_user(id)).await.map(|_| ()) });
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
    tokio::time::timeout(SOON, read)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A session waiting on a paused pool when a reload replaces that pool (the shard's primary
/// changed) must not wait for ever: RESUME reaches only the new topology's pools.
#[tokio::test]
async fn probe_a_reload_while_paused_strands_the_sessions_waiting() {
    let (proxy, _dir, path) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    admin.simple_query("PAUSE").await.unwrap();
    let read =
        tokio::spawn(async move { reader.simple_query(&select_user(400_010)).await.map(|_| ()) });
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

/// A `std::io::Write` into a shared buffer, for capturing this thread's log events.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The slow-query log never carries a literal's value (README: "Passwords and parameter
/// values are never logged"). The normalizer it uses keeps E'…' strings, dollar-quoted
/// bodies and typed literals in place, since it was written for plan caching.
/// Current-thread runtime: the proxy's tasks run on this thread, under this subscriber.
#[tokio::test]
async fn probe_the_slow_query_log_withholds_every_literal() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut config = sharded_config(cluster());
    config.log.slow_statement = Some(Duration::from_millis(1));
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    for sql in [
        "SELECT pg_sleep(0.01), E'opr-secret-escape' AS a, 1 AS b",
        "SELECT pg_sleep(0.01), $$opr-secret-dollar$$ AS a, 2 AS b",
        "SELECT pg_sleep(0.01), jsonb '{\"card\": \"opr-secret-json\"}' AS a, 3 AS b",
        "SELECT pg_sleep(0.01), DATE '1999-12-31' AS opr_birthday, 4 AS b",
    ] {
        client.simple_query(sql).await.unwrap();
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("slow query"),
        "the queries were logged as slow: {log}"
    );
    let leaked: Vec<&str> = (log.lines())
        .filter(|line| line.contains("opr-secret") || line.contains("1999-12-31"))
        .collect();
    assert!(
        leaked.is_empty(),
        "literal values in the slow-query log: {leaked:#?}"
    );
}

/// README: "When DDL changes a statement's result type … preparing the same text again gets a
/// fresh server-side statement on every backend". SQL-level PREPARE shares backend-wide
/// names too, but was left out of the fix: DEALLOCATE + PREPARE of the same text is answered
/// from the backend's list and EXECUTE hits the stale statement for ever.
#[tokio::test]
async fn probe_sql_level_prepare_recovers_after_ddl() {
    let mut config = config(cluster());
    config.pool.size = 1; // One backend: the client always lands on the one that has it.
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS opr_sqlprep; CREATE TABLE opr_sqlprep (a int); \
             INSERT INTO opr_sqlprep VALUES (1)",
        )
        .await
        .unwrap();
    client
        .simple_query("PREPARE opr_p AS SELECT * FROM opr_sqlprep")
        .await
        .unwrap();
    client.simple_query("EXECUTE opr_p").await.unwrap();
    client
        .simple_query("ALTER TABLE opr_sqlprep ADD COLUMN b int DEFAULT 2")
        .await
        .unwrap();
    let error = client.simple_query("EXECUTE opr_p").await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "as on PostgreSQL: {error}");
    client.simple_query("DEALLOCATE opr_p").await.unwrap();
    client
        .simple_query("PREPARE opr_p AS SELECT * FROM opr_sqlprep")
        .await
        .unwrap();
    let rows = client.simple_query("EXECUTE opr_p").await;
    let _ = client
        .batch_execute("DROP TABLE IF EXISTS opr_sqlprep")
        .await;
    let rows = rows.expect("a statement prepared again after the DDL runs");
    let columns = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.len()),
        _ => None,
    });
    assert_eq!(columns, Some(2));
}

/// The protocol-level counterpart works (the fix of KnownStatements::retire).
#[tokio::test]
async fn fine_protocol_prepare_recovers_after_ddl() {
    let mut config = config(cluster());
    config.pool.size = 1;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS opr_protoprep; CREATE TABLE opr_protoprep (a int); \
             INSERT INTO opr_protoprep VALUES (1)",
        )
        .await
        .unwrap();
    let statement = client.prepare("SELECT * FROM opr_protoprep").await.unwrap();
    client.query(&statement, &[]).await.unwrap();
    client
        .batch_execute("ALTER TABLE opr_protoprep ADD COLUMN b int DEFAULT 2")
        .await
        .unwrap();
    let error = client.query(&statement, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    let again = client.prepare("SELECT * FROM opr_protoprep").await.unwrap();
    let rows = client.query(&again, &[]).await;
    let _ = client
        .batch_execute("DROP TABLE IF EXISTS opr_protoprep")
        .await;
    assert_eq!(rows.unwrap()[0].len(), 2);
}

/// README: queries are those that ran on a backend; a BEGIN the proxy answers itself (it is
/// run on the shard of the transaction's first statement) is not one, the transaction is.
#[tokio::test]
async fn fine_queries_total_counts_what_ran_on_a_backend() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let client = proxy.connect().await;
    let before = http_get(&proxy, "/metrics").await.1;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query(&select_user(400_020)).await.unwrap();
    client.simple_query("COMMIT").await.unwrap();
    let after = http_get(&proxy, "/metrics").await.1;
    let db = [("database", DATABASE)];
    let delta = |name| sample(&after, name, &db) - sample(&before, name, &db);
    assert_eq!(delta("shardgate_transactions_total"), 1.0);
    assert_eq!(
        delta("shardgate_queries_total"),
        2.0,
        "the SELECT and the COMMIT ran on a backend; the BEGIN was answered by the proxy"
    );
}

/// A client waiting for a paused pool is `waiting` in SHOW CLIENTS and the client gauge,
/// whichever kind of read it is.
async fn waiting_shows(sql: &'static str) {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    admin.simple_query("PAUSE").await.unwrap();
    let read = tokio::spawn(async move { reader.simple_query(sql).await.map(|_| ()) });
    eventually("the read waits on a paused pool", async || {
        let pools = rows(&admin, "SHOW POOLS").await;
        pools.iter().any(|p| field(p, "waiting") != "0")
    })
    .await;
    let clients = rows(&admin, "SHOW CLIENTS").await;
    let metrics = http_get(&proxy, "/metrics").await.1;
    admin.simple_query("RESUME").await.unwrap();
    tokio::time::timeout(SOON, read)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
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
async fn fine_a_session_waiting_on_a_paused_pool_shows_waiting() {
    waiting_shows("SELECT name FROM users WHERE user_id = 400030").await;
}

#[tokio::test]
async fn probe_a_cross_shard_read_waiting_on_a_paused_pool_shows_waiting() {
    waiting_shows("SELECT count(*) FROM users").await;
}

/// The graceful shutdown ends every session: admin console sessions too (they are not
/// counted by the drain, and outlive `Proxy::shutdown`).
#[tokio::test]
async fn probe_shutdown_closes_the_admin_console() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let admin = console(&proxy).await;
    rows(&admin, "SHOW HELP").await;
    tokio::time::timeout(SOON, proxy.proxy.shutdown(Duration::from_secs(1)))
        .await
        .expect("shutdown returns");
    let after = tokio::time::timeout(SOON, admin.simple_query("SHOW CLIENTS")).await;
    assert!(
        matches!(after, Ok(Err(_))),
        "the console still answers after the shutdown returned"
    );
}

/// A client that opens the metrics endpoint and sends half a request does not hold up the
/// next scrape.
#[tokio::test]
async fn fine_a_stalled_metrics_client_does_not_block_scrapes() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let addr = proxy.proxy.metrics_addr.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), http_get(&proxy, "/metrics"))
        .await
        .expect("a scrape is answered while other clients stall");
    assert_eq!(status, 200);
    assert!(body.contains("shardgate_queries_total"));
}

/// Clients leave SHOW CLIENTS and the gauges when they disconnect, also mid-transaction and
/// when refused at login.
#[tokio::test]
async fn fine_clients_leave_the_registry_when_they_disconnect() {
    let (proxy, _dir, _) =
        ops_proxy(|config| config.limits.max_connections_per_user = Some(2)).await;
    let admin = console(&proxy).await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let refused = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "the user's third connection is refused");
    b.simple_query("BEGIN").await.unwrap();
    b.simple_query(&select_user(400_040)).await.unwrap();
    assert_eq!(rows(&admin, "SHOW CLIENTS").await.len(), 3);
    drop(a);
    drop(b);
    eventually("only the admin is left", async || {
        rows(&admin, "SHOW CLIENTS").await.len() == 1
    })
    .await;
    let metrics = http_get(&proxy, "/metrics").await.1;
    assert_eq!(sample(&metrics, "shardgate_client_connections", &[]), 1.0);
    assert_eq!(
        sample(
            &metrics,
            "shardgate_pool_connections",
            &[("state", "in_use")]
        ),
        0.0
    );
}

/// A user other than an admin never reaches the console, whatever database name spelling or
/// startup options it tries.
#[tokio::test]
async fn fine_the_console_refuses_non_admins_in_any_spelling() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    for dbname in ["shardgate", "'shardgate'"] {
        let rest = format!("user={USER} password=app dbname={dbname} options='-c role={ADMIN}'");
        let error = login_error(&proxy, &rest).await;
        assert_eq!(sqlstate(&error), "42501", "{error}");
    }
    let error = login_error(
        &proxy,
        &format!("user={USER} password=app dbname=SHARDGATE"),
    )
    .await;
    assert_eq!(sqlstate(&error), "3D000", "not the console: {error}");
}

/// `shardgate_refusals_total` counts statements the proxy refused; a cross-shard read that
/// PostgreSQL failed (division by zero on the shards) is a backend error, not a refusal.
#[tokio::test]
async fn probe_a_failed_cross_shard_read_is_not_counted_as_a_refusal() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let client = proxy.connect().await;
    let before = http_get(&proxy, "/metrics").await.1;
    let error = client
        .simple_query("SELECT count(*) FROM users WHERE user_id > 1 / 0")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "22012", "{error}");
    let after = http_get(&proxy, "/metrics").await.1;
    let delta = |name, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(delta("shardgate_errors_total", &[("class", "22")]), 1.0);
    assert_eq!(
        delta("shardgate_refusals_total", &[("database", DATABASE)]),
        0.0,
        "PostgreSQL's error counted as a proxy refusal"
    );
}

/// Metric labels are bounded: `shardgate_rate_limited_total{user}` is exported for configured
/// users only (README: "configured user names"). With `auth_method: trust` any name logs
/// in, and each new name gets its own full bucket and its own label.
#[tokio::test]
async fn probe_trust_logins_do_not_mint_rate_limit_buckets_and_labels() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.auth_method = shardgate::config::ClientAuthMethod::Trust;
        config.limits.rate_limit = Some(shardgate::config::RateLimit {
            statements_per_second: 0.001,
            burst: 1,
        });
    })
    .await;
    let mut admitted = 0;
    for i in 0..3 {
        let conn = format!(
            "host=127.0.0.1 port={} user=opr_made_up_{i} dbname={DATABASE}",
            proxy.port()
        );
        let (client, connection) = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
        {
            Ok(connected) => connected,
            Err(error) => {
                eprintln!("{conn}: {error}");
                continue; // Refusing unknown users is a fix too.
            }
        };
        tokio::spawn(connection);
        for _ in 0..2 {
            admitted += client.simple_query("SELECT 1").await.is_ok() as u32;
        }
    }
    let metrics = http_get(&proxy, "/metrics").await.1;
    assert!(
        !metrics.contains("user=\"opr_made_up_"),
        "a label per made-up user name: {}",
        (metrics.lines())
            .filter(|l| l.contains("opr_made_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        admitted <= 1,
        "each made-up name got a fresh bucket: {admitted} admitted"
    );
}

/// `idle_in_transaction_timeout` counts from the last whole message, as PostgreSQL's does: a
/// client inside a transaction that trickles the bytes of its next message one by one is
/// still idle, and must not keep its backend (and its locks) past the timeout.
#[tokio::test]
async fn fine_a_trickling_client_does_not_escape_the_idle_in_transaction_timeout() {
    use crate::raw::{query_message, raw_login, read_message, sqlstate_of};
    let mut config = config(cluster());
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.limits.idle_in_transaction_timeout = Some(Duration::from_millis(500));
    let proxy = TestProxy::start(config).await;
    let mut stream = raw_login(&proxy).await;
    stream
        .write_all(&query_message("BEGIN; SELECT 1"))
        .await
        .unwrap();
    while let Some((tag, _)) = read_message(&mut stream).await {
        if tag == b'Z' {
            break;
        }
    }
    // The next query, one byte every 200 ms, never finished.
    let next = query_message("SELECT 'never sent whole'");
    for byte in &next[..12] {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (tag, body) = tokio::time::timeout(Duration::from_secs(1), read_message(&mut stream))
        .await
        .expect("closed by the timeout, 2.4 s into a 0.5 s idle-in-transaction timeout")
        .expect("an error before the close");
    assert_eq!((tag, sqlstate_of(&body).as_str()), (b'E', "25P03"));
}

/// The slow-query log names the statement (README: "with the route, the duration and the
/// statement text") also when a prepared statement runs again (Bind/Execute/Sync, no Parse).
#[tokio::test]
async fn probe_the_slow_query_log_names_a_prepared_statement_run_again() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut config = sharded_config(cluster());
    config.log.slow_statement = Some(Duration::from_millis(1));
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let statement = client
        .prepare("SELECT pg_sleep($1::float8) AS opr_slow")
        .await
        .unwrap();
    for _ in 0..2 {
        client.query(&statement, &[&0.01f64]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("slow query")).collect();
    assert!(slow.len() >= 2, "{log}");
    assert!(
        slow.iter().all(|line| line.contains("opr_slow")),
        "a slow query logged without its statement: {slow:#?}"
    );
}

/// Pauses every pool from the console, then starts a read by key on a client of its own; it
/// returns once the read waits. The read's task and its client's connection task are returned
/// so a test can end either.
async fn read_waiting_on_a_pause(
    proxy: &TestProxy,
    id: i64,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let admin = console(proxy).await;
    let (client, connection) = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    admin.simple_query("PAUSE").await.unwrap();
    let read = tokio::spawn(async move { client.simple_query(&select_user(id)).await.map(|_| ()) });
    eventually("the read waits on the paused pool", async || {
        let pools = rows(&admin, "SHOW POOLS").await;
        pools.iter().any(|p| field(p, "waiting") != "0")
    })
    .await;
    (admin, read, connection)
}

/// A client that disconnects while its statement waits on a paused pool leaves SHOW CLIENTS
/// (and frees its per-user connection slot) without waiting for RESUME.
#[tokio::test]
async fn probe_a_client_that_leaves_while_paused_leaves_the_registry() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let (admin, read, connection) = read_waiting_on_a_pause(&proxy, 400_050).await;
    read.abort();
    connection.abort(); // The socket closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clients = rows(&admin, "SHOW CLIENTS").await;
    admin.simple_query("RESUME").await.unwrap();
    assert_eq!(clients.len(), 1, "only the admin is connected: {clients:?}");
}

/// The drain's end closes every session (module docs of `app::shutdown`: "phase `Closing`
/// closes every remaining session with 57P01"), also one whose statement waits on a paused
/// pool: that wait is not raced against the shutdown.
#[tokio::test]
async fn probe_shutdown_closes_a_session_waiting_on_a_paused_pool() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let (admin, read, connection) = read_waiting_on_a_pause(&proxy, 400_060).await;
    let began = std::time::Instant::now();
    let stopped = tokio::spawn(proxy.proxy.shutdown(Duration::from_millis(300)));
    let closed = tokio::time::timeout(Duration::from_secs(3), connection).await;
    let took = began.elapsed();
    let _ = admin.simple_query("RESUME").await;
    let _ = tokio::time::timeout(SOON, stopped).await;
    read.abort();
    assert!(
        closed.is_ok(),
        "the waiting session was not closed by the shutdown within {took:?}"
    );
}

/// Every query is counted, also when a client pipelines them (tokio-postgres, pgjdbc batches,
/// pgbench pipelines): the meter times one query at a time, so a query whose first message
/// arrives before the previous query's ReadyForQuery is not counted (nor its transaction).
#[tokio::test]
async fn probe_pipelined_queries_are_all_counted() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let client = proxy.connect().await;
    let statement = client
        .prepare("SELECT name FROM users WHERE user_id = $1")
        .await
        .unwrap();
    let before = http_get(&proxy, "/metrics").await.1;
    let ids: Vec<i64> = (400_070..400_080).collect();
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
        ids.iter().map(|id| [id as _]).collect();
    let queries = params.iter().map(|p| client.query(&statement, p));
    for outcome in futures::future::join_all(queries).await {
        outcome.unwrap();
    }
    let after = http_get(&proxy, "/metrics").await.1;
    let db = [("database", DATABASE)];
    let delta = |name| sample(&after, name, &db) - sample(&before, name, &db);
    let counted = (
        delta("shardgate_queries_total"),
        delta("shardgate_transactions_total"),
    );
    assert_eq!(
        counted,
        (10.0, 10.0),
        "(queries, transactions) of 10 pipelined queries"
    );
}

/// README: "Passwords and parameter values are never logged". A cross-shard read that
/// PostgreSQL fails is logged at WARN ("statement refused") with the server's message, which
/// may quote a bind parameter's value.
#[tokio::test]
async fn probe_a_failed_cross_shard_read_does_not_log_parameter_values() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let error = client
        .query(
            "SELECT count(*) FROM users WHERE user_id > $1::text::int",
            &[&"opr-secret-param"],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "22P02", "{error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("opr-secret")).collect();
    assert!(
        leaked.is_empty(),
        "a parameter value in the log: {leaked:#?}"
    );
}

/// `shardgate_pool_checkout_wait_seconds` is "Time a session waited for a backend
/// connection": a wait on a paused pool is such a wait, but the clock starts after it.
#[tokio::test]
async fn probe_checkout_wait_includes_the_wait_on_a_paused_pool() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let reader = proxy.connect().await;
    let admin = console(&proxy).await;
    let before = http_get(&proxy, "/metrics").await.1;
    admin.simple_query("PAUSE").await.unwrap();
    let read =
        tokio::spawn(async move { reader.simple_query(&select_user(400_090)).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(700)).await;
    admin.simple_query("RESUME").await.unwrap();
    tokio::time::timeout(SOON, read)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let after = http_get(&proxy, "/metrics").await.1;
    let name = "shardgate_pool_checkout_wait_seconds_sum";
    let waited = sample(&after, name, &[]) - sample(&before, name, &[]);
    assert!(
        waited >= 0.5,
        "checkout wait recorded: {waited} s after a 0.7 s pause"
    );
}
