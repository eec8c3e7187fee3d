//! SIGKILL of a replica under cross-shard reads, and of a primary under writes to both shards.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use shardgate::local_cluster::BackendAuth;

use super::{ProxyPanics, code_of, ids_on, kill_postmaster, restart, stored_ids};
use crate::harness::{
    TestProxy, config_with_tables, connect_direct, own_cluster, wait_for_replicas,
};

/// SQLSTATEs a client may see for a write to a shard whose primary died (README: shard
/// unreachable, the server's own "terminating connection" on a backend killed under it), and
/// "closed" for the statements a client sends on a connection that such a FATAL ended.
const DEAD_PRIMARY_CODES: [&str; 3] = ["08006", "57P01", "closed"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_cross_shard_readers_no_error() {
    let panics = ProxyPanics::watch();
    let own = own_cluster(2, 1, BackendAuth::ScramSha256);
    let config = config_with_tables(
        &own.info,
        "{ft_reads: {strategy: hash, key: id, key_type: bigint}}",
    );
    let proxy = TestProxy::start(config).await;
    let setup = proxy.connect().await;
    setup
        .batch_execute("CREATE TABLE ft_reads (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let rows: Vec<String> = (1..=200).map(|id| format!("({id})")).collect();
    let insert = format!("INSERT INTO ft_reads (id) VALUES {}", rows.join(", "));
    setup.batch_execute(&insert).await.unwrap();
    wait_for_replicas(&own.info).await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        let client = proxy.connect().await;
        readers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(4);
            let mut reads = 0;
            while Instant::now() < deadline {
                let row = client.query_one("SELECT count(*) FROM ft_reads", &[]).await;
                let count: i64 = row.map_err(|e| format!("{e:?}"))?.get(0);
                assert_eq!(count, 200, "a merged read over both shards");
                reads += 1;
            }
            Ok::<u32, String>(reads)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let replica = &own.cluster.shards()[0].replicas[0];
    tokio::task::block_in_place(|| kill_postmaster(replica));
    let mut total = 0;
    for reader in readers {
        total += reader.await.unwrap().expect("no reader saw an error");
    }
    assert!(total > 20, "readers kept reading: {total}");
    panics.assert_none();
}

/// What one writer saw.
#[derive(Default)]
struct Written {
    acknowledged: BTreeSet<i64>,
    attempted: BTreeSet<i64>,
    /// (SQLSTATE, how long the failed statement took).
    errors: Vec<(String, Duration)>,
    /// Writes to s0 acknowledged while s1's primary was dead.
    s0_during_outage: usize,
    /// Writes to s1 acknowledged after its primary was restarted.
    s1_after_restart: usize,
}

/// Where the test is: s1's primary before its kill, dead, restarted.
const BEFORE: u8 = 0;
const DEAD: u8 = 1;
const RESTARTED: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_only_its_writes_and_loses_no_acknowledged_one() {
    let panics = ProxyPanics::watch();
    const WRITERS: usize = 6;
    const ROWS: usize = 3000;
    let mut own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let mut config = config_with_tables(
        &own.info,
        "{ft_kill: {strategy: hash, key: id, key_type: bigint}}",
    );
    config.pool.checkout_timeout = Duration::from_secs(5);
    let proxy = TestProxy::start(config.clone()).await;
    let setup = proxy.connect().await;
    setup
        .batch_execute("CREATE TABLE ft_kill (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let (s0, s1): (BTreeSet<i64>, BTreeSet<i64>) = (
        ids_on(&config, "ft_kill", 0, WRITERS * ROWS)
            .into_iter()
            .collect(),
        ids_on(&config, "ft_kill", 1, WRITERS * ROWS)
            .into_iter()
            .collect(),
    );
    let mut ids: Vec<i64> = s0.iter().chain(&s1).copied().collect();
    ids.sort_unstable();
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mine: Vec<i64> = ids.iter().copied().skip(writer).step_by(WRITERS).collect();
        let (conn_str, s0, phase) = (proxy.conn_str(), s0.clone(), phase.clone());
        writers.push(tokio::spawn(async move {
            write_until(&conn_str, &mine, &s0, &phase, started).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let primary = &mut own.cluster.shards_mut()[1].primary;
    tokio::task::block_in_place(|| kill_postmaster(primary));
    phase.store(DEAD, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    tokio::task::block_in_place(|| restart(primary));
    phase.store(RESTARTED, Ordering::SeqCst);
    let mut seen = Written::default();
    for writer in writers {
        let written = writer.await.unwrap();
        seen.acknowledged.extend(written.acknowledged);
        seen.attempted.extend(written.attempted);
        seen.errors.extend(written.errors);
        seen.s0_during_outage += written.s0_during_outage;
        seen.s1_after_restart += written.s1_after_restart;
    }
    let stored = stored_ids(&own.info.primaries, "ft_kill").await;
    let slowest = seen.errors.iter().map(|e| e.1).max();
    eprintln!(
        "{} acknowledged ({} on s0 during the outage, {} on s1 after the restart), {} stored, \
         {} errors {:?}, slowest {slowest:?}",
        seen.acknowledged.len(),
        seen.s0_during_outage,
        seen.s1_after_restart,
        stored.len(),
        seen.errors.len(),
        seen.errors.iter().map(|e| &e.0).collect::<BTreeSet<_>>()
    );
    let lost: Vec<_> = seen.acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged inserts lost: {lost:?}");
    assert!(
        stored.is_subset(&seen.attempted),
        "only rows that were sent"
    );
    assert!(!seen.errors.is_empty(), "the kill was felt by s1's writers");
    for (code, took) in &seen.errors {
        assert!(DEAD_PRIMARY_CODES.contains(&code.as_str()), "{code}");
        // Fast: well within the 5 s checkout timeout (the breaker, see README).
        assert!(
            took < &Duration::from_secs(2),
            "{code} took {took:?}: not fast"
        );
    }
    assert!(seen.s0_during_outage > 10, "s0 kept serving");
    assert!(
        seen.s1_after_restart > 0,
        "s1 served again after its restart"
    );
    assert!(seen.acknowledged.iter().any(|id| s1.contains(id)));
    panics.assert_none();
}

/// Inserts `ids` one by one (autocommit) until they run out or 7 s passed since `started`,
/// reconnecting when a FATAL ended the connection.
async fn write_until(
    conn_str: &str,
    ids: &[i64],
    s0: &BTreeSet<i64>,
    phase: &AtomicU8,
    started: Instant,
) -> Written {
    let mut written = Written::default();
    let mut client = connect_direct(conn_str).await;
    for &id in ids {
        if started.elapsed() > Duration::from_secs(7) {
            break;
        }
        if client.is_closed() {
            client = connect_direct(conn_str).await;
        }
        written.attempted.insert(id);
        let began = Instant::now();
        match client
            .execute("INSERT INTO ft_kill (id) VALUES ($1)", &[&id])
            .await
        {
            Ok(_) => {
                written.acknowledged.insert(id);
                match (phase.load(Ordering::SeqCst), s0.contains(&id)) {
                    (DEAD, true) => written.s0_during_outage += 1,
                    (RESTARTED, false) => written.s1_after_restart += 1,
                    _ => {}
                }
            }
            Err(error) => written.errors.push((code_of(&error), began.elapsed())),
        }
    }
    written
}
