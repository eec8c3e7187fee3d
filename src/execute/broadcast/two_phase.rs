//! Atomic commit of a broadcast's legs in two phases (the protocol and its names are
//! `control::two_phase`; `session::two_phase` does the same for a client's transaction).
//! Every leg but the first is prepared while the first, the coordinator, records the decision
//! inside its own transaction; then the coordinator commits, and the prepared legs end the
//! way it did. A failure before the coordinator's COMMIT rolls every leg back. A coordinator
//! lost during its COMMIT leaves the outcome unknown (`08007`), yet the same on every shard:
//! recovery (`control::recovery`) ends the prepared legs as the coordinator's part ended, as
//! it does every prepared leg this module could not end itself (a server that stopped
//! answering is given up, never waited on for good).
//!
//! Part of the execute stage: it knows legs and their connections, never the session.

use super::{Atomic, Leg, OnStatus, Wrapping, run_leaving, with_shard};
use crate::backend::BackendConn;
use crate::control::two_phase::PreparedId;
use crate::error::ErrorReport;
use crate::execute::commit::{CommitFailure, commit, decision_unknown_report};
use crate::wire::TxStatus;

/// ParameterStatus messages (name, value) a leg reported while it ran alongside others,
/// replayed to the caller's `on_status` once the legs are no longer borrowed.
type Statuses = Vec<(String, String)>;

/// What a statement run on one leg returned: its command tags, or an error.
type Outcome = Result<Vec<String>, ErrorReport>;

/// Commits `legs` (two or more, each inside a transaction that ran its statement) all or
/// nothing, the first leg coordinating with `atomic`'s decision. The error of a failure
/// before the coordinator's COMMIT says nothing was committed; a lost coordinator is `08007`.
pub(super) async fn commit_atomically(
    legs: &mut [Leg<'_>],
    atomic: &Atomic,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    let parts: Vec<PreparedId> = (legs.iter().skip(1))
        .map(|leg| atomic.decision.part(leg.shard))
        .collect();
    if let Err(failure) = first_phase(legs, &parts, atomic, on_status).await {
        return Err(abort(legs, &parts, failure, on_status).await);
    }
    let Some((coordinator, others)) = legs.split_first_mut() else {
        return Ok(());
    };
    let prepared = others.iter_mut().zip(&parts).collect();
    match commit_watched(coordinator, on_status).await {
        Ok(()) => {
            end_prepared(prepared, Decided::Commit, on_status).await;
            Ok(())
        }
        Err(CommitFailure::RolledBack(cause)) => {
            end_prepared(prepared, Decided::Abort, on_status).await;
            Err(nothing_committed(cause, coordinator.shard))
        }
        Err(CommitFailure::Unknown(cause)) => {
            let (shard, why) = (coordinator.shard, &cause.message);
            let what = "the coordinator of an atomic commit was lost during its COMMIT";
            tracing::warn!(shard, error = %why, "{what}; recovery ends the prepared legs");
            Err(decision_unknown_report(shard, why))
        }
    }
}

/// How the prepared legs end: as the coordinator's COMMIT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    Commit,
    Abort,
}

/// A failure of the first phase: where, what the server (or the connection) said, and
/// which legs are prepared (by index; the coordinator, leg 0, never is).
struct FirstPhaseFailure {
    leg: usize,
    cause: ErrorReport,
    prepared: Vec<bool>,
}

/// The first phase, all at once: the coordinator records the decision (which counts only
/// once it commits) while every other leg is prepared.
async fn first_phase(
    legs: &mut [Leg<'_>],
    parts: &[PreparedId],
    atomic: &Atomic,
    on_status: OnStatus<'_>,
) -> Result<(), FirstPhaseFailure> {
    // The record stays inside the coordinator's transaction; a PREPARE ends its leg's.
    let record = atomic.decision.record_commit_sql(atomic.table);
    let record = std::iter::once((record, TxStatus::InTransaction));
    let prepares = parts
        .iter()
        .map(|part| (part.prepare_sql(), TxStatus::Idle));
    let steps = (legs.iter_mut().zip(record.chain(prepares))).map(|(leg, (sql, leaves))| Step {
        leg,
        sql,
        leaves,
    });
    let outcomes = run_all(steps.collect(), on_status).await;
    let mut prepared = vec![false; outcomes.len()];
    let mut failure = None;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let checked = match outcome {
            Ok(tags) if index > 0 => parts[index - 1].check_prepared(&tags),
            Ok(_) => Ok(()),
            Err(report) => Err(report),
        };
        match checked {
            Ok(()) => prepared[index] = index > 0,
            Err(cause) => failure = failure.or(Some((index, cause))),
        }
    }
    let Some((leg, cause)) = failure else {
        return Ok(());
    };
    Err(FirstPhaseFailure {
        leg,
        cause,
        prepared,
    })
}

