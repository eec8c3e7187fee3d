//! Where a client's transaction stands, as one [`Phase`] and the transitions between phases.
//!
//! Part of the session stage: state only, no I/O. The handlers that talk to backends (`local`
//! answers BEGIN, `session` runs a deferred one, `spanning` parks and ends backends of other
//! shards, `server` sees the transaction end) call the transitions below, so every way a
//! transaction moves is listed here:
//!
//! | from | event | to |
//! |-|-|-|
//! | `Idle` | BEGIN while no backend is held | `Deferred` (answered by the proxy) |
//! | `Deferred` | the first statement runs on a shard | `OnShard` (BEGIN replayed there first) |
//! | `Deferred` | COMMIT/ROLLBACK before any statement | `Idle` (answered by the proxy) |
//! | `Idle`, `Deferred`, `OnShard` | a statement needs another shard, or several | `Spanning` |
//! | `Spanning` | COMMIT, only the backend in use wrote: every parked shard committed | `Committing` (client's COMMIT runs on the backend in use) |
//! | `Spanning` | COMMIT fails on a parked shard | `Idle` (the rest rolled back, the error names each shard) |
//! | `Spanning` | COMMIT, a parked shard wrote: parked writers prepared, the decision recorded on the backend in use | `Deciding` (client's COMMIT runs on the backend in use) |
//! | `Spanning` | COMMIT, a PREPARE or the decision fails | `Idle` (everything rolled back) |
//! | `Deciding` | ReadyForQuery `I` from the backend in use | `Idle` (the prepared shards end as the backend in use did, before the client hears) |
//! | `OnShard`, `Spanning` | a read that was to start it never ran | `Deferred` again |
//! | `Spanning` | the session lets go of its backends (a replay failed, the client left) | `OnShard` |
//! | any but `Deferred` | ReadyForQuery `I` from the backend in use | `Idle` |
//! | `Idle` | a batch or multi-statement query outside a transaction needs a second shard | `Spanning`, `implicit` (see `implicit`) |
//! | `Spanning`, `implicit` | the batch's Sync or the query's end | `Idle` (committed, atomically when two shards wrote, or rolled back) |
//!
//! A failed transaction is not a phase of its own: PostgreSQL's status (`E` in ReadyForQuery,
//! kept by the session as the client's and the backend's status) says so in every phase, and
//! the handlers refuse what PostgreSQL would (25P02) from it.

use super::savepoints::Savepoints;
use crate::config::ShardId;
use crate::control::deadlock::SpanTicket;
use crate::control::two_phase::PreparedId;
use crate::pool::Checkout;
use crate::wire::TxStatus;

/// Where the client's transaction stands, as far as the proxy took part in it.
#[derive(Default)]
pub(super) enum Phase {
    /// The proxy holds no part of a transaction: none is open, or the client's own BEGIN ran on
    /// the backend in use (whose status says so).
    #[default]
    Idle,
    /// The proxy answered this BEGIN (the whole text) and runs it on the shard of the
    /// transaction's first statement.
    Deferred { begin: String },
    /// The deferred BEGIN ran on the backend in use; it is replayed on any shard the
    /// transaction reaches later.
    OnShard { begin: String },
    /// The transaction reaches several shards: one backend in use, the others parked inside the
    /// transaction. `begin` is what started it (plain `BEGIN` when the client sent its own).
    Spanning {
        begin: Option<String>,
        parked: Vec<Parked>,
        /// The next backend taken must join the transaction (its shard had none parked).
        join_next: bool,
    },
    /// The client's COMMIT of a spanning transaction: these shards already committed, and the
    /// COMMIT runs on the backend in use next (if it fails there, its error names them).
    Committing { committed: Vec<String> },
    /// The client's COMMIT of a spanning transaction that wrote on several shards: the parked
    /// writers are prepared, the backend in use holds the commit decision, and the COMMIT runs
    /// there next (see `control::two_phase`).
    Deciding { prepared: Vec<PreparedPart> },
}

/// A shard's part of a transaction, prepared, and a connection to its server to finish it on.
pub(super) struct PreparedPart {
    pub(super) id: PreparedId,
    pub(super) conn: Checkout,
}

