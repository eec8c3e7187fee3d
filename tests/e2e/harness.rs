//! Real PostgreSQL for the end-to-end tests: clusters are started once per test binary (on
//! tmpfs when available) and stopped by an exit hook; each test starts its own proxy in-process
//! on port 0 with a config built in code.

use std::process::{Command, Output};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use shardgate::app::Proxy;
use shardgate::config::raw::RawShardMap;
use shardgate::config::{
    BackendUri, ClientAuthMethod, Config, DatabaseEntry, Limits, LogFormat, LogSettings, PoolMode,
    PoolSettings, Shard, ShardId, ShardMap, UserEntry, UserSecret, parse_shard_map,
};
use shardgate::local_cluster::{BackendAuth, ClusterSpec, LocalCluster, PgBinaries, scratch_dir};

/// Role, password and database on every test cluster and at every test proxy.
pub const USER: &str = "app";
pub const PASSWORD: &str = "app";
pub const DATABASE: &str = "app";

/// What tests need to know about a running cluster.
#[derive(Clone)]
pub struct ClusterInfo {
    /// Primary URI of each shard.
    pub primaries: Vec<String>,
    /// Replica URIs of each shard.
    pub replicas: Vec<Vec<String>>,
}

/// A cluster and its directory (dropped in that order). Shared clusters are kept until the
/// exit hook drops them; a test that stops servers on purpose owns one ([`own_cluster`]).
pub struct OwnCluster {
    /// The servers.
    pub cluster: LocalCluster,
    /// Their URIs.
    pub info: ClusterInfo,
    _dir: tempfile::TempDir,
}

/// Every cluster this process shares between tests; the exit hook stops them.
static RUNNING: Mutex<Vec<OwnCluster>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

extern "C" fn stop_clusters() {
    let clusters = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    drop(clusters);
}

fn start(shards: usize, replicas: usize, auth: BackendAuth) -> ClusterInfo {
    HOOK.call_once(|| unsafe {
        libc::atexit(stop_clusters);
    });
    let own = own_cluster(shards, replicas, auth);
    let info = own.info.clone();
    RUNNING.lock().unwrap().push(own);
    info
}

/// A cluster for one test alone, stopped when the test drops it.
pub fn own_cluster(shards: usize, replicas: usize, auth: BackendAuth) -> OwnCluster {
    let dir = scratch_dir().expect("scratch dir for test clusters");
    let cluster = LocalCluster::start(ClusterSpec {
        shards,
        replicas_per_shard: replicas,
        base_dir: dir.path().to_path_buf(),
        user: USER.into(),
        password: PASSWORD.into(),
        database: DATABASE.into(),
        auth,
    })
    .unwrap_or_else(|e| panic!("starting test PostgreSQL failed: {e}"));
    let info = ClusterInfo {
        primaries: cluster.shards().iter().map(|s| s.primary.uri()).collect(),
        replicas: (cluster.shards().iter())
            .map(|s| s.replicas.iter().map(|r| r.uri()).collect())
            .collect(),
    };
    OwnCluster {
        cluster,
        info,
        _dir: dir,
    }
}

/// A config in front of `cluster`, its replicas included, whose map shards the tables of
/// `tables_yaml` (a YAML mapping of shard-map table entries) over it.
pub fn config_with_tables(cluster: &ClusterInfo, tables_yaml: &str) -> Config {
    let mut config = config(cluster);
    let map = &mut config.databases[0].shard_map;
    for (shard, replicas) in map.shards.iter_mut().zip(&cluster.replicas) {
        shard.replicas = replicas
            .iter()
            .map(|r| BackendUri::parse(r).unwrap())
            .collect();
    }
    let shards: Vec<String> = (map.shards.iter())
        .map(|s| {
            format!(
                "{{name: {}, primary: 'postgres://a@h:{}/d'}}",
                s.name,
                s.id.0 + 1
            )
        })
        .collect();
    let yaml = format!("shards: [{}]\ntables: {tables_yaml}\n", shards.join(", "));
    map.tables = parse_shard_map(&yaml, std::path::Path::new("tables.yaml"))
        .expect("test tables are valid")
        .tables;
    config
}

/// The shared sharded cluster: 2 shards, each a primary with one streaming replica, SCRAM.
pub fn cluster() -> &'static ClusterInfo {
    static CLUSTER: OnceLock<ClusterInfo> = OnceLock::new();
    CLUSTER.get_or_init(|| start(2, 1, BackendAuth::ScramSha256))
}

/// One plain PostgreSQL (no shards, no replicas): the oracle cross-shard results are compared
/// with.
pub fn oracle() -> &'static ClusterInfo {
    static ORACLE: OnceLock<ClusterInfo> = OnceLock::new();
    ORACLE.get_or_init(|| start(1, 0, BackendAuth::ScramSha256))
}

