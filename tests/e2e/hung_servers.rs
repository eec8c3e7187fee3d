//! Servers that stop answering: every process of one server stopped with SIGSTOP, so its
//! sockets stay open and connects still complete, but nothing answers. Clients must not wait on
//! it past the documented bound (`check_interval + check_timeout`, plus slack here for a busy
//! machine and a read run again elsewhere): a read is served elsewhere or fails with 08006,
//! the server leaves rotation, and it comes back after SIGCONT. Each test has its own cluster.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shardgate::config::{UserEntry, UserSecret};
use shardgate::local_cluster::BackendAuth;

use crate::harness::{
    OwnCluster, TestProxy, config_with_tables, connect_direct, own_cluster, wait_for_replicas,
};
use crate::operations::{ADMIN, ADMIN_PASSWORD, console, field, rows};

const CHECK_INTERVAL: Duration = Duration::from_millis(250);
const CHECK_TIMEOUT: Duration = Duration::from_millis(1000);
/// The documented bound, 1.25 s here, plus 3 s of slack.
const LIMIT: Duration = Duration::from_millis(250 + 1000 + 3000);
/// How long a server stays stopped while clients work.
const FROZEN_FOR: Duration = Duration::from_secs(6);

const TABLE: &str = "{hs_items: {strategy: hash, key: id, key_type: bigint}}";

/// Every process of one server, stopped; continued again when dropped, so a failing test
/// never leaves a stopped server behind.
struct Frozen(Vec<libc::pid_t>);

impl Frozen {
    /// Stops the postmaster of `data_dir` first (so it forks nothing new), then each of its
    /// children: every backend is its own process group leader, so a group signal misses them.
    fn server(data_dir: &Path) -> Self {
        let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
        let postmaster: libc::pid_t = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut frozen = Frozen(vec![postmaster]);
        signal(postmaster, libc::SIGSTOP);
        for child in children_of(postmaster) {
            frozen.0.push(child);
            signal(child, libc::SIGSTOP);
        }
        frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in self.0.iter().rev() {
            signal(pid, libc::SIGCONT);
        }
    }
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid read from the server's own files; no memory is involved.
    unsafe { libc::kill(pid, signal) };
}

/// Processes whose parent is `parent` (from /proc/PID/stat: the fields after `(comm)`).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    let pids = entries.filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok());
    pids.filter(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after_comm.split_whitespace().nth(1) == Some(&parent.to_string())
    })
    .collect()
}

/// Fails unless a query sent straight to `uri` really hangs now.
async fn assert_hangs(uri: &str) {
    let query = async { connect_direct(uri).await.simple_query("SELECT 1").await };
    let answered = tokio::time::timeout(Duration::from_millis(800), query).await;
    assert!(answered.is_err(), "the stopped server still answers");
}

/// A proxy over `own` with fast health checks and an admin user, and `hs_items` holding ids
/// 1..=100.
async fn proxy_with_items(own: &OwnCluster) -> TestProxy {
    let mut config = config_with_tables(&own.info, TABLE);
    config.replicas.check_interval = CHECK_INTERVAL;
    config.replicas.check_timeout = CHECK_TIMEOUT;
    config.transactions.recovery_interval = Duration::from_millis(200);
    config.transactions.recover_after = Duration::from_secs(1);
    config.users.push(UserEntry {
        name: ADMIN.into(),
        secret: UserSecret::Password(ADMIN_PASSWORD.into()),
    });
    config.admin_users = vec![ADMIN.into()];
    let proxy = TestProxy::start(config).await;
    let values: Vec<String> = (1..=100).map(|i| format!("({i})")).collect();
    let client = proxy.connect().await;
    let create = "CREATE TABLE hs_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)";
    client.simple_query(create).await.unwrap();
    let insert = format!("INSERT INTO hs_items (id) VALUES {}", values.join(", "));
    client.simple_query(&insert).await.unwrap();
    wait_for_replicas(&own.info).await;
    proxy
}

/// An id of 1..=100 on shard s0 and one on s1, by the proxy's own router.
fn ids_on_each_shard(own: &OwnCluster) -> (i64, i64) {
    first_on_each_shard(own, 1..=100)
}

