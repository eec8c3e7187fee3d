//! Whether a server still answers, as work in flight on it sees it.
//!
//! PostgreSQL says nothing while it runs a long query, so silence on a data connection proves
//! nothing and no per-statement read timeout can tell a slow query from a stopped server. The
//! control plane's health check can: when its query gets no reply within
//! `replicas.check_timeout`, [`ServerHealth`](super::ServerHealth) flips the server's
//! [`Liveness`] to "stopped answering", and every statement waiting on that server (a session
//! holding one of its connections, a fan-out leg, a checkout) wakes up and gives the
//! connection up instead of waiting for a reply that may never come. Waiting costs a `watch`
//! receiver per checkout and one more branch in the waits that already `select!`: no timer and
//! no syscall on the data path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::watch;

use crate::error::{Blame, ErrorReport, sqlstate};

/// A subscription to one server's "stopped answering" state, carried by each checkout.
#[derive(Debug, Clone)]
pub struct Liveness {
    stopped: watch::Receiver<bool>,
    endpoint: Arc<str>,
}

impl Liveness {
    /// A subscription to `stopped` (true while the server does not answer its checks).
    pub(super) fn new(stopped: watch::Receiver<bool>, endpoint: Arc<str>) -> Self {
        Self { stopped, endpoint }
    }

    /// Completes once the server is marked as not answering (at once if it is now). Never
    /// completes if the pool is gone: nobody checks the server any more, so nothing says it
    /// stopped.
    pub async fn stopped(&mut self) {
        if self.stopped.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Like [`stopped`](Self::stopped) for a connection the caller may not hold: pending
    /// forever for `None`, so one `select!` serves sessions with and without a backend.
    pub async fn stopped_if_held(liveness: Option<&mut Liveness>) {
        match liveness {
            Some(liveness) => liveness.stopped().await,
            None => std::future::pending().await,
        }
    }

    /// Whether the server is marked as not answering now.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Shard and role of the server, e.g. `app/s0 replica 0`, for messages.
    pub fn endpoint(&self) -> &Arc<str> {
        &self.endpoint
    }

    /// What a client is told when work on this server (its connection at `addr`) was given
    /// up because the server stopped answering: whether that work ran is unknown, so this is
    /// never marked safe to retry.
    pub fn abandoned(&self, addr: &str) -> ErrorReport {
        ErrorReport::error(
            sqlstate::CONNECTION_FAILURE,
            Blame::Backend,
            format!(
                "shardgate: {} ({addr}) stopped answering (no reply to its health check in \
                 time); the statement waiting on it was abandoned",
                self.endpoint
            ),
        )
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits on several servers at once (the legs of a fan-out): reports each server that stops
/// answering once, by its index. The waits are made once per fan-out, not per poll.
pub struct FirstStopped {
    waits: Vec<Option<Wait>>,
}

impl FirstStopped {
    /// Watches every server of `watched`, in order.
    pub fn new(watched: impl IntoIterator<Item = Liveness>) -> Self {
        let waits = (watched.into_iter())
            .map(|mut liveness| {
                let wait: Wait = Box::pin(async move { liveness.stopped().await });
                Some(wait)
            })
            .collect();
        Self { waits }
    }

    /// The index of the next server found not answering; pending while all answer.
    pub async fn next(&mut self) -> usize {
        std::future::poll_fn(|cx| {
            for (index, slot) in self.waits.iter_mut().enumerate() {
                let Some(wait) = slot else { continue };
                if wait.as_mut().poll(cx).is_ready() {
                    *slot = None;
                    return Poll::Ready(index);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_stopped_server_is_reported_once_and_answering_ones_never() {
        let (first, second) = (watch::channel(false), watch::channel(false));
        let watched = [&first.1, &second.1].map(|rx| Liveness::new(rx.clone(), "e".into()));
        let mut any = FirstStopped::new(watched);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), any.next());
        assert!(pending.await.is_err(), "no server stopped yet");
        second.0.send_replace(true);
        assert_eq!(any.next().await, 1);
        first.0.send_replace(true);
        assert_eq!(any.next().await, 0);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), any.next());
        assert!(pending.await.is_err(), "each is reported once");
    }

    #[tokio::test]
    async fn a_subscription_completes_at_once_for_a_server_already_stopped() {
        let (tx, rx) = watch::channel(true);
        let mut liveness = Liveness::new(rx, "e".into());
        liveness.stopped().await;
        assert!(liveness.is_stopped());
        drop(tx);
        let mut gone = Liveness::new(watch::channel(false).1, "e".into());
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), gone.stopped());
        assert!(pending.await.is_err(), "a pool that is gone stops nothing");
    }
}
