//! Atomic commit of a transaction that wrote on several shards: PostgreSQL's two-phase commit,
//! with the decision kept in PostgreSQL itself.
//!
//! The names and SQL of the protocol, pure, shared by the session (which commits) and by
//! recovery (`control::recovery`, which finishes what was left part-way). At the client's COMMIT
//! every other shard that wrote is sent `PREPARE TRANSACTION` (shards that only read commit
//! at once: they have nothing to lose). Then the backend in use, the *coordinator*, inserts
//! the decision row into `shardgate.commit_decisions` inside the client's own transaction and
//! runs the client's COMMIT: the decision is durable exactly when the coordinator's part
//! commits, in the same WAL record, and no proxy keeps anything on its own disk. The prepared
//! shards are then sent `COMMIT PREPARED` (or `ROLLBACK PREPARED` if the coordinator's COMMIT
//! failed) before the client hears back.
//!
//! A proxy that dies, or a shard that is lost, part-way leaves prepared transactions behind.
//! Recovery (`control::recovery`, any proxy of a fleet) finds them in `pg_prepared_xacts` by
//! their identifier ([`PreparedId`]), which names the coordinator's shard, and asks the
//! coordinator: it inserts an *abort* decision for the transaction unless one exists. That
//! insert waits while the coordinator's transaction is still running (then recovery leaves it
//! alone), conflicts with a committed decision (commit), or succeeds (the coordinator never
//! decided: roll back, and a coordinator that comes late finds the abort and fails). So every
//! prepared part ends the way its coordinator's part did.

use std::fmt;

use crate::error::{Blame, ErrorReport, sqlstate};

/// What every identifier this proxy prepares starts with.
const PREFIX: &str = "shardgate";

/// Creates the table of decisions on a primary (every shard may coordinate), once. Two
/// proxies (or a commit and recovery) creating it at once would have one fail on a catalog
/// unique index (`IF NOT EXISTS` checks before it inserts): a transaction-level advisory lock
/// makes the second wait for the first and then find the table.
pub const DECISIONS_DDL: &str = "SELECT pg_advisory_xact_lock(hashtext('shardgate.commit_decisions')); \
     CREATE SCHEMA IF NOT EXISTS shardgate; \
     CREATE TABLE IF NOT EXISTS shardgate.commit_decisions (\
     id text PRIMARY KEY, committed boolean NOT NULL, \
     decided_at timestamptz NOT NULL DEFAULT now())";

/// Whether a coordinator has `shardgate.commit_decisions` (recovery creates it on every
/// primary; until it has, a commit creates it itself, inside its transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionsTable {
    /// Recovery made it.
    Ready,
    /// Not known to exist: create it (if missing) before recording.
    Create,
}

/// One transaction's atomic commit: a random id and the shard that coordinates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Unique per transaction (64 random bits, hex).
    pub id: String,
    /// The coordinator's shard name.
    pub coordinator: String,
}

/// The identifier a participant's part is prepared under: unique in its server (two shards
/// may share one), and naming the decision and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedId {
    /// The transaction's decision.
    pub decision: Decision,
    /// The participant's shard name.
    pub participant: String,
}

impl Decision {
    /// A new transaction's decision, coordinated by `coordinator`.
    pub fn new(coordinator: &str) -> Self {
        Self {
            id: format!("{:016x}", rand::random::<u64>()),
            coordinator: coordinator.to_owned(),
        }
    }

    /// The coordinator's statement, inside the transaction it commits: the commit decision,
    /// after the table's creation when the coordinator may not have it yet.
    pub fn record_commit_sql(&self, table: DecisionsTable) -> String {
        let record = format!(
            "INSERT INTO shardgate.commit_decisions (id, committed) VALUES ('{}', true)",
            self.id
        );
        match table {
            DecisionsTable::Ready => record,
            DecisionsTable::Create => format!("{DECISIONS_DDL}; {record}"),
        }
    }

    /// Recovery's question to the coordinator, as one implicit transaction: record an abort
    /// unless a decision exists (waiting, at most `lock_timeout_ms`, while the coordinator's
    /// own transaction runs), then read the decision (the last row).
    pub fn resolve_sql(&self, lock_timeout_ms: u64) -> String {
        format!(
            "SELECT set_config('lock_timeout', '{lock_timeout_ms}', true); \
             INSERT INTO shardgate.commit_decisions (id, committed) VALUES ('{id}', false) \
             ON CONFLICT (id) DO NOTHING; \
             SELECT committed FROM shardgate.commit_decisions WHERE id = '{id}'",
            id = self.id
        )
    }

