//! Committing one shard's part of a statement or transaction that spans shards, and the
//! error a client gets when a COMMIT did not end the same way everywhere, or may not have.
//!
//! Part of the execute stage. With two-phase commit (`transactions.atomic`, see
//! `control::two_phase`) every shard ends as the coordinator's COMMIT did, so the only
//! failure worth its own report is a coordinator lost during that COMMIT: the outcome is
//! unknown, but the same on every shard ([`decision_unknown_report`]). Without it the shards
//! commit one after another, and a failure part-way leaves some committed and others not: a
//! torn commit. Then the client must learn, for every shard, what became of its part:
//! committed, rolled back, or unknown. Unknown is what a connection lost during COMMIT leaves:
//! the server may have committed and died before it could answer. PostgreSQL's own word for
//! that is SQLSTATE `08007` (transaction_resolution_unknown). What the reports say is pure
//! ([`torn_commit_report`], [`decision_unknown_report`]); only [`commit`] does I/O.

use super::broadcast::{OnStatus, next_frame, query, send};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{self, TxStatus, tag};

/// How one shard's COMMIT failed, which decides what the client can know about that shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitFailure {
    /// The server answered with an error (a deferred constraint, a serialization failure) or
    /// with ROLLBACK, and is still there: its part of the transaction rolled back.
    RolledBack(ErrorReport),
    /// The connection was lost (or the server ended the session) before the COMMIT was
    /// answered: the server may or may not have committed.
    Unknown(ErrorReport),
}

/// Where the shards of a transaction stand after its COMMIT failed on `failed`.
#[derive(Debug, Clone, Copy)]
pub struct TornCommit<'a> {
    /// The shard whose COMMIT failed.
    pub failed: &'a str,
    /// Shards whose part committed before the failure.
    pub committed: &'a [String],
    /// Other shards, which were never sent COMMIT and so rolled back (their backends were told
    /// to roll back, or closed, which rolls back too).
    pub rolled_back: &'a [String],
}

/// Sends COMMIT on `conn`, a backend inside a transaction, and tells how it ended. A failure
/// leaves `conn` marked broken when it cannot be reused.
pub async fn commit(conn: &mut BackendConn, on_status: OnStatus<'_>) -> Result<(), CommitFailure> {
    let mut out = bytes::BytesMut::new();
    query(&mut out, "COMMIT").map_err(CommitFailure::Unknown)?;
    // A failed write may still have delivered the COMMIT: unknown, as a lost reply is.
    send(conn, &out).await.map_err(CommitFailure::Unknown)?;
    let mut error = None;
    let mut rolled_back = false;
    loop {
        // A FATAL (the server going away) is followed by EOF, which ends up here too.
        let frame = next_frame(conn).await.map_err(CommitFailure::Unknown)?;
        let body = &frame[wire::HEADER_LEN..];
        match frame[0] {
            tag::ERROR_RESPONSE => error = Some(wire::error_report(body, Blame::Backend)),
            tag::COMMAND_COMPLETE => rolled_back = wire::command_tag(body) == Ok("ROLLBACK"),
            tag::PARAMETER_STATUS => {
                if let Ok(status) = wire::ParameterStatus::decode(body) {
                    on_status(conn, status.name, status.value);
                }
            }
            tag::READY_FOR_QUERY => {
                let status = body.first().copied().and_then(TxStatus::from_byte);
                return ended(error, rolled_back, status, conn);
            }
            _ => {}
        }
    }
}

/// What a COMMIT's replies up to ReadyForQuery (`status`) mean.
fn ended(
    error: Option<ErrorReport>,
    rolled_back: bool,
    status: Option<TxStatus>,
    conn: &mut BackendConn,
) -> Result<(), CommitFailure> {
    match (error, status) {
        (Some(report), Some(TxStatus::Idle)) => Err(CommitFailure::RolledBack(report)),
        (None, Some(TxStatus::Idle)) if rolled_back => {
            Err(CommitFailure::RolledBack(ErrorReport::error(
                sqlstate::TRANSACTION_ROLLBACK,
                Blame::Backend,
                "the transaction had failed on this shard: COMMIT rolled it back",
            )))
        }
        (None, Some(TxStatus::Idle)) => Ok(()),
        (error, _) => {
            // Still inside a transaction after COMMIT: nothing a server does; trust nothing.
            conn.mark_broken();
            let why = error.map_or_else(|| "no error".to_owned(), |e| e.message);
            Err(CommitFailure::Unknown(ErrorReport::error(
                sqlstate::CONNECTION_FAILURE,
                Blame::Backend,
                format!("COMMIT did not end the transaction ({why})"),
            )))
        }
    }
}

