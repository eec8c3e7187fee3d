//! Local PostgreSQL clusters started from the machine's own binaries, for `shardgate demo` and
//! for the end-to-end tests.
//!
//! This module owns everything about those throwaway servers: finding the binaries
//! ([`PgBinaries`]), laying out directories under a base dir, `initdb`, configuration and
//! `pg_hba.conf`, the demo/test role and database, streaming replicas made with
//! `pg_basebackup`, free ports, and stopping every server it started (on [`LocalCluster::stop`]
//! or on drop). When the process runs as root, every PostgreSQL program runs as the `postgres`
//! system user (initdb refuses root) and the directories it needs are handed to that user.
//!
//! It must never: leave a postgres process behind once its [`LocalCluster`] or [`LocalServer`]
//! is dropped (a handle that is never dropped, e.g. in a `static`, is stopped by an exit hook
//! when the process exits normally); panic on a failure (it returns [`LocalClusterError`] with
//! the failing command, its exit status and the tail of its output and log); touch files outside
//! the base dir it was given (apart from a short socket dir under `/tmp` when the base path is
//! too long for a unix socket); or be used for anything but local demo and test clusters: the
//! servers run with `fsync = off` (acknowledged commits survive a crash of PostgreSQL, not
//! one of the OS).
//!
//! Everything here blocks (std::process and threads). Call it before starting a runtime or
//! from `tokio::task::spawn_blocking`, and drop the cluster the same way.
//!
//! ```no_run
//! use shardgate::local_cluster::{ClusterSpec, LocalCluster, scratch_dir};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = scratch_dir()?; // outlives the cluster: it is dropped last
//! let cluster = LocalCluster::start(ClusterSpec::new(dir.path().join("cluster")))?;
//! for shard in cluster.shards() {
//!     println!("{}: {} (replica {})", shard.name, shard.primary.uri(), shard.replicas[0].uri());
//! }
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod binaries;
mod command;
mod conf;
mod error;
mod init;
mod layout;
mod leftovers;
mod os_user;
mod process;
mod server;

pub use binaries::{MissingBinaries, PgBinaries, SearchedPlace};
pub use error::{CommandFailure, LocalClusterError};
pub use server::{LocalServer, StopMode};

use command::Toolbox;
use layout::Layout;

/// How servers check the password of the demo/test role on TCP connections from 127.0.0.1.
///
/// Each variant exists so tests can drive the proxy's backend authentication through every
/// method PostgreSQL offers; unix-socket connections always use `trust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAuth {
    /// `scram-sha-256`, PostgreSQL's default; the role's password is stored as a SCRAM verifier.
    ScramSha256,
    /// `md5`; the role's password is stored as an md5 hash so md5 is really what runs.
    Md5,
    /// `password`: the password travels in clear text.
    Password,
    /// `trust`: no password is asked for.
    Trust,
}

impl BackendAuth {
    /// The `pg_hba.conf` method keyword.
    fn hba_method(self) -> &'static str {
        match self {
            BackendAuth::ScramSha256 => "scram-sha-256",
            BackendAuth::Md5 => "md5",
            BackendAuth::Password => "password",
            BackendAuth::Trust => "trust",
        }
    }

    /// The `password_encryption` the role's password is stored with.
    fn password_encryption(self) -> &'static str {
        match self {
            BackendAuth::Md5 => "md5",
            _ => "scram-sha-256",
        }
    }
}

/// What to start: how many shards and replicas, where, and the role clients log in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Number of shards, each one primary (at least 1).
    pub shards: usize,
    /// Streaming replicas per shard (0 for none).
    pub replicas_per_shard: usize,
    /// Directory that holds every data dir and log; created if missing. Server dirs inside it
    /// (`s0-primary`, `s0-replica1`, `logs`, `run`, ...) must not exist yet or be empty.
    pub base_dir: PathBuf,
    /// Role created on every shard (LOGIN SUPERUSER, so `pgbench -i` works).
    pub user: String,
    /// That role's password.
    pub password: String,
    /// Database created on every shard, owned by `user`.
    pub database: String,
    /// How TCP connections from 127.0.0.1 as `user` authenticate.
    pub auth: BackendAuth,
}

impl ClusterSpec {
    /// Two shards with one replica each, role/password/database `shardgate`, SCRAM: the shape
    /// the demo and most tests want, to adjust with struct update syntax.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self {
            shards: 2,
            replicas_per_shard: 1,
            base_dir: base_dir.into(),
            user: "shardgate".to_owned(),
            password: "shardgate".to_owned(),
            database: "shardgate".to_owned(),
            auth: BackendAuth::ScramSha256,
        }
    }
}

/// One shard: a primary and its streaming replicas.
#[derive(Debug)]
pub struct LocalShard {
    /// `s0`, `s1`, ... in spec order.
    pub name: String,
    /// The read-write server.
    pub primary: LocalServer,
    /// Hot standbys streaming from `primary` (each through its own replication slot).
    pub replicas: Vec<LocalServer>,
}

/// What happens to the data directories when the cluster is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataDirs {
    Remove,
    Keep,
}

/// A running set of local shards. Dropping it stops every server (replicas first) and, unless
/// [`LocalCluster::keep_data_dir`] was called, removes what it created under the base dir.
#[derive(Debug)]
pub struct LocalCluster {
    shards: Vec<LocalShard>,
    layout: Layout,
    tools: Arc<Toolbox>,
    startup_time: Duration,
    data_dirs: DataDirs,
}