/// Rolls every leg back after the first phase failed: ROLLBACK PREPARED where prepared,
/// ROLLBACK elsewhere (a broken connection rolled back by closing). Returns the client's
/// error: the cause, where it happened, and that nothing was committed.
async fn abort(
    legs: &mut [Leg<'_>],
    parts: &[PreparedId],
    failure: FirstPhaseFailure,
    on_status: OnStatus<'_>,
) -> ErrorReport {
    let failed = legs[failure.leg].shard;
    let mut prepared = Vec::new();
    let mut open = Vec::new();
    for (index, leg) in legs.iter_mut().enumerate() {
        match index.checked_sub(1).map(|other| &parts[other]) {
            Some(part) if failure.prepared[index] => prepared.push((leg, part)),
            _ if leg.conn.is_broken() => {}
            _ => open.push(Step::ending(leg, "ROLLBACK".to_owned())),
        }
    }
    end_prepared(prepared, Decided::Abort, on_status).await;
    run_all(open, on_status).await;
    nothing_committed(failure.cause, failed)
}

/// COMMIT PREPARED (or ROLLBACK PREPARED) on every prepared leg at once. A leg that cannot be
/// ended now stays prepared, for recovery to end it as the decision says.
async fn end_prepared(
    prepared: Vec<(&mut Leg<'_>, &PreparedId)>,
    decided: Decided,
    on_status: OnStatus<'_>,
) {
    let commit = decided == Decided::Commit;
    let (legs, parts): (Vec<_>, Vec<_>) = prepared.into_iter().unzip();
    let steps = (legs.into_iter().zip(&parts))
        .map(|(leg, part)| Step::ending(leg, part.finish_sql(commit)));
    let outcomes = run_all(steps.collect(), on_status).await;
    for (part, outcome) in parts.iter().zip(outcomes) {
        if let Err(report) = outcome {
            tracing::warn!(
                transaction = %part,
                error = %report.message,
                "a prepared leg could not be ended now; recovery will end it"
            );
        }
    }
}

/// A statement to run on one leg, and the transaction status it must leave there.
struct Step<'l, 'a> {
    leg: &'l mut Leg<'a>,
    sql: String,
    leaves: TxStatus,
}

impl<'l, 'a> Step<'l, 'a> {
    /// A statement that ends the leg's transaction (PREPARE, ROLLBACK, COMMIT/ROLLBACK
    /// PREPARED).
    fn ending(leg: &'l mut Leg<'a>, sql: String) -> Self {
        let leaves = TxStatus::Idle;
        Self { leg, sql, leaves }
    }
}

/// Runs every step at once, each given up if its server stops answering; then replays the
/// ParameterStatus messages they reported to `on_status` (PREPARE TRANSACTION keeps a plain
/// SET, as COMMIT does). One outcome per step, in order.
async fn run_all(steps: Vec<Step<'_, '_>>, on_status: OnStatus<'_>) -> Vec<Outcome> {
    let runs = steps.into_iter().map(|step| async move {
        let mut statuses = Statuses::new();
        let outcome = run_watched(step.leg, &step.sql, step.leaves, &mut statuses).await;
        (step.leg, statuses, outcome)
    });
    let mut outcomes = Vec::new();
    for (leg, statuses, outcome) in futures::future::join_all(runs).await {
        for (name, value) in statuses {
            on_status(leg.conn, &name, &value);
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Runs `sql` on `leg`, which it must leave in status `leaves`, given up if the leg's server
/// stops answering its health checks meanwhile; its ParameterStatus messages go to
/// `statuses`. An error from the server leaves the connection usable (a lost one is closed).
async fn run_watched(
    leg: &mut Leg<'_>,
    sql: &str,
    leaves: TxStatus,
    statuses: &mut Statuses,
) -> Result<Vec<String>, ErrorReport> {
    let mut note = |_: &mut BackendConn, name: &str, value: &str| {
        statuses.push((name.to_owned(), value.to_owned()));
    };
    tokio::select! {
        outcome = run_leaving(leg.conn, sql, leaves, &mut note) => outcome,
        () = leg.liveness.stopped() => Err(abandon(leg)),
    }
}

/// The coordinator's COMMIT, whose outcome is unknown if its server stops answering first.
async fn commit_watched(leg: &mut Leg<'_>, on_status: OnStatus<'_>) -> Result<(), CommitFailure> {
    tokio::select! {
        outcome = commit(leg.conn, on_status) => outcome,
        () = leg.liveness.stopped() => Err(CommitFailure::Unknown(abandon(leg))),
    }
}

/// Gives `leg` up because its server stopped answering: its connection is closed (a reply
/// may still be on its way) and the error says why.
fn abandon(leg: &mut Leg<'_>) -> ErrorReport {
    leg.conn.mark_broken();
    leg.liveness.abandoned(leg.conn.addr())
}

/// The client's error when every leg rolled back: the cause, on which shard, and that
/// nothing was committed anywhere (so the statement can be retried).
fn nothing_committed(cause: ErrorReport, shard: &str) -> ErrorReport {
    with_shard(cause, shard, &[], Wrapping::Transaction).retry_safe()
}
