//! The extended-protocol batch in flight (the messages up to the client's Sync): what the
//! proxy refused in it, the portals it answered itself, and what the backend was told.
//!
//! Part of the session stage: data only, owned by the session and changed by its handlers
//! (`extended`, `scatter::portal`, `local`, `server`). Reset points follow the protocol's
//! Sync and ReadyForQuery (PostgreSQL protocol docs, "Extended Query").

use std::collections::HashMap;

/// The extended-protocol state of one session.
#[derive(Default)]
pub(super) struct Batch {
    /// The proxy refused an extended-query message; drop messages until Sync, as a server would.
    pub(super) skip_until_sync: bool,
    /// An earlier message of this batch failed on a backend the proxy has since synced on
    /// its own (to move the batch to another shard): the message being handled and the rest
    /// up to the client's Sync are dropped, as the server would have dropped them.
    pub(super) failed_earlier: bool,
    /// An extended-protocol message was refused inside a transaction: fail the backend's
    /// transaction after the client's Sync, as PostgreSQL would have.
    pub(super) abort_at_sync: bool,
    /// An extended-protocol portal reading several shards, waiting for its Execute.
    pub(super) scatter_portal: Option<Box<super::scatter::ScatterPortal>>,
    /// Such portals let go: suspended after an Execute's row limit (with their held rows),
    /// or answered before their Execute.
    pub(super) left_portals: Vec<super::scatter::LeftPortal>,
    /// A portal bound from a BEGIN the proxy defers, and that BEGIN's text (see `local`).
    pub(super) begin_portal: Option<(String, String)>,
    /// Backend names of the statements bound since the last ReadyForQuery (one, almost
    /// always), retired if the server says their result type changed.
    pub(super) bound_since_ready: Vec<std::sync::Arc<str>>,
    /// Extended-protocol messages arrived since the client's last Sync (or Query): what they
    /// run is not over, even when every reply went out (a Flush).
    pub(super) unsynced: bool,
    /// The client's unnamed statement exists on the current backend.
    pub(super) unnamed_on_backend: bool,
    /// Portals bound from statements with session effects (`SET` via the extended protocol).
    pub(super) portal_effects: HashMap<String, Vec<super::statements::SessionEffect>>,
}
