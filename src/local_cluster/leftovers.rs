//! Last-chance stop at process exit for servers whose handle is never dropped.
//!
//! Rust never drops `static`s, so a test harness that keeps one cluster in a `OnceLock` for the
//! whole test binary would leave its servers running after the tests end. This module keeps a
//! process-wide list of running servers and registers an `atexit` hook that stops whatever is
//! still on it (`pg_ctl stop -m immediate`). It owns only that list and that hook; it must never
//! panic (the hook runs inside `exit()`, where a panic aborts) and never block on a lock there.
//! It cannot help when the process is killed by a signal: the demo handles Ctrl-C itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use super::command::Toolbox;

/// A server started and not yet stopped through its handle.
struct Running {
    data_dir: PathBuf,
    tools: Arc<Toolbox>,
}

static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

/// Records a server that has just started; installs the exit hook on first use.
pub(crate) fn register(data_dir: &Path, tools: &Arc<Toolbox>) {
    HOOK.call_once(|| {
        // SAFETY: `stop_leftovers` is an `extern "C" fn()` that never unwinds.
        if unsafe { libc::atexit(stop_leftovers) } != 0 {
            tracing::warn!("cannot register the exit hook that stops leftover local servers");
        }
    });
    let tools = Arc::clone(tools);
    running().push(Running {
        data_dir: data_dir.to_path_buf(),
        tools,
    });
}

/// Forgets a server that its handle has stopped.
pub(crate) fn unregister(data_dir: &Path) {
    running().retain(|server| server.data_dir != data_dir);
}

/// The list, even if a thread panicked while holding it (the list itself stays consistent).
fn running() -> MutexGuard<'static, Vec<Running>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs inside `exit()`: stops every server still registered.
extern "C" fn stop_leftovers() {
    // Never wait for the lock here: a thread still holding it at exit would hang the process.
    let leftovers = match RUNNING.try_lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return,
    };
    for server in leftovers {
        let mut command = server.tools.command(&server.tools.binaries.pg_ctl);
        command.args(["stop", "-w", "-s", "-t", "30", "-m", "immediate", "-D"]);
        command.arg(&server.data_dir);
        // Best effort: nothing can be reported from inside exit().
        let _ = command.output();
    }
}
