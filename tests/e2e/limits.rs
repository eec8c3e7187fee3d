//! Limits that protect backends from clients, against real PostgreSQL: connections per user,
//! statement timeout (one shard and a cross-shard read), idle timeouts inside and outside a
//! transaction (also for a client trickling its next message), and the per-user statement rate
//! (buckets and metric labels for configured users only). `shutdown` drains and stops the
//! proxy.
//!
//! Tables `lim_rows` (ids 200_001 on) and `lim_fan`; made-up user names `opr_made_up_*`.
//!
//! Timeouts in these configs are a few hundred milliseconds; every assertion about time says
//! "eventually, within seconds", so a loaded machine slows the tests down but never fails them.

mod shutdown;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{
    DATABASE, TestProxy, cluster, config, config_with_tables, connect_direct, sqlstate,
};
use crate::operations::{http_get, ops_proxy};
use crate::raw::{Script, exchange, raw_login, read_message, sqlstate_of};
use shardgate::config::RateLimit;

/// Patience for anything that should happen "soon".
pub(crate) const SOON: Duration = Duration::from_secs(10);

/// A client through the proxy and its connection task, which ends with the error the proxy
/// closed it with (an unsolicited FATAL reaches tokio-postgres there, not at a query).
pub(crate) async fn connect_watched(
    proxy: &TestProxy,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, connection) = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .expect("connect through the proxy");
    (client, tokio::spawn(connection))
}

/// The SQLSTATE the proxy closed a watched connection with.
pub(crate) async fn closed_with(
    connection: JoinHandle<Result<(), tokio_postgres::Error>>,
) -> String {
    let ended = tokio::time::timeout(SOON, connection)
        .await
        .expect("the proxy closes the connection soon")
        .unwrap();
    sqlstate(&ended.expect_err("closed with an error"))
}

/// Waits until `check` holds, trying every 100 ms for [`SOON`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SOON;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {SOON:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `lim_rows` on the default shard (s0), created once per test binary. Each test uses its
/// own ids.
pub(crate) async fn rows_table() {
    static CREATED: OnceCell<()> = OnceCell::const_new();
    CREATED
        .get_or_init(|| async {
            let sql = "CREATE TABLE IF NOT EXISTS lim_rows (id bigint PRIMARY KEY, note text)";
            connect_direct(&cluster().primaries[0])
                .await
                .batch_execute(sql)
                .await
                .unwrap();
        })
        .await;
}

/// How many rows with `id` the default shard has, read directly.
pub(crate) async fn rows_with_id(id: i64) -> i64 {
    let direct = connect_direct(&cluster().primaries[0]).await;
    (direct.query_one("SELECT count(*) FROM lim_rows WHERE id = $1", &[&id]))
        .await
        .unwrap()
        .get(0)
}