/// Waits until every replica of `cluster` has replayed everything its primary wrote so far.
/// The insert position, past every commit acknowledged so far whatever `synchronous_commit` is
/// (the test servers run it `on`, where the write position would do as well).
pub async fn wait_for_replicas(cluster: &ClusterInfo) {
    for (primary, replicas) in cluster.primaries.iter().zip(&cluster.replicas) {
        let lsn: String = (connect_direct(primary).await)
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        for replica in replicas {
            let client = connect_direct(replica).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
            while !client.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "replica {replica} did not catch up"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A one-shard cluster whose role authenticates with `auth`, shared per method.
pub fn cluster_with_auth(auth: BackendAuth) -> &'static ClusterInfo {
    static CLUSTERS: OnceLock<Mutex<Vec<(BackendAuth, &'static ClusterInfo)>>> = OnceLock::new();
    let clusters = CLUSTERS.get_or_init(|| Mutex::new(Vec::new()));
    let mut guard = clusters.lock().unwrap();
    if let Some((_, info)) = guard.iter().find(|(a, _)| *a == auth) {
        return info;
    }
    let info: &'static ClusterInfo = Box::leak(Box::new(start(1, 0, auth)));
    guard.push((auth, info));
    info
}

/// A config for a proxy in front of `cluster`, with small limits so tests reach them.
pub fn config(cluster: &ClusterInfo) -> Config {
    let shards = cluster
        .primaries
        .iter()
        .enumerate()
        .map(|(i, uri)| Shard {
            id: ShardId(i as u32),
            name: format!("s{i}"),
            primary: BackendUri::parse(uri).unwrap(),
            replicas: vec![],
            reads: shardgate::config::ReadsFrom::Replica,
            consistency: shardgate::config::Consistency::Causal,
            causal_wait: shardgate::config::DEFAULT_CAUSAL_WAIT,
        })
        .collect();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_method: ClientAuthMethod::ScramSha256,
        users: vec![UserEntry {
            name: USER.into(),
            secret: UserSecret::Password(PASSWORD.into()),
        }],
        tls: None,
        pool: PoolSettings {
            mode: PoolMode::Transaction,
            size: 4,
            min_idle: 0,
            checkout_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(60)),
            max_lifetime: None,
            max_prepared_statements: 1000,
        },
        limits: Limits {
            max_message_bytes: 1 << 20,
            startup_timeout: Duration::from_secs(30),
            max_client_connections: 500,
            max_merge_bytes: 64 << 20,
            max_statement_bytes: shardgate::router::DEFAULT_MAX_STATEMENT_BYTES,
            max_connections_per_user: None,
            statement_timeout: None,
            idle_in_transaction_timeout: None,
            client_idle_timeout: None,
            rate_limit: None,
        },
        replicas: shardgate::config::ReplicaSettings {
            check_interval: Duration::from_millis(200),
            check_timeout: Duration::from_secs(2),
            max_lag: Duration::from_secs(10),
        },
        databases: vec![DatabaseEntry {
            name: DATABASE.into(),
            shard_map_path: "in-memory".into(),
            shard_map: ShardMap {
                shards,
                default_shard: ShardId(0),
                tables: Default::default(),
            },
        }],
        log: LogSettings {
            format: LogFormat::Text,
            level: "warn".into(),
            slow_statement: None,
        },
        worker_threads: None,
        metrics_listen: None,
        admin_users: vec![],
        shutdown: shardgate::config::ShutdownSettings {
            drain_timeout: Duration::from_secs(30),
        },
        transactions: shardgate::config::TransactionSettings::default(),
        // Every test proxy is its own deployment on shared servers: none records its map.
        fleet: None,
        fleet_lease: Some(Duration::from_secs(10)),
    }
}

/// A config for a proxy in front of `cluster` with the demo shard map (`shard-maps/demo.yaml`)
/// and its tables created on every shard.
pub fn sharded_config(cluster: &ClusterInfo) -> Config {
    config_with_map(cluster, &demo_map(cluster))
}

/// `shard-maps/demo.yaml` with its shards replaced by `cluster`'s primaries (no replicas), for
/// tests that edit it.
pub fn demo_map(cluster: &ClusterInfo) -> RawShardMap {
    let text = std::fs::read_to_string(demo_map_path()).unwrap();
    let mut raw: RawShardMap = serde_yaml::from_str(&text).unwrap();
    for (shard, uri) in raw.shards.iter_mut().zip(&cluster.primaries) {
        shard.primary = uri.clone();
        shard.replicas.clear();
    }
    raw
}

/// The demo map on the shared cluster with `entries` (tenant, shard name) added to the
/// documents directory, as the YAML the map-edit tests write to a file.
pub fn demo_map_with_tenants(entries: &[(i64, &str)]) -> String {
    let mut raw = demo_map(cluster());
    let documents = raw.tables.get_mut("documents").unwrap();
    let listed = documents.entries.get_or_insert_with(Default::default);
    for &(tenant, shard) in entries {
        let key = shardgate::config::raw::RawScalar::Integer(tenant);
        listed.insert(key, shard.to_owned());
    }
    serde_yaml::to_string(&raw).unwrap()
}

/// `shard-maps/demo.yaml` on `cluster` with every shard's replicas.
pub fn demo_map_with_replicas(cluster: &ClusterInfo) -> RawShardMap {
    let mut raw = demo_map(cluster);
    for (shard, replicas) in raw.shards.iter_mut().zip(&cluster.replicas) {
        shard.replicas = replicas.clone();
    }
    raw
}

/// A config in front of `cluster` with `map`, the demo tables created on every shard.
pub fn config_with_map(cluster: &ClusterInfo, map: &RawShardMap) -> Config {
    create_demo_schema(cluster);
    config_for_map(cluster, map)
}

/// A config in front of `cluster` with `map`, creating nothing on the shards.
pub fn config_for_map(cluster: &ClusterInfo, map: &RawShardMap) -> Config {
    let text = serde_yaml::to_string(map).unwrap();
    let mut config = config(cluster);
    let parsed = parse_shard_map(&text, &demo_map_path()).expect("test map is valid");
    config.databases[0].shard_map = parsed;
    config
}

fn demo_map_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shard-maps/demo.yaml")
}

