//! Frames from the backend: forwarded to the client in runs of whole frames, except the replies
//! the proxy hides (re-prepares, settings replays); the few that carry state are read on the way.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::statements::SessionEffect;
use super::transaction::Finishing;
use super::{Ending, Session};
use crate::control::catalog_oids::Unknown;
use crate::error::{Blame, Cause, SqlState, sqlstate};
use crate::pool::Liveness;
use crate::wire::{self, ParameterStatus, TxStatus, command_tag, peek_header, tag};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Handles every complete frame in the backend's read buffer.
    pub(super) fn on_backend_data(&mut self) -> Result<(), Ending> {
        let Some(conn) = self.backend.as_deref_mut() else {
            return Ok(());
        };
        // Taken out so frames can be read while the session's other state is updated.
        let mut buf = std::mem::take(&mut conn.read_buf);
        let (mut pos, mut run_start) = (0, 0);
        let result = loop {
            if self.row_bytes_remaining > 0 {
                let n = self.row_bytes_remaining.min(buf.len() - pos);
                pos += n;
                self.row_bytes_remaining -= n;
                if self.row_bytes_remaining > 0 {
                    break Ok(());
                }
                continue;
            }
            let header = match peek_header(&buf[pos..]) {
                Ok(Some(h)) if buf.len() - pos >= h.total_len => h,
                Ok(Some(h)) if self.streams_partially(h.tag) => {
                    // A big row: forward what has arrived instead of buffering the whole frame.
                    self.row_bytes_remaining = h.total_len - (buf.len() - pos);
                    pos = buf.len();
                    break Ok(());
                }
                Ok(_) => break Ok(()),
                Err(e) => {
                    let why = format!("malformed message: {e}");
                    break Err(self.backend_lost(&why, Some(Cause::new(e))));
                }
            };
            let end = pos + header.total_len;
            let body = &buf[pos + wire::HEADER_LEN..end];
            let described = match self.catalog_description(header.tag, body) {
                Ok(described) => described,
                Err(unknown) => {
                    // Looked up before the description goes on (`on_backend_replies`).
                    self.oids_to_resolve = Some(Box::new(unknown));
                    break Ok(());
                }
            };
            if self.replies.synthetic_at_head() {
                self.bufs.to_client.extend_from_slice(&buf[run_start..pos]);
                run_start = pos;
                self.write_due_synthetics();
            }
            let visible = self.on_backend_frame(header.tag, body);
            if let Some(finishing) = self.txn.finishing.as_mut()
                && header.tag == tag::READY_FOR_QUERY
            {
                // The client hears of its COMMIT once the prepared shards ended too; what
                // follows waits in the buffer until then (see `finish_prepared`).
                self.bufs.to_client.extend_from_slice(&buf[run_start..pos]);
                finishing.ready = visible.then(|| BytesMut::from(&buf[pos..end]));
                (pos, run_start) = (end, end);
                break Ok(());
            }
            let replaced = match described {
                Some(description) if visible => Some(description),
                _ => self.replaced_frame(header.tag, body, visible),
            };
            if let Some(frame) = replaced {
                self.bufs.to_client.extend_from_slice(&buf[run_start..pos]);
                self.bufs.to_client.extend_from_slice(&frame);
                run_start = end;
            } else if !visible {
                self.bufs.to_client.extend_from_slice(&buf[run_start..pos]);
                run_start = end;
            }
            pos = end;
        };
        self.bufs.to_client.extend_from_slice(&buf[run_start..pos]);
        let _ = buf.split_to(pos);
        if let Some(conn) = self.backend.as_deref_mut() {
            conn.read_buf = buf;
        }
        self.write_due_synthetics();
        result
    }

    /// Handles the backend's replies in its read buffer, with what they wait for: a
    /// description naming oids the proxy does not know is sent once they were looked up, and
    /// the client's COMMIT of prepared shards once they ended.
    pub(super) async fn on_backend_replies(&mut self) -> Result<(), Ending> {
        loop {
            self.on_backend_data()?;
            if self.txn.finishing.is_some() {
                self.finish_prepared().await?;
            }
            let Some((shard, unknown)) = self.oids_to_resolve.take().map(|boxed| *boxed) else {
                return Ok(());
            };
            // The look-up reads the shard's catalog on a connection of its own: when the
            // shard stops answering, the statement is given up within the health check's
            // bound, as any other wait on that server, not after the look-up's timeouts.
            let database = self.env.database.clone();
            let (_, liveness) = super::with_liveness(self.backend.as_mut());
            let stopped = tokio::select! {
                () = database.catalog_oids.resolve(&shard, &unknown) => false,
                () = Liveness::stopped_if_held(liveness) => true,
            };
            if stopped {
                // Boxed: giving up may run a replica's query again, which comes back here.
                return Box::pin(self.server_stopped_answering()).await;
            }
        }
    }

    /// A description from a shard other than the default one, with the default shard's oids
    /// (the client's catalog queries read its catalog, see `control::catalog_oids`); `Ok(None)`
    /// to forward the frame as it is; the oids to look up first.
    fn catalog_description(
        &self,
        frame_tag: u8,
        body: &[u8],
    ) -> Result<Option<BytesMut>, (String, Unknown)> {
        if !matches!(frame_tag, tag::ROW_DESCRIPTION | tag::PARAMETER_DESCRIPTION) {
            return Ok(None);
        }
        let map = self.env.database.router.map();
        let Some(shard) = self.held_shard.filter(|s| *s != map.default_shard) else {
            return Ok(None);
        };
        let name = &map.shard(shard).name;
        let oids = &self.env.database.catalog_oids;
        (oids.translate_known(name, frame_tag, body)).map_err(|unknown| (name.clone(), unknown))
    }

    /// What the client sees instead of a backend's visible message, if anything: see
    /// [`Self::replaced_error`], and the ReadyForQuery of a backend that answered outside the
    /// client's deferred BEGIN (describing a statement before the transaction reached any
    /// shard), which carries the client's status rather than that backend's.
    fn replaced_frame(&self, frame_tag: u8, body: &[u8], visible: bool) -> Option<BytesMut> {
        if !visible {
            return None;
        }
        match frame_tag {
            tag::ERROR_RESPONSE => self.replaced_error(body),
            tag::READY_FOR_QUERY if self.txn.phase.is_deferred() => {
                let mut frame = BytesMut::new();
                wire::encode::ready_for_query(&mut frame, self.client_status);
                Some(frame)
            }
            _ => None,
        }
    }

    /// The error the client sees instead of a backend's: in a transaction spanning shards, a
    /// statement the deadlock detector cancelled is reported as a deadlock (see `spanning`).
    fn replaced_error(&self, body: &[u8]) -> Option<BytesMut> {
        if let Some(frame) = self.env.limits.timer.rewrite_frame(body) {
            return Some(frame);
        }
        if let Some(report) = self.commit_failure_report(body) {
            let mut frame = BytesMut::new();
            wire::encode::error_response(&mut frame, &report);
            return Some(frame);
        }
        self.txn.span.as_ref()?;
        let fields = wire::error_fields(body).ok()?;
        let field = |tag: u8| fields.iter().find(|(field, _)| *field == tag).map(|f| f.1);
        let report = self.deadlock_report(field(b'C')?)?;
        let mut frame = BytesMut::new();
        wire::encode::error_response(&mut frame, &report);
        Some(frame)
    }

    /// Rows and COPY data carry nothing the proxy reads, so a visible one can be forwarded in
    /// pieces as it arrives.
    fn streams_partially(&self, frame_tag: u8) -> bool {
        matches!(frame_tag, tag::DATA_ROW | tag::COPY_DATA)
            && !self.replies.head_is_hidden()
            && !self.replies.synthetic_at_head()
    }

    /// Updates session state from one backend message; returns whether the client sees it.
    fn on_backend_frame(&mut self, frame_tag: u8, body: &[u8]) -> bool {
        match frame_tag {
            tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE => {
                return !self.replies.head_is_hidden();
            }
            tag::PARAMETER_STATUS => return self.on_parameter_status(body),
            _ => {}
        }
        let mut undo = Vec::new();
        let reply = self.replies.on_reply(frame_tag, &mut undo);
        for u in undo {
            self.apply_undo(u);
        }
        if let Some(name) = reply.prepared {
            self.env.database.known_statements.insert(name);
        }
        if !reply.effects.is_empty() {
            self.on_effects(reply.effects);
        }
        match frame_tag {
            tag::ERROR_RESPONSE if !reply.visible => self.on_hidden_error(body),
            tag::ERROR_RESPONSE => self.note_backend_error(body),
            tag::COMMAND_COMPLETE => self.note_command_complete(body, reply.visible),
            tag::READY_FOR_QUERY => self.on_ready(body, reply.visible),
            _ => {}
        }
        reply.visible
    }

    /// Notes whether the transaction's last statement was COMMIT or ROLLBACK: the client's
    /// own, or the one the proxy ends an implicit transaction with (see `implicit`).
    fn note_command_complete(&mut self, body: &[u8], visible: bool) {
        let tag = command_tag(body);
        let (commit, rollback) = (
            tag.as_deref() == Ok("COMMIT"),
            tag.as_deref() == Ok("ROLLBACK"),
        );
        if visible || commit || rollback {
            self.txn.rolled_back = rollback;
            self.txn.committed = commit;
        }
    }

    fn on_parameter_status(&mut self, body: &[u8]) -> bool {
        let visible = !self.replies.head_is_hidden();
        if let (Ok(status), Some(conn)) =
            (ParameterStatus::decode(body), self.backend.as_deref_mut())
        {
            self.settings
                .on_parameter_status(status.name, status.value, conn);
        }
        visible
    }

    /// Counts an error from a backend that the client sees, by its SQLSTATE. One saying a
    /// prepared statement's result type changed (DDL) retires the statements just bound, so
    /// the client's next Parse of their text is prepared afresh (see `KnownStatements`).
    fn note_backend_error(&self, body: &[u8]) {
        let fields = wire::error_fields(body).unwrap_or_default();
        let field = |tag: u8| fields.iter().find(|(f, _)| *f == tag).map(|(_, v)| *v);
        let code = field(b'C').and_then(SqlState::parse);
        let code = code.unwrap_or(sqlstate::INTERNAL_ERROR);
        self.note_error(code);
        // By routine (plancache.c), never by the message, which lc_messages translates.
        let changed = field(b'R') == Some("RevalidateCachedQuery");
        if code == sqlstate::FEATURE_NOT_SUPPORTED && changed {
            for name in &self.batch.bound_since_ready {
                tracing::info!(statement = %name, "a prepared statement's result type changed; new Parses of it are prepared afresh");
                self.env.database.known_statements.retire(name);
            }
        }
    }

    fn on_ready(&mut self, body: &[u8], visible: bool) {
        self.env.limits.timer.restart();
        let status = body
            .first()
            .copied()
            .and_then(TxStatus::from_byte)
            .unwrap_or(TxStatus::Failed);
        let was = std::mem::replace(&mut self.backend_status, status);
        if visible {
            self.txn.begun_in_batch = false;
            self.batch.bound_since_ready.clear();
            if self.txn.phase.is_deferred() {
                // A backend outside the client's deferred BEGIN: the client's status stands.
                self.note_ready(self.client_status);
                return;
            }
            self.note_ready(status);
            self.client_status = status;
            if status == TxStatus::Idle {
                self.end_local_hint();
            }
        }
        if status != TxStatus::Idle {
            return;
        }
        if visible {
            // The client's own statement ended its transaction (a hidden settings replay
            // before a write says nothing about the write).
            self.writes_completed();
        }
        // A hidden statement on a backend that was idle (a settings replay on one just taken,
        // before it joins the transaction) ends nothing.
        let rolled_back = (visible || was != TxStatus::Idle) && self.transaction_ended();
        if let Some(conn) = self.backend.as_deref_mut() {
            self.settings.end_transaction(!rolled_back, conn);
        }
    }

    /// The client's transaction ended on the backend in use: parked shards that are still
    /// in it are let go, prepared ones are ended the same way. Returns whether it rolled back.
    fn transaction_ended(&mut self) -> bool {
        if self.txn.session_set
            && self.txn.phase.spans_shards()
            && let Some(conn) = self.backend.as_deref_mut()
        {
            conn.mark_broken(); // See `Transaction::session_set`.
        }
        let ended = self.txn.end();
        if !ended.parked.is_empty() {
            tracing::error!("a transaction spanning shards ended without its other shards");
        }
        Self::drop_parked(ended.parked);
        if !ended.prepared.is_empty() {
            self.txn.finishing = Some(Finishing {
                parts: ended.prepared,
                commit: ended.committed,
                ready: None,
            });
        }
        ended.rolled_back
    }

    /// A statement the proxy sent on its own failed (a settings replay). The client's state on
    /// this backend is now unknown, so the backend will not be reused after this transaction.
    fn on_hidden_error(&mut self, body: &[u8]) {
        if std::mem::take(&mut self.aborting_transaction) {
            return; // The error the proxy asked for (see `abort_backend_transaction`).
        }
        let report = wire::error_report(body, Blame::Client);
        tracing::warn!(error = %report.message, "replaying client settings on a backend failed");
        self.replay_error = Some(Box::new(report));
        if let Some(conn) = self.backend.as_deref_mut() {
            conn.mark_broken();
        }
    }

    fn on_effects(&mut self, effects: Vec<SessionEffect>) {
        if effects.contains(&SessionEffect::UntrackedSetting)
            && let Some(conn) = self.backend.as_deref_mut()
        {
            conn.mark_broken(); // It serves this client on, and is closed when let go.
        }
        let drops_statements = effects
            .iter()
            .any(|e| matches!(e, SessionEffect::DiscardAll | SessionEffect::DeallocateAll));
        if drops_statements {
            self.statements.clear();
            self.sql_statements.clear();
            if let Some(conn) = self.backend.as_deref_mut() {
                conn.prepared.clear();
            }
        }
        self.settings.stage(effects);
    }
}