/// The error for a COMMIT that failed on one shard of a transaction spanning shards: the
/// cause, and a DETAIL naming the shards that committed, the one whose outcome is unknown (if
/// any) and the ones rolled back, with a HINT on what a retry must consider.
///
/// A shard that answered with an error keeps the server's SQLSTATE and message (it is the real
/// cause, and the transaction did roll back there); a lost connection is `08007`.
pub fn torn_commit_report(failure: CommitFailure, torn: TornCommit<'_>) -> ErrorReport {
    let failed = torn.failed;
    let mut rolled_back: Vec<&str> = torn.rolled_back.iter().map(String::as_str).collect();
    let (report, unknown, cause) = match failure {
        CommitFailure::RolledBack(cause) => {
            rolled_back.insert(0, failed);
            let report = ErrorReport::error(cause.code, Blame::Backend, &cause.message);
            (report, None, cause.detail)
        }
        CommitFailure::Unknown(cause) => {
            let message = format!(
                "transaction resolution unknown: the connection to shard {failed} was lost \
                 during COMMIT"
            );
            let code = sqlstate::TRANSACTION_RESOLUTION_UNKNOWN;
            let report = ErrorReport::error(code, Blame::Backend, message);
            (report, Some(failed), Some(cause.message))
        }
    };
    let detail = torn_detail(torn.committed, unknown, &rolled_back, cause.as_deref());
    let hint = torn_hint(torn.committed, unknown);
    report.with_detail(detail).with_hint(hint)
}

/// The error when the coordinator of an atomic commit (shard `coordinator`) was lost during
/// its COMMIT (`why`): whether it committed is unknown, but every other shard ends as its part
/// did (recovery ends them within seconds), so the changes are on every shard or on none.
pub fn decision_unknown_report(coordinator: &str, why: &str) -> ErrorReport {
    let message = format!(
        "transaction resolution unknown: the connection to shard {coordinator} was lost during \
         COMMIT"
    );
    let code = sqlstate::TRANSACTION_RESOLUTION_UNKNOWN;
    ErrorReport::error(code, Blame::Backend, message)
        .with_detail(format!(
            "The commit is atomic: every shard ends as shard {coordinator}'s part did, and \
             recovery ends the others within seconds.\n{why}"
        ))
        .with_hint("Check whether the changes are there before retrying.")
}

fn torn_detail(
    committed: &[String],
    unknown: Option<&str>,
    rolled_back: &[&str],
    cause: Option<&str>,
) -> String {
    let mut detail = if committed.is_empty() {
        "Nothing was committed on any shard.".to_owned()
    } else {
        format!("Already committed on shards: [{}].", committed.join(", "))
    };
    if let Some(shard) = unknown {
        detail.push_str(&format!(
            " Outcome unknown on shard {shard} (it may have committed before the connection \
             was lost)."
        ));
    }
    if !rolled_back.is_empty() {
        let rolled_back = rolled_back.join(", ");
        detail.push_str(&format!(" Rolled back on shards: [{rolled_back}]."));
    }
    if !committed.is_empty() || unknown.is_some() {
        detail.push_str(
            " The shards committed one after another, not in two phases (transactions.atomic \
             is off, or only one shard wrote), so this commit was not atomic.",
        );
    }
    if let Some(cause) = cause {
        detail.push_str(&format!("\n{cause}"));
    }
    detail
}

