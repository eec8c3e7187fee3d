//! Operating the proxy: the metrics endpoint, readiness and breakers, the admin console, PAUSE
//! and RESUME, and the slow-query log, each in a submodule. This file holds what they share: a
//! proxy with a metrics endpoint and an admin user, the metrics and console readers.
//!
//! Users ids 300_000–300_999 and 400_000–400_999 (the shared cluster's `users` table; 400_060
//! is `limits::shutdown`'s); table `br_items` in a cluster of its own. Each submodule names
//! the ids it uses.

mod admin_console;
mod health;
mod held_edits;
mod logging;
mod metrics;
mod pause;
mod reshard;
mod reshard_fleet;

use std::time::Duration;

use shardgate::config::{UserEntry, UserSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;

use crate::harness::{TestProxy, cluster, demo_map, sharded_config};
use crate::limits::SOON;

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
    with_admin(&mut config);
    change(&mut config);
    (TestProxy::start(config).await, dir, path)
}

/// Adds the admin user [`ADMIN`], for [`console`].
pub(super) fn with_admin(config: &mut shardgate::config::Config) {
    config.users.push(UserEntry {
        name: ADMIN.into(),
        secret: UserSecret::Password(ADMIN_PASSWORD.into()),
    });
    config.admin_users = vec![ADMIN.into()];
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

/// The admin console's connection string for [`ADMIN`].
pub(super) fn console_conn(proxy: &TestProxy) -> String {
    format!(
        "host=127.0.0.1 port={} user={ADMIN} password={ADMIN_PASSWORD} dbname=shardgate",
        proxy.port()
    )
}

pub(super) async fn console(proxy: &TestProxy) -> tokio_postgres::Client {
    let conn = console_conn(proxy);
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

pub(super) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The error of a login that must be refused; `rest` is the rest of the connection string
/// (`user=… password=… dbname=…`).
pub(super) async fn login_error(proxy: &TestProxy, rest: &str) -> tokio_postgres::Error {
    let conn = format!("host=127.0.0.1 port={} {rest}", proxy.port());
    let connected = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await;
    connected.err().expect("the login is refused")
}

/// A read of user `id`'s name.
pub(super) fn select_user(id: i64) -> String {
    format!("SELECT name FROM users WHERE user_id = {id}")
}

/// A statement run in a task of its own (it may wait on a paused pool), or a client's
/// connection task.
pub(super) type Running = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

/// Starts `sql` on `client` in a task of its own.
pub(super) fn start_read(client: tokio_postgres::Client, sql: String) -> Running {
    tokio::spawn(async move { client.simple_query(&sql).await.map(|_| ()) })
}

/// Expects a started read to finish within [`SOON`], successfully.
pub(super) async fn finished(read: Running) {
    tokio::time::timeout(SOON, read)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Returns once SHOW POOLS on the console `admin` counts a session waiting.
pub(super) async fn until_a_read_waits(admin: &tokio_postgres::Client) {
    eventually("the read waits on the paused pool", async || {
        let pools = rows(admin, "SHOW POOLS").await;
        pools.iter().any(|p| field(p, "waiting") != "0")
    })
    .await;
}

/// Pauses every pool from the console, then starts a read by key on a client of its own; it
/// returns once the read waits. The read's task and its client's connection task are returned
/// so a test can end either.
pub(super) async fn read_waiting_on_a_pause(
    proxy: &TestProxy,
    id: i64,
) -> (tokio_postgres::Client, Running, Running) {
    let admin = console(proxy).await;
    let (client, connection) = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    admin.simple_query("PAUSE").await.unwrap();
    let read = start_read(client, select_user(id));
    until_a_read_waits(&admin).await;
    (admin, read, connection)
}
