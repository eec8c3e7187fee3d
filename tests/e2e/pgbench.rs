//! pgbench through the proxy in every query mode, with more clients than backends.

use std::process::Command;

use shardgate::local_cluster::PgBinaries;

use crate::harness::{
    DATABASE, TestProxy, cluster, connect_direct, run_with_stdin, sharded_config, text,
};
use shardgate::router::{Params, Route, Router};

fn pgbench(proxy: &TestProxy, args: &[&str]) -> Command {
    let binaries = PgBinaries::find().expect("PostgreSQL binaries");
    let mut command = proxy.tool(binaries.pgbench.expect("pgbench is installed"));
    command.args(args).arg(DATABASE);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_clean_in_simple_extended_and_prepared_modes() {
    let proxy = TestProxy::shared().await;
    let out = run_with_stdin(pgbench(&proxy, &["-i", "-q", "-s", "1"]), None).await;
    assert!(out.status.success(), "pgbench -i failed: {:?}", text(&out));
    for mode in ["simple", "extended", "prepared"] {
        let out = run_with_stdin(
            pgbench(&proxy, &["-c", "16", "-j", "2", "-T", "5", "-M", mode]),
            None,
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "pgbench -M {mode} failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 (0.000%)"),
            "pgbench -M {mode}:\n{stdout}\n{stderr}"
        );
        let processed = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            processed > 100,
            "pgbench -M {mode} processed only {processed} transactions:\n{stdout}"
        );
    }
}

/// pgbench's extended mode sends its parameters in text format: keys bound as text route like
/// literals and binary values (checked row by row on the shards themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_text_parameters_route_by_shard_key() {
    const FIRST: i64 = 50_000;
    const LAST: i64 = 50_199;
    let cluster = cluster();
    let config = sharded_config(cluster);
    for uri in &cluster.primaries {
        let sql = format!("DELETE FROM users WHERE user_id BETWEEN {FIRST} AND {LAST}");
        connect_direct(uri).await.execute(&sql, &[]).await.unwrap();
    }
    let router = Router::new(&config.databases[0].shard_map);
    let proxy = TestProxy::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("insert.sql");
    let body = format!(
        "\\set uid random({FIRST}, {LAST})\n\
         INSERT INTO users (user_id, name) VALUES (:uid, 'pgbench') ON CONFLICT (user_id) DO NOTHING;\n\
         SELECT name FROM users WHERE user_id = :uid;\n"
    );
    std::fs::write(&script, body).unwrap();
    let script = script.to_str().unwrap();
    let args = [
        "-n", "-c", "4", "-j", "2", "-t", "100", "-M", "extended", "-f", script,
    ];
    let out = run_with_stdin(pgbench(&proxy, &args), None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("number of failed transactions: 0 (0.000%)"),
        "{stdout}\n{stderr}"
    );
    let mut rows = 0;
    for (index, uri) in cluster.primaries.iter().enumerate() {
        let sql = format!("SELECT user_id FROM users WHERE user_id BETWEEN {FIRST} AND {LAST}");
        for row in connect_direct(uri).await.query(&sql, &[]).await.unwrap() {
            let id: i64 = row.get(0);
            let plan = router.plan(&format!("SELECT 1 FROM users WHERE user_id = {id}"));
            let route = router.route(&plan, &Params::none(), None);
            assert_eq!(
                route,
                Ok(Route::Shard(shardgate::config::ShardId(index as u32))),
                "user {id}"
            );
            rows += 1;
        }
    }
    assert!(rows > 50, "pgbench inserted only {rows} distinct users");
}

/// pgbench's own tables sharded the way its schema invites: accounts hashed on `aid` with
/// their history beside them, branches and tellers copied to every shard.
const PGBENCH_MAP: &str = "{pgbench_accounts: {strategy: hash, key: aid, key_type: integer}, \
     pgbench_history: {colocated_with: pgbench_accounts, key: aid}, \
     pgbench_branches: {strategy: reference}, pgbench_tellers: {strategy: reference}}";

