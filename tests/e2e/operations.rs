//! Operating the proxy: the metrics endpoint moves as queries run, the admin console answers
//! every command on a live setup, PAUSE holds new work without an error until RESUME, and
//! only admin users reach the console.
//!
//! Users ids 300_000–300_999 (the shared cluster's `users` table).

use std::time::Duration;

use shardgate::config::{BackendUri, ReadsFrom, Shard, ShardId, UserEntry, UserSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;

use crate::harness::{
    DATABASE, PASSWORD, TestProxy, USER, cluster, connect_direct, demo_map, sharded_config,
    sqlstate,
};

pub(super) const ADMIN: &str = "ops";
pub(super) const ADMIN_PASSWORD: &str = "ops-secret";

/// A proxy over the shared cluster with the demo map read from a file (so RELOAD reads it),
/// a metrics endpoint and an admin user.
pub(super) async fn ops_proxy(
    change: impl FnOnce(&mut shardgate::config::Config),
) -> (TestProxy, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, serde_yaml::to_string(&demo_map(cluster())).unwrap()).unwrap();
    let mut config = sharded_config(cluster());
    config.databases[0].shard_map_path = path.clone();
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.users.push(UserEntry {
        name: ADMIN.into(),
        secret: UserSecret::Password(ADMIN_PASSWORD.into()),
    });
    config.admin_users = vec![ADMIN.into()];
    change(&mut config);
    (TestProxy::start(config).await, dir, path)
}

/// `GET path` on the metrics endpoint: status code and body.
pub(super) async fn http_get(proxy: &TestProxy, path: &str) -> (u16, String) {
    let addr = proxy.proxy.metrics_addr.expect("metrics endpoint");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// The sum of every sample of metric `name` whose labels include all of `labels`.
pub(super) fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric == name && wanted).then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

pub(super) async fn console(proxy: &TestProxy) -> tokio_postgres::Client {
    let conn = format!(
        "host=127.0.0.1 port={} user={ADMIN} password={ADMIN_PASSWORD} dbname=shardgate",
        proxy.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("the admin console accepts its admin");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A console command's rows, each as (column name, value) pairs.
pub(super) async fn rows(
    client: &tokio_postgres::Client,
    command: &str,
) -> Vec<Vec<(String, String)>> {
    let messages = client.simple_query(command).await.unwrap();
    messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| {
                        let name = row.columns()[i].name().to_owned();
                        (name, row.get(i).unwrap_or("NULL").to_owned())
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

pub(super) fn field<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    &row.iter().find(|(n, _)| n == name).expect(name).1
}

/// The demo map's shard of user `id`, by the same router the proxy uses.
fn shard_of_user(id: i64) -> String {
    let config = sharded_config(cluster());
    let router = shardgate::router::Router::new(&config.databases[0].shard_map);
    let sql = format!("SELECT 1 FROM users WHERE user_id = {id}");
    match router.route(&router.plan(&sql), &shardgate::router::Params::none(), None) {
        Ok(shardgate::router::Route::Shard(ShardId(i))) => format!("s{i}"),
        other => panic!("{sql}: {other:?}"),
    }
}

pub(super) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    client
        .simple_query("SELECT count(*) FROM users")
        .await
        .unwrap();
    let error = client
        .simple_query("SELECT * FROM ops_no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01");
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
async fn ready_names_an_unreachable_primary() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.databases[0].shard_map.shards.push(Shard {
            id: ShardId(2),
            name: "s_gone".into(),
            primary: BackendUri::parse("postgres://app:app@127.0.0.1:1/app").unwrap(),
            replicas: vec![],
            reads: ReadsFrom::Primary,
        });
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = http_get(&proxy, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("app/s_gone primary"), "{body}");
    assert!(!body.contains("s0"), "{body}");
    assert_eq!(
        http_get(&proxy, "/health").await.0,
        200,
        "alive all the same"
    );
}

#[tokio::test]
async fn slow_queries_are_counted() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.log.slow_statement = Some(Duration::from_millis(150));
    })
    .await;
    let client = proxy.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    client.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
    let metrics = http_get(&proxy, "/metrics").await.1;
    let slow = sample(&metrics, "shardgate_slow_statements_total", &[]);
    assert_eq!(slow, 1.0, "{metrics}");
}

