//! Graceful shutdown, in-process and through the real binary: a transaction in flight may
//! still commit, idle clients are closed at once with 57P01, new connections are refused,
//! the drain timeout rolls back a transaction that never ends, and every session ends: admin
//! console sessions and sessions waiting on a paused pool too.
//!
//! Table `lim_rows` (ids 200_003 and 200_004), user 400_060 (in `users`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{SOON, closed_with, connect_watched, eventually, forget_id, rows_with_id};
use crate::harness::{TestProxy, cluster, config, sqlstate};
use crate::operations::{console, ops_proxy, read_waiting_on_a_pause, rows};

/// A connection attempt to `port` fails (refused, or refused at login).
async fn refuses_connections(port: u16) -> bool {
    let conn = format!("host=127.0.0.1 port={port} user=app password=app dbname=app");
    tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_transaction_commit_and_closes_idle_clients() {
    const ID: i64 = 200_003;
    forget_id(ID).await;
    let proxy = TestProxy::start(config(cluster())).await;
    let port = proxy.port();
    let (working, working_conn) = connect_watched(&proxy).await;
    let (idle, idle_conn) = connect_watched(&proxy).await;
    idle.batch_execute("SELECT 1").await.unwrap();
    let insert = format!("BEGIN; INSERT INTO lim_rows VALUES ({ID}, 'drained')");
    working.batch_execute(&insert).await.unwrap();
    let stopped = tokio::spawn(proxy.proxy.shutdown(Duration::from_secs(60)));
    assert_eq!(
        closed_with(idle_conn).await,
        "57P01",
        "idle: closed at once"
    );
    assert!(
        refuses_connections(port).await,
        "no new clients once draining"
    );
    working.batch_execute("SELECT 1").await.unwrap();
    working
        .batch_execute("COMMIT")
        .await
        .expect("the COMMIT goes through");
    assert_eq!(
        closed_with(working_conn).await,
        "57P01",
        "closed after its COMMIT"
    );
    assert_eq!(
        rows_with_id(ID).await,
        1,
        "the acknowledged commit is there"
    );
    tokio::time::timeout(SOON, stopped)
        .await
        .expect("the shutdown ends once every client left")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_rolls_back_a_transaction_that_never_ends() {
    const ID: i64 = 200_004;
    forget_id(ID).await;
    let proxy = TestProxy::start(config(cluster())).await;
    let (client, connection) = connect_watched(&proxy).await;
    let insert = format!("BEGIN; INSERT INTO lim_rows VALUES ({ID}, 'cut')");
    client.batch_execute(&insert).await.unwrap();
    let started = Instant::now();
    let stopped = tokio::spawn(proxy.proxy.shutdown(Duration::from_millis(500)));
    assert_eq!(closed_with(connection).await, "57P01");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "a transaction gets the whole drain"
    );
    assert!(client.batch_execute("COMMIT").await.is_err());
    tokio::time::timeout(SOON, stopped).await.unwrap().unwrap();
    eventually("the cut transaction rolled back", || async {
        rows_with_id(ID).await == 0
    })
    .await;
    // No backend of the cut transaction lingers with the row locked.
    let direct = crate::harness::connect_direct(&cluster().primaries[0]).await;
    let sql = format!(
        "INSERT INTO lim_rows VALUES ({ID}, 'after'); DELETE FROM lim_rows WHERE id = {ID}"
    );
    tokio::time::timeout(SOON, direct.batch_execute(&sql))
        .await
        .expect("the row is not locked")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_cancels_a_statement_still_running() {
    let proxy = TestProxy::start(config(cluster())).await;
    let (client, connection) = connect_watched(&proxy).await;
    client.batch_execute("BEGIN").await.unwrap();
    let running = tokio::spawn(async move {
        let outcome = client
            .batch_execute("SELECT pg_sleep(61) /* lim_cut */")
            .await;
        sqlstate(&outcome.expect_err("cut by the shutdown"))
    });
    let direct = crate::harness::connect_direct(&cluster().primaries[0]).await;
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%lim_cut */' \
                    AND state = 'active' AND pid <> pg_backend_pid()";
    let count = || async {
        direct
            .query_one(sleeping, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    eventually("the statement runs", || async { count().await == 1 }).await;
    let stopped = tokio::spawn(proxy.proxy.shutdown(Duration::from_millis(300)));
    let code = tokio::time::timeout(SOON, running).await.unwrap().unwrap();
    assert!(["57014", "57P01"].contains(&code.as_str()), "{code}");
    let _ = tokio::time::timeout(SOON, connection)
        .await
        .expect("closed");
    tokio::time::timeout(SOON, stopped).await.unwrap().unwrap();
    eventually("no backend still runs it", || async { count().await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_in_startup_does_not_hold_the_drain_and_is_refused() {
    use crate::raw::{read_message, sqlstate_of, startup_packet};
    use tokio::io::AsyncWriteExt;
    let mut config = config(cluster());
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    let proxy = TestProxy::start(config).await;
    let mut late = tokio::net::TcpStream::connect(proxy.proxy.local_addr)
        .await
        .unwrap();
    eventually("the proxy accepted it", || async {
        proxy.proxy.connection_count() == 1
    })
    .await;
    let stopped = tokio::spawn(proxy.proxy.shutdown(Duration::from_secs(60)));
    (tokio::time::timeout(SOON, stopped))
        .await
        .expect("no session to drain")
        .unwrap();
    late.write_all(&startup_packet("app", "app")).await.unwrap();
    let refusal = loop {
        match read_message(&mut late).await.expect("an answer") {
            (b'R', _) => continue, // AuthenticationOk: trust lets it in, then it is refused.
            (b'E', body) => break sqlstate_of(&body),
            (other, _) => panic!("unexpected {:?}", other as char),
        }
    };
    assert_eq!(refusal, "57P03");
}

/// `shardgate run` with a one-shard config in front of the shared cluster, on `port`.
fn write_run_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let primary = &cluster().primaries[0];
    std::fs::write(
        dir.join("map.yaml"),
        format!("shards:\n  - name: s0\n    primary: '{primary}'\n"),
    )
    .unwrap();
    let path = dir.join("shardgate.yaml");
    let text = format!(
        "listen: 127.0.0.1:{port}\nusers:\n  - name: app\n    password: app\n\
         log: {{level: warn}}\nshutdown: {{drain_timeout: 60s}}\n\
         databases:\n  - name: app\n    shard_map: map.yaml\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_on_sigterm_and_exits_0() {
    const ID: i64 = 200_005;
    forget_id(ID).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_run_config(dir.path(), port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let conn = format!("host=127.0.0.1 port={port} user=app password=app dbname=app");
    let deadline = Instant::now() + SOON + SOON;
    let (client, connection) = loop {
        match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok(connected) => break connected,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("shardgate run did not come up: {error}"),
        }
    };
    let connection = tokio::spawn(connection);
    let insert = format!("BEGIN; INSERT INTO lim_rows VALUES ({ID}, 'sigterm')");
    client.batch_execute(&insert).await.unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    eventually("the listener closes", || refuses_connections(port)).await;
    client
        .batch_execute("COMMIT")
        .await
        .expect("the COMMIT goes through");
    assert_eq!(closed_with(connection).await, "57P01");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + SOON + SOON;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("shardgate did not exit after SIGTERM");
            }
            #[allow(clippy::disallowed_methods)] // inside spawn_blocking
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert_eq!(rows_with_id(ID).await, 1);
}

/// The graceful shutdown ends every session: admin console sessions too (they are not
/// counted by the drain, and outlive `Proxy::shutdown`).
#[tokio::test]
async fn shutdown_closes_the_admin_console() {
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

/// The drain's end closes every session (module docs of `app::shutdown`: "phase `Closing`
/// closes every remaining session with 57P01"), also one whose statement waits on a paused
/// pool: the shutdown ends that wait too.
#[tokio::test]
async fn shutdown_closes_a_session_waiting_on_a_paused_pool() {
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