/// One integer from each shard's primary.
async fn per_shard(cluster: &crate::harness::ClusterInfo, sql: &str) -> Vec<i64> {
    let mut values = Vec::new();
    for uri in &cluster.primaries {
        let row = connect_direct(uri).await.query_one(sql, &[]).await.unwrap();
        values.push(row.get(0));
    }
    values
}

/// `pgbench -i` through the proxy into sharded pgbench tables: every account lands once, on
/// its shard; branches and tellers on every shard; its VACUUM and primary keys on every
/// shard. pgbench's TPC-B run over them then keeps its invariant: the accounts' balances
/// (summed over shards), the branches', the tellers' and the history's deltas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initializes_and_runs_on_sharded_tables() {
    let own = crate::harness::own_cluster(2, 0, shardgate::local_cluster::BackendAuth::ScramSha256);
    let cluster = &own.info;
    let config = crate::harness::config_with_tables(cluster, PGBENCH_MAP);
    let router = Router::new(&config.databases[0].shard_map);
    let proxy = TestProxy::start(config).await;
    let out = run_with_stdin(pgbench(&proxy, &["-i", "-q", "-s", "2"]), None).await;
    assert!(out.status.success(), "pgbench -i failed: {:?}", text(&out));

    let accounts = per_shard(cluster, "SELECT count(*) FROM pgbench_accounts").await;
    assert_eq!(accounts.iter().sum::<i64>(), 200_000, "{accounts:?}");
    assert!(accounts.iter().all(|n| *n > 50_000), "{accounts:?}");
    assert_eq!(
        per_shard(cluster, "SELECT count(*) FROM pgbench_branches").await,
        [2, 2]
    );
    assert_eq!(
        per_shard(cluster, "SELECT count(*) FROM pgbench_tellers").await,
        [20, 20]
    );
    let keys = "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'pgbench_%_pkey'";
    assert_eq!(
        per_shard(cluster, keys).await,
        [3, 3],
        "primary keys on every shard"
    );
    let vacuumed = "SELECT count(*) FROM pg_stat_user_tables \
                    WHERE relname LIKE 'pgbench_%' AND last_vacuum IS NOT NULL";
    assert_eq!(
        per_shard(cluster, vacuumed).await,
        [4, 4],
        "VACUUM on every shard"
    );
    for (index, uri) in cluster.primaries.iter().enumerate() {
        let sql = "SELECT aid FROM pgbench_accounts WHERE aid % 997 = 0";
        for row in connect_direct(uri).await.query(sql, &[]).await.unwrap() {
            let aid: i32 = row.get(0);
            let plan = router.plan(&format!("SELECT 1 FROM pgbench_accounts WHERE aid = {aid}"));
            let route = router.route(&plan, &Params::none(), None);
            let here = Route::Shard(shardgate::config::ShardId(index as u32));
            assert_eq!(route, Ok(here), "account {aid}");
        }
    }

    let args = ["-c", "4", "-j", "2", "-t", "40", "-M", "extended"];
    let out = run_with_stdin(pgbench(&proxy, &args), None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("number of failed transactions: 0 (0.000%)"),
        "{stdout}"
    );
    let sum = |sql| per_shard(cluster, sql);
    let accounts: i64 = sum("SELECT sum(abalance) FROM pgbench_accounts")
        .await
        .iter()
        .sum();
    let history: i64 = sum("SELECT coalesce(sum(delta), 0) FROM pgbench_history")
        .await
        .iter()
        .sum();
    let branches = sum("SELECT sum(bbalance) FROM pgbench_branches").await;
    let tellers = sum("SELECT sum(tbalance) FROM pgbench_tellers").await;
    assert_eq!(branches[0], branches[1], "branches alike on every shard");
    assert_eq!(tellers[0], tellers[1], "tellers alike on every shard");
    assert_eq!([accounts, history, tellers[0]], [branches[0]; 3]);
    let rows: i64 = sum("SELECT count(*) FROM pgbench_history")
        .await
        .iter()
        .sum();
    assert_eq!(rows, 160, "one history row per transaction");
}
