//! `limits.statement_timeout`: a watchdog per running statement that cancels it on every
//! backend it runs on, and the rewrite that tells the client why.
//!
//! Part of the session stage. The watchdog is a small task armed when a statement starts and
//! aborted when it ends; when it fires it sends a CancelRequest to whatever the session's
//! [`CancelSlot`] names at that moment (one backend, or every leg of a cross-shard read), the
//! same path a client's own cancel takes. PostgreSQL then answers the statement with 57014
//! "canceling statement due to user request"; the session rewrites that message to say
//! "statement timeout", as PostgreSQL's own `statement_timeout` does. The watchdog never
//! touches the session's sockets, so the session stays usable after the cancel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::task::AbortHandle;

use crate::backend::{self, CancelSlot};
use crate::error::{ErrorReport, SqlState, sqlstate};
use crate::wire;

/// PostgreSQL's message for a statement that ran past `statement_timeout`.
const STATEMENT_TIMEOUT: &str = "canceling statement due to statement timeout";
/// How often a fired watchdog looks again for a backend to cancel when the statement has none
/// yet (it is still waiting for a pool connection).
const RETRY_CANCEL: Duration = Duration::from_millis(50);
/// How long a statement may go on after a cancel before the watchdog sends another.
const RESEND_CANCEL: Duration = Duration::from_secs(1);

/// The statement-timeout watchdog of one session.
pub struct StatementTimer {
    timeout: Option<Duration>,
    slot: CancelSlot,
    armed: Option<AbortHandle>,
    fired: Arc<AtomicBool>,
}

impl StatementTimer {
    /// A watchdog that cancels through `slot` after `timeout` (`None`: never).
    pub fn new(timeout: Option<Duration>, slot: CancelSlot) -> Self {
        Self {
            timeout,
            slot,
            armed: None,
            fired: Arc::default(),
        }
    }

    /// Starts timing a statement, unless one is already being timed.
    pub fn arm(&mut self) {
        if self.armed.is_none() {
            self.fired.store(false, Ordering::Relaxed);
            self.start();
        }
    }

    /// A statement ended (ReadyForQuery) and another may follow in the same pipeline: it gets
    /// a fresh clock. A cancel already sent stays owned (`fired`) until its error is seen or
    /// nothing runs any more, because it may still land on the statement that follows.
    pub fn restart(&mut self) {
        if let Some(task) = self.armed.take() {
            task.abort();
            self.start();
        }
    }

    /// Nothing is running any more.
    pub fn disarm(&mut self) {
        if let Some(task) = self.armed.take() {
            task.abort();
        }
        self.fired.store(false, Ordering::Relaxed);
    }

    fn start(&mut self) {
        let Some(timeout) = self.timeout else { return };
        let (slot, fired) = (self.slot.clone(), self.fired.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            fired.store(true, Ordering::Relaxed);
            cancel_when_running(&slot).await;
        });
        self.armed = Some(task.abort_handle());
    }

    /// Whether the watchdog cancelled the statement being timed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }

    /// The client's view of an error the proxy's cancel caused: PostgreSQL's statement-timeout
    /// wording, SQLSTATE 57014 kept.
    pub fn rewrite(&self, mut report: ErrorReport) -> ErrorReport {
        if self.fired() && report.code == sqlstate::QUERY_CANCELED {
            self.fired.store(false, Ordering::Relaxed); // This cancel is accounted for.
            report.message = STATEMENT_TIMEOUT.to_owned();
        }
        report
    }

    /// Like [`rewrite`](Self::rewrite) for a backend's ErrorResponse body; `None` when the
    /// frame stays as it is. Every other field is kept.
    pub fn rewrite_frame(&self, body: &[u8]) -> Option<BytesMut> {
        if !self.fired() {
            return None;
        }
        let fields = wire::error_fields(body).ok()?;
        let field = |tag: u8| fields.iter().find(|(t, _)| *t == tag).map(|f| f.1);
        if SqlState::parse(field(b'C')?) != Some(sqlstate::QUERY_CANCELED) {
            return None;
        }
        self.fired.store(false, Ordering::Relaxed); // This cancel is accounted for.
        Some(error_frame(&fields, STATEMENT_TIMEOUT))
    }
}

