//! The session's side of an atomic commit across shards (the protocol is
//! `control::two_phase`): at the client's COMMIT, the parked shards that wrote are prepared
//! and the decision is recorded on the backend in use, whose COMMIT is the client's own; when
//! that COMMIT's ReadyForQuery arrives, it is held until the prepared shards ended the same
//! way, so a client that hears COMMIT reads its writes on every shard.

use tokio::io::{AsyncRead, AsyncWrite};

use super::transaction::{Parked, Phase, PreparedPart};
use super::{Ending, Session};
use crate::config::ShardId;
use crate::control::two_phase::Decision;
use crate::counters::Event;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::execute::broadcast::run_simple_tagged;
use crate::pool::Checkout;
use crate::topology::Freshness;
use crate::wire::TxStatus;

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Whether the open transaction wrote on `shard` (a write of it is still in flight, so
    /// its reads there need the primary).
    pub(super) fn wrote_on(&self, shard: ShardId) -> bool {
        self.freshness(shard) == Freshness::Primary
    }

    /// Whether COMMIT needs two phases: atomic commit is on and a parked shard wrote (a
    /// transaction that wrote only on the backend in use commits the others first, in one
    /// phase).
    pub(super) fn needs_two_phases(&self, parked: &[Parked]) -> bool {
        self.env.database.atomic_commit && parked.iter().any(|p| self.wrote_on(p.shard))
    }

    /// The first phase of the client's COMMIT, all at once: parked shards that wrote are
    /// prepared, the others commit (they only read), and the backend in use records the
    /// decision (which counts only once it commits); the client's COMMIT runs there next. Any
    /// failure rolls back every shard, and the error says nothing was committed.
    pub(super) async fn prepare_parked(&mut self, parked: Vec<Parked>) -> Result<(), ErrorReport> {
        let map = self.env.database.router.map().clone();
        let Some(coordinator) = self.held_shard.filter(|_| self.backend.is_some()) else {
            return Err(self
                .abort_everywhere(Vec::new(), parked, no_coordinator())
                .await);
        };
        let decision = Decision::new(&map.shard(coordinator).name);
        let (writers, readers): (Vec<_>, Vec<_>) =
            parked.into_iter().partition(|p| self.wrote_on(p.shard));
        let names: Vec<_> = (writers.iter())
            .map(|p| map.shard(p.shard).name.clone())
            .collect();
        let parts = writers
            .into_iter()
            .zip(&names)
            .map(|(p, name)| PreparedPart {
                id: decision.part(name),
                conn: p.conn,
            });
        let table = (self.env.database.recovery).decisions_table(&decision.coordinator);
        let record = decision.record_commit_sql(table);
        // All at once: nothing is decided until the coordinator commits, after this.
        let ((prepared, failure), readers_failed, recorded) = tokio::join!(
            prepare_all(parts.collect()),
            commit_readers(readers),
            self.run_hidden(&record),
        );
        if let Some(report) = failure.or(readers_failed).or(recorded.err()) {
            return Err(self.abort_everywhere(prepared, Vec::new(), report).await);
        }
        self.env.database.counters.count(Event::AtomicCommit);
        self.txn.phase = Phase::Deciding { prepared };
        Ok(())
    }

    /// Rolls back every part of the transaction after its COMMIT failed before the decision:
    /// prepared parts, parked ones and the backend in use. The client's transaction is over.
    async fn abort_everywhere(
        &mut self,
        prepared: Vec<PreparedPart>,
        parked: Vec<Parked>,
        cause: ErrorReport,
    ) -> ErrorReport {
        end_prepared(prepared, false).await;
        for mut part in parked {
            let _ = run_watched(&mut part.conn, "ROLLBACK").await;
        }
        if self.backend.is_some() {
            let _ = self.run_hidden("ROLLBACK").await;
        }
        self.client_status = TxStatus::Idle;
        self.txn.phase = Phase::Idle;
        let report = ErrorReport::error(cause.code, Blame::Backend, &cause.message);
        let detail = "Nothing was committed on any shard: the transaction was rolled back \
                      everywhere.";
        let detail = match cause.detail {
            Some(cause) => format!("{detail}\n{cause}"),
            None => detail.to_owned(),
        };
        report.with_detail(detail).retry_safe()
    }

    /// The second phase, once the client's COMMIT ended on the backend in use: the prepared
    /// shards commit (or roll back, if it did not commit), then the client gets the
    /// ReadyForQuery held for it, and whatever the backend sent after it is handled.
    pub(super) async fn finish_prepared(&mut self) -> Result<(), Ending> {
        while let Some(finishing) = self.txn.finishing.take() {
            end_prepared(finishing.parts, finishing.commit).await;
            if let Some(ready) = finishing.ready {
                self.bufs.to_client.extend_from_slice(&ready);
            }
            let more = (self.backend.as_deref()).is_some_and(|conn| !conn.read_buf.is_empty());
            if more {
                self.on_backend_data()?;
            }
        }
        Ok(())
    }
}