impl LocalCluster {
    /// Creates and starts every shard (in parallel, one thread per shard) and returns once all
    /// servers accept connections. On failure, whatever was started is stopped and removed.
    pub fn start(spec: ClusterSpec) -> Result<Self, LocalClusterError> {
        let began = Instant::now();
        conf::validate_spec(&spec)?;
        let tools = Arc::new(Toolbox::detect()?);
        let layout = Layout::create(&spec, &tools.run_as)?;
        let login = Arc::new(server::Login::from_spec(&spec));
        match start_shards(&spec, &layout, &tools, &login) {
            Ok(shards) => {
                let startup_time = began.elapsed();
                tracing::info!(
                    shards = spec.shards,
                    replicas_per_shard = spec.replicas_per_shard,
                    base_dir = %layout.base().display(),
                    startup_ms = startup_time.as_millis() as u64,
                    "local cluster started"
                );
                let data_dirs = DataDirs::Remove;
                Ok(Self {
                    shards,
                    layout,
                    tools,
                    startup_time,
                    data_dirs,
                })
            }
            Err(error) => {
                layout.remove();
                Err(error)
            }
        }
    }

    /// The shards, in spec order (`s0`, `s1`, ...).
    pub fn shards(&self) -> &[LocalShard] {
        &self.shards
    }

    /// Mutable access, so tests can stop and restart single servers (failure tests).
    pub fn shards_mut(&mut self) -> &mut [LocalShard] {
        &mut self.shards
    }

    /// The (canonical) base directory that holds every data dir and the `logs` dir.
    pub fn base_dir(&self) -> &Path {
        self.layout.base()
    }

    /// Wall time [`LocalCluster::start`] took, for the demo's banner and test logs.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The PostgreSQL programs in use, including optional `psql`/`pgbench` for tests.
    pub fn binaries(&self) -> &PgBinaries {
        &self.tools.binaries
    }

    /// Keeps data dirs and logs on disk after stop/drop (the demo's `--keep`); servers are
    /// still stopped.
    pub fn keep_data_dir(&mut self) {
        self.data_dirs = DataDirs::Keep;
    }

    /// Stops all replicas, then all primaries (each group in parallel). Every server is asked
    /// to stop even if another fails; the first failure is returned.
    pub fn stop(&mut self) -> Result<(), LocalClusterError> {
        let replicas = self
            .shards
            .iter_mut()
            .flat_map(|s| s.replicas.iter_mut())
            .collect();
        let replicas_result = stop_in_parallel(replicas);
        let primaries = self.shards.iter_mut().map(|s| &mut s.primary).collect();
        let primaries_result = stop_in_parallel(primaries);
        replicas_result.and(primaries_result)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "stopping local cluster");
        }
        if self.data_dirs == DataDirs::Remove {
            self.layout.remove();
        }
    }
}

/// A fresh temporary directory to use as [`ClusterSpec::base_dir`], on tmpfs (`/dev/shm`) when
/// the machine has one, else in the system temp dir. Creating files is an order of magnitude
/// cheaper on tmpfs, which makes initdb and pg_basebackup (about 1,300 files per server) several
/// times faster. The directory is removed when the guard drops: keep it alive longer than the
/// cluster.
pub fn scratch_dir() -> Result<tempfile::TempDir, LocalClusterError> {
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("shardgate-");
        builder
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return Ok(dir);
    }
    builder.tempdir().map_err(LocalClusterError::io(
        "create a directory in",
        std::env::temp_dir(),
    ))
}

/// One thread per shard; any failure drops (and so stops) the shards that did start.
fn start_shards(
    spec: &ClusterSpec,
    layout: &Layout,
    tools: &Arc<Toolbox>,
    login: &Arc<server::Login>,
) -> Result<Vec<LocalShard>, LocalClusterError> {
    let results: Vec<Result<LocalShard, LocalClusterError>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.shards)
            .map(|index| {
                let shard = init::ShardPlan {
                    index,
                    replicas: spec.replicas_per_shard,
                };
                scope.spawn(move || init::start_shard(shard, layout, tools, login))
            })
            .collect();
        let joined = handles.into_iter().enumerate().map(|(index, handle)| {
            handle.join().unwrap_or_else(|_| {
                Err(LocalClusterError::WorkerPanicked {
                    worker: format!("s{index}"),
                })
            })
        });
        joined.collect()
    });
    results.into_iter().collect()
}

/// Stops servers on scoped threads; returns the first failure after all have been tried.
fn stop_in_parallel(servers: Vec<&mut LocalServer>) -> Result<(), LocalClusterError> {
    let results: Vec<Result<(), LocalClusterError>> = thread::scope(|scope| {
        let handles: Vec<_> = servers
            .into_iter()
            .map(|server| {
                let name = server.name().to_owned();
                (name, scope.spawn(move || server.stop()))
            })
            .collect();
        let joined = handles.into_iter().map(|(name, handle)| {
            handle
                .join()
                .unwrap_or(Err(LocalClusterError::WorkerPanicked { worker: name }))
        });
        joined.collect()
    });
    results.into_iter().collect()
}
