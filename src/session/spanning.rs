//! Transactions that span shards: one backend per shard the transaction reaches, all
//! committed or rolled back when the client ends it.
//!
//! The session works on one backend at a time (the one the pump drives). When a statement of a
//! transaction needs another shard, the backend in use is parked, still inside its
//! transaction, and the other shard's backend is taken (or un-parked) and brought into the same
//! transaction with the client's BEGIN. In the middle of an extended-protocol batch the
//! backend in use is first sent a Sync of the proxy's own (inside a transaction block it
//! commits nothing), so it is parked with everything answered. At COMMIT the parked backends
//! commit first, then the
//! client's COMMIT runs on the backend in use. When a parked shard wrote, the commit is
//! atomic: the parked writers are prepared first and end as the backend in use does (see
//! `two_phase`). Otherwise (or with atomic commit turned off) the parked backends commit one
//! by one, and a failure rolls back whatever has not committed and names the shards that
//! did, and the one whose outcome is unknown when a connection was lost during its COMMIT
//! (see `torn`). Once any shard fails, the parked ones are rolled back at once, so their
//! locks do not outlive the failure.
//!
//! Two such transactions that lock rows on two shards in opposite orders would wait for each
//! other forever, and no PostgreSQL sees the cycle. Every backend of a spanning transaction
//! carries the transaction's tag, and the deadlock detector (`control::deadlock`) cancels one
//! transaction of each such cycle; the session reports that cancel as SQLSTATE 40P01, and the
//! victim's other shards are rolled back at once so the survivor proceeds.

use tokio::io::{AsyncRead, AsyncWrite};

use super::local::{Control, transaction_control};
use super::savepoints::{SavepointCommand, savepoint_command};
use super::statements::{SessionEffect, settings_statements, split_statements};
use super::{Session, cold};
use crate::config::ShardId;
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use crate::execute::broadcast::{run_in_transaction, run_simple};
use crate::execute::commit::{TornCommit, commit as execute_commit, torn_commit_report};
use crate::pool::Checkout;
use crate::wire::TxStatus;