fn torn_hint(committed: &[String], unknown: Option<&str>) -> String {
    match (committed.is_empty(), unknown) {
        (true, None) => "Nothing was committed: the transaction can be retried.".to_owned(),
        (false, None) => format!(
            "The changes on [{}] stay committed: do not retry the whole transaction.",
            committed.join(", ")
        ),
        (_, Some(shard)) => format!(
            "Check on shard {shard} whether the transaction's changes are there before retrying \
             anything{}.",
            if committed.is_empty() {
                String::new()
            } else {
                format!("; the changes on [{}] stay committed", committed.join(", "))
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SqlState;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn lost() -> ErrorReport {
        ErrorReport::error(
            sqlstate::CONNECTION_FAILURE,
            Blame::Backend,
            "server closed the connection",
        )
    }

    #[test]
    fn a_lost_connection_names_committed_and_unknown_shards() {
        let committed = names(&["s0"]);
        let torn = TornCommit {
            failed: "s1",
            committed: &committed,
            rolled_back: &names(&["s2"]),
        };
        let report = torn_commit_report(CommitFailure::Unknown(lost()), torn);
        assert_eq!(report.code, "08007");
        assert!(report.message.contains("shard s1"), "{report:?}");
        let detail = report.detail.as_deref().unwrap();
        assert!(
            detail.contains("Already committed on shards: [s0]."),
            "{detail}"
        );
        assert!(detail.contains("Outcome unknown on shard s1"), "{detail}");
        assert!(detail.contains("Rolled back on shards: [s2]."), "{detail}");
        assert!(detail.contains("server closed the connection"), "{detail}");
        let hint = report.hint.as_deref().unwrap();
        assert!(hint.contains("Check on shard s1"), "{hint}");
        assert!(hint.contains("[s0] stay committed"), "{hint}");
    }

    #[test]
    fn a_refused_commit_keeps_the_servers_error_and_says_it_rolled_back_there() {
        let committed = names(&["s0", "s2"]);
        let torn = TornCommit {
            failed: "s1",
            committed: &committed,
            rolled_back: &[],
        };
        let cause = ErrorReport::error(
            SqlState::from_static("23505"),
            Blame::Backend,
            "duplicate key",
        )
        .with_detail("Key (id)=(1) already exists.");
        let report = torn_commit_report(CommitFailure::RolledBack(cause), torn);
        assert_eq!(
            (report.code.as_str(), &*report.message),
            ("23505", "duplicate key")
        );
        let detail = report.detail.as_deref().unwrap();
        assert!(
            detail.contains("Already committed on shards: [s0, s2]."),
            "{detail}"
        );
        assert!(detail.contains("Rolled back on shards: [s1]."), "{detail}");
        assert!(!detail.contains("unknown"), "{detail}");
        assert!(detail.contains("Key (id)=(1) already exists."), "{detail}");
        assert!(report.hint.unwrap().contains("do not retry"));
    }

    #[test]
    fn a_failure_before_anything_committed_says_a_retry_is_safe() {
        let torn = TornCommit {
            failed: "s0",
            committed: &[],
            rolled_back: &names(&["s1"]),
        };
        let cause = ErrorReport::error(
            SqlState::from_static("40001"),
            Blame::Backend,
            "could not serialize",
        );
        let report = torn_commit_report(CommitFailure::RolledBack(cause), torn);
        assert_eq!(report.code, "40001");
        let detail = report.detail.unwrap();
        assert!(
            detail.contains("Rolled back on shards: [s0, s1]."),
            "{detail}"
        );
        assert!(!detail.contains("not atomic"), "{detail}");
        assert!(report.hint.unwrap().contains("can be retried"));
        // Unknown with nothing committed is still not safe to retry blindly.
        let report = torn_commit_report(CommitFailure::Unknown(lost()), torn);
        assert_eq!(report.code, "08007");
        assert!(report.hint.unwrap().starts_with("Check on shard s0"));
    }

    #[test]
    fn a_lost_coordinator_leaves_the_outcome_unknown_but_the_same_everywhere() {
        let report = decision_unknown_report("s1", "server closed the connection");
        assert_eq!(report.code, "08007");
        assert!(report.message.contains("shard s1"), "{report:?}");
        let detail = report.detail.as_deref().unwrap();
        assert!(detail.contains("every shard ends as shard s1's part did"));
        assert!(detail.ends_with("server closed the connection"), "{detail}");
        assert!(!detail.contains("not atomic"), "{detail}");
    }
}