/// A backend of the current transaction that is not the one in use.
pub(super) struct Parked {
    pub(super) shard: ShardId,
    pub(super) conn: Checkout,
    pub(super) status: TxStatus,
}

impl Phase {
    /// Idle → Deferred: a BEGIN the proxy answers.
    pub(super) fn deferred(begin: String) -> Phase {
        Phase::Deferred { begin }
    }

    /// Deferred → OnShard, once the BEGIN (returned) ran on the backend in use.
    pub(super) fn started(begin: String) -> Phase {
        Phase::OnShard { begin }
    }

    /// → Spanning: the transaction reaches more than one shard. A deferred BEGIN starts with
    /// it (the caller runs it on each shard it joins).
    pub(super) fn span(self) -> Phase {
        let begin = match self {
            Phase::Spanning { .. } | Phase::Committing { .. } | Phase::Deciding { .. } => {
                return self;
            }
            Phase::Idle => None,
            Phase::Deferred { begin } | Phase::OnShard { begin } => Some(begin),
        };
        Phase::Spanning {
            begin,
            parked: Vec::new(),
            join_next: false,
        }
    }

    /// Deferred → OnShard for a read that joins the transaction on every shard it reads (the
    /// caller runs the BEGIN there); other phases stay.
    pub(super) fn start_on_read(self) -> Phase {
        match self {
            Phase::Deferred { begin } => Phase::OnShard { begin },
            other => other,
        }
    }

    /// Spanning → Committing: every parked shard committed.
    pub(super) fn parked_committed(committed: Vec<String>) -> Phase {
        Phase::Committing { committed }
    }

    /// OnShard/Spanning → Deferred again: the read that was to start the transaction never
    /// ran, and no backend holds any of it.
    pub(super) fn deferred_again(self) -> Phase {
        match self {
            Phase::OnShard { begin } => Phase::Deferred { begin },
            Phase::Spanning {
                begin: Some(begin), ..
            } => Phase::Deferred { begin },
            Phase::Spanning { begin: None, .. } => Phase::Idle,
            other => other,
        }
    }

    /// Whether a BEGIN the proxy answered still waits for the transaction's first statement.
    pub(super) fn is_deferred(&self) -> bool {
        matches!(self, Phase::Deferred { .. })
    }

    /// Whether the transaction has reached more than one shard (and bounds its lock waits).
    pub(super) fn spans_shards(&self) -> bool {
        matches!(
            self,
            Phase::Spanning { .. } | Phase::Committing { .. } | Phase::Deciding { .. }
        )
    }

    /// The BEGIN replayed on each shard the transaction reaches.
    pub(super) fn begin(&self) -> &str {
        match self {
            Phase::OnShard { begin }
            | Phase::Spanning {
                begin: Some(begin), ..
            } => begin,
            _ => "BEGIN",
        }
    }

    /// The client's BEGIN, when the proxy knows it (it deferred it); `None` when it went to a
    /// backend as it was.
    pub(super) fn known_begin(&self) -> Option<&str> {
        match self {
            Phase::Deferred { begin }
            | Phase::OnShard { begin }
            | Phase::Spanning {
                begin: Some(begin), ..
            } => Some(begin),
            _ => None,
        }
    }

    /// The backends parked in the transaction (none outside `Spanning`).
    pub(super) fn parked(&self) -> &[Parked] {
        match self {
            Phase::Spanning { parked, .. } => parked,
            _ => &[],
        }
    }

    /// The parked backends, to take or add to; `None` outside `Spanning`.
    pub(super) fn parked_mut(&mut self) -> Option<&mut Vec<Parked>> {
        match self {
            Phase::Spanning { parked, .. } => Some(parked),
            _ => None,
        }
    }

    /// → Spanning, with `parked` parked in it. A COMMIT in flight parks nothing: the backend
    /// is handed back (returned) to be closed.
    #[must_use]
    pub(super) fn park(&mut self, parked: Parked) -> Option<Parked> {
        self.step_to(Phase::span);
        match self {
            Phase::Spanning { parked: list, .. } => {
                list.push(parked);
                None
            }
            _ => Some(parked),
        }
    }

    fn step_to(&mut self, step: impl FnOnce(Phase) -> Phase) {
        *self = step(std::mem::take(self));
    }

