//! Simple-protocol statements the proxy answers itself, because no backend can yet know
//! where they belong: a BEGIN (deferred until the transaction's first statement names its
//! shard), the COMMIT/ROLLBACK of a transaction that never ran a statement, and the routing
//! hints `SET [LOCAL] shardgate.shard | shardgate.shard_key` and `RESET shardgate.…`.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::client::Refusal;
use super::replies::{Expect, Synthetic};
use super::statements::{next_word, split_statements};
use super::transaction::Phase;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::router::Hint;
use crate::wire::TxStatus;

/// A statement the proxy may answer without a backend.
enum Local<'a> {
    /// BEGIN / START TRANSACTION (the whole text, replayed later).
    Begin(&'a str),
    /// COMMIT / END / ROLLBACK / ABORT of a whole transaction.
    End { commit: bool },
    /// SET [SESSION | LOCAL] shardgate.NAME = value, or RESET (value `None`).
    Hint {
        name: String,
        value: Option<String>,
        local: bool,
    },
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Answers `sql` without a backend when it is one of the statements above and the session
    /// is in a state where that is exact. Returns whether it did.
    pub(super) fn answer_locally(&mut self, sql: &str) -> Result<bool, Refusal> {
        if !may_answer_locally(sql) {
            return Ok(false); // Every statement passes here: no split in the common case.
        }
        let mut statements = split_statements(sql);
        let (Some(only), None) = (statements.next(), statements.next()) else {
            return Ok(false);
        };
        let Some(local) = classify(only) else {
            return Ok(false);
        };
        let between_transactions = self.replies.is_empty() && !self.in_transaction();
        match local {
            Local::Begin(_) if self.txn.phase.is_deferred() => self.answer_command("BEGIN"),
            Local::Begin(begin) if between_transactions => {
                self.txn.phase = Phase::deferred(begin.to_owned());
                self.client_status = TxStatus::InTransaction;
                self.answer_command("BEGIN");
            }
            Local::End { commit } if self.txn.phase.is_deferred() && self.backend.is_none() => {
                let failed = self.client_status == TxStatus::Failed;
                self.txn.end_deferred();
                self.client_status = TxStatus::Idle;
                self.end_local_hint();
                self.answer_command(if commit && !failed {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                });
            }
            Local::Hint { name, value, local } => {
                self.set_hint(&name, value.as_deref(), local)?;
                self.answer_command(if value.is_some() { "SET" } else { "RESET" });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_hint(&mut self, name: &str, value: Option<&str>, local: bool) -> Result<(), Refusal> {
        let Some(value) = value else {
            self.hint = None;
            return Ok(());
        };
        let hint = Hint::from_setting(name, value);
        if hint.is_none() && !value.trim().is_empty() {
            return Err(Refusal::Statement(ErrorReport::error(
                sqlstate::UNDEFINED_OBJECT,
                Blame::Client,
                format!(
                    "unrecognized configuration parameter \"{name}\" (shardgate knows shardgate.shard and shardgate.shard_key)"
                ),
            )));
        }
        self.hint = hint;
        self.hint_is_local = local;
        Ok(())
    }

    /// A `SET LOCAL` hint lasts until its transaction ends.
    pub(super) fn end_local_hint(&mut self) {
        if self.hint_is_local {
            self.hint = None;
            self.hint_is_local = false;
        }
    }

    /// Whether a BEGIN ([`is_begin`]) sent through the extended protocol can be deferred as a
    /// simple one is: the client is between transactions and holds no backend.
    pub(super) fn can_defer_begin(&self) -> bool {
        self.backend.is_none() && !self.txn.phase.is_deferred() && !self.in_transaction()
    }

    /// A Bind of such a BEGIN: answered by the proxy, and its portal remembered.
    pub(super) fn bind_deferred_begin(&mut self, portal: &str, sql: &str) {
        self.batch.begin_portal = Some((portal.to_owned(), sql.to_owned()));
        self.push(Expect::synthetic(Synthetic::BindComplete));
    }

    /// A Describe of a deferred BEGIN's portal: it returns no rows. Returns whether it was one.
    pub(super) fn describe_deferred_begin(&mut self, portal: &str) -> bool {
        if self
            .batch
            .begin_portal
            .as_ref()
            .is_none_or(|(p, _)| p != portal)
        {
            return false;
        }
        self.push(Expect::synthetic(Synthetic::NoData));
        true
    }

    /// An Execute of a deferred BEGIN's portal: the transaction is deferred to its first
    /// statement, as a simple-protocol BEGIN is, so it may start on any shard. Returns whether
    /// the Execute was one.
    pub(super) fn execute_deferred_begin(&mut self, frame: &[u8]) -> bool {
        let body = &frame[crate::wire::HEADER_LEN..];
        let portal = crate::wire::execute_portal(body).unwrap_or_default();
        let Some((_, begin)) = self.batch.begin_portal.take_if(|(p, _)| p == portal) else {
            return false;
        };
        self.txn.phase = Phase::deferred(begin);
        self.client_status = TxStatus::InTransaction;
        self.push(Expect::synthetic(Synthetic::CommandComplete("BEGIN")));
        true
    }

    /// A statement refused while the client's transaction has run nothing on a backend yet
    /// aborts that transaction, as a failed statement would in PostgreSQL.
    pub(super) fn fail_pending_transaction(&mut self) {
        if self.txn.phase.is_deferred() {
            self.client_status = TxStatus::Failed;
        }
    }

    /// In a deferred transaction that failed, every statement but its end is refused (25P02).
    pub(super) fn check_aborted_pending_transaction(&self) -> Result<(), Refusal> {
        if self.txn.phase.is_deferred() && self.client_status == TxStatus::Failed {
            return Err(Refusal::Statement(super::spanning::aborted()));
        }
        Ok(())
    }
}

/// Transaction control that must reach every shard of a transaction spanning shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// COMMIT/END (true) or ROLLBACK/ABORT (false) of the whole transaction.
    End(bool),
    /// SAVEPOINT, RELEASE, ROLLBACK TO.
    Savepoint,
    /// COMMIT AND CHAIN, ROLLBACK AND CHAIN, PREPARE TRANSACTION: ends that start or keep
    /// something on the backend in use only.
    Other,
}

/// The transaction control statements in `sql`, in order.
pub(super) fn transaction_control(sql: &str) -> Vec<Control> {
    let control = |statement: &str| {
        let (first, rest) = next_word(statement)?;
        let second = next_word(rest).map(|(word, _)| word);
        if first.is("savepoint") || first.is("release") {
            return Some(Control::Savepoint);
        }
        if first.is("rollback") && second.is_some_and(|w| w.is("to")) {
            return Some(Control::Savepoint);
        }
        let ends = ["commit", "end", "rollback", "abort"]
            .iter()
            .any(|k| first.is(k));
        let words = std::iter::successors(next_word(rest), |(_, after)| next_word(after));
        let chained = ends && words.take(3).any(|(w, _)| w.is("chain"));
        let two_phase = first.is("prepare") && second.is_some_and(|w| w.is("transaction"));
        if chained || two_phase {
            return Some(Control::Other);
        }
        match classify(statement)? {
            Local::End { commit } => Some(Control::End(commit)),
            _ => None,
        }
    };
    split_statements(sql).filter_map(control).collect()
}

/// Whether `statement` is BEGIN or START TRANSACTION.
pub(super) fn begins_transaction(statement: &str) -> bool {
    matches!(classify(statement), Some(Local::Begin(_)))
}

/// Whether `sql` is exactly one statement, a BEGIN or START TRANSACTION.
pub(super) fn is_begin(sql: &str) -> bool {
    let mut statements = split_statements(sql);
    matches!(
        (statements.next().map(begins_transaction), statements.next()),
        (Some(true), None)
    )
}

/// Whether `sql`'s first word is one [`classify`] may answer for (it reads no further when
/// not).
fn may_answer_locally(sql: &str) -> bool {
    let Some((first, _)) = next_word(sql) else {
        return false;
    };
    [
        "begin", "start", "commit", "end", "rollback", "abort", "set", "reset",
    ]
    .iter()
    .any(|keyword| first.is(keyword))
}

fn classify(statement: &str) -> Option<Local<'_>> {
    let (first, rest) = next_word(statement)?;
    let second = next_word(rest).map(|(word, _)| word);
    let second_is = |keyword: &str| second.is_some_and(|w| w.is(keyword));
    if first.is("begin") || (first.is("start") && second_is("transaction")) {
        return Some(Local::Begin(statement));
    }
    let ends =
        |keyword| first.is(keyword) && second.is_none_or(|w| w.is("work") || w.is("transaction"));
    if ends("commit") || ends("end") {
        return Some(Local::End { commit: true });
    }
    if ends("rollback") || ends("abort") {
        return Some(Local::End { commit: false });
    }
    if first.is("set") || first.is("reset") {
        return hint_setting(first.is("set"), rest);
    }
    None
}

/// `[SESSION | LOCAL] shardgate.NAME {= | TO} value` after SET, or `shardgate.NAME` after RESET.
fn hint_setting(set: bool, rest: &str) -> Option<Local<'static>> {
    let (mut word, mut after) = next_word(rest)?;
    let mut local = false;
    if set && (word.is("session") || word.is("local")) {
        local = word.is("local");
        (word, after) = next_word(after)?;
    }
    let name = word.name();
    if !name.starts_with("shardgate.") {
        return None;
    }
    if !set {
        return Some(Local::Hint {
            name,
            value: None,
            local,
        });
    }
    let after = after.trim_start();
    let value = (after.strip_prefix('='))
        .or_else(|| next_word(after).filter(|(w, _)| w.is("to")).map(|(_, v)| v))?;
    let value = value.trim().trim_end_matches(';').trim();
    let value = if value.eq_ignore_ascii_case("default") {
        None
    } else {
        Some(value.to_owned())
    };
    Some(Local::Hint { name, value, local })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_word_filter_lets_through_everything_the_proxy_answers() {
        let statements = [
            "BEGIN",
            "  /* c */ begin isolation level serializable",
            "START TRANSACTION",
            "commit work",
            "END",
            "ROLLBACK TRANSACTION",
            "abort",
            "SET shardgate.shard = 's1'",
            "set local shardgate.shard_key TO 7",
            "RESET shardgate.shard",
            "-- c\nSET SESSION shardgate.shard = s0",
        ];
        for statement in statements {
            assert!(classify(statement).is_some(), "{statement}");
            assert!(may_answer_locally(statement), "{statement}");
        }
        for statement in ["SELECT 1", "", "  ", "INSERT INTO t VALUES (1)"] {
            assert!(!may_answer_locally(statement), "{statement}");
        }
    }

    #[test]
    fn statements_the_proxy_answers() {
        assert!(matches!(classify("BEGIN"), Some(Local::Begin("BEGIN"))));
        assert!(matches!(
            classify("start transaction isolation level serializable"),
            Some(Local::Begin(_))
        ));
        assert!(classify("start replication").is_none());
        assert!(is_begin("begin;") && is_begin("START TRANSACTION READ ONLY"));
        assert!(!is_begin("BEGIN; SELECT 1") && !is_begin("SELECT 'begin'"));
        assert!(matches!(
            classify("COMMIT"),
            Some(Local::End { commit: true })
        ));
        assert!(matches!(
            classify("end work"),
            Some(Local::End { commit: true })
        ));
        assert!(matches!(
            classify("ROLLBACK"),
            Some(Local::End { commit: false })
        ));
        assert!(classify("ROLLBACK TO SAVEPOINT a").is_none());
        assert_eq!(
            transaction_control("ROLLBACK TO SAVEPOINT a"),
            [Control::Savepoint]
        );
        assert_eq!(
            transaction_control("select 1; commit; savepoint b; release b"),
            [Control::End(true), Control::Savepoint, Control::Savepoint]
        );
        assert!(transaction_control("select 'commit'").is_empty());
        assert_eq!(transaction_control("COMMIT AND CHAIN"), [Control::Other]);
        assert_eq!(
            transaction_control("rollback work and chain"),
            [Control::Other]
        );
        assert_eq!(
            transaction_control("PREPARE TRANSACTION 'x'"),
            [Control::Other]
        );
        assert_eq!(transaction_control("commit and no chain"), [Control::Other]);
        assert!(classify("COMMIT PREPARED 'x'").is_none());
        assert!(classify("SET search_path = x").is_none());
        let Some(Local::Hint { name, value, local }) =
            classify("SET LOCAL shardgate.shard_key = '42'")
        else {
            panic!("a hint")
        };
        assert_eq!(
            (name.as_str(), value.as_deref(), local),
            ("shardgate.shard_key", Some("'42'"), true)
        );
        let Some(Local::Hint { value, local, .. }) = classify("set shardgate.shard to s1;") else {
            panic!("a hint")
        };
        assert_eq!((value.as_deref(), local), (Some("s1"), false));
        assert!(matches!(
            classify("RESET shardgate.shard"),
            Some(Local::Hint { value: None, .. })
        ));
        assert!(matches!(
            classify("SET shardgate.shard = DEFAULT"),
            Some(Local::Hint { value: None, .. })
        ));
    }
}
