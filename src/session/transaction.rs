//! Where a client's transaction stands: the BEGIN the proxy deferred, the shards it reached,
//! the settings that follow it, and what became of a COMMIT across shards.
//!
//! Part of the session stage: data only, owned by the session and changed by its handlers
//! (`local` defers BEGIN, `spanning` parks the backends of other shards and ends them,
//! `settings` stages SETs). Grouped here so that a reader finds the whole transaction state in
//! one place; the next step turns these fields into one phase enum with its transitions.

/// The transaction state of one session.
#[derive(Default)]
pub(super) struct Transaction {
    /// A BEGIN the proxy answered and will run on the shard of the transaction's first
    /// statement.
    pub(super) pending_begin: Option<String>,
    /// The BEGIN that started the current transaction, replayed on each shard it reaches.
    pub(super) transaction_begin: Option<String>,
    /// Backends of other shards in the current transaction (see `spanning`).
    pub(super) parked: Vec<super::spanning::Parked>,
    /// The current transaction has reached more than one shard.
    pub(super) spans_shards: bool,
    /// The next backend taken must join the client's open transaction.
    pub(super) join_transaction: bool,
    /// `SET LOCAL` / `SET TRANSACTION` statements of the open transaction, replayed on every
    /// shard it reaches later.
    pub(super) transaction_settings: Vec<String>,
    /// A session-level SET ran in the open transaction (staged until COMMIT on one backend),
    /// so the transaction cannot reach another shard.
    pub(super) session_set_in_transaction: bool,
    /// Shards whose part of the transaction committed before the client's COMMIT ran on the
    /// backend in use (named if that COMMIT fails).
    pub(super) committed_elsewhere: Vec<String>,
    /// The current transaction ended with ROLLBACK (so staged settings are dropped).
    pub(super) rolled_back: bool,
}
