//! The metrics endpoint: counters move as queries run (pipelined ones too), what ran on a
//! backend is a query and what PostgreSQL failed is an error, not a refusal; slow statements
//! limit refusals and unsupported statements (by kind) are counted; the dashboard plots only exported metrics; a stalled scraper
//! holds up nobody.
//!
//! Users 300_000–300_004 and 400_020, 400_070–400_079 (in `users`); table `ops_no_such_table`
//! (never created).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{eventually, http_get, ops_proxy, sample, select_user};
use crate::harness::{DATABASE, USER, cluster, sqlstate};
use crate::operations::ADMIN;
use shardgate::config::BackendUri;

#[tokio::test]
async fn metrics_move_as_queries_run() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let client = proxy.connect().await;
    let before = http_get(&proxy, "/metrics").await.1;
    for id in 300_000..300_005 {
        client
            .simple_query(&format!("SELECT name FROM users WHERE user_id = {id}"))
            .await
            .unwrap();
    }
    // The failing query comes before the last one: a client sees an error before the
    // ReadyForQuery behind it, which is when the proxy counts the query.
    let error = client
        .simple_query("SELECT * FROM ops_no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01");
    client
        .simple_query("SELECT count(*) FROM users")
        .await
        .unwrap();
    let (status, after) = http_get(&proxy, "/metrics").await;
    assert_eq!(status, 200);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let db = ("database", DATABASE);
    let routes = |kind| delta("shardgate_routes_total", &[db, ("kind", kind)]);
    assert_eq!(routes("single_shard"), 5.0, "{after}");
    assert_eq!(routes("multi_shard"), 1.0);
    assert_eq!(
        routes("fallback"),
        1.0,
        "the unknown table names no map table"
    );
    assert_eq!(delta("shardgate_queries_total", &[db]), 7.0);
    assert_eq!(
        delta("shardgate_queries_total", &[db, ("shard", "multi")]),
        1.0
    );
    assert_eq!(delta("shardgate_query_duration_seconds_count", &[db]), 7.0);
    assert_eq!(delta("shardgate_transactions_total", &[db]), 7.0);
    assert_eq!(delta("shardgate_errors_total", &[("class", "42")]), 1.0);
    assert!(delta("shardgate_client_bytes_received_total", &[]) > 100.0);
    assert!(delta("shardgate_client_bytes_sent_total", &[]) > 100.0);
    assert_eq!(delta("shardgate_scatter_legs_total", &[db]), 2.0);
    assert!(sample(&after, "shardgate_pool_checkout_wait_seconds_count", &[db]) >= 1.0);
    assert_eq!(
        sample(&after, "shardgate_client_connections", &[("state", "idle")]),
        1.0
    );
    assert_eq!(sample(&after, "shardgate_shard_map_epoch", &[]), 1.0);
    assert!(after.contains("# TYPE shardgate_query_duration_seconds histogram"));
    assert!(after.contains("# TYPE shardgate_routes_total counter"));
    // Health, readiness (once every primary passed a check) and an unknown path.
    assert_eq!(http_get(&proxy, "/health").await.0, 200);
    eventually("ready once the primaries were checked", async || {
        http_get(&proxy, "/ready").await.0 == 200
    })
    .await;
    let metrics = http_get(&proxy, "/metrics").await.1;
    assert_eq!(
        sample(&metrics, "shardgate_backend_up", &[db, ("role", "primary")]),
        2.0
    );
    assert_eq!(http_get(&proxy, "/nothing").await.0, 404);
}

/// Every metric the Grafana dashboard plots is one the proxy exports.
#[tokio::test]
async fn the_dashboard_plots_only_exported_metrics() {
    // With replicas, so their lag is exported.
    let (proxy, _dir, _) = ops_proxy(|config| {
        let shards = config.databases[0].shard_map.shards.iter_mut();
        for (shard, replicas) in shards.zip(&cluster().replicas) {
            shard.replicas = replicas
                .iter()
                .map(|r| BackendUri::parse(r).unwrap())
                .collect();
        }
    })
    .await;
    // Errors are counted by class once one happened.
    let client = proxy.connect().await;
    client.simple_query("SELECT 1/0").await.unwrap_err();
    eventually("replica lag is exported after a health check", async || {
        let metrics = http_get(&proxy, "/metrics").await.1;
        metrics.contains("# TYPE shardgate_replica_lag_seconds")
    })
    .await;
    let metrics = http_get(&proxy, "/metrics").await.1;
    let exported: Vec<&str> = (metrics.lines())
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/grafana/shardgate-dashboard.json"
    );
    let dashboard = std::fs::read_to_string(path).unwrap();
    let mut plotted: Vec<&str> = dashboard
        .match_indices("shardgate_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| name.len() > "shardgate_".len())
        .collect();
    plotted.sort_unstable();
    plotted.dedup();
    assert!(plotted.len() >= 15, "{plotted:?}");
    for name in plotted {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(&family),
            "the dashboard plots {name}, which is not exported"
        );
    }
}