/// The first id of `ids` on shard s0 and the first on s1, by the proxy's own router.
fn first_on_each_shard(own: &OwnCluster, ids: std::ops::RangeInclusive<i64>) -> (i64, i64) {
    let config = config_with_tables(&own.info, TABLE);
    let router = shardgate::router::Router::new(&config.databases[0].shard_map);
    let params = shardgate::router::Params::none();
    let shard_of = |id: i64| {
        let plan = router.plan(&format!("SELECT * FROM hs_items WHERE id = {id}"));
        match router.route(&plan, &params, None) {
            Ok(shardgate::router::Route::Shard(shard)) => shard.0,
            other => panic!("{other:?}"),
        }
    };
    let on = |shard| ids.clone().find(|&id| shard_of(id) == shard).unwrap();
    (on(0), on(1))
}

/// One client statement of the workload.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Every row, from both shards (simple protocol).
    CrossRead,
    /// One row, simple protocol.
    Read(i64),
    /// One row, extended protocol.
    ExtendedRead(i64),
    /// One row updated.
    Write(i64),
}

async fn run(client: &tokio_postgres::Client, op: Op) -> Result<(), tokio_postgres::Error> {
    let data_rows = |messages: Vec<tokio_postgres::SimpleQueryMessage>| {
        let is_row = |m: &&_| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_));
        messages.iter().filter(is_row).count()
    };
    match op {
        Op::CrossRead => {
            let sql = "SELECT id FROM hs_items WHERE id BETWEEN 1 AND 100";
            assert_eq!(data_rows(client.simple_query(sql).await?), 100);
        }
        Op::Read(id) => {
            let sql = format!("SELECT id FROM hs_items WHERE id = {id}");
            assert_eq!(data_rows(client.simple_query(&sql).await?), 1);
        }
        Op::ExtendedRead(id) => {
            let sql = "SELECT id FROM hs_items WHERE id = $1";
            assert_eq!(client.query(sql, &[&id]).await?.len(), 1);
        }
        Op::Write(id) => {
            let sql = format!("UPDATE hs_items SET n = n + 1 WHERE id = {id}");
            client.simple_query(&sql).await?;
        }
    }
    Ok(())
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    /// Messages of the 08006 errors.
    lost: Vec<String>,
    /// Anything else: another error, or a wait past [`LIMIT`].
    wrong: Vec<String>,
    /// The longest wait for one statement.
    slowest: Duration,
}

/// Runs `ops` in turn (reconnecting after an error) until `until` is set.
async fn work(conn_str: String, ops: Vec<Op>, until: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut client: Option<tokio_postgres::Client> = None;
    for op in ops.iter().cycle() {
        if until.load(Ordering::Relaxed) {
            break;
        }
        let attempt = async {
            if client.is_none() {
                let (new, connection) =
                    tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client = Some(new);
            }
            run(client.as_ref().expect("just connected"), *op).await
        };
        let began = Instant::now();
        let outcome = tokio::time::timeout(LIMIT, attempt).await;
        tally.slowest = tally.slowest.max(began.elapsed());
        match outcome {
            Ok(Ok(())) => tally.ok += 1,
            Ok(Err(e)) => {
                client = None;
                match e.as_db_error().map(|db| db.code().code()) {
                    Some("08006") => tally.lost.push(e.as_db_error().unwrap().message().into()),
                    _ => tally.wrong.push(format!("{op:?}: {e}")),
                }
            }
            Err(_) => {
                client = None;
                tally.wrong.push(format!("{op:?} waited over {LIMIT:?}"));
            }
        }
    }
    tally
}

/// Starts one client per entry of `workloads`; set the flag to stop them.
fn start_clients(
    proxy: &TestProxy,
    workloads: Vec<Vec<Op>>,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<Tally>>) {
    let until = Arc::new(AtomicBool::new(false));
    let clients = (workloads.into_iter())
        .map(|ops| tokio::spawn(work(proxy.conn_str(), ops, until.clone())))
        .collect();
    (until, clients)
}

async fn stop_clients(
    until: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Tally>>,
) -> Vec<Tally> {
    until.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for client in clients {
        tallies.push(client.await.unwrap());
    }
    let slowest = tallies.iter().map(|t| t.slowest).max();
    eprintln!("slowest statement: {slowest:?}");
    tallies
}

