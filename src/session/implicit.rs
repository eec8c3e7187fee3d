//! Implicit transactions that span shards. PostgreSQL runs an extended-protocol batch (the
//! messages up to Sync) and a multi-statement simple query as one transaction: all of it
//! commits, or none of it. When such a unit, sent outside any transaction, needs a second
//! shard, the proxy turns what already ran on the first shard into a transaction block with a
//! BEGIN sent in the middle of the batch (PostgreSQL takes the statements before it into the
//! block: `BeginTransactionBlock` from `TBLOCK_STARTED`, xact.c), carries the block to every
//! shard the unit reaches as a transaction spanning shards (`spanning`), and ends it where
//! the unit ends: committed (atomically when two shards wrote, see `two_phase`), or rolled
//! back when anything in it failed. The client sees what one server would have sent: no
//! BEGIN, no COMMIT, and status idle in its ReadyForQuery.

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Refusal;
use super::replies::{Expect, Synthetic};
use super::spanning::aborted;
use super::transaction::Phase;
use super::{Ending, Session, cold};
use crate::config::ShardId;
use crate::error::ErrorReport;
use crate::wire::TxStatus;

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A batch outside any transaction needs shard `needed` while what it sent so far runs
    /// on `held`: the batch becomes a transaction of the proxy's, and goes on there.
    pub(super) async fn begin_implicit(
        &mut self,
        held: ShardId,
        needed: ShardId,
    ) -> Result<(), ErrorReport> {
        self.fold_batch_into_implicit().await?;
        self.switch_shard(held, needed).await
    }

    /// Turns what the batch ran so far on the backend in use into a transaction block of the
    /// proxy's, ended at the batch's Sync.
    pub(super) async fn fold_batch_into_implicit(&mut self) -> Result<(), ErrorReport> {
        self.run_hidden("BEGIN").await?;
        if self.replies.skipping_to_sync() {
            // An earlier message failed, so the server discarded the BEGIN and skips to the
            // client's Sync: the batch is over, as it would be on one server.
            self.batch.failed_earlier = true;
            return Err(aborted());
        }
        self.txn.implicit = true;
        Ok(())
    }

    /// Ends the implicit transaction where the client's unit ended (its Sync, or the end of
    /// its query): committed when nothing in it failed (on a backend, or refused by the proxy:
    /// `unit`), else rolled back on every shard; then the client's ReadyForQuery, after the
    /// error of a COMMIT that failed. A connection lost while committing ends the session, as
    /// it does for the client's own COMMIT.
    pub(super) async fn end_implicit(&mut self, unit: Unit) -> Result<(), Refusal> {
        if !self.replies.synced() {
            self.sync_backend_in_use();
        }
        self.wait_for_replies().await.map_err(lost_while_ending)?;
        let commit = unit == Unit::Ran && self.backend_status == TxStatus::InTransaction;
        match self.end_parked(commit).await {
            Ok(()) => self.end_on_backend_in_use(commit).await?,
            Err(report) => self.push(Expect::synthetic(Synthetic::Error(report))),
        }
        self.txn.implicit = false;
        if self.txn.phase.is_deferred() {
            self.txn.end_deferred(); // Nothing of it reached a backend.
        }
        self.writes_completed();
        self.push(Expect::synthetic(Synthetic::ReadyForQuery));
        Ok(())
    }

    /// The last step of an implicit transaction: COMMIT (or ROLLBACK) on the backend in use,
    /// whose error, if any, is the client's.
    async fn end_on_backend_in_use(&mut self, commit: bool) -> Result<(), Refusal> {
        if self.backend.is_none() || self.backend_status == TxStatus::Idle {
            return Ok(());
        }
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        postgres_protocol::message::frontend::query(sql, &mut self.bufs.to_backend)
            .map_err(|e| Refusal::Statement(super::internal(e.to_string())))?;
        self.push(Expect::Ending);
        match self.wait_for_replies().await {
            Ok(()) => Ok(()),
            Err(report) => {
                let report = self.commit_lost_report(&report.message).unwrap_or(report);
                Err(lost_while_ending(report))
            }
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A simple Query outside any transaction whose statements need several shards: it runs
    /// as an implicit transaction of the proxy's, begun on each shard it reaches.
    pub(super) fn begin_implicit_query(&mut self) {
        self.txn.phase = Phase::deferred("BEGIN".to_owned());
        self.txn.implicit = true;
    }

    /// Ends the query's implicit transaction as `outcome` says: committed, or rolled back
    /// after an error the client gets before its ReadyForQuery.
    pub(super) async fn end_implicit_query(
        &mut self,
        outcome: Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let unit = match outcome {
            Ok(()) => Unit::Ran,
            Err(Refusal::Statement(report)) => {
                self.push(Expect::synthetic(Synthetic::Error(report)));
                Unit::Refused
            }
            Err(ending @ Refusal::Session(_)) => return Err(ending),
        };
        cold(self.end_implicit(unit)).await
    }
}

/// Whether the proxy refused part of a unit (a message of the batch, a statement of the
/// query) that its backends never saw fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    /// Everything was sent on; the backends' status says whether it succeeded.
    Ran,
    /// The proxy refused part of it: it rolls back.
    Refused,
}

/// A backend lost while an implicit transaction ends: what became of it is unknown, so the
/// session ends with the error (the backend's connection is closed with it).
fn lost_while_ending(report: ErrorReport) -> Refusal {
    Refusal::Session(Ending::Fatal(report.into_fatal()))
}