impl Drop for StatementTimer {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// Cancels what the slot names, again every [`RESEND_CANCEL`] while the statement goes on (a
/// cancel that reached its backend just before the statement did is ignored there); while the
/// slot names nothing (the statement waits for a backend) it looks again shortly. Ends when
/// the session aborts it.
async fn cancel_when_running(slot: &CancelSlot) {
    loop {
        let targets = slot.get();
        if targets.is_empty() {
            tokio::time::sleep(RETRY_CANCEL).await;
            continue;
        }
        tracing::info!(backends = targets.len(), "statement timeout: cancelling");
        for target in targets {
            if let Err(error) = backend::send_cancel(target).await {
                tracing::warn!(%error, "sending a statement-timeout cancel failed");
            }
        }
        tokio::time::sleep(RESEND_CANCEL).await;
    }
}

/// An ErrorResponse with `fields`, the message replaced ("ErrorResponse", PostgreSQL protocol
/// docs, Message Formats).
fn error_frame(fields: &[(u8, &str)], message: &str) -> BytesMut {
    let mut body = BytesMut::new();
    for &(tag, value) in fields {
        body.put_u8(tag);
        body.put_slice(if tag == b'M' { message } else { value }.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut frame = BytesMut::with_capacity(body.len() + wire::HEADER_LEN);
    frame.put_u8(b'E');
    frame.put_u32((body.len() + 4) as u32);
    frame.extend_from_slice(&body);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Blame;

    fn fired_timer() -> StatementTimer {
        let timer = StatementTimer::new(None, CancelSlot::default());
        timer.fired.store(true, Ordering::Relaxed);
        timer
    }

    #[test]
    fn a_cancel_the_timer_caused_says_statement_timeout() {
        let body =
            b"SERROR\0VERROR\0C57014\0Mcanceling statement due to user request\0Fpostgres.c\0\0";
        let frame = fired_timer().rewrite_frame(body).unwrap();
        let fields = wire::error_fields(&frame[wire::HEADER_LEN..]).unwrap();
        assert_eq!(
            fields,
            vec![
                (b'S', "ERROR"),
                (b'V', "ERROR"),
                (b'C', "57014"),
                (b'M', STATEMENT_TIMEOUT),
                (b'F', "postgres.c"),
            ]
        );
        let header = wire::peek_header(&frame).unwrap().unwrap();
        assert_eq!(header.total_len, frame.len());
    }

    #[test]
    fn other_errors_and_unfired_timers_leave_the_error_alone() {
        let body = b"SERROR\0C42601\0Msyntax error\0\0";
        assert!(fired_timer().rewrite_frame(body).is_none());
        let cancel = b"SERROR\0C57014\0Mcanceling statement due to user request\0\0";
        let unfired = StatementTimer::new(None, CancelSlot::default());
        assert!(unfired.rewrite_frame(cancel).is_none());
        assert!(fired_timer().rewrite_frame(b"garbage").is_none());
    }

    #[tokio::test]
    async fn a_cancel_sent_stays_owned_across_a_restart_until_disarmed() {
        let mut timer = StatementTimer::new(Some(Duration::from_millis(10)), CancelSlot::default());
        timer.arm();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(timer.fired());
        timer.restart();
        assert!(
            timer.fired(),
            "the cancel may still land on the next statement"
        );
        timer.disarm();
        assert!(!timer.fired());
        timer.arm();
        assert!(!timer.fired(), "a new statement starts clean");
    }

    #[test]
    fn reports_are_rewritten_too() {
        let user_request = "canceling statement due to user request";
        let report = ErrorReport::error(sqlstate::QUERY_CANCELED, Blame::Backend, user_request);
        assert_eq!(fired_timer().rewrite(report).message, STATEMENT_TIMEOUT);
    }
}
