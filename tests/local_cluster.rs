//! `shardgate::local_cluster` against the machine's real PostgreSQL: clusters come up, replicas
//! replicate, each backend auth method is what pg_hba.conf enforces, and nothing is left
//! running after drop. Missing PostgreSQL binaries fail these tests; nothing is skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardgate::local_cluster::{
    BackendAuth, ClusterSpec, LocalCluster, LocalServer, LocalShard, scratch_dir,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// How long a row written on a primary may take to show up on its replica.
const REPLICATION_WAIT: Duration = Duration::from_secs(15);

async fn start(spec: ClusterSpec) -> LocalCluster {
    let started = tokio::task::spawn_blocking(move || LocalCluster::start(spec)).await;
    match started.expect("start thread") {
        Ok(cluster) => cluster,
        Err(error) => panic!("local cluster failed to start: {error}"),
    }
}

/// Stops the cluster off the runtime thread (pg_ctl blocks).
async fn stop(cluster: LocalCluster) {
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("stop thread");
}

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn must_connect(server: &LocalServer) -> Client {
    match connect(&server.uri()).await {
        Ok(client) => client,
        Err(error) => panic!("connect to {} at {}: {error}", server.name(), server.port()),
    }
}

async fn in_recovery(client: &Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The method of the one TCP rule in pg_hba.conf, as the server parsed it.
async fn host_auth_method(client: &Client) -> String {
    let sql = "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn stored_password_prefix(client: &Client) -> String {
    let sql = "SELECT left(rolpassword, 6) FROM pg_authid WHERE rolname = current_user";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `uri` with its password replaced (passwords used here need no percent-encoding).
fn with_password(server: &LocalServer, password: &str) -> String {
    let uri = server.uri();
    let (scheme_user, rest) = uri.rsplit_once('@').unwrap();
    let (scheme, user_password) = scheme_user.split_at("postgres://".len());
    let user = user_password.split(':').next().unwrap();
    format!("{scheme}{user}:{password}@{rest}")
}

async fn wait_for_row(replica: &Client, table: &str, value: i32) {
    let deadline = Instant::now() + REPLICATION_WAIT;
    let sql = format!("SELECT count(*) FROM {table} WHERE v = $1");
    loop {
        if let Ok(row) = replica.query_one(&sql, &[&value]).await
            && row.get::<_, i64>(0) == 1
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "row not replicated within {REPLICATION_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

fn postmaster_pid(data_dir: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .expect("postmaster.pid of a running server");
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Roles, SCRAM auth and replication of one shard of a running cluster.
async fn check_shard(shard: &LocalShard, value: i32) {
    assert_eq!(shard.replicas.len(), 1);
    let (primary, replica) = (&shard.primary, &shard.replicas[0]);
    let primary_client = must_connect(primary).await;
    let replica_client = must_connect(replica).await;
    assert!(
        !in_recovery(&primary_client).await,
        "{} must be a primary",
        primary.name()
    );
    assert!(
        in_recovery(&replica_client).await,
        "{} must be a standby",
        replica.name()
    );
    assert_eq!(host_auth_method(&primary_client).await, "scram-sha-256");
    assert_eq!(stored_password_prefix(&primary_client).await, "SCRAM-");
    primary_client
        .batch_execute("CREATE TABLE replicated (v int)")
        .await
        .unwrap();
    let insert = "INSERT INTO replicated VALUES ($1)";
    primary_client.execute(insert, &[&value]).await.unwrap();
    wait_for_row(&replica_client, "replicated", value).await;
    let wrong = connect(&with_password(primary, "wrong")).await;
    let wrong = wrong.expect_err("wrong password rejected");
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD));
}

/// Data dirs of every server, primaries first within each shard.
fn data_dirs(cluster: &LocalCluster) -> Vec<PathBuf> {
    let servers = cluster
        .shards()
        .iter()
        .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas));
    servers
        .map(|server| server.data_dir().to_path_buf())
        .collect()
}

#[tokio::test]
async fn two_shards_with_replicas_replicate_and_stop_cleanly() {
    let dir = scratch_dir().unwrap();
    let spec = ClusterSpec {
        shards: 2,
        replicas_per_shard: 1,
        ..ClusterSpec::new(dir.path().join("c"))
    };
    let mut cluster = start(spec).await;
    eprintln!(
        "2 shards x (primary + replica) started in {:?}",
        cluster.startup_time()
    );
    assert_eq!(cluster.shards().len(), 2);
    for (index, shard) in cluster.shards().iter().enumerate() {
        assert_eq!(shard.name, format!("s{index}"));
        check_shard(shard, 40 + index as i32).await;
    }
    let servers = data_dirs(&cluster);
    let pids: Vec<i32> = servers.iter().map(|dir| postmaster_pid(dir)).collect();
    assert!(pids.iter().all(|pid| process_alive(*pid)));
    cluster.keep_data_dir();
    stop(cluster).await;
    for (data_dir, pid) in servers.iter().zip(pids) {
        let shown = data_dir.display();
        assert!(
            !data_dir.join("postmaster.pid").exists(),
            "{shown} still has a postmaster.pid"
        );
        assert!(
            !process_alive(pid),
            "postmaster {pid} of {shown} still runs"
        );
        assert!(
            data_dir.join("PG_VERSION").exists(),
            "keep_data_dir must keep {shown}"
        );
    }
}

/// A single-shard cluster with `auth`, a role name and password that need URI encoding.
async fn single_shard(auth: BackendAuth, base: PathBuf) -> LocalCluster {
    let spec = ClusterSpec {
        shards: 1,
        replicas_per_shard: 0,
        user: "app user".to_owned(),
        password: "p@ss:w/rd%'".to_owned(),
        database: "app-db".to_owned(),
        auth,
        ..ClusterSpec::new(base)
    };
    start(spec).await
}

#[tokio::test]
async fn md5_auth_stores_md5_hashes() {
    // On disk on purpose: a root-owned 0700 dir under /tmp, which the postgres user must reach.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("md5");
    let cluster = single_shard(BackendAuth::Md5, base.clone()).await;
    let primary = &cluster.shards()[0].primary;
    let client = must_connect(primary).await;
    assert_eq!(host_auth_method(&client).await, "md5");
    assert_eq!(stored_password_prefix(&client).await[..3], *"md5");
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "app-db");
    let wrong = connect(&with_password(primary, "wrong"))
        .await
        .expect_err("wrong password rejected");
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD));
    drop(client);
    stop(cluster).await;
    assert!(
        !base.exists(),
        "a dropped cluster removes the base dir it created"
    );
}

