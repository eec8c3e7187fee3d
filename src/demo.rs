//! `shardgate demo`: the embedded default. Starts local PostgreSQL shards with the machine's
//! own binaries (a primary per shard plus streaming replicas), writes a config and the demo
//! shard map next to them, and serves a proxy in front until Ctrl-C or SIGTERM.
//!
//! The generated files go through the same loader as any operator's files, so the demo runs
//! exactly what `shardgate run` would.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::app::{self, Proxy, StartError};
use crate::cli::DemoArgs;
use crate::config::raw::{RawShard, RawShardMap};
use crate::config::{self, ConfigError, LogFormat, LogSettings};
use crate::local_cluster::{
    BackendAuth, ClusterSpec, LocalCluster, LocalClusterError, scratch_dir,
};

/// The demo map's tables and placement; its `shards` are replaced by the local ones.
const DEMO_MAP: &str = include_str!("../shard-maps/demo.yaml");

/// The tables of the demo map, created on every shard.
const DEMO_SCHEMA: &str = include_str!("../shard-maps/demo.sql");
/// Role, password and database of the demo, on the shards and at the proxy.
const DEMO_USER: &str = "app";

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The local clusters failed to start.
    #[error(transparent)]
    Cluster(#[from] LocalClusterError),
    /// Writing the generated files failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The generated config did not validate (a bug in the demo).
    #[error("generated configuration is invalid:\n{0}")]
    Config(String),
    /// The proxy failed to start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The demo tables could not be created on a shard.
    #[error("cannot create the demo tables on shard {shard}: {source}")]
    Schema {
        /// The shard.
        shard: String,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The async runtime failed to start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the demo until a shutdown signal; everything it started is stopped on return.
pub fn run(args: DemoArgs) -> Result<(), DemoError> {
    app::init_tracing(&LogSettings {
        format: LogFormat::Text,
        level: "info".to_owned(),
        slow_statement: None,
    });
    let scratch = match &args.dir {
        Some(_) => None,
        None => Some(scratch_dir()?),
    };
    let dir = args.dir.clone().unwrap_or_else(|| {
        scratch
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    });
    let cluster = LocalCluster::start(ClusterSpec {
        shards: args.shards.into(),
        replicas_per_shard: args.replicas.into(),
        base_dir: dir.clone(),
        user: DEMO_USER.to_owned(),
        password: DEMO_USER.to_owned(),
        database: DEMO_USER.to_owned(),
        auth: BackendAuth::ScramSha256,
    })?;
    let config_path = write_files(&dir, &cluster, &args)?;
    let config = config::load_config(&config_path).map_err(|e| match e {
        ConfigError::Invalid(problems) => DemoError::Config(config::render_problems(&problems)),
        other => DemoError::Config(other.to_string()),
    })?;
    let runtime = app::runtime(&config).map_err(DemoError::Runtime)?;
    runtime.block_on(async {
        create_schema(&cluster).await?;
        let proxy = Proxy::bind(&config).await?;
        say(&banner(&proxy, &cluster, &config_path));
        app::shutdown_signal().await;
        say("stopping shardgate (open transactions get 5 s to finish; Ctrl-C again to cut them) and the local shards ...");
        let drain = config.shutdown.drain_timeout.min(DEMO_DRAIN);
        proxy.shutdown_until(drain, app::shutdown_signal()).await;
        Ok::<(), DemoError>(())
    })?;
    finish(cluster, scratch, args.keep, &dir);
    Ok(())
}

/// Creates the demo map's tables on every shard's primary (replicas follow by streaming).
async fn create_schema(cluster: &LocalCluster) -> Result<(), DemoError> {
    for shard in cluster.shards() {
        let failed = |source| DemoError::Schema {
            shard: shard.name.clone(),
            source,
        };
        let uri = shard.primary.uri();
        let (client, connection) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
            .await
            .map_err(failed)?;
        let driver = tokio::spawn(connection);
        client.batch_execute(DEMO_SCHEMA).await.map_err(failed)?;
        drop(client);
        let _ = driver.await;
    }
    Ok(())
}

fn finish(mut cluster: LocalCluster, scratch: Option<tempfile::TempDir>, keep: bool, dir: &Path) {
    if keep {
        cluster.keep_data_dir();
        if let Some(scratch) = scratch {
            let _ = scratch.keep();
        }
        say(&format!("kept {}", dir.display()));
    }
    if let Err(error) = cluster.stop() {
        eprintln!("shardgate demo: stopping the local shards: {error}");
    }
}

/// Writes `shard-map.yaml` and `shardgate.yaml` into `dir`; returns the config's path.
fn write_files(dir: &Path, cluster: &LocalCluster, args: &DemoArgs) -> Result<PathBuf, DemoError> {
    let mut map: RawShardMap =
        serde_yaml::from_str(DEMO_MAP).map_err(|e| DemoError::Config(e.to_string()))?;
    map.shards = cluster
        .shards()
        .iter()
        .map(|shard| RawShard {
            name: shard.name.clone(),
            primary: shard.primary.uri(),
            replicas: shard.replicas.iter().map(|r| r.uri()).collect(),
            reads: None,
        })
        .collect();
    map.default_shard = cluster.shards().first().map(|s| s.name.clone());
    let map_yaml = serde_yaml::to_string(&map).map_err(|e| DemoError::Config(e.to_string()))?;
    write(&dir.join("shard-map.yaml"), &map_yaml)?;
    let config_path = dir.join("shardgate.yaml");
    write(&config_path, &demo_config(args))?;
    Ok(config_path)
}

fn demo_config(args: &DemoArgs) -> String {
    let (port, metrics_port, pool_size) = (args.port, args.metrics_port, args.pool_size);
    format!(
        "# Written by `shardgate demo`; see config/shardgate.yaml for every setting.\n\
         listen: 127.0.0.1:{port}\n\
         auth:\n  method: scram-sha-256\n\
         users:\n  - name: {DEMO_USER}\n    password: {DEMO_USER}\n\
         \x20 - name: {DEMO_ADMIN}\n    password: {DEMO_ADMIN}\n\
         admin:\n  users: [{DEMO_ADMIN}]\n\
         pool:\n  size: {pool_size}\n\
         metrics:\n  listen: 127.0.0.1:{metrics_port}\n\
         databases:\n  - name: {DEMO_USER}\n    shard_map: shard-map.yaml\n"
    )
}

/// Longest the demo waits for open transactions when it stops.
const DEMO_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The demo's admin console user (and password).
const DEMO_ADMIN: &str = "admin";

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn banner(proxy: &Proxy, cluster: &LocalCluster, config_path: &Path) -> String {
    let addr = proxy.local_addr;
    let mut text = format!(
        "\nshardgate demo is running ({} shard(s), started in {:.1?})\n\n  connect:  psql postgres://{DEMO_USER}:{DEMO_USER}@{addr}/{DEMO_USER}\n  \
         admin:    psql postgres://{DEMO_ADMIN}:{DEMO_ADMIN}@{addr}/shardgate   (SHOW HELP)\n",
        cluster.shards().len(),
        cluster.startup_time()
    );
    if let Some(metrics) = proxy.metrics_addr {
        let _ = writeln!(
            text,
            "  metrics:  http://{metrics}/metrics   (also /health, /ready)"
        );
    }
    for shard in cluster.shards() {
        let replicas: Vec<String> = shard
            .replicas
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port()))
            .collect();
        let _ = writeln!(
            text,
            "  shard {}: primary 127.0.0.1:{}, replicas [{}]",
            shard.name,
            shard.primary.port(),
            replicas.join(", ")
        );
    }
    let _ = write!(
        text,
        "  tables:   users, orders (hash on user_id), events (range on created_at),\n            \
         documents (directory on tenant_id), countries (reference)\n  try:      \
         INSERT INTO users (user_id, name) VALUES (42, 'ada'); SELECT * FROM users WHERE user_id = 42;\n  \
         config:   {}\n\nPress Ctrl-C to stop.",
        config_path.display()
    );
    text
}

/// Prints a line for the person running the demo. A closed stdout (the demo piped into a
/// program that exited) must not stop the shutdown that stops the servers.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}
