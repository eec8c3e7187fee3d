//! Where the proxy is in its life, as every layer that must react to shutdown watches it.
//!
//! A bottom layer (tokio's `watch` only): the app moves the phase, the frontend stops
//! accepting, sessions drain, the admin console and HTTP endpoint close.

use tokio::sync::watch;

/// Where the proxy is in its life; sessions watch it to drain at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Normal service.
    Serving,
    /// Shutting down: sessions close at their next point between transactions.
    Draining,
    /// The drain ran out: every session closes now, rolling back what it has open.
    Closing,
}

/// Resolves once `shutdown` turns true.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await (it is not Send).
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