#[tokio::test]
async fn trust_auth_accepts_any_password() {
    let dir = scratch_dir().unwrap();
    let cluster = single_shard(BackendAuth::Trust, dir.path().join("trust")).await;
    let primary = &cluster.shards()[0].primary;
    let client = connect(&with_password(primary, "anything"))
        .await
        .expect("trust ignores the password");
    assert_eq!(host_auth_method(&client).await, "trust");
    let admin = connect(&primary.superuser_uri())
        .await
        .expect("superuser over the unix socket");
    let user: String = admin
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");
    drop((client, admin));
    stop(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_restart_and_crash() {
    let dir = scratch_dir().unwrap();
    let mut cluster = single_shard(BackendAuth::Password, dir.path().join("password")).await;
    let client = must_connect(&cluster.shards()[0].primary).await;
    assert_eq!(host_auth_method(&client).await, "password");
    drop(client);
    let primary = &mut cluster.shards_mut()[0].primary;
    tokio::task::block_in_place(|| primary.stop()).expect("stop");
    assert!(!primary.is_running());
    assert!(
        connect(&primary.uri()).await.is_err(),
        "a stopped server refuses connections"
    );
    tokio::task::block_in_place(|| primary.start()).expect("restart");
    let client = must_connect(primary).await;
    assert!(!in_recovery(&client).await);
    drop(client);
    let pid = postmaster_pid(primary.data_dir());
    // SAFETY: signals a postmaster this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(wait_until_gone(pid), "killed postmaster {pid} still runs");
    let stopped = tokio::task::block_in_place(|| primary.stop());
    stopped.expect("a killed server counts as stopped");
    tokio::task::block_in_place(|| primary.start()).expect("start after a crash");
    must_connect(primary).await;
    stop(cluster).await;
}

/// Set only in a child run of this test binary, to the base dir of a cluster it must leak.
const LEAK_ENV: &str = "SHARDGATE_TEST_LEAK_BASE";

/// A cluster whose handle is never dropped (as in a `static` fixture) is stopped at exit.
#[test]
fn leaked_cluster_is_stopped_at_exit() {
    if let Some(base) = std::env::var_os(LEAK_ENV) {
        leak_cluster(PathBuf::from(base));
        return;
    }
    let dir = scratch_dir().unwrap();
    let base = dir.path().join("leak");
    let pid = run_leaking_child(&base);
    assert!(
        wait_until_gone(pid),
        "leaked postmaster {pid} still runs after its process exited"
    );
    assert!(!base.join("s0-primary").join("postmaster.pid").exists());
}

/// In the child: start a cluster, print its postmaster's pid, never drop the handle.
fn leak_cluster(base: PathBuf) {
    let spec = ClusterSpec {
        shards: 1,
        replicas_per_shard: 0,
        ..ClusterSpec::new(base)
    };
    let cluster = LocalCluster::start(spec).unwrap_or_else(|error| panic!("{error}"));
    println!(
        "POSTMASTER_PID={}",
        postmaster_pid(cluster.shards()[0].primary.data_dir())
    );
    std::mem::forget(cluster);
}

/// Runs this test again in a child process that leaks a cluster; returns its postmaster pid.
fn run_leaking_child(base: &std::path::Path) -> i32 {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "leaked_cluster_is_stopped_at_exit",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LEAK_ENV, base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // libtest prints `test NAME ... ` on the same line before the child's own output.
    let pid = stdout
        .split("POSTMASTER_PID=")
        .nth(1)
        .expect("child printed its postmaster pid");
    pid.split_whitespace().next().unwrap().parse().unwrap()
}

/// Polls (bounded) until `pid` has exited: a postmaster removes its pid file just before.
fn wait_until_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        #[allow(clippy::disallowed_methods)] // a plain test thread, no runtime
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