    /// Takes the parked backend of `shard`, if the transaction has one there.
    pub(super) fn unpark(&mut self, shard: ShardId) -> Option<Parked> {
        let parked = self.parked_mut()?;
        let index = parked.iter().position(|p| p.shard == shard)?;
        Some(parked.swap_remove(index))
    }

    /// Marks (or clears) that the next backend taken must join the transaction.
    pub(super) fn set_join_next(&mut self, join: bool) {
        if let Phase::Spanning { join_next, .. } = self {
            *join_next = join;
        }
    }

    /// Whether the backend just taken must join the transaction (and clears it).
    pub(super) fn take_join_next(&mut self) -> bool {
        match self {
            Phase::Spanning { join_next, .. } => std::mem::take(join_next),
            _ => false,
        }
    }

    /// Whether the client's COMMIT of an atomic commit runs on the backend in use.
    pub(super) fn is_deciding(&self) -> bool {
        matches!(self, Phase::Deciding { .. })
    }

    /// The shards that committed before the client's COMMIT ran on the backend in use.
    pub(super) fn committed_elsewhere(&self) -> &[String] {
        match self {
            Phase::Committing { committed } => committed,
            _ => &[],
        }
    }
}

/// The transaction state of one session: its phase, and what follows the transaction to every
/// shard it reaches.
#[derive(Default)]
pub(super) struct Transaction {
    pub(super) phase: Phase,
    /// `SET LOCAL` / `SET TRANSACTION` statements of the open transaction, replayed on every
    /// shard it reaches later.
    pub(super) settings: Vec<String>,
    /// A session-level SET ran in the open transaction. It runs on every shard the
    /// transaction reaches, but only the backend in use tracks it (staged until COMMIT), and
    /// a prepared shard keeps it whatever the outcome. So once such a transaction spans
    /// shards, each of its backends is closed when let go: none hands the setting on to
    /// another client.
    pub(super) session_set: bool,
    /// Savepoints open in the transaction, replayed on every shard it reaches later.
    pub(super) savepoints: Savepoints,
    /// The last statement the client saw complete was ROLLBACK (so staged settings are
    /// dropped when the transaction ends).
    pub(super) rolled_back: bool,
    /// The last statement the client saw complete was COMMIT (so prepared shards commit).
    pub(super) committed: bool,
    /// The prepared shards of a transaction that just ended on the backend in use, to end
    /// the same way before the client hears of it.
    pub(super) finishing: Option<Finishing>,
    /// The proxy began this transaction block itself, so that a batch (up to its Sync) or a
    /// multi-statement query outside any transaction stays one transaction when it spans
    /// shards; the client's status stays idle, and the proxy ends it (see `implicit`).
    pub(super) implicit: bool,
    /// The client's own BEGIN went to the backend in use in the batch in flight: a
    /// transaction block is open there, though the client has not seen its status yet.
    pub(super) begun_in_batch: bool,
    /// Its place with the deadlock detector, from when it spans shards.
    pub(super) span: Option<SpanTicket>,
}

/// Prepared shards to commit (or roll back), and the client's ReadyForQuery held until then.
pub(super) struct Finishing {
    pub(super) parts: Vec<PreparedPart>,
    pub(super) commit: bool,
    pub(super) ready: Option<bytes::BytesMut>,
}

/// What the end of a transaction on the backend in use leaves to do.
pub(super) struct Ended {
    /// Backends still parked (there should be none: the proxy ends them before the client's
    /// COMMIT or ROLLBACK).
    pub(super) parked: Vec<Parked>,
    /// It ended with ROLLBACK.
    pub(super) rolled_back: bool,
    /// Shards prepared for its COMMIT, which end as the backend in use did: committed when
    /// `committed`, else rolled back.
    pub(super) prepared: Vec<PreparedPart>,
    /// It ended with a COMMIT that committed.
    pub(super) committed: bool,
}

impl Transaction {
    /// Moves to the phase `step` returns from the current one.
    pub(super) fn step(&mut self, step: impl FnOnce(Phase) -> Phase) {
        self.phase.step_to(step);
    }

