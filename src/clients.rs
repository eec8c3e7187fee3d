//! The clients connected right now, for `SHOW CLIENTS` and the client gauges: each session
//! publishes what it is doing (idle, waiting for a backend, holding one) in its entry, and the
//! entry leaves the registry when the session ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Between statements or transactions, holding no backend.
    Idle = 0,
    /// Waiting for a backend connection.
    Waiting = 1,
    /// Holding a backend (running a statement or inside a transaction).
    Active = 2,
}

impl ClientState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }

    /// Lower-case name, as `SHOW CLIENTS` and the metric label say it.
    pub fn name(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }
}

/// One connected client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique per proxy process.
    pub id: u64,
    /// Login user.
    pub user: String,
    /// Database (`shardgate` for the admin console).
    pub database: String,
    /// Its address, when the socket said.
    pub peer: Option<SocketAddr>,
    /// When it logged in.
    pub connected_at: SystemTime,
    state: AtomicU8,
}

impl ClientInfo {
    /// Publishes what the session is doing.
    pub fn set_state(&self, state: ClientState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// What the session is doing.
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Clients by state, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Holding a backend.
    pub active: usize,
    /// Waiting for one.
    pub waiting: usize,
    /// Neither.
    pub idle: usize,
}

/// Every logged-in client.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

/// A client's entry; dropping it takes the client out of the registry.
pub struct Registered {
    registry: Arc<ClientRegistry>,
    /// The entry the session updates.
    pub info: Arc<ClientInfo>,
}

impl ClientRegistry {
    /// Adds a client that just logged in.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        database: &str,
        peer: Option<SocketAddr>,
    ) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            user: user.to_owned(),
            database: database.to_owned(),
            peer,
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
        });
        self.lock().insert(id, info.clone());
        Registered {
            registry: self.clone(),
            info,
        }
    }

    /// Every client, in login order.
    pub fn clients(&self) -> Vec<Arc<ClientInfo>> {
        self.lock().values().cloned().collect()
    }

    /// How many clients are in each state.
    pub fn state_counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for client in self.lock().values() {
            match client.state() {
                ClientState::Idle => counts.idle += 1,
                ClientState::Waiting => counts.waiting += 1,
                ClientState::Active => counts.active += 1,
            }
        }
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientInfo>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_state_while_registered() {
        let registry = Arc::new(ClientRegistry::default());
        let a = registry.register("app", "app", None);
        let b = registry.register("app", "app", None);
        b.info.set_state(ClientState::Active);
        assert_eq!(
            registry.state_counts(),
            StateCounts {
                active: 1,
                waiting: 0,
                idle: 1
            }
        );
        drop(a);
        assert_eq!(registry.clients().len(), 1);
    }
}
