//! Transaction pooling: many clients on few backends, prepared statements and settings that
//! follow clients, limits, and backends that must never leak state to the next client.
//! `prepared_after_ddl` covers statements prepared again after DDL changed their result.
//!
//! Tables `pool_leave`, `session_tmp` and `pinned_tmp` (temporary), statements `sg_sql_q`
//! and `sg_shared_p`; users 90_301 on (with a partner on the other shard), in `users`.

mod prepared_after_ddl;

use std::time::Duration;

use futures::future::join_all;
use shardgate::config::PoolMode;

use crate::harness::{TestProxy, cluster, config, connect_direct, sharded_config, sqlstate};
use crate::routing::two_users_on_different_shards;
use crate::support::{open_transactions, reset_users, text_rows};

/// Other clients run a statement each, so the backends change hands between two statements of
/// the client under test.
async fn churn(others: &[tokio_postgres::Client]) {
    for result in join_all(others.iter().map(|c| c.simple_query("SELECT 1"))).await {
        result.expect("the other clients' statements succeed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_with_prepared_statements_on_four_backends() {
    let proxy = TestProxy::shared().await;
    let clients = (0..50).map(|id: i32| {
        let proxy = &proxy;
        async move {
            let mut client = proxy.connect().await;
            // tokio-postgres names statements s0, s1, … per connection: every client uses the
            // same names for different SQL.
            let own = client
                .prepare(&format!("SELECT $1::int4 + {id}"))
                .await
                .unwrap();
            let shared = client.prepare("SELECT $1::int4 * 2").await.unwrap();
            for round in 0..20 {
                let tx = client.transaction().await.unwrap();
                let a: i32 = tx.query_one(&own, &[&round]).await.unwrap().get(0);
                let b: i32 = tx.query_one(&shared, &[&round]).await.unwrap().get(0);
                tx.commit().await.unwrap();
                assert_eq!((a, b), (round + id, round * 2));
                let again: i32 = client.query_one(&own, &[&1]).await.unwrap().get(0);
                assert_eq!(again, 1 + id);
            }
        }
    });
    join_all(clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_the_client_and_never_leak() {
    let mut cfg = config(cluster());
    cfg.pool.size = 2;
    let proxy = TestProxy::start(cfg).await;
    let a = proxy.connect().await;
    a.batch_execute("SET search_path TO pg_catalog, public; SET statement_timeout = '4321ms'; SET application_name = 'client_a'").await.unwrap();
    let others: Vec<_> = join_all((0..4).map(|_| proxy.connect())).await;
    for _ in 0..30 {
        // Other clients churn through the two backends between A's statements.
        churn(&others).await;
        let row = a.query_one("SELECT current_setting('search_path'), current_setting('statement_timeout'), current_setting('application_name')", &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "pg_catalog, public");
        assert_eq!(row.get::<_, &str>(1), "4321ms");
        assert_eq!(row.get::<_, &str>(2), "client_a");
        for other in &others {
            let row = other.query_one("SELECT current_setting('statement_timeout'), current_setting('application_name')", &[]).await.unwrap();
            assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("0", ""));
        }
    }
    // RESET and a rolled-back SET are followed too.
    // (One query string would make the RESET part of the rolled-back transaction, as in PostgreSQL.)
    a.batch_execute("RESET statement_timeout").await.unwrap();
    a.batch_execute("BEGIN; SET search_path TO public; ROLLBACK;")
        .await
        .unwrap();
    churn(&others).await;
    let row = a
        .query_one(
            "SELECT current_setting('search_path'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, &str>(0), row.get::<_, &str>(1)),
        ("pg_catalog, public", "0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_apply_on_every_backend() {
    let proxy = TestProxy::shared().await;
    let conn_str = format!(
        "{} options='-c statement_timeout=2500ms' application_name=from_startup",
        proxy.conn_str()
    );
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for _ in 0..5 {
        let row = client
            .query_one(
                "SELECT current_setting('statement_timeout'), current_setting('application_name')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, &str>(0), row.get::<_, &str>(1)),
            ("2500ms", "from_startup")
        );
    }
    let err = tokio_postgres::connect(
        &format!(
            "{} options='-c no_such.thing=1 -c work_mem=oops'",
            proxy.conn_str()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("an invalid startup setting is refused");
    let db = err.as_db_error().expect("the server's own error");
    assert!(db.message().contains("work_mem"), "{db:?}");
    assert_eq!(db.code().code(), "22023");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_and_execute_keep_working() {
    let proxy = TestProxy::shared().await;
    let client = proxy.connect().await;
    client
        .batch_execute("PREPARE sg_sql_q (int) AS SELECT $1 + 100")
        .await
        .unwrap();
    let others: Vec<_> = join_all((0..6).map(|_| proxy.connect())).await;
    for i in 0..10 {
        churn(&others).await;
        let rows = client
            .simple_query(&format!("EXECUTE sg_sql_q({i})"))
            .await
            .unwrap();
        let value = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(value.as_deref(), Some((100 + i).to_string().as_str()));
    }
    client.batch_execute("DEALLOCATE sg_sql_q").await.unwrap();
}

/// A SQL-level PREPARE that the backend a client gets already has (another client prepared
/// the same text there) is answered by the proxy, and the backend goes back to the pool at
/// once: it used to stay with the client until it disconnected, so a few such clients took
/// every backend and the next login waited out the checkout (53300).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_the_backend_already_has_holds_no_backend() {
    let mut cfg = config(cluster());
    cfg.pool.size = 1;
    cfg.pool.checkout_timeout = Duration::from_millis(1000);
    let proxy = TestProxy::start(cfg).await;
    let clients: Vec<_> = join_all((0..3).map(|_| proxy.connect())).await;
    for client in &clients {
        client
            .batch_execute("PREPARE sg_shared_p AS SELECT 41 + 1")
            .await
            .unwrap();
    }
    // The one backend is free: another client logs in and every client executes.
    let late = proxy.connect().await;
    late.simple_query("SELECT 1").await.unwrap();
    for client in &clients {
        let (rows, _) = text_rows(client, "EXECUTE sg_shared_p").await.unwrap();
        assert_eq!(rows, [[Some("42".to_owned())]]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_gives_53300() {
    let mut cfg = config(cluster());
    cfg.pool.size = 1;
    cfg.pool.checkout_timeout = Duration::from_millis(1000);
    let proxy = TestProxy::start(cfg).await;
    let holder = proxy.connect().await;
    let waiter = proxy.connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let err = waiter.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    // A new client cannot even start while the only backend is taken.
    let err = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "53300");
    holder.batch_execute("COMMIT").await.unwrap();
    waiter.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_error_when_the_pool_cannot_start_a_connection() {
    let mut cfg = config(cluster());
    cfg.databases[0].shard_map.shards[0].primary.port = 1; // nothing listens there
    cfg.pool.checkout_timeout = Duration::from_millis(500);
    let proxy = TestProxy::start(cfg).await;
    let err = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("no backend, no session");
    assert_eq!(sqlstate(&err), "08006");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_is_never_handed_out_again() {
    let mut cfg = config(cluster());
    cfg.pool.size = 1;
    let proxy = TestProxy::start(cfg).await;
    let client = proxy.connect().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let admin = connect_direct(&cluster().primaries[0]).await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, new_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_transaction_leaves_no_transaction_open() {
    let proxy = TestProxy::shared().await;
    let setup = proxy.connect().await;
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pool_leave (id int PRIMARY KEY); DELETE FROM pool_leave",
        )
        .await
        .unwrap();
    let leaver = proxy.connect().await;
    leaver
        .batch_execute("BEGIN; INSERT INTO pool_leave VALUES (1); SET application_name = 'leaver'")
        .await
        .unwrap();
    drop(leaver);
    let admin = connect_direct(&cluster().primaries[0]).await;
    let mut open = i64::MAX;
    for _ in 0..50 {
        open = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaver' AND state <> 'idle'", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "the abandoned transaction is still open");
    // Its uncommitted row is gone and its lock released: the same key inserts at once.
    setup
        .batch_execute("SET lock_timeout = '2s'; INSERT INTO pool_leave VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_backend_per_client() {
    let mut cfg = config(cluster());
    cfg.pool.mode = PoolMode::Session;
    let proxy = TestProxy::start(cfg).await;
    let client = proxy.connect().await;
    client
        .batch_execute("CREATE TEMP TABLE session_tmp (a int); INSERT INTO session_tmp VALUES (1)")
        .await
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let others: Vec<_> = join_all((0..3).map(|_| proxy.connect())).await;
    churn(&others).await;
    let again: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, again);
    let n: i64 = client
        .query_one("SELECT count(*) FROM session_tmp", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_cannot_move_pins_the_client() {
    let mut cfg = config(cluster());
    cfg.pool.size = 2;
    let proxy = TestProxy::start(cfg).await;
    let client = proxy.connect().await;
    client
        .batch_execute("CREATE TEMP TABLE pinned_tmp (a int)")
        .await
        .unwrap();
    let others: Vec<_> = join_all((0..4).map(|_| proxy.connect())).await;
    for _ in 0..10 {
        churn(&others).await;
        client
            .batch_execute("INSERT INTO pinned_tmp VALUES (1)")
            .await
            .unwrap();
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM pinned_tmp", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_through_the_extended_protocol_follows_the_client() {
    let mut cfg = config(cluster());
    cfg.pool.size = 2;
    let proxy = TestProxy::start(cfg).await;
    let client = proxy.connect().await;
    // tokio-postgres sends these as Parse/Bind/Execute (the way pgjdbc's setSchema does).
    client
        .execute("SET search_path TO pg_catalog, public", &[])
        .await
        .unwrap();
    client
        .execute("SET statement_timeout = '777ms'", &[])
        .await
        .unwrap();
    let others: Vec<_> = join_all((0..4).map(|_| proxy.connect())).await;
    for _ in 0..10 {
        churn(&others).await;
        let row = client
            .query_one(
                "SELECT current_setting('search_path'), current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, &str>(0), row.get::<_, &str>(1)),
            ("pg_catalog, public", "777ms")
        );
        for other in &others {
            let row = other
                .query_one("SELECT current_setting('statement_timeout')", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, &str>(0), "0");
        }
    }
}

/// `set_config(name, value, false)` changes the backend's session where the proxy does not
/// see it (pg_dump scripts set `search_path` this way): that backend is closed when the
/// client lets it go, so no other client ever gets the setting.
#[tokio::test]
async fn set_config_for_the_session_never_leaks() {
    let mut config = config(cluster());
    config.pool.size = 2;
    let proxy = TestProxy::start(config).await;
    let show = async |client: &tokio_postgres::Client| -> String {
        client
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0)
    };
    let a = proxy.connect().await;
    a.simple_query("SELECT set_config('statement_timeout', '4321', false)")
        .await
        .unwrap();
    let tx = "BEGIN; SELECT set_config('statement_timeout', '4321', false)";
    a.batch_execute(tx).await.unwrap();
    assert_eq!(
        show(&a).await,
        "4321ms",
        "within its transaction the client sees it"
    );
    a.batch_execute("COMMIT").await.unwrap();
    for _ in 0..3 {
        let b = proxy.connect().await;
        assert_eq!(show(&b).await, "0", "another client never sees it");
        show(&a).await;
    }
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let c = proxy.connect().await;
        assert_eq!(show(&c).await, "0", "nor after the client left");
    }
}

/// In a transaction, a cross-shard `SELECT *` counts its columns on the first shard, which
/// joins that shard's backend to the transaction. When the statement then fails (here: an
/// unknown ORDER BY column), every backend it joined is handed back outside any transaction:
/// none is left idle in one, and the next client (pool size 1: the same backends) logs in and
/// reads.
#[tokio::test]
async fn a_failed_star_read_in_a_transaction_hands_back_no_backend_in_a_transaction() {
    let mut config = sharded_config(cluster());
    config.pool.size = 1;
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_301);
    reset_users(&proxy.connect().await, &[a, b], true).await;
    let client = proxy.connect().await;
    client.simple_query("BEGIN").await.unwrap();
    let error = client
        .simple_query(&format!(
            "SELECT * FROM users WHERE user_id IN ({a}, {b}) ORDER BY rv_no_such_column"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42703");
    client.simple_query("ROLLBACK").await.unwrap();
    let leaked = open_transactions("rv_no_such_column").await;
    // Another client (pool size 1: it gets the same backends).
    let other = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls).await;
    let other = other.map(|(client, connection)| {
        tokio::spawn(connection);
        client
    });
    let mut reads = Vec::new();
    if let Ok(other) = &other {
        for id in [a, b] {
            reads.push(
                text_rows(
                    other,
                    &format!("SELECT name FROM users WHERE user_id = {id}"),
                )
                .await,
            );
        }
    }
    assert!(
        leaked.is_empty(),
        "backends left in a transaction: {leaked:?}"
    );
    assert!(
        other.is_ok(),
        "the next client cannot even log in: {:?}",
        other.err()
    );
    assert!(reads.iter().all(Result::is_ok), "{reads:?}");
}
