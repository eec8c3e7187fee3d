//! Where a local cluster's files live, and removing them afterwards.
//!
//! Owns the directory plan under the base dir: one data dir per server (`s0-primary`,
//! `s0-replica1`, ...), `logs/` for server logs and `run/` for unix sockets; all private to the
//! account that runs PostgreSQL. Unix socket paths are limited to 107 bytes, so when `run/`
//! would be too long (or hold characters `unix_socket_directories` would split on) sockets go to
//! a short private dir under `/tmp` instead. It must never remove anything it did not plan:
//! start-up refuses directories that already hold files.

use std::path::{Path, PathBuf};

use super::ClusterSpec;
use super::error::LocalClusterError;
use super::os_user::RunAs;

/// Longest socket dir used: `/.s.PGSQL.65535` and the NUL must still fit in `sun_path` (108).
const MAX_SOCKET_DIR_LEN: usize = 88;

/// The directory plan of one cluster.
#[derive(Debug)]
pub(crate) struct Layout {
    base: PathBuf,
    created_base: bool,
    logs: PathBuf,
    sockets: SocketDir,
    planned: Vec<PathBuf>,
}

/// Where unix sockets go.
#[derive(Debug)]
enum SocketDir {
    /// `base/run`.
    InBase(PathBuf),
    /// A short dir under /tmp, removed when dropped.
    Temp(tempfile::TempDir),
}

/// Name of the primary of shard `shard`.
pub(crate) fn primary_name(shard: usize) -> String {
    format!("s{shard}-primary")
}

/// Name of replica `replica` (1-based) of shard `shard`.
pub(crate) fn replica_name(shard: usize, replica: usize) -> String {
    format!("s{shard}-replica{replica}")
}

impl Layout {
    /// Creates the base dir (if missing), `logs/` and the socket dir, after checking that no
    /// planned directory already holds files.
    pub(crate) fn create(spec: &ClusterSpec, run_as: &RunAs) -> Result<Self, LocalClusterError> {
        let created_base = !spec.base_dir.exists();
        std::fs::create_dir_all(&spec.base_dir)
            .map_err(LocalClusterError::io("create directory", &spec.base_dir))?;
        let base = spec
            .base_dir
            .canonicalize()
            .map_err(LocalClusterError::io("resolve", &spec.base_dir))?;
        run_as.ensure_traversable(&base)?;
        let planned = planned_dirs(spec, &base);
        if let Some(full) = planned.iter().find(|dir| holds_files(dir)) {
            return Err(LocalClusterError::DirNotEmpty { path: full.clone() });
        }
        let logs = base.join("logs");
        run_as.make_private_dir(&logs)?;
        let sockets = socket_dir(&base, run_as)?;
        Ok(Self {
            base,
            created_base,
            logs,
            sockets,
            planned,
        })
    }

    /// The canonical base dir.
    pub(crate) fn base(&self) -> &Path {
        &self.base
    }

    /// Data dir of the server called `name`.
    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// Log file of the server called `name`.
    pub(crate) fn log_file(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// The `unix_socket_directories` of every server.
    pub(crate) fn socket_dir(&self) -> &Path {
        match &self.sockets {
            SocketDir::InBase(path) => path,
            SocketDir::Temp(dir) => dir.path(),
        }
    }

    /// Removes every planned directory (servers must be stopped), and the base dir if start-up
    /// created it. Failures are logged: removal runs from `Drop`.
    pub(crate) fn remove(&self) {
        for dir in &self.planned {
            if let Err(error) = std::fs::remove_dir_all(dir)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), %error, "removing local cluster directory");
            }
        }
        if self.created_base
            && let Err(error) = std::fs::remove_dir(&self.base)
        {
            tracing::warn!(dir = %self.base.display(), %error, "removing local cluster base dir");
        }
    }
}

/// Every directory the cluster may create under `base`.
fn planned_dirs(spec: &ClusterSpec, base: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![base.join("logs"), base.join("run")];
    for shard in 0..spec.shards {
        dirs.push(base.join(primary_name(shard)));
        for replica in 1..=spec.replicas_per_shard {
            dirs.push(base.join(replica_name(shard, replica)));
        }
    }
    dirs
}

fn holds_files(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) => error.kind() != std::io::ErrorKind::NotFound,
    }
}

/// `base/run` when its path is short and plain enough for a socket, else a dir under /tmp.
fn socket_dir(base: &Path, run_as: &RunAs) -> Result<SocketDir, LocalClusterError> {
    let run = base.join("run");
    if usable_socket_dir(&run) {
        run_as.make_private_dir(&run)?;
        return Ok(SocketDir::InBase(run));
    }
    let temp = tempfile::Builder::new()
        .prefix("shardgate-")
        .tempdir_in("/tmp")
        .map_err(LocalClusterError::io("create socket directory in", "/tmp"))?;
    run_as.chown(temp.path())?;
    Ok(SocketDir::Temp(temp))
}

/// Short enough for `sun_path`, and only characters that need no quoting in a
/// `unix_socket_directories` list.
fn usable_socket_dir(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.len() <= MAX_SOCKET_DIR_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_odd_socket_dirs_are_not_used() {
        assert!(usable_socket_dir(Path::new("/tmp/.tmpAbC123/run")));
        assert!(!usable_socket_dir(Path::new("/tmp/with space/run")));
        assert!(!usable_socket_dir(Path::new("/tmp/a,b/run")));
        let long = format!("/tmp/{}/run", "x".repeat(90));
        assert!(!usable_socket_dir(Path::new(&long)));
    }

    #[test]
    fn refuses_base_with_old_data_and_removes_what_it_made() {
        let parent = tempfile::tempdir().unwrap();
        let base = parent.path().join("cluster");
        let spec = ClusterSpec {
            shards: 1,
            replicas_per_shard: 1,
            ..ClusterSpec::new(&base)
        };
        let layout = Layout::create(&spec, &RunAs::CurrentUser).unwrap();
        assert!(layout.socket_dir().is_dir());
        std::fs::create_dir(layout.data_dir("s0-replica1")).unwrap();
        std::fs::write(layout.data_dir("s0-replica1").join("PG_VERSION"), "15").unwrap();
        let error = Layout::create(&spec, &RunAs::CurrentUser).unwrap_err();
        assert!(
            matches!(error, LocalClusterError::DirNotEmpty { .. }),
            "{error}"
        );
        layout.remove();
        assert!(!base.exists());
    }
}
