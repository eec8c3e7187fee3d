//! The admin console: every command answers on a live setup, only admin users reach it
//! whatever the database name's spelling or startup options, and SHOW CLIENTS (and the client
//! gauges) drop clients as they leave.
//!
//! Users 300_100 and 400_040 (in `users`).

use super::{
    ADMIN, console, eventually, field, http_get, login_error, ops_proxy, rows, sample, select_user,
};
use crate::harness::{DATABASE, PASSWORD, USER, cluster, connect_direct, sqlstate};
use crate::routing::shard_of_user;

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
    let shard = format!("s{}", shard_of_user(id));
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

    // Answers (its rows are checked in `transactions::show_transactions_…`).
    rows(&admin, "SHOW TRANSACTIONS").await;
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
    let error = admin.simple_query("SHOW FLEET").await.unwrap_err();
    assert_eq!(sqlstate(&error), "55000", "no fleet here: {error}");
    assert_eq!(
        rows(&admin, "SHOW HELP").await.len(),
        16,
        "the session goes on"
    );
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

/// A user other than an admin never reaches the console, whatever database name spelling or
/// startup options it tries.
#[tokio::test]
async fn the_console_refuses_non_admins_in_any_spelling() {
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

/// Clients leave SHOW CLIENTS and the gauges when they disconnect, also mid-transaction and
/// when refused at login.
#[tokio::test]
async fn clients_leave_the_registry_when_they_disconnect() {
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
