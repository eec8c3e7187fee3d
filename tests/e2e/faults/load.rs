//! Load the proxy must absorb without an error: a storm of shard-map reloads (some invalid)
//! under writes, and a thousand clients sharing a pool of twenty backends.

use std::time::{Duration, Instant};

use shardgate::config::{ClientAuthMethod, UserSecret};

use super::ProxyPanics;
use crate::harness::{
    TestProxy, cluster, config, connect_direct, demo_map_with_tenants, sharded_config,
};

const STORM_FIRST_ID: i64 = 910_000;
const STORM_WRITERS: i64 = 4;
const STORM_ROWS: i64 = 150;

/// The demo map with `tenants` added to the documents directory, on `shard` each.
fn map_with_tenants(tenants: std::ops::Range<i64>, shard: &str) -> String {
    let entries: Vec<(i64, &str)> = tenants.map(|tenant| (tenant, shard)).collect();
    demo_map_with_tenants(&entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_under_writes_costs_no_client_an_error() {
    let panics = ProxyPanics::watch();
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, map_with_tenants(0..0, "s0")).unwrap();
    let mut config = sharded_config(cluster);
    config.databases[0].shard_map_path = path.clone();
    let proxy = TestProxy::start(config).await;
    let last = STORM_FIRST_ID + STORM_WRITERS * STORM_ROWS;
    let range = format!("user_id >= {STORM_FIRST_ID} AND user_id < {last}");
    for uri in &cluster.primaries {
        let sql = format!("DELETE FROM users WHERE {range}");
        connect_direct(uri).await.execute(&sql, &[]).await.unwrap();
    }
    let mut writers = Vec::new();
    for writer in 0..STORM_WRITERS {
        let client = proxy.connect().await;
        writers.push(tokio::spawn(async move {
            let first = STORM_FIRST_ID + writer * STORM_ROWS;
            // Pairs of rows: one autocommit insert, one inside a transaction, across reloads.
            for id in (first..first + STORM_ROWS).step_by(2) {
                let insert = |id| format!("INSERT INTO users (user_id, name) VALUES ({id}, 's')");
                client.batch_execute(&insert(id)).await?;
                client.batch_execute("BEGIN").await?;
                client.batch_execute(&insert(id + 1)).await?;
                tokio::time::sleep(Duration::from_millis(3)).await;
                client.batch_execute("COMMIT").await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        }));
    }
    let mut epoch = proxy.proxy.epoch();
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..40i64 {
        let shard = ["s0", "s1"][round as usize % 2];
        if round % 4 == 3 {
            std::fs::write(&path, map_with_tenants(round..round + 1, "nowhere")).unwrap();
            let error = proxy
                .proxy
                .reload()
                .await
                .expect_err("an invalid map is rejected");
            assert!(error.problems.contains("\"nowhere\""), "{error}");
            invalid += 1;
        } else {
            std::fs::write(&path, map_with_tenants(1000..1001 + round, shard)).unwrap();
            let reloaded = proxy.proxy.reload().await.expect("a valid map is taken");
            assert!(
                reloaded.held.is_empty(),
                "no stored row moves: {reloaded:?}"
            );
            let next = reloaded.epoch;
            assert!(next > epoch, "epoch {next} after {epoch}");
            epoch = next;
            valid += 1;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!((valid, invalid), (30, 10));
    for writer in writers {
        writer.await.unwrap().expect("no writer saw an error");
    }
    let mut total = 0i64;
    for uri in &cluster.primaries {
        let sql = format!("SELECT count(*) FROM users WHERE {range}");
        let row = connect_direct(uri)
            .await
            .query_one(&sql, &[])
            .await
            .unwrap();
        total += row.get::<_, i64>(0);
    }
    assert_eq!(
        total,
        STORM_WRITERS * STORM_ROWS,
        "every acknowledged row, once"
    );
    panics.assert_none();
}

/// The proxy's (this process's) resident set, in KiB, with freed memory handed back first so
/// that what is measured is what is still allocated.
fn rss_kib() -> u64 {
    // SAFETY: malloc_trim only returns free heap pages to the OS.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Makes room for `needed` open files (two sockets per client: the client's and the proxy's).
fn raise_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct owned here.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "open files limit {}",
        limit.rlim_cur
    );
}

/// Connects `n` clients at once, each running a few queries while all of them are open,
/// and returns the errors they saw.
async fn crowd(proxy: &TestProxy, n: usize) -> Vec<String> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut clients = Vec::new();
    for i in 0..n {
        let (conn_str, barrier) = (proxy.conn_str(), barrier.clone());
        clients.push(tokio::spawn(async move {
            let connected = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await;
            barrier.wait().await; // all n open at once (or failed: never strand the others)
            let (client, connection) = connected.map_err(|e| format!("connect: {e}"))?;
            tokio::spawn(connection);
            for q in 0..3 {
                tokio::time::sleep(Duration::from_millis(100 + (i as u64 * 7 + q) % 200)).await;
                let row = client
                    .query_one("SELECT $1::int4 + 1", &[&(i as i32)])
                    .await;
                let value: i32 = row.map_err(|e| format!("query: {e}"))?.get(0);
                assert_eq!(value, i as i32 + 1);
            }
            Ok::<(), String>(())
        }));
    }
    let mut errors = Vec::new();
    for client in clients {
        let outcome = tokio::time::timeout(Duration::from_secs(60), client).await;
        match outcome.expect("every client finishes").unwrap() {
            Ok(()) => {}
            Err(error) => errors.push(error),
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_share_a_pool_of_twenty_without_an_error_or_a_leak() {
    let panics = ProxyPanics::watch();
    const CLIENTS: usize = 1000;
    raise_open_files(3 * CLIENTS as u64 + 200);
    let mut config = config(cluster());
    // Trust: the test is about sessions and the pool, not 1,000 SCRAM exchanges.
    config.auth_method = ClientAuthMethod::Trust;
    config.users[0].secret = UserSecret::None;
    config.pool.size = 20;
    config.pool.checkout_timeout = Duration::from_secs(20);
    config.limits.max_client_connections = 2 * CLIENTS;
    let proxy = TestProxy::start(config).await;
    let warm = crowd(&proxy, 20).await; // pools and buffers at their working size
    assert!(warm.is_empty(), "{warm:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib();
    let mut after = Vec::new();
    for round in 0..2 {
        let began = Instant::now();
        let errors = crowd(&proxy, CLIENTS).await;
        assert!(
            errors.is_empty(),
            "round {round}: {} errors: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        let took = began.elapsed();
        wait_for_no_clients(&proxy).await;
        after.push(rss_kib());
        eprintln!(
            "round {round}: {CLIENTS} clients in {took:?}; RSS idle {idle} KiB, after {} KiB",
            after[round]
        );
    }
    // Generous: allocator slack and tokio's grown structures may stay, a leak per client
    // (or per session buffer) would grow with each round.
    assert!(
        after[0] < idle + 64 * 1024,
        "RSS {} KiB after, {idle} KiB idle",
        after[0]
    );
    assert!(
        after[1] < after[0] + 16 * 1024,
        "RSS grew from {} to {} KiB over a second round",
        after[0],
        after[1]
    );
    panics.assert_none();
}

async fn wait_for_no_clients(proxy: &TestProxy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.proxy.connection_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} clients left",
            proxy.proxy.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