/// Removes rows a previous run of a test left.
pub(crate) async fn forget_id(id: i64) {
    rows_table().await;
    let direct = connect_direct(&cluster().primaries[0]).await;
    (direct.execute("DELETE FROM lim_rows WHERE id = $1", &[&id]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_extra_connection_is_refused_until_one_leaves() {
    let mut config = config(cluster());
    config.limits.max_connections_per_user = Some(2);
    let proxy = TestProxy::start(config).await;
    let first = proxy.connect().await;
    let second = proxy.connect().await;
    let refused = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a third connection of the user is refused");
    assert_eq!(sqlstate(&refused), "53300");
    let message = refused.as_db_error().unwrap().message();
    assert_eq!(message, "too many connections for role \"app\"");
    second.batch_execute("SELECT 1").await.unwrap();
    drop(first);
    eventually("a place frees when a client leaves", || async {
        tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
            .await
            .is_ok()
    })
    .await;
}

/// A cancel is handled by the server whenever it gets to it, so it may land on what the
/// backend runs next: a backend that was sent one is closed, never handed out again.
#[tokio::test]
async fn a_backend_sent_a_cancel_is_not_reused() {
    let mut config = config(cluster());
    config.limits.statement_timeout = Some(Duration::from_millis(300));
    config.pool.size = 1;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let pid = |row: tokio_postgres::Row| row.get::<_, i32>(0);
    let before = pid(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap());
    let again = pid(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap());
    assert_eq!(before, again, "a pool of one hands out the same backend");
    let error = client
        .simple_query("SELECT pg_sleep(60)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "57014", "{error}");
    let after = pid(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap());
    assert_ne!(
        before, after,
        "the backend that was sent a cancel served again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_a_long_statement_and_the_session_goes_on() {
    let mut config = config(cluster());
    // Long enough that a short statement on a loaded machine is never cut.
    config.limits.statement_timeout = Some(Duration::from_secs(1));
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    for extended in [false, true] {
        let started = Instant::now();
        let error = if extended {
            client.query("SELECT pg_sleep(60)", &[]).await.map(drop)
        } else {
            client.simple_query("SELECT pg_sleep(60)").await.map(drop)
        }
        .expect_err("cancelled");
        assert_eq!(sqlstate(&error), "57014", "{error}");
        let message = error.as_db_error().unwrap().message();
        assert_eq!(message, "canceling statement due to statement timeout");
        assert!(started.elapsed() < SOON, "took {:?}", started.elapsed());
        let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
    }
    // Inside a transaction the cancel fails the transaction, as in PostgreSQL.
    client.batch_execute("BEGIN").await.unwrap();
    let error = client
        .batch_execute("SELECT pg_sleep(60)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "57014");
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    // A statement shorter than the timeout is left alone.
    client.batch_execute("SELECT pg_sleep(0.05)").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_every_leg_of_a_cross_shard_read() {
    let cluster = cluster();
    for (i, uri) in cluster.primaries.iter().enumerate() {
        let direct = connect_direct(uri).await;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS lim_fan (id bigint PRIMARY KEY); \
             INSERT INTO lim_fan VALUES ({}) ON CONFLICT DO NOTHING",
            i + 1
        );
        direct.batch_execute(&sql).await.unwrap();
    }
    let mut config = config_with_tables(
        cluster,
        "{lim_fan: {strategy: hash, key: id, key_type: bigint}}",
    );
    for shard in &mut config.databases[0].shard_map.shards {
        shard.replicas.clear();
    }
    config.limits.statement_timeout = Some(Duration::from_millis(300));
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let started = Instant::now();
    let error = (client.simple_query("SELECT id, pg_sleep(60) FROM lim_fan ORDER BY id"))
        .await
        .expect_err("cancelled on every shard");
    assert_eq!(sqlstate(&error), "57014", "{error}");
    let message = error.as_db_error().unwrap().message();
    assert_eq!(message, "canceling statement due to statement timeout");
    assert!(started.elapsed() < SOON, "took {:?}", started.elapsed());
    let rows = client
        .simple_query("SELECT id FROM lim_fan ORDER BY id")
        .await
        .unwrap();
    let rows = rows
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)));
    assert_eq!(rows.count(), 2, "the session reads across shards again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_in_a_transaction_is_closed_and_its_insert_rolls_back() {
    const ID: i64 = 200_001;
    forget_id(ID).await;
    let mut config = config(cluster());
    config.pool.size = 1; // A backend returned mid-transaction would serve the next client.
    config.limits.idle_in_transaction_timeout = Some(Duration::from_millis(300));
    let proxy = TestProxy::start(config).await;
    let (client, connection) = connect_watched(&proxy).await;
    let insert = format!("BEGIN; INSERT INTO lim_rows VALUES ({ID}, 'idle in transaction')");
    client.batch_execute(&insert).await.unwrap();
    assert_eq!(closed_with(connection).await, "25P03");
    assert!(client.batch_execute("COMMIT").await.is_err());
    let next = proxy.connect().await;
    let seen: i64 = (next.query_one("SELECT count(*) FROM lim_rows WHERE id = $1", &[&ID]))
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 0,
        "the next client is not inside the closed transaction"
    );
    next.batch_execute("COMMIT").await.unwrap(); // A stray transaction would commit here.
    assert_eq!(
        rows_with_id(ID).await,
        0,
        "nothing unacknowledged committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_outside_a_transaction_is_closed() {
    let mut config = config(cluster());
    config.limits.client_idle_timeout = Some(Duration::from_millis(500));
    config.limits.idle_in_transaction_timeout = Some(Duration::from_secs(3600));
    let proxy = TestProxy::start(config).await;
    let (client, connection) = connect_watched(&proxy).await;
    client.batch_execute("SELECT 1").await.unwrap();
    let error = closed_with(connection).await;
    assert_eq!(error, "57P05");
    // A client busy in a statement longer than the idle timeout is not idle.
    let busy = proxy.connect().await;
    busy.batch_execute("SELECT pg_sleep(1.5)").await.unwrap();
    busy.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_its_rate_is_refused_until_the_bucket_refills() {
    let mut config = config(cluster());
    config.limits.rate_limit = Some(RateLimit {
        statements_per_second: 0.25,
        burst: 3,
    });
    let proxy = TestProxy::start(config).await;
    let first = proxy.connect().await;
    let second = proxy.connect().await;
    for _ in 0..3 {
        first.batch_execute("SELECT 1").await.unwrap();
    }
    // The bucket is the user's, not the connection's.
    let error = second.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "53400");
    assert_eq!(
        error.as_db_error().unwrap().message(),
        "rate limit exceeded for user \"app\": 0.25 statements per second"
    );
    let error = second.query("SELECT $1::int", &[&1i32]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "53400", "an Execute is a statement too");
    eventually("the bucket refills", || async {
        match second.batch_execute("SELECT 1").await {
            Ok(()) => true,
            Err(error) => {
                assert_eq!(sqlstate(&error), "53400");
                false
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_the_rate_aborts_its_transaction() {
    const ID: i64 = 200_002;
    forget_id(ID).await;
    let mut config = config(cluster());
    config.limits.rate_limit = Some(RateLimit {
        statements_per_second: 0.2,
        burst: 2,
    });
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    let insert = format!("INSERT INTO lim_rows VALUES ({ID}, 'rate')");
    client.batch_execute(&insert).await.unwrap();
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&error), "53400");
    /// Runs `sql` once the bucket has a token; returns its SQLSTATE (`None`: it succeeded).
    async fn when_admitted(client: &Client, sql: &str) -> Option<String> {
        let deadline = Instant::now() + SOON + SOON;
        loop {
            match client.batch_execute(sql).await {
                Err(e) if sqlstate(&e) == "53400" && Instant::now() < deadline => {}
                Err(e) => return Some(sqlstate(&e)),
                Ok(()) => return None,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let after = when_admitted(&client, "SELECT 1").await;
    assert_eq!(
        after.as_deref(),
        Some("25P02"),
        "the transaction is aborted"
    );
    assert_eq!(when_admitted(&client, "COMMIT").await, None);
    assert_eq!(rows_with_id(ID).await, 0);
}

/// Metric labels are bounded: `shardgate_rate_limited_total{user}` is exported for configured
/// users only (README: "configured user names"). With `auth_method: trust` any name logs
/// in, but a new name gets neither a full bucket of its own nor a label.
#[tokio::test]
async fn trust_logins_do_not_mint_rate_limit_buckets_or_labels() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.auth_method = shardgate::config::ClientAuthMethod::Trust;
        config.limits.rate_limit = Some(RateLimit {
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
async fn a_trickling_client_does_not_escape_the_idle_in_transaction_timeout() {
    let mut config = config(cluster());
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.limits.idle_in_transaction_timeout = Some(Duration::from_millis(500));
    let proxy = TestProxy::start(config).await;
    let mut stream = raw_login(&proxy).await;
    exchange(&mut stream, &Script::new().query("BEGIN; SELECT 1")).await;
    // The next query, one byte every 200 ms, never finished.
    let next = Script::new().query("SELECT 'never sent whole'");
    for byte in &next.bytes()[..12] {
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
