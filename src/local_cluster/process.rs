//! Watching postmaster processes by pid, so "stopped" means no process is left.
//!
//! Owns the Linux-specific checks (`/proc/PID/stat`, falling back to `kill(pid, 0)`) behind
//! [`super::LocalServer`]'s stop and restart. It never signals a process: it only looks.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a postmaster may take to exit after removing its pid file, or to be reaped.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// `pg_ctl stop -w` returns once `postmaster.pid` is gone, which the postmaster removes just
/// before it exits; waits (bounded) for the exit itself, so "stopped" means no process left.
pub(crate) fn wait_for_exit(pid: i32, server: &str) {
    let deadline = Instant::now() + EXIT_WAIT;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            tracing::warn!(server, pid, "postmaster still exists after stop");
            return;
        }
        #[allow(clippy::disallowed_methods)] // synchronous: servers start and stop off the runtime
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A killed postmaster stays a zombie until its parent (init) reaps it, and a new postmaster
/// refuses a data dir whose lock file names a pid that still exists: waits (bounded) for that.
pub(crate) fn wait_for_reap(pid: i32, server: &str) {
    let deadline = Instant::now() + EXIT_WAIT;
    // SAFETY (both calls): signal 0 sends nothing; it only checks that the pid exists.
    while !process_alive(pid) && unsafe { libc::kill(pid, 0) } == 0 {
        if Instant::now() >= deadline {
            tracing::warn!(server, pid, "old postmaster was never reaped");
            return;
        }
        #[allow(clippy::disallowed_methods)] // synchronous: servers start and stop off the runtime
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` exists and is not a zombie (an exited child its parent has not reaped yet).
pub(crate) fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        // No procfs: signal 0 checks existence (zombies count as alive here).
        Err(_) if !Path::new("/proc/self").exists() => {
            // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
            unsafe { libc::kill(pid, 0) == 0 }
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_own_process_alive() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(i32::MAX));
    }
}
