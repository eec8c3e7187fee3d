//! Single-shard reads on replicas.
//!
//! A statement that only reads, outside any transaction, may run on one of its shard's
//! replicas instead of the primary, when it is self-contained: a simple Query, or a Bind that
//! the client already followed with Execute and Sync (so nothing else of the batch can land on
//! the replica). The session then holds the replica until that statement's ReadyForQuery, as
//! transaction pooling always does. Reads of a shard the session wrote to wait for a replica
//! that has replayed the write (see `topology::Freshness`); without one they use the primary.

use tokio::io::{AsyncRead, AsyncWrite};

use super::replies::{Expect, Replies, Undo};
use super::{Ending, Session};
use crate::config::{PoolMode, ShardId};
use crate::counters::Event;
use crate::error::{ErrorReport, Unsupported};
use crate::topology::Role;
use crate::wire::{TxStatus, peek_header, tag};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Whether a statement that `writes` (or not) and has no session effects may read from a
    /// replica now.
    pub(super) fn may_use_replica(&self, writes: bool, has_effects: bool) -> bool {
        !writes
            && !has_effects
            && self.env.mode == PoolMode::Transaction
            && self.backend.is_none()
            && self.replies.is_empty()
            && !self.txn.phase.is_deferred()
            && self.client_status == TxStatus::Idle
            && self.pin.is_none()
            && !self.settings.serializable_by_default()
    }

    /// Whether a statement parsed now could read from a replica of `shard` when bound, so its
    /// Parse waits for the Bind to know where it runs.
    pub(super) fn may_read_from_replica_later(
        &self,
        shard: ShardId,
        sql: &str,
        effects: &[crate::session::statements::SessionEffect],
    ) -> bool {
        let database = &self.env.database;
        database.reads_from_replicas(shard)
            && self.may_use_replica(database.router.may_write(sql, false), !effects.is_empty())
    }

    /// Whether the client's buffered input after the Bind just read is `[Describe] Execute
    /// Sync`: the portal runs to completion with nothing else of its batch after it.
    pub(super) fn bind_is_self_contained(&self) -> bool {
        let mut rest = &self.bufs.client_in[..];
        let mut expected = [tag::DESCRIBE, tag::EXECUTE, tag::SYNC].as_slice();
        while let Ok(Some(header)) = peek_header(rest) {
            if rest.len() < header.total_len {
                return false;
            }
            match expected.iter().position(|&t| t == header.tag) {
                Some(index) if header.tag == tag::SYNC => return index == expected.len() - 1,
                Some(index) if index == 0 || header.tag == tag::EXECUTE => {
                    expected = &expected[index + 1..];
                }
                _ => return false,
            }
            rest = &rest[header.total_len..];
        }
        false
    }

    /// Takes a replica of `shard` fresh enough for this session, or the primary when none
    /// is.
    pub(super) async fn ensure_read_backend(&mut self, shard: ShardId) -> Result<(), ErrorReport> {
        let database = self.env.database.clone();
        let ticket = database.read_freshness(shard, self.freshness(shard)).await;
        for (pool, role) in database.read_pools(shard, ticket.freshness) {
            if role == Role::Primary {
                break;
            }
            let checkout = async { Ok(pool.checkout().await) };
            match self.watched(Box::pin(checkout)).await? {
                Ok(mut conn) => {
                    database.counters.count(Event::ReplicaRead);
                    ticket.served_by(pool);
                    let sync = self.settings.sync_sql(&mut conn);
                    self.use_backend(shard, conn, TxStatus::Idle);
                    self.held_role = Role::Replica;
                    if let Some(sql) = sync {
                        self.run_hidden(&sql).await?;
                    }
                    return Ok(());
                }
                Err(e) => tracing::warn!(error = %e, "replica unavailable; trying the next server"),
            }
        }
        database.counters.count(Event::PrimaryRead);
        ticket.served_by(database.primary(shard));
        self.ensure_backend(Some(shard)).await.map(|_| ())
    }

    /// Remembers a simple Query just sent to a replica, so it can run elsewhere if that
    /// replica stops answering before it answers anything.
    pub(super) fn note_replica_query(&mut self, shard: ShardId, frame: &[u8]) {
        if self.held_role == Role::Replica {
            self.replica_query = Some((shard, bytes::Bytes::copy_from_slice(frame)));
        }
    }

    /// Sends `query`, which the replica held (now abandoned) never answered, to another
    /// replica of `shard` or its primary. The client sees nothing of the first attempt.
    pub(super) async fn rerun_replica_query(
        &mut self,
        shard: ShardId,
        query: bytes::Bytes,
    ) -> Result<(), Ending> {
        tracing::warn!("a replica stopped answering a read; running it again elsewhere");
        // Nothing else was in flight on it: whatever is still queued is (part of) this query.
        self.bufs.to_backend.clear();
        self.replies = Replies::default();
        self.release();
        let fatal = |report: ErrorReport| Ending::Fatal(report.into_fatal());
        self.ensure_read_backend(shard).await.map_err(fatal)?;
        self.bufs.to_backend.extend_from_slice(&query);
        self.push(Expect::Query {
            visible: true,
            effects: Vec::new(),
            failed: false,
            undo: Undo::default(),
        });
        self.note_replica_query(shard, &query);
        Ok(())
    }

    /// A statement that needs a primary, arriving while the session holds a replica for an
    /// earlier read: waits for that read to finish and gives the replica back.
    pub(super) async fn leave_replica(&mut self) -> Result<(), ErrorReport> {
        if self.held_role != Role::Replica || self.backend.is_none() {
            return Ok(());
        }
        if !self.replies.synced() {
            return Err(self.unsupported(Unsupported::ReplicaReadSharesBatch));
        }
        self.wait_for_replies().await?;
        self.release();
        Ok(())
    }
}