    /// → Idle: the backend in use is between transactions. A deferred BEGIN, which no
    /// backend has seen, stays.
    pub(super) fn end(&mut self) -> Ended {
        self.settings.clear();
        self.session_set = false;
        self.savepoints.clear();
        self.implicit = false;
        self.span = None;
        let (mut parked, mut prepared) = (Vec::new(), Vec::new());
        match std::mem::take(&mut self.phase) {
            Phase::Spanning { parked: left, .. } => parked = left,
            Phase::Deciding { prepared: parts } => prepared = parts,
            deferred @ Phase::Deferred { .. } => self.phase = deferred,
            _ => {}
        }
        Ended {
            parked,
            rolled_back: std::mem::take(&mut self.rolled_back),
            prepared,
            committed: std::mem::take(&mut self.committed),
        }
    }

    /// Deferred → Idle, returning the BEGIN to run on the backend in use (which then moves the
    /// phase on with [`Phase::started`]); `None` in other phases, which stay.
    pub(super) fn take_deferred(&mut self) -> Option<String> {
        match std::mem::take(&mut self.phase) {
            Phase::Deferred { begin } => Some(begin),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Spanning → OnShard (or Idle, for a transaction the client began itself): the session
    /// lets go of its backends, so the parked ones (returned) leave the transaction.
    pub(super) fn let_go_of_parked(&mut self) -> Vec<Parked> {
        self.implicit = false; // Its backends are closed: nothing of it commits.
        self.span = None;
        match std::mem::take(&mut self.phase) {
            Phase::Spanning { begin, parked, .. } => {
                self.phase = begin.map_or(Phase::Idle, Phase::started);
                parked
            }
            other => {
                self.phase = other;
                Vec::new()
            }
        }
    }

    /// Deferred → Idle: the client ended a transaction that never ran a statement.
    pub(super) fn end_deferred(&mut self) {
        self.phase = Phase::Idle;
        self.settings.clear();
        self.session_set = false;
        self.savepoints.clear();
        self.span = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_begin_follows_the_transaction_when_it_spans() {
        let phase = Phase::deferred("BEGIN ISOLATION LEVEL REPEATABLE READ".into()).span();
        assert!(phase.spans_shards());
        assert_eq!(phase.begin(), "BEGIN ISOLATION LEVEL REPEATABLE READ");
        assert!(!phase.is_deferred());
    }

    #[test]
    fn a_client_begun_transaction_spans_with_a_plain_begin() {
        let phase = Phase::Idle.span();
        assert_eq!(phase.begin(), "BEGIN");
        assert!(phase.parked().is_empty());
    }

    #[test]
    fn a_read_that_never_ran_defers_the_begin_again() {
        let phase = Phase::deferred("START TRANSACTION".into()).start_on_read();
        assert!(matches!(phase, Phase::OnShard { .. }));
        let phase = phase.deferred_again();
        assert!(phase.is_deferred());
        assert_eq!(Phase::Idle.span().deferred_again().begin(), "BEGIN");
    }

    #[test]
    fn joining_is_asked_only_once() {
        let mut phase = Phase::Idle.span();
        phase.set_join_next(true);
        assert!(phase.take_join_next());
        assert!(!phase.take_join_next());
        let mut idle = Phase::Idle;
        idle.set_join_next(true);
        assert!(!idle.take_join_next());
    }

    #[test]
    fn committing_names_the_shards_that_committed_and_still_spans() {
        let phase = Phase::parked_committed(vec!["s1".into()]);
        assert_eq!(phase.committed_elsewhere(), ["s1".to_owned()]);
        assert!(phase.spans_shards());
        assert!(Phase::Idle.committed_elsewhere().is_empty());
    }

    #[test]
    fn ending_returns_to_idle_and_forgets_the_settings() {
        let mut txn = Transaction {
            phase: Phase::Idle.span(),
            settings: vec!["SET LOCAL work_mem = '8MB'".into()],
            session_set: true,
            savepoints: Savepoints::default(),
            rolled_back: true,
            committed: false,
            finishing: None,
            implicit: true,
            begun_in_batch: false,
            span: None,
        };
        let ended = txn.end();
        assert!(ended.parked.is_empty() && ended.rolled_back && ended.prepared.is_empty());
        assert!(matches!(txn.phase, Phase::Idle));
        assert!(txn.settings.is_empty() && !txn.session_set && !txn.rolled_back);
        assert!(!txn.implicit);
    }
}