/// Sends PREPARE TRANSACTION to every part at once. Returns the parts that are prepared and
/// the first failure (a part that failed is rolled back by its server, or closed).
async fn prepare_all(parts: Vec<PreparedPart>) -> (Vec<PreparedPart>, Option<ErrorReport>) {
    let prepares = parts.into_iter().map(|mut part| async move {
        let outcome = run_watched(&mut part.conn, &part.id.prepare_sql()).await;
        let outcome = outcome.and_then(|tags| part.id.check_prepared(&tags));
        (part, outcome)
    });
    let mut prepared = Vec::new();
    let mut failure = None;
    for (part, outcome) in futures::future::join_all(prepares).await {
        match outcome {
            Ok(()) => prepared.push(part),
            Err(report) => failure = failure.or(Some(report)),
        }
    }
    (prepared, failure)
}

/// Commits parked shards that only read; returns the first failure.
async fn commit_readers(readers: Vec<Parked>) -> Option<ErrorReport> {
    let mut failure = None;
    for mut reader in readers {
        if let Err(report) = run_watched(&mut reader.conn, "COMMIT").await {
            failure = failure.or(Some(report));
        }
    }
    failure
}

/// COMMIT PREPARED (or ROLLBACK PREPARED) on every part at once. A part that cannot be ended
/// now stays prepared, for recovery to end it as its decision says.
async fn end_prepared(parts: Vec<PreparedPart>, commit: bool) {
    let ends = parts.into_iter().map(|mut part| async move {
        if let Err(report) = run_watched(&mut part.conn, &part.id.finish_sql(commit)).await {
            tracing::warn!(
                transaction = %part.id,
                error = %report.message,
                "a prepared part could not be ended now; recovery will end it"
            );
        }
    });
    futures::future::join_all(ends).await;
}

fn no_coordinator() -> ErrorReport {
    ErrorReport::error(
        sqlstate::INTERNAL_ERROR,
        Blame::Proxy,
        "COMMIT of a transaction spanning shards found no backend in use",
    )
}

/// Runs `sql` on a part's connection, abandoned (and the connection closed) if its server
/// stops answering its health checks meanwhile: a hung shard fails the COMMIT within the
/// health check's bound instead of holding it for good.
async fn run_watched(conn: &mut Checkout, sql: &str) -> Result<Vec<String>, ErrorReport> {
    let addr = conn.addr().to_owned();
    let (backend, liveness) = conn.with_liveness();
    let mut on_status = |_: &mut _, _: &str, _: &str| {};
    let outcome = tokio::select! {
        outcome = run_simple_tagged(backend, sql, &mut on_status) => outcome,
        () = liveness.stopped() => Err(liveness.abandoned(&addr)),
    };
    if outcome.is_err() {
        conn.mark_broken();
    }
    outcome
}
