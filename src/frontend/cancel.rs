//! CancelRequest handling: the proxy hands each client a key of its own and, when a cancel
//! quotes it, forwards a cancel to whichever backend that client is using at that moment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{self, CancelSlot};

/// Proxy-issued cancel keys of connected clients.
#[derive(Default)]
pub struct CancelRegistry {
    next_pid: AtomicI32,
    entries: Mutex<HashMap<i32, (i32, CancelSlot)>>,
}

/// A client's registration; dropping it forgets the key.
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    /// The pid the client was told in BackendKeyData.
    pub pid: i32,
    /// The secret the client was told.
    pub secret: i32,
    /// Where the session publishes its current backend.
    pub slot: CancelSlot,
}

impl CancelRegistry {
    /// Issues a fresh key for a new client.
    pub fn register(self: &Arc<Self>) -> CancelRegistration {
        // Pids are positive and unique among live clients; the secret is what protects them.
        let pid = (self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x3fff_ffff) + 1;
        let secret: i32 = rand::random();
        let slot = CancelSlot::default();
        self.lock().insert(pid, (secret, slot.clone()));
        CancelRegistration {
            registry: self.clone(),
            pid,
            secret,
            slot,
        }
    }

    /// Cancels the statement of the client holding (pid, secret), if it is running one.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let targets = match self.lock().get(&pid) {
            Some((expected, slot)) if *expected == secret => slot.get(),
            _ => Vec::new(),
        };
        if targets.is_empty() {
            tracing::debug!(pid, "cancel request matched no running statement");
        }
        for target in targets {
            if let Err(error) = backend::send_cancel(target).await {
                tracing::warn!(pid, %error, "forwarding a cancel request failed");
            }
        }
    }

    /// Cancels every statement running on behalf of any client (the end of a shutdown drain:
    /// backends busy for clients about to be closed stop their work and release their locks).
    pub async fn cancel_all(&self) {
        let targets: Vec<_> = (self.lock().values())
            .flat_map(|(_, slot)| slot.get())
            .collect();
        for target in targets {
            if let Err(error) = backend::send_cancel(target).await {
                tracing::warn!(%error, "cancelling a statement at shutdown failed");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (i32, CancelSlot)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.pid);
    }
}