use super::transaction::{Parked, Phase};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Moves the transaction from the backend of `held` to one of `needed`, parking the
    /// current one inside its transaction.
    pub(super) async fn switch_shard(
        &mut self,
        held: ShardId,
        needed: ShardId,
    ) -> Result<(), ErrorReport> {
        self.answer_all_sent().await?;
        if self.backend_status == TxStatus::Idle {
            // The batch ended the transaction (its own COMMIT) before this message: what
            // follows runs outside it, on the shard it needs.
            self.release();
            return Ok(());
        }
        if !self.txn.phase.spans_shards() {
            self.tag_backend_in_use().await?;
            self.txn.step(Phase::span);
        }
        let Some(conn) = self.backend.take() else {
            return Ok(());
        };
        self.park(held, conn, self.backend_status);
        self.held_shard = None;
        self.env.cancel_slot.set(None);
        self.unpark(needed);
        Ok(())
    }

    /// Whether the client is inside a transaction block on a backend: its own (begun there),
    /// or one the proxy began for it (see `implicit`).
    pub(super) fn in_transaction_block(&self) -> bool {
        let open = self.client_status != TxStatus::Idle || self.txn.implicit;
        (open || self.txn.begun_in_batch) && !self.txn.phase.is_deferred()
    }

    /// Inside a transaction block, waits until the backend in use answered everything sent
    /// to it, syncing it first when a batch is in flight. Fails (25P02) when the transaction
    /// failed; if it failed in this batch, the rest of the batch is dropped, as the server
    /// would have dropped it (the client has seen the error).
    pub(super) async fn answer_all_sent(&mut self) -> Result<(), ErrorReport> {
        let mid_batch = !self.replies.synced();
        if mid_batch {
            self.sync_backend_in_use();
        }
        self.wait_for_replies().await?;
        if self.backend_status == TxStatus::Failed || self.client_status == TxStatus::Failed {
            self.batch.failed_earlier = mid_batch;
            return Err(aborted());
        }
        Ok(())
    }

    /// Sends a Sync of the proxy's own to the backend in use, inside a transaction block
    /// (where a Sync commits nothing): the backend then answers everything sent so far, so
    /// the batch may go on on another shard.
    pub(super) fn sync_backend_in_use(&mut self) {
        postgres_protocol::message::frontend::sync(&mut self.bufs.to_backend);
        self.push(super::replies::Expect::ProxySync);
    }

    /// The transaction's backend on `shard`, taken from use or from the parked ones.
    pub(super) fn take_transaction_backend(&mut self, shard: ShardId) -> Option<Checkout> {
        if self.held_shard == Some(shard) {
            self.held_shard = None;
            self.env.cancel_slot.set(None);
            return self.backend.take();
        }
        self.txn.phase.unpark(shard).map(|parked| parked.conn)
    }

    /// The status of the transaction's backend on `shard` (idle when it has none there).
    pub(super) fn status_on(&self, shard: ShardId) -> TxStatus {
        if self.held_shard == Some(shard) {
            return self.backend_status;
        }
        let parked = self.txn.phase.parked().iter().find(|p| p.shard == shard);
        parked.map_or(TxStatus::Idle, |p| p.status)
    }

    /// Parks a backend inside the transaction, which spans shards from now on.
    pub(super) fn park(&mut self, shard: ShardId, mut conn: Checkout, status: TxStatus) {
        if self.txn.session_set {
            conn.mark_broken(); // See `Transaction::session_set`.
        }
        let parked = Parked {
            shard,
            conn,
            status,
        };
        if let Some(mut refused) = self.txn.phase.park(parked) {
            tracing::error!(
                shard = shard.0,
                "a backend was parked during COMMIT; closing it"
            );
            refused.conn.mark_broken();
        }
    }

    /// Makes `conn` (of `shard`, in `status`) the backend in use.
    pub(super) fn use_backend(&mut self, shard: ShardId, conn: Checkout, status: TxStatus) {
        self.env.cancel_slot.set(Some(conn.cancel_target()));
        self.backend_status = status;
        self.batch.unnamed_on_backend = false;
        self.backend = Some(conn);
        self.held_shard = Some(shard);
    }

    /// Makes the parked backend of `shard` the one in use, if the transaction has one there;
    /// otherwise the next backend taken joins the transaction.
    fn unpark(&mut self, shard: ShardId) {
        match self.txn.phase.unpark(shard) {
            Some(parked) => self.use_backend(shard, parked.conn, parked.status),
            None => self.txn.phase.set_join_next(true),
        }
    }

    /// After a failure to reach the next shard of a transaction, the backend parked for it is
    /// in use again, so the refusal aborts the transaction there as PostgreSQL would.
    pub(super) fn restore_after_failed_switch(&mut self) {
        self.txn.phase.set_join_next(false);
        if self.backend.is_some() {
            return;
        }
        if let Some(previous) = self.txn.phase.parked_mut().and_then(Vec::pop) {
            self.use_backend(previous.shard, previous.conn, previous.status);
        }
    }

    /// Brings a backend just taken into the client's transaction.
    pub(super) async fn join_current_transaction(&mut self) -> Result<(), ErrorReport> {
        if !self.txn.phase.take_join_next() {
            return Ok(());
        }
        let mut sql = self.txn.phase.begin().to_owned();
        for statement in self.joining_statements() {
            sql = format!("{sql}; {statement}");
        }
        self.run_hidden(&sql).await
    }

    /// What a backend joining the transaction runs after its BEGIN: its settings (`SET
    /// TRANSACTION` must come first), the transaction's tag when it spans shards (before the
    /// savepoints, so no `ROLLBACK TO` takes it away), then its open savepoints.
    pub(super) fn joining_statements(&mut self) -> Vec<String> {
        let tag = self.txn.phase.spans_shards().then(|| self.span_tag_sql());
        let settings = self.txn.settings.iter().cloned();
        let statements = settings.chain(tag);
        statements.chain(self.txn.savepoints.replay()).collect()
    }

    /// Tags the backend in use as the transaction starts spanning shards. Savepoints opened
    /// before then may be rolled back with the tag, so the deadlock detector is also told
    /// which server process it is.
    pub(super) async fn tag_backend_in_use(&mut self) -> Result<(), ErrorReport> {
        let tag = self.span_tag_sql();
        if let (Some(shard), Some(conn), Some(ticket)) =
            (self.held_shard, self.backend.as_deref(), &self.txn.span)
        {
            let name = &self.env.database.router.map().shard(shard).name;
            ticket.note_backend(name, conn.cancel_target().key.pid);
        }
        self.run_hidden(&tag).await
    }

    /// The statement that tags a backend as one of this transaction's, so the deadlock
    /// detector sees the transaction on every shard (see `control::deadlock`); the
    /// transaction is registered with it on first use.
    pub(super) fn span_tag_sql(&mut self) -> String {
        let (spans, slot) = (&self.env.database.spans, &self.env.cancel_slot);
        let ticket = (self.txn.span).get_or_insert_with(|| spans.enter(slot.clone()));
        ticket.tag_sql()
    }

    /// Ends the parked part of the transaction before the client's COMMIT or ROLLBACK runs on
    /// the backend in use: commits them (when `commit` and nothing failed) or rolls them back.
    /// A COMMIT that fails rolls back the rest, and the backend in use too, and its error says
    /// what became of every shard (see `execute::commit`).
    pub(super) async fn end_parked(&mut self, commit: bool) -> Result<(), ErrorReport> {
        let Some(parked) = self.txn.phase.parked_mut().filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let mut parked = std::mem::take(parked);
        let failed =
            self.backend_status == TxStatus::Failed || self.client_status == TxStatus::Failed;
        if !commit || failed {
            self.roll_back(&mut parked).await;
            return Ok(());
        }
        if self.needs_two_phases(&parked) {
            return self.prepare_parked(parked).await;
        }
        let map = self.env.database.router.map().clone();
        let name = |shard: ShardId| map.shard(shard).name.clone();
        let mut committed = Vec::new();
        while let Some(mut next) = parked.pop() {
            let mut on_status = |_: &mut _, _: &str, _: &str| {};
            let Err(failure) = execute_commit(&mut next.conn, &mut on_status).await else {
                committed.push(name(next.shard));
                continue;
            };
            next.conn.mark_broken();
            let mut rolled_back: Vec<String> = parked.iter().map(|p| name(p.shard)).collect();
            self.roll_back(&mut parked).await;
            // The backend in use was never sent COMMIT: its part rolls back, or is gone with
            // its connection if the ROLLBACK fails (which rolls back as well).
            if let Some(shard) = self.held_shard.filter(|_| self.backend.is_some()) {
                rolled_back.push(name(shard));
                let _ = self.run_hidden("ROLLBACK").await;
            }
            self.client_status = TxStatus::Idle;
            self.txn.phase = Phase::Idle;
            let failed = name(next.shard);
            let torn = TornCommit {
                failed: &failed,
                committed: &committed,
                rolled_back: &rolled_back,
            };
            let report = torn_commit_report(failure, torn);
            super::torn::note_torn(&report, &committed);
            return Err(report);
        }
        // The client's COMMIT runs on the backend in use next; if it fails there, its error
        // must say these shards already committed.
        self.txn.phase = Phase::parked_committed(committed);
        Ok(())
    }

    /// Runs the parked part of the transaction control in `sql` (COMMIT or ROLLBACK, which then
    /// runs on the backend in use); refuses what cannot apply to every shard at once. Savepoint
    /// commands among other statements are left to [`Self::savepoints_among_statements`].
    pub(super) async fn before_transaction_control(
        &mut self,
        sql: &str,
    ) -> Result<(), ErrorReport> {
        self.check_lapse_crossed(sql)?;
        let in_transaction = self.client_status != TxStatus::Idle;
        let savepoint = savepoint_command(sql).filter(|_| in_transaction);
        if !self.txn.phase.spans_shards() {
            // Kept for the shards the transaction reaches later.
            if let Some(command) = &savepoint {
                self.txn.savepoints.apply(command);
            }
            return Ok(());
        }
        if let Some(command) = savepoint {
            return cold(self.savepoint_everywhere(sql, command)).await;
        }
        let controls = transaction_control(sql);
        match controls.as_slice() {
            [] => Ok(()),
            [Control::End(commit)] if split_statements(sql).count() == 1 => {
                cold(self.end_parked(*commit)).await
            }
            [Control::End(_)] => Err(self.unsupported(Unsupported::EndNotAlone)),
            all if all.iter().all(|c| *c == Control::Savepoint) && in_transaction => Ok(()),
            [Control::Other] => Err(self.unsupported(Unsupported::ChainOrPrepareWhileSpanning)),
            _ => Err(self.unsupported(Unsupported::SavepointWhileSpanning)),
        }
    }

    /// Notes the savepoint commands among the statements of `sql`, which runs whole on the
    /// backend in use: kept, in order, for the shards the transaction reaches later.
    pub(super) fn note_savepoints_among_statements(&mut self, sql: &str) {
        if self.client_status == TxStatus::Idle {
            return;
        }
        if !sql.contains(';') || split_statements(sql).nth(1).is_none() {
            return;
        }
        for command in split_statements(sql).filter_map(savepoint_command) {
            self.txn.savepoints.apply(&command);
        }
    }

    /// Whether `sql` has savepoint commands among other statements in a transaction spanning
    /// shards: it then runs statement by statement, each savepoint command on every shard.
    pub(super) fn savepoints_among_statements(&self, sql: &str) -> bool {
        self.txn.phase.spans_shards()
            && sql.contains(';')
            && split_statements(sql).nth(1).is_some()
            && transaction_control(sql).contains(&Control::Savepoint)
    }

    /// Runs the client's savepoint command (`sql`) on every parked backend of the
    /// transaction before it runs on the backend in use. If it fails on one (`ROLLBACK TO` a
    /// savepoint that does not exist), that backend's transaction is aborted, as the client's
    /// is by the error: a later `ROLLBACK TO` an open savepoint brings every shard back.
    async fn savepoint_everywhere(
        &mut self,
        sql: &str,
        command: SavepointCommand,
    ) -> Result<(), ErrorReport> {
        let Some(parked) = self.txn.phase.parked_mut() else {
            return Ok(());
        };
        for next in parked.iter_mut() {
            let mut on_status = |_: &mut _, _: &str, _: &str| {};
            match run_in_transaction(&mut next.conn, sql, &mut on_status).await {
                Ok(()) => next.status = TxStatus::InTransaction,
                Err(report) => {
                    next.status = TxStatus::Failed;
                    return Err(report);
                }
            }
        }
        self.txn.savepoints.apply(&command);
        Ok(())
    }

    /// After a failure on the backend in use with no savepoint open, the transaction can only
    /// roll back: release the parked shards' locks now instead of when the client gets to its
    /// ROLLBACK. (With a savepoint open, the client may roll back to it and go on.)
    pub(super) async fn roll_back_parked_if_failed(&mut self) {
        if self.backend_status != TxStatus::Failed || self.txn.savepoints.any() {
            return;
        }
        if let Some(parked) = self.txn.phase.parked_mut().filter(|p| !p.is_empty()) {
            let mut parked = std::mem::take(parked);
            self.roll_back(&mut parked).await;
        }
    }

    async fn roll_back(&mut self, parked: &mut Vec<Parked>) {
        for mut next in parked.drain(..) {
            let mut on_status = |_: &mut _, _: &str, _: &str| {};
            if run_simple(&mut next.conn, "ROLLBACK", &mut on_status)
                .await
                .is_err()
            {
                next.conn.mark_broken();
            }
        }
    }

    /// Backends of a transaction that ended without the proxy ending them (the client left)
    /// must not go back to the pool inside their transaction.
    pub(super) fn drop_parked(parked: Vec<Parked>) {
        for mut parked in parked {
            parked.conn.mark_broken();
        }
    }

    /// The error the client sees for a statement cancelled with SQLSTATE `code`: when the
    /// deadlock detector cancelled it to break a cycle of lock waits across shards, 40P01
    /// naming the cycle, as PostgreSQL reports a deadlock it breaks.
    pub(super) fn deadlock_report(&self, code: &str) -> Option<ErrorReport> {
        if code != sqlstate::QUERY_CANCELED.as_str() {
            return None;
        }
        let detail = self.txn.span.as_ref()?.victim_detail()?;
        let report = ErrorReport::error(
            sqlstate::DEADLOCK_DETECTED,
            Blame::Client,
            "deadlock detected across shards",
        );
        Some(
            report
                .with_detail(detail)
                .with_hint("Roll back and retry the transaction."),
        )
    }
}