#[tokio::test]
async fn slow_queries_are_counted() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.log.slow_statement = Some(Duration::from_millis(150));
    })
    .await;
    let client = proxy.connect().await;
    // The first statement connects a backend, which may itself take longer than the bound
    // on a loaded machine: only what the sleep adds is compared.
    client.simple_query("SELECT 1").await.unwrap();
    let slow = async || {
        let metrics = http_get(&proxy, "/metrics").await.1;
        sample(&metrics, "shardgate_slow_statements_total", &[])
    };
    let before = slow().await;
    client.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
    assert_eq!(slow().await - before, 1.0);
}

/// Refusals by the limits show in the metrics: the rate limit by user, the per-user
/// connection limit by reason.
#[tokio::test]
async fn limit_refusals_are_counted() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.limits.rate_limit = Some(shardgate::config::RateLimit {
            statements_per_second: 0.2,
            burst: 1,
        });
        config.limits.max_connections_per_user = Some(1);
    })
    .await;
    let client = proxy.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let error = client.simple_query("SELECT 2").await.unwrap_err();
    assert_eq!(sqlstate(&error), "53400", "{error}");
    let error = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a second connection of the user is refused");
    assert_eq!(sqlstate(&error), "53300", "{error}");
    let metrics = http_get(&proxy, "/metrics").await.1;
    let limited = sample(&metrics, "shardgate_rate_limited_total", &[("user", USER)]);
    assert_eq!(limited, 1.0, "{metrics}");
    let refused = [("reason", "max_connections_per_user")];
    let refused = sample(
        &metrics,
        "shardgate_client_connections_refused_total",
        &refused,
    );
    assert_eq!(refused, 1.0);
    assert_eq!(
        sample(&metrics, "shardgate_rate_limited_total", &[("user", ADMIN)]),
        0.0,
        "every configured user is exported"
    );
}

/// README: queries are those that ran on a backend; a BEGIN the proxy answers itself (it is
/// run on the shard of the transaction's first statement) is not one, the transaction is.
#[tokio::test]
async fn queries_total_counts_what_ran_on_a_backend() {
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

/// Every query is counted, also when a client pipelines them (tokio-postgres, pgjdbc batches,
/// pgbench pipelines): a query whose first message arrives before the previous query's
/// ReadyForQuery is counted, and so is its transaction.
#[tokio::test]
async fn pipelined_queries_are_all_counted() {
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

/// `shardgate_refusals_total` counts statements the proxy refused; a cross-shard read that
/// PostgreSQL failed (division by zero on the shards) is a backend error, not a refusal.
#[tokio::test]
async fn a_failed_cross_shard_read_is_counted_as_an_error_not_a_refusal() {
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

#[tokio::test]
async fn unsupported_statements_are_counted_by_kind() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let client = proxy.connect().await;
    let before = http_get(&proxy, "/metrics").await.1;
    for sql in [
        "INSERT INTO users (user_id) VALUES (NULL)",
        "INSERT INTO users (name) VALUES ('x')",
        "INSERT INTO users (user_id, name) VALUES (NULL, 'y')",
    ] {
        let error = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&error), "0A000", "{sql}: {error}");
    }
    let after = http_get(&proxy, "/metrics").await.1;
    let delta = |kind| {
        let labels = [("kind", kind)];
        sample(&after, "shardgate_unsupported_total", &labels)
            - sample(&before, "shardgate_unsupported_total", &labels)
    };
    assert_eq!(delta("null_key_in_insert"), 2.0, "{after}");
    assert_eq!(delta("insert_without_key"), 1.0, "{after}");
}

/// A client that opens the metrics endpoint and sends half a request does not hold up the
/// next scrape.
#[tokio::test]
async fn a_stalled_metrics_client_does_not_block_scrapes() {
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
