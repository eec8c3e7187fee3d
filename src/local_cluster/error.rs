//! Why a local cluster could not be started or stopped.
//!
//! Owns the error type of [`crate::local_cluster`] and the rule that a failed external command
//! is reported with its command line, exit status and the tail of its stderr and log file, so
//! a failed `initdb` or `pg_ctl start` can be diagnosed from the error alone. It must never
//! carry a password: commands are rendered from their arguments, which never hold one.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::binaries::MissingBinaries;

/// Lines of stderr / log kept in a [`CommandFailure`]: enough for PostgreSQL's FATAL/HINT
/// lines, short enough for a terminal.
const TAIL_LINES: usize = 20;

/// Everything that can go wrong while starting or stopping local servers. These are
/// environment errors (missing packages, permissions, ports), never a client's fault.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// The spec cannot describe a working cluster.
    #[error("invalid local cluster spec: `{field}` {problem}")]
    InvalidSpec {
        /// Spec field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Required PostgreSQL server programs were not found.
    #[error(transparent)]
    MissingBinaries(MissingBinaries),
    /// Running as root, but there is no `postgres` user to run the servers as.
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as \
         (initdb refuses root); install the PostgreSQL server package or create that user"
    )]
    NoPostgresUser,
    /// Running as root, and the `postgres` user cannot reach the base dir through `path`.
    #[error(
        "the `postgres` user cannot traverse {path} (needs o+x, or ownership by postgres); \
         choose a base dir under /tmp or fix that directory's permissions"
    )]
    NotTraversable {
        /// The ancestor directory that blocks access.
        path: PathBuf,
    },
    /// A directory the cluster wants to create already holds files (an old `--keep` run?).
    #[error("{path} already exists and is not empty; remove it or choose another base dir")]
    DirNotEmpty {
        /// The offending directory.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error(transparent)]
    Command(Box<CommandFailure>),
    /// Every free port tried for a server was taken before the server could bind it.
    #[error("{server}: gave up after {attempts} port collisions")]
    PortsExhausted {
        /// Server name, e.g. `s0-primary`.
        server: String,
        /// How many ports were tried.
        attempts: u32,
        /// The last failed start.
        #[source]
        last: Box<LocalClusterError>,
    },
    /// Creating the demo/test role or database failed.
    #[error("{server}: cannot create the role or database: {source}")]
    Sql {
        /// Server name.
        server: String,
        /// The driver error (carries the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A worker thread panicked (a bug in this module, reported instead of propagated).
    #[error("worker thread for {worker} panicked")]
    WorkerPanicked {
        /// Shard or server the thread worked on.
        worker: String,
    },
}

impl LocalClusterError {
    /// An [`LocalClusterError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// A command that exited unsuccessfully, with what is needed to see why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// The command line, e.g. `/usr/lib/postgresql/15/bin/initdb -D /tmp/x/s0-primary ...`.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// The last lines of its stderr (and stdout when stderr was empty).
    pub output_tail: String,
    /// The server log it wrote to and that log's last lines, for `pg_ctl start`.
    pub log: Option<(PathBuf, String)>,
}

impl CommandFailure {
    /// Builds the failure from captured output; `log` is read here, when the failure happens.
    pub(crate) fn new(command: String, status: ExitStatus, stderr: &[u8], stdout: &[u8]) -> Self {
        let stderr = String::from_utf8_lossy(stderr);
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(stdout)
        } else {
            stderr
        };
        Self {
            command,
            status,
            output_tail: tail(&text, TAIL_LINES),
            log: None,
        }
    }

    /// Attaches the tail of a server log file (silently nothing if it cannot be read).
    pub(crate) fn with_log(mut self, log: PathBuf) -> Self {
        let text = std::fs::read(&log).unwrap_or_default();
        let text = tail(&String::from_utf8_lossy(&text), TAIL_LINES);
        self.log = Some((log, text));
        self
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.command, self.status)?;
        if !self.output_tail.is_empty() {
            write!(f, "\n--- output (last lines) ---\n{}", self.output_tail)?;
        }
        if let Some((path, text)) = &self.log {
            write!(f, "\n--- {} (last lines) ---\n{}", path.display(), text)?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailure {}

/// The last `lines` non-empty-trailing lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let trimmed = text.trim_end();
    let all: Vec<&str> = trimmed.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("only", 3), "only");
    }

    #[test]
    fn failure_names_command_status_output_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "LOG: starting\nFATAL: could not bind\n").unwrap();
        let status = ExitStatus::from_raw(1 << 8);
        let failure = CommandFailure::new("pg_ctl start".into(), status, b"", b"server failed\n")
            .with_log(log.clone());
        let text = failure.to_string();
        assert!(
            text.contains("`pg_ctl start` failed (exit status: 1)"),
            "{text}"
        );
        assert!(text.contains("server failed"), "{text}");
        assert!(text.contains("FATAL: could not bind"), "{text}");
        assert!(text.contains(&log.display().to_string()), "{text}");
    }
}
