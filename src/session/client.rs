//! Frames from the client: each is forwarded, rewritten, or answered by the proxy, and its
//! expected reply is queued.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::implicit::Unit;
use super::replies::{Expect, Synthetic};
use super::statements::SessionEffect;
use super::{Ending, Session, cold};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{self, TxStatus, encode, peek_header, tag};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Handles every complete frame the client has sent so far.
    pub(super) async fn on_client_data(&mut self) -> Result<(), Ending> {
        while !self.terminated {
            if self.copy_data_remaining > 0 {
                self.stream_copy_data(self.copy_data_remaining);
                if self.copy_data_remaining > 0 {
                    break;
                }
                continue;
            }
            let header =
                peek_header(&self.bufs.client_in).map_err(|e| protocol_violation(e.to_string()))?;
            let Some(header) = header else { break };
            if header.tag == tag::COPY_DATA && self.backend.is_some() && !self.batch.skip_until_sync
            {
                self.stream_copy_data(header.total_len);
                continue;
            }
            if header.total_len > self.env.max_message_bytes {
                return Err(protocol_violation(format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    header.total_len, self.env.max_message_bytes
                )));
            }
            if self.bufs.client_in.len() < header.total_len {
                break;
            }
            let frame = self.bufs.client_in.split_to(header.total_len);
            // Debug level: off by default, where creating it costs one callsite check.
            let span = tracing::debug_span!("statement", message = %(header.tag as char));
            self.on_client_frame(header.tag, frame)
                .instrument(span)
                .await?;
        }
        Ok(())
    }

    /// CopyData goes to the backend as it arrives, without waiting for whole frames, so COPY
    /// rows of any size need no buffering and no message-size limit.
    fn stream_copy_data(&mut self, frame_left: usize) {
        let n = frame_left.min(self.bufs.client_in.len());
        let chunk = self.bufs.client_in.split_to(n);
        self.bufs.to_backend.extend_from_slice(&chunk);
        self.copy_data_remaining = frame_left - n;
    }

    async fn on_client_frame(&mut self, frame_tag: u8, frame: BytesMut) -> Result<(), Ending> {
        if self.batch.skip_until_sync && frame_tag != tag::SYNC {
            return Ok(());
        }
        self.meter.message(frame_tag);
        self.batch.unsynced = !matches!(frame_tag, tag::SYNC | tag::QUERY);
        if let Err(report) = self.admit_statement(frame_tag, &frame) {
            return self.settle_refusal(frame_tag, Refusal::Statement(report));
        }
        self.refresh_topology();
        if self.batch.scatter_portal.is_some() {
            match cold(self.on_scatter_portal_message(frame_tag, &frame)).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(refusal) => return self.settle_refusal(frame_tag, refusal),
            }
        }
        let outcome = match frame_tag {
            tag::QUERY => self.on_query(&frame).await,
            tag::PARSE => self.on_parse(&frame).await,
            tag::BIND => self.on_bind(&frame).await,
            tag::DESCRIBE => self.on_describe(&frame).await,
            tag::CLOSE => self.on_close(&frame).await,
            tag::EXECUTE => {
                match self.execute_left_portal(&frame) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(refusal) => return self.settle_refusal(frame_tag, refusal),
                }
                if self.execute_deferred_begin(&frame) {
                    return Ok(());
                }
                let effects = self.portal_effects(&frame);
                self.forward(&frame, Expect::Execute(effects)).await
            }
            tag::FUNCTION_CALL => {
                // A function called by oid may write (lo_import does).
                if let Err(report) = self.leave_replica().await {
                    return self.settle_refusal(frame_tag, Refusal::Statement(report));
                }
                let outcome = self.forward(&frame, Expect::FunctionCall).await;
                if let Some(shard) = self.held_shard {
                    self.note_written(shard);
                }
                outcome
            }
            tag::SYNC => self.on_sync(&frame).await,
            tag::FLUSH | tag::COPY_DATA => {
                self.forward_if_held(&frame);
                Ok(())
            }
            tag::COPY_DONE | tag::COPY_FAIL => {
                if self.forward_if_held(&frame) {
                    self.replies.push(Expect::CopyEnd);
                }
                Ok(())
            }
            tag::TERMINATE => {
                self.terminated = true;
                Ok(())
            }
            other => {
                return Err(protocol_violation(format!(
                    "invalid frontend message type {:?}",
                    other as char
                )));
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(refusal) => self.settle_refusal(frame_tag, refusal),
        }
    }

    fn settle_refusal(&mut self, frame_tag: u8, refusal: Refusal) -> Result<(), Ending> {
        match refusal {
            Refusal::Statement(_) if std::mem::take(&mut self.batch.failed_earlier) => {
                self.batch.skip_until_sync = true;
                Ok(())
            }
            Refusal::Statement(report) => {
                self.refuse(frame_tag, report);
                Ok(())
            }
            Refusal::Session(ending) => Err(ending),
        }
    }

    /// Answers a message the proxy cannot run (no backend to be had, say) the way a server
    /// answers a failed one: the error, then ReadyForQuery or skipping to Sync.
    fn refuse(&mut self, frame_tag: u8, report: ErrorReport) {
        let report = self.env.limits.timer.rewrite(report);
        let report = (self.deadlock_report(report.code.as_str())).unwrap_or(report);
        log_refusal(&report);
        if !is_server_error(&report) {
            (self.env.database.counters).count(crate::counters::Event::Refused(report.code));
        }
        self.fail_pending_transaction();
        if self.backend.is_none() && self.replies.is_empty() {
            self.note_error(report.code);
            encode::error_response(&mut self.bufs.to_client, &report);
            if frame_tag == tag::QUERY {
                self.note_ready(self.client_status);
                encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            } else {
                self.batch.skip_until_sync = true;
            }
            return;
        }
        // PostgreSQL aborts the transaction of a failed statement: make the backend's
        // transaction fail too, so a later COMMIT rolls back as it would there.
        let in_transaction = self.backend_status == TxStatus::InTransaction;
        if frame_tag == tag::QUERY && in_transaction {
            self.abort_backend_transaction();
        } else if in_transaction {
            self.batch.abort_at_sync = true;
        }
        self.push(Expect::synthetic(Synthetic::Error(report)));
        if frame_tag == tag::QUERY {
            self.push(Expect::synthetic(Synthetic::ReadyForQuery));
        } else {
            self.batch.skip_until_sync = true;
            // PostgreSQL sends an error at once, Sync or not (a driver that waits for a
            // COPY to start sends none): the backend is asked to flush what comes before it.
            if self.backend.is_some() && !self.replies.synthetic_at_head() {
                postgres_protocol::message::frontend::flush(&mut self.bufs.to_backend);
            }
        }
    }

    fn abort_backend_transaction(&mut self) {
        let sql = "SELECT 1/0 AS shardgate_statement_refused";
        if postgres_protocol::message::frontend::query(sql, &mut self.bufs.to_backend).is_ok() {
            self.batch.unnamed_on_backend = false;
            self.aborting_transaction = true;
            self.push(Expect::hidden_query());
        }
    }

    async fn on_sync(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        self.batch.skip_until_sync = false;
        self.batch.begin_portal = None;
        if self.client_status == TxStatus::Idle {
            self.end_left_portals(); // Sync outside a transaction ends every portal.
        }
        if self.txn.implicit {
            let refused = std::mem::take(&mut self.batch.abort_at_sync);
            let unit = if refused { Unit::Refused } else { Unit::Ran };
            return cold(self.end_implicit(unit)).await;
        }
        if self.backend.is_none() && self.replies.is_empty() {
            self.note_ready(self.client_status);
            encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            return Ok(());
        }
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Sync);
        if std::mem::take(&mut self.batch.abort_at_sync) {
            self.abort_backend_transaction();
        }
        Ok(())
    }

    /// Forwards a message that runs wherever the session is (Execute of a bound portal,
    /// FunctionCall).
    async fn forward(&mut self, frame: &[u8], expect: Expect) -> Result<(), Refusal> {
        self.ensure_backend(None).await?;
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(expect);
        Ok(())
    }

    /// Forwards a message that needs no backend of its own (Flush, COPY data); without a
    /// backend there is nothing to flush or copy into, so it is dropped as a server would.
    fn forward_if_held(&mut self, frame: &[u8]) -> bool {
        if self.backend.is_none() {
            return false;
        }
        self.bufs.to_backend.extend_from_slice(frame);
        true
    }

    /// Queues an expected reply; answers the proxy writes itself go out as soon as they are due.
    pub(super) fn push(&mut self, expect: Expect) {
        if let Some(undo) = self.replies.push(expect) {
            self.apply_undo(undo);
        }
        self.write_due_synthetics();
    }

    pub(super) fn write_due_synthetics(&mut self) {
        for message in self.replies.take_synthetics() {
            match message {
                Synthetic::ParseComplete => encode::parse_complete(&mut self.bufs.to_client),
                Synthetic::CloseComplete => encode::close_complete(&mut self.bufs.to_client),
                Synthetic::BindComplete => encode::bind_complete(&mut self.bufs.to_client),
                Synthetic::NoData => encode::no_data(&mut self.bufs.to_client),
                Synthetic::Error(report) => {
                    self.note_error(report.code);
                    encode::error_response(&mut self.bufs.to_client, &report)
                }
                Synthetic::CommandComplete(command_tag) => {
                    encode::command_complete(&mut self.bufs.to_client, command_tag)
                }
                Synthetic::Frames(frames) => self.bufs.to_client.extend_from_slice(&frames),
                Synthetic::ReadyForQuery => {
                    // With a backend, its last status is the client's (a hidden statement may
                    // just have aborted the transaction).
                    if self.backend.is_some() {
                        self.client_status = self.backend_status;
                    }
                    self.note_ready(self.client_status);
                    encode::ready_for_query(&mut self.bufs.to_client, self.client_status)
                }
            }
        }
    }

    pub(super) fn note_pins(&mut self, effects: &[SessionEffect]) {
        for effect in effects {
            if let SessionEffect::Pin(reason) = effect {
                if self.pin.is_none() {
                    tracing::debug!(?reason, "client pinned to its backend");
                }
                self.pin.get_or_insert(*reason);
            }
        }
    }
}