#[tokio::test]
async fn the_console_answers_every_command() {
    let (proxy, dir, _) = ops_proxy(|_| {}).await;
    let app = proxy.connect().await;
    let id = 300_100;
    app.simple_query(&format!("SELECT * FROM users WHERE user_id = {id}"))
        .await
        .unwrap();
    let admin = console(&proxy).await;

    let shards = rows(&admin, "SHOW SHARDS").await;
    let names: Vec<&str> = shards.iter().map(|r| field(r, "shard")).collect();
    assert_eq!(names, ["s0", "s1"]);
    assert_eq!(field(&shards[0], "default"), "true");

    let pools = rows(&admin, "show pools;").await;
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert!(pools.iter().all(|p| field(p, "paused") == "false"));

    let clients = rows(&admin, "SHOW CLIENTS").await;
    let users: Vec<&str> = clients.iter().map(|r| field(r, "user")).collect();
    assert!(
        users.contains(&USER) && users.contains(&ADMIN),
        "{clients:?}"
    );

    // Each listed server connection is a real backend process of its shard.
    let servers = rows(&admin, "SHOW SERVERS").await;
    let shard = shard_of_user(id);
    let server = servers
        .iter()
        .find(|s| field(s, "shard") == shard)
        .expect("the shard the query ran on has a connection");
    let pid: i32 = field(server, "pid").parse().unwrap();
    let index: usize = shard[1..].parse().unwrap();
    let direct = connect_direct(&cluster().primaries[index]).await;
    let found = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(found, 1, "pid {pid} is a backend of {shard}");

    let stats = rows(&admin, "SHOW STATS").await;
    assert_eq!(field(&stats[0], "database"), DATABASE);
    assert!(field(&stats[0], "queries").parse::<u64>().unwrap() >= 1);
    assert_eq!(field(&stats[0], "single_shard"), "1");

    let map = rows(&admin, "SHOW MAP").await;
    let users_table = map.iter().find(|r| field(r, "table") == "users").unwrap();
    assert_eq!(field(users_table, "key"), "user_id");
    assert_eq!(field(users_table, "epoch"), "1");
    assert!(field(users_table, "strategy").contains("hash"));

    let route = rows(
        &admin,
        &format!("SHOW ROUTE SELECT * FROM users WHERE user_id = {id}"),
    )
    .await;
    assert_eq!(field(&route[0], "route"), format!("route: shard {shard}"));

    // RELOAD: a good map moves the epoch; a broken one is refused and changes nothing.
    admin.simple_query("RELOAD").await.unwrap();
    let epoch = |map: &[Vec<(String, String)>]| field(&map[0], "epoch").to_owned();
    assert_eq!(epoch(&rows(&admin, "SHOW MAP").await), "2");
    std::fs::write(dir.path().join("map.yaml"), "shards: [").unwrap();
    let error = admin.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&error), "55000", "{error}");
    assert_eq!(epoch(&rows(&admin, "SHOW MAP").await), "2");

    let error = admin.simple_query("DROP TABLE users").await.unwrap_err();
    assert_eq!(sqlstate(&error), "42601");
    let error = admin.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(
        sqlstate(&error),
        "0A000",
        "extended protocol is refused clearly"
    );
    assert_eq!(
        rows(&admin, "SHOW HELP").await.len(),
        10,
        "the session goes on"
    );
}

/// The error of a login that must be refused; `rest` is the rest of the connection string
/// (`user=… password=… dbname=…`).
pub(super) async fn login_error(proxy: &TestProxy, rest: &str) -> tokio_postgres::Error {
    let conn = format!("host=127.0.0.1 port={} {rest}", proxy.port());
    let connected = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await;
    connected.err().expect("the login is refused")
}

#[tokio::test]
async fn only_admin_users_reach_the_console() {
    let (proxy, _dir, _) = ops_proxy(|_| {}).await;
    let as_app = format!("user={USER} password={PASSWORD} dbname=shardgate");
    let error = login_error(&proxy, &as_app).await;
    assert_eq!(sqlstate(&error), "42501", "{error}");
    let wrong = format!("user={ADMIN} password=wrong dbname=shardgate");
    let error = login_error(&proxy, &wrong).await;
    assert_eq!(sqlstate(&error), "28P01", "the password is checked first");
}

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

/// A dead primary's breaker opens: once a connect attempt failed and the health check cannot
/// reach it either, its clients get 08006 at once (not after the checkout timeout), the other
/// shard keeps serving, and the shard serves again soon after its primary is back.
#[tokio::test]
async fn a_dead_primary_fails_fast_and_comes_back() {
    use shardgate::local_cluster::StopMode;
    let mut own =
        crate::harness::own_cluster(2, 0, shardgate::local_cluster::BackendAuth::ScramSha256);
    let mut config = crate::harness::config_with_tables(
        &own.info,
        "{br_items: {strategy: hash, key: id, key_type: bigint}}",
    );
    config.pool.checkout_timeout = Duration::from_secs(5);
    let proxy = TestProxy::start(config.clone()).await;
    let client = proxy.connect().await;
    client
        .simple_query("CREATE TABLE br_items (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let router = shardgate::router::Router::new(&config.databases[0].shard_map);
    let shard_of = |id: i64| {
        let sql = format!("SELECT * FROM br_items WHERE id = {id}");
        match router.route(&router.plan(&sql), &shardgate::router::Params::none(), None) {
            Ok(shardgate::router::Route::Shard(ShardId(i))) => i,
            other => panic!("{other:?}"),
        }
    };
    let on_s0 = (1..).find(|&id| shard_of(id) == 0).unwrap();
    let on_s1 = (1..).find(|&id| shard_of(id) == 1).unwrap();
    let insert =
        |id: i64| format!("INSERT INTO br_items (id) VALUES ({id}) ON CONFLICT DO NOTHING");
    // A clean stop: what this test is about is the breaker, not crash recovery (see
    // faults.rs for kill -9).
    own.cluster.shards_mut()[1]
        .primary
        .stop_with(StopMode::Fast)
        .unwrap();
    // The first statement pays for finding out (up to the checkout timeout).
    let error = client.simple_query(&insert(on_s1)).await.unwrap_err();
    assert_eq!(sqlstate(&error), "08006", "{error}");
    tokio::time::sleep(Duration::from_millis(600)).await; // a health check or two
    for _ in 0..3 {
        let began = std::time::Instant::now();
        let error = client.simple_query(&insert(on_s1)).await.unwrap_err();
        assert_eq!(sqlstate(&error), "08006", "{error}");
        assert!(
            began.elapsed() < Duration::from_millis(2500),
            "failed fast, not after the 5 s checkout timeout: {:?}",
            began.elapsed()
        );
    }
    client.simple_query(&insert(on_s0)).await.unwrap();
    own.cluster.shards_mut()[1].primary.start().unwrap();
    eventually(
        "the shard serves again once its primary is back",
        async || client.simple_query(&insert(on_s1)).await.is_ok(),
    )
    .await;
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