/// 25P02, as PostgreSQL answers statements of a failed transaction.
pub(super) fn aborted() -> ErrorReport {
    ErrorReport::error(
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        Blame::Client,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Makes what `sql` (whose session effects are `effects`) sets inside the client's
    /// transaction hold on every shard the transaction reaches: its settings statements (`SET
    /// LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`, and session-level `SET`/`RESET`) are
    /// replayed on the shards it reaches later, and when it already spans shards they run on
    /// every parked backend first. A failure there fails the statement, as it would have on
    /// one server.
    pub(super) async fn settings_everywhere(
        &mut self,
        sql: &str,
        effects: &[SessionEffect],
    ) -> Result<(), ErrorReport> {
        if self.client_status == TxStatus::Idle {
            return Ok(());
        }
        let session_level = effects.iter().any(|effect| {
            matches!(
                effect,
                SessionEffect::Set { .. } | SessionEffect::Reset { .. } | SessionEffect::ResetAll
            )
        });
        self.txn.session_set |= session_level;
        let settings: Vec<String> = settings_statements(sql)
            .map(|s| s.trim().to_owned())
            .collect();
        if let Some(parked) = self.txn.phase.parked_mut() {
            for next in parked.iter_mut() {
                if session_level {
                    next.conn.mark_broken(); // See `Transaction::session_set`.
                }
                for statement in &settings {
                    let mut on_status = |_: &mut _, _: &str, _: &str| {};
                    if let Err(report) =
                        run_in_transaction(&mut next.conn, statement, &mut on_status).await
                    {
                        next.status = TxStatus::Failed;
                        return Err(report);
                    }
                }
            }
        }
        self.txn.settings.extend(settings);
        Ok(())
    }
}
