//! Bringing up one shard: initdb and configure the primary, start it, create the role and
//! database, then clone and start each replica.
//!
//! Owns the order of those steps and the programs' flags. It runs on its own thread per shard
//! and must never touch another shard's directories. The role and database are created with
//! tokio-postgres over the unix socket on a small runtime of its own: this thread is a fresh
//! OS thread, so that never nests inside a caller's runtime.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::command::{Toolbox, run};
use super::conf;
use super::error::LocalClusterError;
use super::layout::{Layout, primary_name, replica_name};
use super::server::{BOOTSTRAP_SUPERUSER, LocalServer, Login, ServerPaths};
use super::{ClusterSpec, LocalShard};

/// Which shard a worker thread builds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardPlan {
    /// 0-based shard index (`s{index}`).
    pub(crate) index: usize,
    /// How many replicas to clone from its primary.
    pub(crate) replicas: usize,
}

impl Login {
    /// The role and database every server of the cluster gets.
    pub(crate) fn from_spec(spec: &ClusterSpec) -> Self {
        Self {
            user: spec.user.clone(),
            password: spec.password.clone(),
            database: spec.database.clone(),
            auth: spec.auth,
        }
    }
}

/// Builds a whole shard; on error, servers already started are stopped when dropped.
pub(crate) fn start_shard(
    plan: ShardPlan,
    layout: &Layout,
    tools: &Arc<Toolbox>,
    login: &Arc<Login>,
) -> Result<LocalShard, LocalClusterError> {
    let began = Instant::now();
    let mut primary = new_server(primary_name(plan.index), layout, tools, login);
    init_primary(&mut primary, tools, login)?;
    log_ready(&primary, began);
    let mut replicas = Vec::with_capacity(plan.replicas);
    for number in 1..=plan.replicas {
        let mut replica = new_server(replica_name(plan.index, number), layout, tools, login);
        init_replica(&mut replica, &primary, tools)?;
        log_ready(&replica, began);
        replicas.push(replica);
    }
    let name = format!("s{}", plan.index);
    Ok(LocalShard {
        name,
        primary,
        replicas,
    })
}

fn new_server(
    name: String,
    layout: &Layout,
    tools: &Arc<Toolbox>,
    login: &Arc<Login>,
) -> LocalServer {
    let paths = ServerPaths {
        data_dir: layout.data_dir(&name),
        log_file: layout.log_file(&name),
        socket_dir: layout.socket_dir().to_path_buf(),
    };
    LocalServer::new(name, paths, Arc::clone(login), Arc::clone(tools))
}

fn log_ready(server: &LocalServer, shard_began: Instant) {
    let ms = ms(shard_began);
    tracing::debug!(
        server = server.name(),
        port = server.port(),
        ms,
        "server ready"
    );
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The servers' locale: what a stock install takes on a machine whose `LANG` is `C.UTF-8`
/// (Debian and Ubuntu images, CI machines), so `upper('ë')` is `Ë` and character classes know
/// Unicode, as on such a server. Its collation orders text by code point, which is UTF-8 byte
/// order, so cross-shard merges order text exactly as each shard does (see
/// `backend::connect::collation_is_bytewise`).
const DEMO_LOCALE: &str = "--locale=C.UTF-8";

/// initdb, settings, pg_hba.conf, start, role and database.
fn init_primary(
    primary: &mut LocalServer,
    tools: &Toolbox,
    login: &Login,
) -> Result<(), LocalClusterError> {
    let data_dir = primary.data_dir().to_path_buf();
    tools.run_as.make_private_dir(&data_dir)?;
    let mut initdb = tools.command(&tools.binaries.initdb);
    initdb.arg("-D").arg(&data_dir);
    initdb.args([
        "-U",
        BOOTSTRAP_SUPERUSER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        DEMO_LOCALE,
        "--no-sync",
    ]);
    // 1 MB WAL segments: initdb and pg_basebackup write (zero-fill) far fewer bytes.
    initdb.arg("--wal-segsize=1");
    run(&mut initdb, None)?;
    append(
        &data_dir.join("postgresql.conf"),
        &conf::server_settings(primary.socket_dir()),
    )?;
    let hba = data_dir.join("pg_hba.conf");
    std::fs::write(&hba, conf::hba(&login.user, login.auth))
        .map_err(LocalClusterError::io("write", &hba))?;
    primary.start_on_free_port()?;
    create_login(primary, login)
}

/// `pg_basebackup -R` from the primary over its socket, through a slot of its own so the
/// primary keeps the WAL a slow replica still needs; then a port of its own and start.
fn init_replica(
    replica: &mut LocalServer,
    primary: &LocalServer,
    tools: &Toolbox,
) -> Result<(), LocalClusterError> {
    let data_dir = replica.data_dir().to_path_buf();
    tools.run_as.make_private_dir(&data_dir)?;
    let source = format!(
        "host={} port={} user={BOOTSTRAP_SUPERUSER} application_name={}",
        primary.socket_dir().display(),
        primary.port(),
        replica.name()
    );
    let slot = replica.name().replace('-', "_");
    let mut backup = tools.command(&tools.binaries.pg_basebackup);
    backup
        .arg("-D")
        .arg(&data_dir)
        .args(["-d", &source, "-R", "-X", "stream", "-C", "-S", &slot]);
    backup.args(["--no-sync", "-c", "fast"]);
    run(&mut backup, None)?;
    replica.start_on_free_port()
}

/// Appends to a file PostgreSQL owns (ownership is kept because the file already exists).
fn append(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(LocalClusterError::io("append to", path))
}

/// Creates (or updates) the login role and the database it owns, as the bootstrap superuser.
fn create_login(server: &LocalServer, login: &Login) -> Result<(), LocalClusterError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LocalClusterError::io(
            "start a runtime for",
            server.data_dir(),
        ))?;
    runtime
        .block_on(create_login_sql(server, login))
        .map_err(|source| LocalClusterError::Sql {
            server: server.name().to_owned(),
            source,
        })
}

async fn create_login_sql(
    server: &LocalServer,
    login: &Login,
) -> Result<(), tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host_path(server.socket_dir()).port(server.port());
    config.user(BOOTSTRAP_SUPERUSER).dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let role = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&login.user])
        .await?;
    let sql = conf::role_sql(&login.user, &login.password, login.auth, role.is_some());
    client.batch_execute(&sql).await?;
    let database = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&login.database],
        )
        .await?;
    if database.is_none() {
        client
            .batch_execute(&conf::database_sql(&login.database, &login.user))
            .await?;
    }
    drop(client);
    // The connection task ends once the client is gone; its result adds nothing.
    let _ = connection.await;
    Ok(())
}