/// Whether `report` is a server's answer to the statement (a fan-out leg's SQL error), not
/// the proxy's refusal or an unreachable server.
fn is_server_error(report: &ErrorReport) -> bool {
    report.blame == Blame::Backend && report.code.class() != "08"
}

/// Logs a statement that failed before or outside a single backend. Failures of the
/// environment (connections, resources, the operator, internal errors) are warnings with
/// their message; the rest are the client's or its data's, logged at debug by code only,
/// since a server's message may quote a parameter value.
fn log_refusal(report: &ErrorReport) {
    let environment = ["08", "53", "57", "58", "XX"];
    if environment.contains(&report.code.class()) {
        let (code, error) = (&report.code, &report.message);
        // A cause that only repeats the message (a pool's error) is left out.
        match report.cause.as_ref().map(ToString::to_string) {
            Some(cause) if cause != *error => {
                tracing::warn!(%code, %error, %cause, "statement failed")
            }
            _ => tracing::warn!(%code, %error, "statement failed"),
        }
    } else if report.blame == Blame::Backend {
        tracing::debug!(code = %report.code, "statement failed on a server");
    } else {
        tracing::debug!(code = %report.code, error = %report.message, "statement refused");
    }
}

/// Why a client message was not run.
pub(super) enum Refusal {
    /// This statement fails; the session goes on.
    Statement(ErrorReport),
    /// The session must end.
    Session(Ending),
}

impl Refusal {
    pub(super) fn violation(message: String) -> Self {
        Refusal::Session(protocol_violation(message))
    }
}

impl From<ErrorReport> for Refusal {
    fn from(report: ErrorReport) -> Self {
        Refusal::Statement(report)
    }
}

pub(super) fn duplicate_statement(name: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::DUPLICATE_PREPARED_STATEMENT,
        Blame::Client,
        format!("prepared statement \"{name}\" already exists"),
    )
}

fn protocol_violation(message: String) -> Ending {
    Ending::Fatal(ErrorReport::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        Blame::Client,
        message,
    ))
}

pub(super) fn body(frame: &[u8]) -> &[u8] {
    &frame[wire::HEADER_LEN..]
}
