//! The server connections a pool has open, for the admin console's `SHOW SERVERS`: each
//! connection registers itself when it is opened and is gone from the list when it is closed.
//! Checkouts flip an atomic flag, so the list costs the request path no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One open server connection, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    /// The server process id (from its BackendKeyData).
    pub pid: i32,
    /// When it was opened.
    pub connected_at: SystemTime,
    /// Checked out by a session right now.
    pub in_use: bool,
}

#[derive(Debug)]
struct Server {
    pid: i32,
    connected_at: SystemTime,
    in_use: AtomicBool,
}

/// The open connections of one pool.
#[derive(Debug, Default)]
pub struct Servers {
    next: AtomicU64,
    servers: Mutex<BTreeMap<u64, Arc<Server>>>,
}

/// A connection's place in its pool's list; dropping it takes the connection off the list.
#[derive(Debug)]
pub struct ServerEntry {
    servers: Arc<Servers>,
    id: u64,
    server: Arc<Server>,
}

impl Servers {
    /// Adds a connection just opened to server process `pid`.
    pub fn register(self: &Arc<Self>, pid: i32) -> ServerEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let server = Arc::new(Server {
            pid,
            connected_at: SystemTime::now(),
            in_use: AtomicBool::new(false),
        });
        self.lock().insert(id, server.clone());
        ServerEntry {
            servers: self.clone(),
            id,
            server,
        }
    }

    /// Every open connection, oldest first.
    pub fn rows(&self) -> Vec<ServerRow> {
        (self.lock().values())
            .map(|server| ServerRow {
                pid: server.pid,
                connected_at: server.connected_at,
                in_use: server.in_use.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Server>>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerEntry {
    /// Marks the connection checked out (`true`) or back in the pool.
    pub fn set_in_use(&self, in_use: bool) {
        self.server.in_use.store(in_use, Ordering::Relaxed);
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
        let listed: Vec<_> = servers.rows().iter().map(|r| (r.pid, r.in_use)).collect();
        assert_eq!(listed, [(10, false), (11, true)]);
        drop(first);
        assert_eq!(servers.rows().len(), 1);
    }
}