    /// The part of `participant` (a shard name).
    pub fn part(&self, participant: &str) -> PreparedId {
        PreparedId {
            decision: self.clone(),
            participant: participant.to_owned(),
        }
    }
}

impl PreparedId {
    /// `PREPARE TRANSACTION` of this part.
    pub fn prepare_sql(&self) -> String {
        format!("PREPARE TRANSACTION {}", self.literal())
    }

    /// What the command tags of this part's PREPARE TRANSACTION say: PostgreSQL answers
    /// `ROLLBACK` instead when the transaction had failed (it rolled it back).
    pub fn check_prepared(&self, tags: &[String]) -> Result<(), ErrorReport> {
        if tags.iter().any(|tag| tag == "PREPARE TRANSACTION") {
            return Ok(());
        }
        Err(ErrorReport::error(
            sqlstate::TRANSACTION_ROLLBACK,
            Blame::Backend,
            format!(
                "the transaction had failed on shard {}: it was rolled back",
                self.participant
            ),
        ))
    }

    /// `COMMIT PREPARED` or `ROLLBACK PREPARED` of this part.
    pub fn finish_sql(&self, commit: bool) -> String {
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        format!("{verb} PREPARED {}", self.literal())
    }

    /// Reads an identifier from `pg_prepared_xacts.gid`; `None` for anything this proxy did
    /// not prepare.
    pub fn parse(gid: &str) -> Option<Self> {
        let mut fields = gid.split(':');
        let (Some(PREFIX), Some(id), Some(coordinator), Some(participant), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return None;
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(PreparedId {
            decision: Decision {
                id: id.to_owned(),
                coordinator: unescape(coordinator)?,
            },
            participant: unescape(participant)?,
        })
    }

    fn literal(&self) -> String {
        format!("'{}'", self.to_string().replace('\'', "''"))
    }
}

impl fmt::Display for PreparedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Decision { id, coordinator } = &self.decision;
        let (coordinator, participant) = (escape(coordinator), escape(&self.participant));
        write!(f, "{PREFIX}:{id}:{coordinator}:{participant}")
    }
}

/// A shard name inside an identifier: `%` and `:` percent-encoded, so `:` separates fields.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace(':', "%3A")
}

fn unescape(field: &str) -> Option<String> {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "25" => '%',
            "3A" => ':',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_names_its_decision_coordinator_and_participant() {
        let decision = Decision::new("s:0%");
        let part = decision.part("s1");
        let gid = part.to_string();
        assert!(gid.starts_with("shardgate:"), "{gid}");
        assert_eq!(gid.split(':').count(), 4, "{gid}");
        assert_eq!(PreparedId::parse(&gid), Some(part.clone()));
        assert_eq!(part.decision.coordinator, "s:0%");
        assert!(
            part.prepare_sql()
                .starts_with("PREPARE TRANSACTION 'shardgate:")
        );
        assert!(part.finish_sql(false).starts_with("ROLLBACK PREPARED '"));
        assert!(part.check_prepared(&["PREPARE TRANSACTION".into()]).is_ok());
        let failed = part.check_prepared(&["ROLLBACK".into()]).unwrap_err();
        assert_eq!(failed.code, "40000");
        assert!(failed.message.contains("shard s1"), "{failed:?}");
    }

    #[test]
    fn a_coordinator_without_the_table_of_decisions_creates_it_in_its_transaction() {
        let decision = Decision::new("s0");
        let record = decision.record_commit_sql(DecisionsTable::Ready);
        assert!(record.starts_with("INSERT INTO shardgate.commit_decisions"));
        let create = decision.record_commit_sql(DecisionsTable::Create);
        assert_eq!(create, format!("{DECISIONS_DDL}; {record}"));
    }

    #[test]
    fn identifiers_of_others_are_not_ours() {
        for gid in [
            "",
            "shardgate",
            "other:0123456789abcdef:s0:s1",
            "shardgate:0123:s0:s1",
            "shardgate:0123456789abcdef:s0",
            "shardgate:0123456789abcdef:s0:s1:x",
            "shardgate:0123456789abcdeg:s0:s1",
            "shardgate:0123456789abcdef:s%2:s1",
        ] {
            assert_eq!(PreparedId::parse(gid), None, "{gid}");
        }
    }

    #[test]
    fn every_transaction_gets_its_own_id() {
        assert_ne!(Decision::new("s0").id, Decision::new("s0").id);
    }
}
