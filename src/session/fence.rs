//! The session's side of the `RESHARD` fence ([`crate::topology::fence`]): it registers
//! before each statement looks at the fence and lets go when its transaction is over; a
//! statement the fence blocks waits for the move to go on when it runs on its own, and is
//! refused with 40001 (retry the transaction) inside a transaction, whose map cannot change.
//! A transaction under way when this proxy's lease in the fleet lapsed cannot commit at all:
//! while the lease was out, another proxy may have moved rows it wrote (the move's
//! coordinator stops waiting for a proxy whose lease ran out).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::Session;
use super::local::{Control, transaction_control};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::topology::fence::{Fence, FenceState};
use crate::wire::TxStatus;

/// How long a statement waits at the fence before it fails with 55P03: a move copies its
/// rows in this time, or the statement's client hears why it waits.
const FENCE_WAIT: Duration = Duration::from_secs(120);

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Registers with the fence before a statement is checked against it; whether the
    /// session was registered already (an earlier statement of its transaction, or one still
    /// in flight).
    pub(super) fn enter_fence(&mut self) -> bool {
        self.leave_fence_if_quiet();
        if self.fence.is_entered() {
            return true;
        }
        let fence = &self.env.database.fence;
        self.entered_lapses = fence.lapses();
        fence.enter(&self.fence);
        false
    }

    /// Refuses every statement but ROLLBACK of a transaction that was under way when this
    /// proxy's lease lapsed (see the module doc).
    pub(super) fn check_lapse_crossed(&self, sql: &str) -> Result<(), ErrorReport> {
        let crossed = self.env.database.fence.lapses() != self.entered_lapses
            && self.fence.is_entered()
            && self.client_status == TxStatus::InTransaction;
        if !crossed || transaction_control(sql) == [Control::End(false)] {
            return Ok(());
        }
        Err(ErrorReport::error(
            sqlstate::SERIALIZATION_FAILURE,
            Blame::Proxy,
            "shardgate: this proxy lost its lease in the fleet while this transaction ran, \
             so another proxy may have moved rows it wrote; it cannot commit",
        )
        .with_hint("Roll back and retry the transaction."))
    }

    /// Lets go of the fence when everything the session ran has ended: no transaction is
    /// open (pins do not matter: they outlive transactions), every reply went out, the
    /// client's last message was a Sync or Query, and no portal is held for its Execute.
    pub(super) fn leave_fence_if_quiet(&mut self) {
        let quiet = || {
            self.replies.is_empty()
                && !self.batch.unsynced
                && self.batch.scatter_portal.is_none()
                && !self.transaction_open()
                && self.backend_status == TxStatus::Idle
        };
        if self.fence.is_entered() && quiet() {
            self.fence.leave();
        }
    }

    /// A statement the fence blocked: waits for the move to go on and takes up the new map
    /// (then the caller routes it again), or refuses it when the session cannot change maps
    /// now (`registered`: it was registered before this statement).
    pub(super) async fn wait_at_fence(
        &mut self,
        registered: bool,
        judged: Option<watch::Receiver<FenceState>>,
    ) -> Result<(), ErrorReport> {
        if registered || self.in_transaction() || self.backend.is_some() {
            if !registered {
                self.fence.leave();
            }
            return Err(moved_in_transaction());
        }
        self.fence.leave();
        let epoch = self.env.database.epoch;
        self.refresh_topology();
        // A map published while the statement was routed, or a state the verdict did not see
        // (it subscribes only while a move runs): route it again at once.
        let Some(mut state) = judged.filter(|_| self.env.database.epoch == epoch) else {
            return Ok(());
        };
        let fence = self.env.database.fence.clone();
        let went_on = async move {
            let changed = tokio::time::timeout(FENCE_WAIT, state.changed()).await;
            match changed {
                Ok(_) => Ok(()),
                Err(_) => Err(waited_too_long(&fence)),
            }
        };
        self.watched(Box::pin(went_on)).await?;
        self.refresh_topology();
        Ok(())
    }
}

fn moved_in_transaction() -> ErrorReport {
    ErrorReport::error(
        sqlstate::SERIALIZATION_FAILURE,
        Blame::Client,
        "shardgate: RESHARD is moving the rows this statement touches to another shard, \
         and a transaction cannot follow them there",
    )
    .with_hint("Roll back and retry the transaction: it runs on the new shard map.")
}

fn waited_too_long(fence: &Fence) -> ErrorReport {
    if fence.is_lapsed() {
        return ErrorReport::error(
            sqlstate::LOCK_NOT_AVAILABLE,
            Blame::Proxy,
            format!(
                "shardgate: waited {} s for this proxy to renew its lease in the fleet: while it \
                 cannot reach the fleet's control table (on the default shard's primary), \
                 another proxy may be moving rows, so statements on sharded tables wait",
                FENCE_WAIT.as_secs()
            ),
        )
        .with_hint("Check the default shard's primary; SHOW FLEET in the admin console.");
    }
    let phase = match &fence.state() {
        FenceState::Writes(_) => "copying rows",
        FenceState::Switching(_) => "switching to the new map",
        _ => "moving rows",
    };
    ErrorReport::error(
        sqlstate::LOCK_NOT_AVAILABLE,
        Blame::Proxy,
        format!(
            "shardgate: waited {} s for RESHARD ({phase}) to release the rows this statement \
             touches",
            FENCE_WAIT.as_secs()
        ),
    )
    .with_hint("SHOW RESHARD in the admin console shows the move.")
}