/// Waits until SHOW SHARDS says `column` of `shard` is `value`.
async fn wait_for_shards(
    proxy: &TestProxy,
    shard: &str,
    column: &str,
    value: &str,
    within: Duration,
) {
    let admin = console(proxy).await;
    let began = Instant::now();
    loop {
        let shards = rows(&admin, "SHOW SHARDS").await;
        let row = shards.iter().find(|r| field(r, "shard") == shard).unwrap();
        if field(row, column) == value {
            return;
        }
        assert!(
            began.elapsed() < within,
            "SHOW SHARDS: {shard} {column} is not {value} after {within:?}: {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hung_replica_leaves_rotation_and_its_reads_are_served_elsewhere() {
    let own = own_cluster(2, 1, BackendAuth::ScramSha256);
    let proxy = proxy_with_items(&own).await;
    let (on_s0, on_s1) = ids_on_each_shard(&own);
    let on_s0_ops = vec![Op::CrossRead, Op::Read(on_s0), Op::ExtendedRead(on_s0)];
    let elsewhere = vec![Op::CrossRead, Op::Read(on_s1)];
    let workloads = [on_s0_ops, elsewhere].into_iter().cycle().take(8).collect();
    let (until, clients) = start_clients(&proxy, workloads);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    let frozen = Frozen::server(own.cluster.shards()[0].replicas[0].data_dir());
    assert_hangs(&own.info.replicas[0][0]).await;
    wait_for_shards(&proxy, "s0", "replicas_serving", "0", LIMIT).await;
    eprintln!(
        "hung replica out of rotation {:?} after SIGSTOP",
        frozen_at.elapsed()
    );
    tokio::time::sleep(FROZEN_FOR.saturating_sub(frozen_at.elapsed())).await;
    let tallies = stop_clients(until, clients).await;
    drop(frozen);
    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    let wrong: Vec<_> = tallies.iter().flat_map(|t| &t.wrong).collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(
        ok > 20,
        "reads were served while the replica was stopped: {tallies:?}"
    );
    for message in tallies.iter().flat_map(|t| &t.lost) {
        assert!(
            message.contains("s0") && message.contains("stopped answering"),
            "{message}"
        );
    }
    wait_for_shards(
        &proxy,
        "s0",
        "replicas_serving",
        "1",
        Duration::from_secs(15),
    )
    .await;
    run(&proxy.connect().await, Op::CrossRead).await.unwrap();
}

#[tokio::test]
async fn a_hung_primary_fails_its_shard_with_08006_and_the_other_shard_serves() {
    let own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let proxy = proxy_with_items(&own).await;
    let (on_s0, on_s1) = ids_on_each_shard(&own);
    let ops = |id| vec![Op::Write(id), Op::ExtendedRead(id), Op::Read(id)];
    let workloads = [ops(on_s0), ops(on_s1)]
        .into_iter()
        .cycle()
        .take(6)
        .collect();
    let (until, clients) = start_clients(&proxy, workloads);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    let frozen = Frozen::server(own.cluster.shards()[1].primary.data_dir());
    assert_hangs(&own.info.primaries[1]).await;
    wait_for_shards(&proxy, "s1", "primary_up", "false", LIMIT).await;
    eprintln!(
        "hung primary marked down {:?} after SIGSTOP",
        frozen_at.elapsed()
    );
    tokio::time::sleep(FROZEN_FOR.saturating_sub(frozen_at.elapsed())).await;
    let tallies = stop_clients(until, clients).await;
    drop(frozen);
    let (s0, s1): (Vec<_>, Vec<_>) = tallies.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, tally) in &s0 {
        assert!(
            tally.wrong.is_empty() && tally.lost.is_empty(),
            "s0 serves on: {tally:?}"
        );
        assert!(tally.ok > 10, "s0 serves on: {tally:?}");
    }
    for (_, tally) in &s1 {
        assert!(tally.wrong.is_empty(), "{tally:?}");
        assert!(
            !tally.lost.is_empty(),
            "s1's statements fail with 08006: {tally:?}"
        );
        for message in &tally.lost {
            assert!(
                message.contains("s1") && message.contains("stopped answering"),
                "{message}"
            );
        }
    }
    wait_for_shards(&proxy, "s1", "primary_up", "true", Duration::from_secs(15)).await;
    run(&proxy.connect().await, Op::Write(on_s1)).await.unwrap();
}

/// An atomic COMMIT whose parked shard stops answering during its PREPARE fails within the
/// health check's bound instead of hanging, and commits nothing anywhere (once the shard is
/// back, recovery rolls back whatever its PREPARE left).
#[tokio::test]
async fn an_atomic_commit_on_a_hung_shard_fails_in_bounded_time_and_commits_nothing() {
    let own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let proxy = proxy_with_items(&own).await;
    let (on_s0, on_s1) = ids_on_each_shard(&own);
    let client = proxy.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    for id in [on_s0, on_s1] {
        let sql = format!("UPDATE hs_items SET n = n + 1 WHERE id = {id}");
        client.batch_execute(&sql).await.unwrap();
    }
    // s0 is parked (it wrote): its PREPARE is the first thing the COMMIT waits on.
    let frozen = Frozen::server(own.cluster.shards()[0].primary.data_dir());
    let started = Instant::now();
    let commit = tokio::time::timeout(LIMIT, client.batch_execute("COMMIT")).await;
    let error = commit
        .expect("the COMMIT ends within the bound")
        .unwrap_err();
    let took = started.elapsed();
    drop(frozen);
    let db = error
        .as_db_error()
        .expect("an error, not a closed connection");
    assert_eq!(db.code().code(), "08006", "{db:?} after {took:?}");
    assert!(db.message().contains("stopped answering"), "{db:?}");
    assert!(
        db.detail()
            .unwrap_or_default()
            .contains("Nothing was committed"),
        "{db:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for uri in &own.info.primaries {
        let direct = connect_direct(uri).await;
        loop {
            let sql = "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'shardgate:%'";
            let left: i64 = direct.query_one(sql, &[]).await.unwrap().get(0);
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "recovery ends what the PREPARE left"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sql = format!("SELECT sum(n)::int8 FROM hs_items WHERE id IN ({on_s0}, {on_s1})");
        let sum: Option<i64> = direct.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(sum.unwrap_or(0), 0, "nothing committed on {uri}");
    }
}

/// On s0: a row inserted with `n = -1` makes its transaction's COMMIT take 2 s.
const SLOW_AT_COMMIT: &str = "CREATE FUNCTION hs_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.n = -1 THEN PERFORM pg_sleep(2); END IF; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER hs_slow AFTER INSERT ON hs_items
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hs_slow();";

/// A split INSERT whose prepared leg's server (s1) stops answering while the coordinator (s0)
/// commits: the coordinator's COMMIT decides, the client is told so within the bound instead
/// of waiting on s1's COMMIT PREPARED, and recovery commits s1's part once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_insert_whose_prepared_shard_hangs_commits_in_bounded_time() {
    let own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let proxy = proxy_with_items(&own).await;
    let (on_s0, on_s1) = first_on_each_shard(&own, 101..=300);
    let s0 = connect_direct(&own.info.primaries[0]).await;
    s0.batch_execute(SLOW_AT_COMMIT).await.unwrap();
    let client = proxy.connect().await;
    let sql = format!("INSERT INTO hs_items (id, n) VALUES ({on_s0}, -1), ({on_s1}, 0)");
    let inserting = tokio::spawn(async move { client.batch_execute(&sql).await });
    tokio::time::sleep(Duration::from_millis(700)).await; // s1 prepared, s0 in pg_sleep
    let frozen = Frozen::server(own.cluster.shards()[1].primary.data_dir());
    let started = Instant::now();
    let outcome = tokio::time::timeout(LIMIT + Duration::from_secs(2), inserting).await;
    let took = started.elapsed();
    let outcome = outcome.expect("the INSERT ends within the bound").unwrap();
    drop(frozen);
    outcome.unwrap_or_else(|e| panic!("the coordinator committed, after {took:?}: {e:?}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let s1 = connect_direct(&own.info.primaries[1]).await;
    let sql = format!("SELECT count(*) FROM hs_items WHERE id = {on_s1}");
    while s1.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "recovery commits s1's part");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sql = format!("SELECT count(*) FROM hs_items WHERE id = {on_s0}");
    assert_eq!(s0.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 1);
}
