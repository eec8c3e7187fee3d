//! The slow-query log and what the log never carries: a slow statement is logged with its
//! text (also when a prepared statement runs again), but without any literal's or bind
//! parameter's value, also when PostgreSQL's error message would quote one.
//!
//! No tables; literals and names marked `opr-secret`/`opr_*`. Each test runs on a
//! current-thread runtime, so the proxy's tasks log under the test's subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::subscriber::DefaultGuard;

use crate::harness::{TestProxy, cluster, sharded_config, sqlstate};

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

impl Captured {
    /// Captures WARN and above of this thread's log events until the guard is dropped.
    fn warnings() -> (Self, DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged, once the proxy's tasks had 100 ms to log the last events.
    async fn settled_text(&self) -> String {
        tokio::time::sleep(Duration::from_millis(100)).await;
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A proxy over the demo map that logs every statement as slow (threshold 1 ms).
async fn slow_log_proxy() -> TestProxy {
    let mut config = sharded_config(cluster());
    config.log.slow_statement = Some(Duration::from_millis(1));
    TestProxy::start(config).await
}

/// The slow-query log never carries a literal's value (README: "Passwords and parameter
/// values are never logged"): not of E'…' strings, dollar-quoted bodies or typed literals
/// either, which a normalizer written for plan caching would keep in place.
#[tokio::test]
async fn the_slow_query_log_withholds_every_literal() {
    let (captured, _guard) = Captured::warnings();
    let proxy = slow_log_proxy().await;
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
    let log = captured.settled_text().await;
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

/// The slow-query log names the statement (README: "with the route, the duration and the
/// statement text") also when a prepared statement runs again (Bind/Execute/Sync, no Parse).
#[tokio::test]
async fn the_slow_query_log_names_a_prepared_statement_run_again() {
    let (captured, _guard) = Captured::warnings();
    let proxy = slow_log_proxy().await;
    let client = proxy.connect().await;
    let statement = client
        .prepare("SELECT pg_sleep($1::float8) AS opr_slow")
        .await
        .unwrap();
    for _ in 0..2 {
        client.query(&statement, &[&0.01f64]).await.unwrap();
    }
    let log = captured.settled_text().await;
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("slow query")).collect();
    assert!(slow.len() >= 2, "{log}");
    assert!(
        slow.iter().all(|line| line.contains("opr_slow")),
        "a slow query logged without its statement: {slow:#?}"
    );
}

/// README: "Passwords and parameter values are never logged". A cross-shard read that
/// PostgreSQL fails is logged at WARN ("statement refused"), without the value of the bind
/// parameter the server's message quotes.
#[tokio::test]
async fn a_failed_cross_shard_read_does_not_log_parameter_values() {
    let (captured, _guard) = Captured::warnings();
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
    let log = captured.settled_text().await;
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("opr-secret")).collect();
    assert!(
        leaked.is_empty(),
        "a parameter value in the log: {leaked:#?}"
    );
}
