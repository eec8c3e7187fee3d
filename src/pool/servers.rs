//! The server connections a pool has open, for the admin console's `SHOW SERVERS`: each
//! connection registers itself when it is opened and is gone from the list when it is closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One open server connection.
#[derive(Debug, Clone)]
pub struct ServerRow {
    /// The server process id (from its BackendKeyData).
    pub pid: i32,
    /// When it was opened.
    pub connected_at: SystemTime,
    /// Checked out by a session right now.
    pub in_use: bool,
}

/// The open connections of one pool.
#[derive(Debug, Default)]
pub struct Servers {
    next: AtomicU64,
    rows: Mutex<BTreeMap<u64, ServerRow>>,
}

/// A connection's place in its pool's list; leaving it (dropping) takes the row out.
#[derive(Debug)]
pub struct ServerEntry {
    servers: Arc<Servers>,
    id: u64,
}

impl Servers {
    /// Adds a connection just opened to server process `pid`.
    pub fn register(self: &Arc<Self>, pid: i32) -> ServerEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let row = ServerRow {
            pid,
            connected_at: SystemTime::now(),
            in_use: false,
        };
        self.lock().insert(id, row);
        ServerEntry {
            servers: self.clone(),
            id,
        }
    }

    /// Every open connection, oldest first.
    pub fn rows(&self) -> Vec<ServerRow> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ServerRow>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerEntry {
    /// Marks the connection checked out (`true`) or back in the pool.
    pub fn set_in_use(&self, in_use: bool) {
        if let Some(row) = self.servers.lock().get_mut(&self.id) {
            row.in_use = in_use;
        }
    }
}

impl Drop for ServerEntry {
    fn drop(&mut self) {
        self.servers.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_listed_while_it_lives() {
        let servers = Arc::new(Servers::default());
        let first = servers.register(10);
        let second = servers.register(11);
        second.set_in_use(true);
        let rows = servers.rows();
        assert_eq!(
            rows.iter().map(|r| (r.pid, r.in_use)).collect::<Vec<_>>(),
            [(10, false), (11, true)]
        );
        drop(first);
        assert_eq!(servers.rows().len(), 1);
    }
}
