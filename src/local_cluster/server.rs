//! One local PostgreSQL server: its port, directories, connection URIs, start and stop.
//!
//! Owns a server's lifecycle through `pg_ctl`: start (choosing a free port and retrying when
//! another process takes it first), stop (fast, falling back to immediate), and stop on drop.
//! It must never leave its postmaster running once dropped, and never panic while stopping:
//! failures are logged.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BackendAuth;
use super::command::{Toolbox, run};
use super::conf::{self, PORT_CONF};
use super::error::LocalClusterError;
use super::leftovers;
use super::process::{process_alive, wait_for_exit, wait_for_reap};

/// Superuser initdb creates; only reachable over the unix socket (trust).
pub(crate) const BOOTSTRAP_SUPERUSER: &str = "postgres";

/// How many freshly picked ports a server tries before giving up.
const PORT_ATTEMPTS: u32 = 5;

/// Seconds `pg_ctl -w` waits for a start or stop.
const PG_CTL_WAIT_SECS: &str = "90";

/// The role and database clients use, shared by every server of a cluster.
pub(crate) struct Login {
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) database: String,
    pub(crate) auth: BackendAuth,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// How [`LocalServer::stop_with`] shuts a server down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, checkpoint, exit: the normal stop.
    Fast,
    /// Kill at once, as a crash would (crash-recovery and failover tests).
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Stopped,
}

/// A local PostgreSQL server (a shard's primary or one of its replicas). Dropping it stops it.
#[derive(Debug)]
pub struct LocalServer {
    name: String,
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    login: Arc<Login>,
    tools: Arc<Toolbox>,
    state: State,
}

/// Where a new server's files go.
pub(crate) struct ServerPaths {
    pub(crate) data_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    pub(crate) socket_dir: PathBuf,
}

impl LocalServer {
    /// A server whose data dir is (about to be) initialized but that is not running yet.
    pub(crate) fn new(
        name: String,
        paths: ServerPaths,
        login: Arc<Login>,
        tools: Arc<Toolbox>,
    ) -> Self {
        let ServerPaths {
            data_dir,
            log_file,
            socket_dir,
        } = paths;
        Self {
            name,
            port: 0,
            data_dir,
            log_file,
            socket_dir,
            login,
            tools,
            state: State::Stopped,
        }
    }

