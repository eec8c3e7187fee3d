//! The client's error for a COMMIT of a transaction spanning shards that failed on the
//! backend in use after the parked shards committed (see `spanning`, which commits them, and
//! `execute::commit`, which words the report), or whose connection was lost during an atomic
//! commit (see `two_phase`). It never does I/O.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::execute::commit::{
    CommitFailure, TornCommit, decision_unknown_report, torn_commit_report,
};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// The error of a COMMIT that failed on the backend in use (ErrorResponse `body`) after the
    /// parked shards committed: it names them, since the transaction was not atomic. A FATAL
    /// there (the server going away) leaves that shard's outcome unknown.
    pub(super) fn commit_failure_report(&self, body: &[u8]) -> Option<ErrorReport> {
        if self.txn.phase.is_deciding() && crate::wire::ends_connection(body) {
            let cause = crate::wire::error_report(body, Blame::Backend);
            return Some(self.decision_unknown(&cause.message).into_fatal());
        }
        if self.txn.phase.committed_elsewhere().is_empty() {
            return None;
        }
        let cause = crate::wire::error_report(body, Blame::Backend);
        if crate::wire::ends_connection(body) {
            // The connection closes next, and `backend_lost` logs the torn commit once.
            let lost =
                ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Backend, cause.message);
            let report = self.torn_on_backend_in_use(CommitFailure::Unknown(lost));
            return Some(report.into_fatal());
        }
        let report = self.torn_on_backend_in_use(CommitFailure::RolledBack(cause));
        note_torn(&report, self.txn.phase.committed_elsewhere());
        Some(report)
    }

    /// When the connection of the backend in use is lost (`why`) while the client's COMMIT of
    /// a transaction whose other shards already committed is in flight: the FATAL error that
    /// names the shards that committed and the one whose outcome is unknown.
    pub(super) fn commit_lost_report(&self, why: &str) -> Option<ErrorReport> {
        if self.txn.phase.is_deciding() {
            return Some(self.decision_unknown(why).into_fatal());
        }
        if self.txn.phase.committed_elsewhere().is_empty() {
            return None;
        }
        let cause = ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Backend, why);
        let report = self.torn_on_backend_in_use(CommitFailure::Unknown(cause));
        note_torn(&report, self.txn.phase.committed_elsewhere());
        Some(report.into_fatal())
    }

    /// The coordinator of an atomic commit (the backend in use) was lost during its COMMIT
    /// (`why`): whether the transaction committed is unknown, but it did on every shard or on
    /// none.
    fn decision_unknown(&self, why: &str) -> ErrorReport {
        let map = self.env.database.router.map();
        let shard = self.held_shard.map_or("?", |s| map.shard(s).name.as_str());
        decision_unknown_report(shard, why)
    }

    fn torn_on_backend_in_use(&self, failure: CommitFailure) -> ErrorReport {
        let map = self.env.database.router.map();
        let failed = self.held_shard.map(|s| map.shard(s).name.clone());
        let torn = TornCommit {
            failed: failed.as_deref().unwrap_or("?"),
            committed: self.txn.phase.committed_elsewhere(),
            rolled_back: &[],
        };
        torn_commit_report(failure, torn)
    }
}

/// A commit that is not atomic (or may not be) loses what a client expects of a transaction:
/// logged as an error (the lost-durability level), with the shards it committed on. A COMMIT
/// that failed before anything committed is an ordinary failed transaction.
pub(super) fn note_torn(report: &ErrorReport, committed: &[String]) {
    let unknown = report.code == sqlstate::TRANSACTION_RESOLUTION_UNKNOWN;
    if committed.is_empty() && !unknown {
        return;
    }
    tracing::error!(
        code = %report.code,
        committed = ?committed,
        detail = report.detail.as_deref().unwrap_or(""),
        "COMMIT of a transaction spanning shards is not atomic (or its outcome is unknown)"
    );
}
