//! Graceful shutdown: stop accepting, let open transactions finish, then close everyone.
//!
//! Part of the app stage (lifecycle). The sequence, driven by [`Proxy::shutdown_until`]:
//! 1. The listener closes, so new connections are refused by the operating system; a login
//!    already under way is refused with 57P03.
//! 2. Phase `Draining`: every session idle between transactions is closed at once with FATAL
//!    57P01; a session inside a transaction runs it to its end (its COMMIT is acknowledged)
//!    and is closed at its next idle point.
//! 3. When every client has gone, or the drain timeout (or the interrupt, a second signal)
//!    comes first: statements still running are cancelled and phase `Closing` closes every
//!    remaining session with 57P01. Their backends are discarded, so their transactions roll
//!    back; none was acknowledged to its client.
//! 4. The proxy leaves its fleet's table (`fleet`): no move waits for its lease any more.

use std::future::Future;
use std::time::{Duration, Instant};

use super::Proxy;
use crate::lifecycle::Phase;

/// How long sessions have to close once told to close now, before the shutdown returns anyway
/// (a client that does not read its socket cannot hold the process up for ever).
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often the drain looks at the number of connected clients.
const POLL: Duration = Duration::from_millis(20);

impl Proxy {
    /// Stops the proxy gracefully, giving transactions in flight up to `drain` to finish (see
    /// the module docs). Returns once every session has ended, or a few seconds after the
    /// drain (`CLOSE_GRACE`) if some client does not let its session close (it does not read
    /// its socket).
    pub async fn shutdown(self, drain: Duration) {
        self.shutdown_until(drain, std::future::pending()).await;
    }

    /// Like [`shutdown`](Self::shutdown), but `interrupt` resolving ends the drain at once (the
    /// binary passes a second SIGTERM/SIGINT).
    pub async fn shutdown_until(self, drain: Duration, interrupt: impl Future<Output = ()>) {
        let started = Instant::now();
        let _ = self.shutdown.send(true);
        let _ = self.accept_loop.await;
        let frontend = self.frontend;
        frontend.admission.phase().send_replace(Phase::Draining);
        tracing::info!(
            clients = frontend.admission.sessions(),
            ?drain,
            "shutdown: draining"
        );
        let outcome = tokio::select! {
            () = clients_gone(&frontend) => "every client left",
            () = tokio::time::sleep(drain) => "the drain timeout ran out",
            () = interrupt => "interrupted",
        };
        let left = frontend.admission.sessions();
        if left > 0 {
            tracing::warn!(
                clients = left,
                why = outcome,
                "shutdown: closing the clients still connected; their open transactions roll back"
            );
            frontend.cancels.cancel_all().await;
            frontend.admission.phase().send_replace(Phase::Closing);
            if tokio::time::timeout(CLOSE_GRACE, clients_gone(&frontend))
                .await
                .is_err()
            {
                let left = frontend.admission.sessions();
                tracing::warn!(clients = left, "shutdown: clients did not close in time");
            }
        }
        // Closes admin console sessions too (the drain does not wait for them).
        frontend.admission.phase().send_replace(Phase::Closing);
        self.fleet.leave().await;
        tracing::info!(took = ?started.elapsed(), "shutdown complete");
    }
}

/// Resolves once no session is open (connections still in startup are refused when they
/// finish it, so they are not waited for).
async fn clients_gone(frontend: &crate::frontend::FrontendContext) {
    while frontend.admission.sessions() > 0 {
        tokio::time::sleep(POLL).await;
    }
}