    /// `s0-primary`, `s0-replica1`, ...: names its data dir and log file too.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log (`pg_ctl -l`), for diagnosing test failures.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The unix socket directory (shared by the cluster's servers; sockets are named by port).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Whether this handle started the server and has not stopped it.
    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/DATABASE`, percent-encoded: what the proxy's
    /// shard map and tests connect with; authenticates with the spec's [`BackendAuth`].
    pub fn uri(&self) -> String {
        let Login {
            user,
            password,
            database,
            ..
        } = &*self.login;
        let (user, password) = (conf::percent_encode(user), conf::percent_encode(password));
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{}",
            self.port,
            conf::percent_encode(database)
        )
    }

    /// The bootstrap superuser over the unix socket (trust, no password), database
    /// `postgres`: for admin work that must not depend on the spec's role or auth method.
    pub fn superuser_uri(&self) -> String {
        let host = conf::percent_encode(&self.socket_dir.to_string_lossy());
        format!(
            "postgres://{BOOTSTRAP_SUPERUSER}@{host}:{}/postgres",
            self.port
        )
    }

    /// Starts a stopped server again on its port (`pg_ctl start -w`); no-op when running.
    pub fn start(&mut self) -> Result<(), LocalClusterError> {
        if self.state == State::Running {
            return Ok(());
        }
        if let Some(pid) = self.postmaster_pid() {
            wait_for_reap(pid, &self.name);
        }
        let tools = &self.tools;
        let mut command = tools.command(&tools.binaries.pg_ctl);
        command
            .arg("start")
            .args(["-w", "-s", "-t", PG_CTL_WAIT_SECS])
            .arg("-D")
            .arg(&self.data_dir);
        command.arg("-l").arg(&self.log_file);
        let started = run(&mut command, Some(&self.log_file));
        if started.is_ok() || self.postmaster_pid().is_some_and(process_alive) {
            // Also after a failed start that left a postmaster behind (e.g. a -w timeout), so
            // that it is stopped below, or on drop if that fails too.
            self.state = State::Running;
            leftovers::register(&self.data_dir, &self.tools);
        }
        if let Err(error) = started {
            let _ = self.stop_with(StopMode::Immediate);
            return Err(error);
        }
        Ok(())
    }

    /// Stops with [`StopMode::Fast`], falling back to [`StopMode::Immediate`] if that fails.
    pub fn stop(&mut self) -> Result<(), LocalClusterError> {
        let Err(error) = self.stop_with(StopMode::Fast) else {
            return Ok(());
        };
        tracing::warn!(server = %self.name, %error, "fast stop failed; stopping immediately");
        self.stop_with(StopMode::Immediate).map_err(|_| error)
    }

    /// Stops the server with `mode` (`pg_ctl stop -w`). A server that is already gone (no
    /// postmaster process, e.g. killed by a test) counts as stopped.
    pub fn stop_with(&mut self, mode: StopMode) -> Result<(), LocalClusterError> {
        if self.state == State::Stopped {
            return Ok(());
        }
        let Some(pid) = self.postmaster_pid().filter(|pid| process_alive(*pid)) else {
            // Killed or crashed: pg_ctl would wait in vain for a dead postmaster's pid file.
            self.mark_stopped();
            return Ok(());
        };
        let tools = &self.tools;
        let mut command = tools.command(&tools.binaries.pg_ctl);
        command
            .arg("stop")
            .args(["-w", "-s", "-t", PG_CTL_WAIT_SECS, "-m", mode.as_arg()]);
        command.arg("-D").arg(&self.data_dir);
        match run(&mut command, Some(&self.log_file)) {
            Err(error) if self.postmaster_pid().is_some_and(process_alive) => Err(error),
            _ => {
                self.mark_stopped();
                wait_for_exit(pid, &self.name);
                Ok(())
            }
        }
    }

    fn mark_stopped(&mut self) {
        self.state = State::Stopped;
        leftovers::unregister(&self.data_dir);
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Picks a free port and starts; when the log shows the port (or its socket lock) was
    /// taken in between, tries another, up to [`PORT_ATTEMPTS`] times.
    pub(crate) fn start_on_free_port(&mut self) -> Result<(), LocalClusterError> {
        let mut attempt = 1;
        loop {
            self.set_port(free_port()?)?;
            let log_before = file_len(&self.log_file);
            match self.start() {
                Ok(()) => return Ok(()),
                Err(error) if port_taken(&self.log_file, log_before) => {
                    if attempt == PORT_ATTEMPTS {
                        let (server, last) = (self.name.clone(), Box::new(error));
                        return Err(LocalClusterError::PortsExhausted {
                            server,
                            attempts: attempt,
                            last,
                        });
                    }
                    tracing::debug!(server = %self.name, port = self.port, "port taken, retrying");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes the per-server port file, owned by the account that runs postgres.
    fn set_port(&mut self, port: u16) -> Result<(), LocalClusterError> {
        let path = self.data_dir.join(PORT_CONF);
        std::fs::write(&path, conf::port_conf(port))
            .map_err(LocalClusterError::io("write", &path))?;
        self.tools.run_as.chown(&path)?;
        self.port = port;
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(server = %self.name, %error, "could not stop local postgres server");
        }
    }
}

/// A port the kernel just handed out on 127.0.0.1 (free now; a race is caught on start).
fn free_port() -> Result<u16, LocalClusterError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(LocalClusterError::io("bind a free port on", "127.0.0.1"))?;
    Ok(listener.port())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Whether what the server logged since `offset` says its port or socket lock was taken.
fn port_taken(log: &Path, offset: u64) -> bool {
    let text = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    port_taken_in(&String::from_utf8_lossy(&text[start..]))
}

fn port_taken_in(log: &str) -> bool {
    log.contains("could not bind")
        || log.contains("Address already in use")
        || (log.contains("lock file") && log.contains("already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_port_collisions() {
        let log = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n\
                   FATAL:  could not create any TCP/IP sockets";
        assert!(port_taken_in(log));
        assert!(port_taken_in(
            "FATAL:  lock file \"/r/.s.PGSQL.5.lock\" already exists"
        ));
        assert!(!port_taken_in(
            "FATAL:  data directory \"/x\" has invalid permissions"
        ));
    }

    #[test]
    fn free_ports_are_nonzero() {
        assert_ne!(free_port().unwrap(), 0);
    }
}