/// Creates the demo tables on every shard of `cluster`, once per test binary.
fn create_demo_schema(cluster: &ClusterInfo) {
    static CREATED: Once = Once::new();
    CREATED.call_once(|| {
        let binaries = PgBinaries::find().expect("PostgreSQL binaries");
        let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shard-maps/demo.sql");
        for uri in &cluster.primaries {
            let output = Command::new(binaries.psql.as_ref().expect("psql is installed"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-f"])
                .arg(&schema)
                .output()
                .expect("run psql");
            assert!(output.status.success(), "demo schema on {uri}: {output:?}");
        }
    });
}

/// A proxy running in this test's runtime.
pub struct TestProxy {
    pub proxy: Proxy,
}

impl TestProxy {
    /// Starts a proxy with `config` on a free port.
    pub async fn start(config: Config) -> Self {
        shardgate::app::init_tracing(&config.log);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy::start(&config, listener).await.expect("proxy starts");
        Self { proxy }
    }

    /// A proxy in front of the shared cluster with the default test config.
    pub async fn shared() -> Self {
        Self::start(config(cluster())).await
    }

    pub fn port(&self) -> u16 {
        self.proxy.local_addr.port()
    }

    /// libpq-style connection string for the test user.
    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={DATABASE}",
            self.port()
        )
    }

    /// A tokio-postgres client through the proxy; its connection task runs in the background.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.conn_str(), tokio_postgres::NoTls)
            .await
            .expect("connect through the proxy");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// A client program (pgbench, pg_dump, …) that connects to the proxy as the test user.
    pub fn tool(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        let port = self.port().to_string();
        command
            .args(["-h", "127.0.0.1", "-p", &port, "-U", USER])
            .env("PGPASSWORD", PASSWORD);
        command
    }

    /// Runs psql against the proxy with `args`, returning its output.
    pub async fn psql(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let binaries = PgBinaries::find().expect("PostgreSQL binaries");
        let mut command = Command::new(binaries.psql.expect("psql is installed"));
        command
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=0",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port().to_string(),
                "-U",
                USER,
                "-d",
                DATABASE,
            ])
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10");
        run_with_stdin(command, stdin).await
    }
}

/// Runs a command to completion off the async runtime (the proxy under test shares it).
pub async fn run_with_stdin(mut command: Command, stdin: Option<&str>) -> Output {
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("spawn client tool");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A direct tokio-postgres connection to a backend, bypassing the proxy (for checking its state).
pub async fn connect_direct(uri: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(uri, tokio_postgres::NoTls)
        .await
        .expect("direct connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The SQLSTATE of a tokio-postgres error, or a panic that shows the error.
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_owned())
        .unwrap_or_else(|| panic!("expected a server error, got: {error}"))
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The demo shard map, parsed, for tests that only need a router.
pub fn demo_config_for_unit() -> ShardMap {
    let text = std::fs::read_to_string(demo_map_path()).unwrap();
    parse_shard_map(&text, &demo_map_path()).unwrap()
}
