//! What may end or refuse a session's work from outside its own protocol: idle timeouts, the
//! user's statement rate, the statement timeout and the proxy's shutdown.
//!
//! Part of the session stage. [`SessionLimits`] is what the frontend hands a session;
//! [`Session::interrupt`] is raced against the serve loop's pump, and
//! [`Session::admit_statement`] runs before each statement. A session is only ever closed at
//! a point where its backends can be judged: idle between transactions (they go back to the
//! pool) or, when the drain runs out or a client idles inside a transaction, with its
//! backends marked broken so the unacknowledged transaction rolls back and is never handed to
//! another client.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::rate_limit::UserRate;
use super::timeouts::StatementTimer;
use super::{Ending, Session};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{TxStatus, tag};

pub use crate::lifecycle::Phase;

/// The limits of one session, with its own watchdog state.
pub struct SessionLimits {
    /// Close a client idle inside a transaction this long (25P03).
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Close a client idle outside a transaction this long (57P05).
    pub client_idle_timeout: Option<Duration>,
    /// The user's shared statement bucket, when rate limits are on.
    pub rate: Option<Arc<UserRate>>,
    /// The proxy's lifecycle.
    pub phase: watch::Receiver<Phase>,
    /// Cancels statements that run past `limits.statement_timeout`.
    pub timer: StatementTimer,
}

/// What the session is doing while it waits on its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rest {
    /// Something is in flight to, from or on a backend.
    Busy,
    /// Waiting for the client's next statement, outside a transaction.
    Idle,
    /// Waiting for the client's next statement inside a transaction.
    IdleInTransaction,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Whether the session waits for its client with nothing in flight, and in what
    /// transaction state. Only a whole message answered by ReadyForQuery leaves it idle, as
    /// PostgreSQL's idle timeouts count.
    pub(super) fn rest(&self) -> Rest {
        // Bytes still queued for either side do not count: the pump writes them while it
        // waits, and a client that does not read its results is not busy.
        let quiet = self.replies.is_empty()
            && self.copy_data_remaining == 0
            && !self.batch.skip_until_sync
            && self.batch.scatter_portal.is_none();
        match (quiet, self.client_status) {
            (false, _) => Rest::Busy,
            (true, TxStatus::Idle) => Rest::Idle,
            (true, _) => Rest::IdleInTransaction,
        }
    }

    /// Runs before each statement (a Query, an Execute, a FunctionCall): takes a token from
    /// the user's bucket and starts the statement timer. Other messages pass freely, and so
    /// does a Query that only ends a transaction: refusing a COMMIT would throw away the work
    /// the bucket already let through.
    pub(super) fn admit_statement(
        &mut self,
        frame_tag: u8,
        frame: &[u8],
    ) -> Result<(), ErrorReport> {
        if !matches!(frame_tag, tag::QUERY | tag::EXECUTE | tag::FUNCTION_CALL) {
            return Ok(());
        }
        // The text is read only when a rate limit is on: most sessions have none.
        let ends_transaction = || {
            let body = &frame[crate::wire::HEADER_LEN..];
            frame_tag == tag::QUERY
                && crate::wire::query_text(body).is_ok_and(super::statements::ends_transaction)
        };
        if let Some(rate) = self
            .env
            .limits
            .rate
            .as_ref()
            .filter(|_| !ends_transaction())
        {
            let user = &self.env.client.user;
            rate.admit()
                .inspect_err(|_| self.env.metrics.rate_limited(user))?;
        }
        self.env.limits.timer.arm();
        Ok(())
    }

    /// Keeps the statement timer running exactly while something is in flight.
    pub(super) fn track_statement_timer(&mut self) {
        if self.replies.is_empty() {
            self.env.limits.timer.disarm();
        } else {
            self.env.limits.timer.arm();
        }
    }
}

impl SessionLimits {
    /// Resolves when the session must end while it is at `rest`: an idle timeout ran out, or
    /// the proxy is shutting down and this is a point where the session may close. Pending
    /// otherwise; safe to drop (it holds no state of the session).
    pub(super) async fn interrupt(&mut self, rest: Rest) -> Ending {
        let idle = match rest {
            Rest::Busy => None,
            Rest::Idle => (self.client_idle_timeout).map(|t| (t, idle_session as fn() -> Ending)),
            Rest::IdleInTransaction => (self.idle_in_transaction_timeout)
                .map(|t| (t, idle_in_transaction as fn() -> Ending)),
        };
        let timeout = async move {
            match idle {
                Some((after, ending)) => {
                    // Boxed: without idle timeouts, an idle session holds no timer.
                    Box::pin(tokio::time::sleep(after)).await;
                    ending()
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut watching = true;
        loop {
            let phase = *self.phase.borrow_and_update();
            if phase == Phase::Closing || (phase == Phase::Draining && rest == Rest::Idle) {
                return shutting_down();
            }
            tokio::select! {
                ending = &mut timeout => return ending,
                changed = self.phase.changed(), if watching => {
                    // The proxy was dropped without a shutdown: sessions go on as they were.
                    watching = changed.is_ok();
                }
            }
        }
    }
}

fn idle_session() -> Ending {
    tracing::info!("closing a client idle past limits.client_idle_timeout");
    Ending::Fatal(ErrorReport::fatal(
        sqlstate::IDLE_SESSION_TIMEOUT,
        Blame::Client,
        "terminating connection due to idle-session timeout",
    ))
}

fn idle_in_transaction() -> Ending {
    tracing::info!(
        "closing a client idle in a transaction past limits.idle_in_transaction_timeout"
    );
    Ending::Fatal(ErrorReport::fatal(
        sqlstate::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
        Blame::Client,
        "terminating connection due to idle-in-transaction timeout",
    ))
}

/// PostgreSQL's words for a session ended by a shutdown.
pub(super) fn shutting_down() -> Ending {
    Ending::Fatal(ErrorReport::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        Blame::Proxy,
        "terminating connection due to administrator command",
    ))
}
