//! Cross-shard reads the merge cannot compute, answered by the federation database
//! (`control::federation`). The client's statement runs there unchanged as the one leg of a
//! pass-through fan-out, so parameters, result formats, portals, COPY TO and the client's
//! settings behave as for any cross-shard read, and the rows stream through as they come.
//!
//! The federation reads the shards in transactions of its own, so it cannot see what the
//! client's open transaction did: inside a transaction block such reads run only while the
//! answer is the same (READ COMMITTED, nothing written or set locally yet) and are refused by
//! name otherwise, as are reads that lock rows. A read calling a function not known to be
//! free of side effects runs there too (the application's own functions do not exist there),
//! on a connection closed afterwards. Outside transactions a read runs in the federation's
//! copy on the replicas when the replica rules allow it for every shard (`topology`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::settings::above_read_committed;
use super::backends::ReadBackend;
use super::{Attempt, Ran, ScatterRead};
use crate::config::ShardId;
use crate::counters::Event;
use crate::error::{ErrorReport, Unsupported, sqlstate};
use crate::execute::fanout::{Finished, Show};
use crate::merge::ScatterPlan;
use crate::metrics;
use crate::router::{Construct, RouteError};
use crate::topology::Role;
use crate::wire::TxStatus;

/// Logged when the copy on the replicas cannot be reached and a read uses the primaries'.
const UNREACHABLE_REPLICA_COPY: &str =
    "the federation's copy on the replicas cannot be reached; reading the primaries";

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Checks that `read`, which the merge cannot compute (`error` says why), may run in the
    /// federation; else the refusal the client gets.
    pub(in crate::session) fn check_federable(
        &self,
        read: &ScatterRead,
        error: RouteError,
    ) -> Result<(), ErrorReport> {
        let locks = (self.env.database.router.plan(&read.sql).parts.iter()).any(|p| p.locks_rows);
        if !federable(&error) || locks {
            return Err(self.route_failed(error));
        }
        if !self.federation_sees_transaction() || !self.replies.synced() {
            let reason = error.to_string();
            return Err(self.unsupported(Unsupported::FederatedInTransaction { reason }));
        }
        Ok(())
    }

    /// Whether a read in the federation answers as it would inside the client's open
    /// transaction (always outside one). At READ COMMITTED each statement sees what was
    /// committed when it began, and so does a read in the federation, as long as the
    /// transaction has written nothing (the federation cannot see its uncommitted rows) and
    /// changed no setting (the federation runs with the session's). At REPEATABLE READ or
    /// SERIALIZABLE the transaction reads one snapshot, which the federation cannot share.
    pub(super) fn federation_sees_transaction(&self) -> bool {
        if !self.transaction_open() {
            return true;
        }
        let Some(begin) = self.txn.phase.known_begin() else {
            return false; // The BEGIN went to a backend as it was: its isolation is unknown.
        };
        let writing = self.written.iter().any(|(_, done)| done.is_none());
        !self.txn.implicit
            && self.client_status == TxStatus::InTransaction
            && !above_read_committed(begin)
            && !self.settings.isolated_by_default()
            && self.txn.settings.is_empty()
            && !self.txn.session_set
            && !writing
    }

    /// Whether `read` may run in the federation's copy that reads replicas: outside any
    /// transaction, calling nothing that may write, as a single-shard read may use a replica.
    fn federation_may_read_replicas(&self, read: &ScatterRead) -> bool {
        !read.writes
            && !self.transaction_open()
            && !self.settings.serializable_by_default()
            && self.env.database.federation.replicas().is_some()
    }

    /// The backend `read` runs on, and its name as a leg: in the copy that reads replicas
    /// where the replica rules allow (see `topology`) and it can be reached, else in the
    /// primaries' copy.
    async fn federation_backend(
        &mut self,
        read: &ScatterRead,
        replicas_allowed: bool,
    ) -> Result<(ReadBackend, String), ErrorReport> {
        let database = self.env.database.clone();
        let federation = &database.federation;
        let mut counted = None;
        if replicas_allowed && self.federation_may_read_replicas(read) {
            let own: Vec<_> = (0..database.router.map().shards.len() as u32)
                .map(|shard| self.freshness(ShardId(shard)))
                .collect();
            let chosen = async { Ok(database.federated_read(&own).await) };
            let chosen = self.watched(Box::pin(chosen)).await?;
            if let Some(copy) = chosen.on_replicas {
                let checkout = async { Ok(copy.pool().checkout().await) };
                match self.watched(Box::pin(checkout)).await? {
                    Ok(conn) => {
                        database.count_federated_read(chosen, true);
                        self.meter.ran(metrics::Ran::Shards(Role::Replica));
                        let pool = copy.pool().clone();
                        let backend = ReadBackend::pooled(conn, pool, Role::Replica);
                        return Ok((backend, copy.leg_name()));
                    }
                    Err(e) => {
                        if dropped_as_stale(&e) {
                            federation.lost();
                        }
                        tracing::warn!(error = %e, "{UNREACHABLE_REPLICA_COPY}");
                    }
                }
            }
            counted = Some(chosen);
        }
        let copy = federation.primaries();
        let checkout = async {
            match copy.pool().checkout().await {
                Err(e) if dropped_as_stale(&e) => {
                    federation.lost();
                    federation.ready().await?;
                    copy.pool().checkout().await
                }
                checkout => checkout,
            }
            .map_err(|e| federation.unavailable(&e.report().message))
        };
        let conn = self.watched(Box::pin(checkout)).await?;
        if let Some(chosen) = counted {
            database.count_federated_read(chosen, false);
        }
        self.meter.ran(metrics::Ran::Shards(Role::Primary));
        let backend = ReadBackend::pooled(conn, copy.pool().clone(), Role::Primary);
        Ok((backend, copy.leg_name()))
    }

    /// Runs `read` on `backends` (one, in a copy of the federation: `leg`).
    async fn run_federated(
        &mut self,
        read: &ScatterRead,
        leg: String,
        backends: &mut [ReadBackend; 1],
        show: Show<'_>,
        execute: bool,
    ) -> Result<Finished, Ran> {
        let plan = ScatterPlan::pass_through(&read.sql);
        let ran = loop {
            let names = vec![leg.clone()];
            match (self.run_legs(&plan, read, names, backends, show, execute)).await {
                Err(Ran::UnknownOids(_, leg, unknown)) if self.description_lookups_left > 0 => {
                    self.description_lookups_left = 0;
                    self.env.database.catalog_oids.resolve(&leg, &unknown).await;
                }
                ran => break ran,
            }
        };
        if read.writes {
            // It called a function the router does not know to be free of side effects
            // (one that takes a session-level advisory lock, say): nothing it left behind
            // may reach another read.
            backends[0].conn.mark_broken();
        }
        ran
    }

    /// Runs `read` in the federation database (built first if it may be out of date).
    pub(super) async fn federated(
        &mut self,
        read: &ScatterRead,
        error: RouteError,
        show: Show<'_>,
        execute: bool,
    ) -> Result<Finished, Attempt> {
        self.check_federable(read, error)?;
        let database = self.env.database.clone();
        let federation = database.federation.clone();
        self.watched(Box::pin(federation.ready())).await?;
        federation.keep_alive();
        database.counters.count(Event::Federated);
        if self.env.mode == crate::config::PoolMode::Transaction && !self.transaction_open() {
            self.release();
        }
        let mut replicas_allowed = true;
        // Its views and types are new after each build: a description naming oids not known
        // yet waits for them once, as a shard's does (see `catalog_oids`).
        self.description_lookups_left = 1;
        let ran = loop {
            let (backend, leg) = self.federation_backend(read, replicas_allowed).await?;
            let on_replicas = backend.is_replica();
            let mut backends = [backend];
            let ran = self
                .run_federated(read, leg, &mut backends, show, execute)
                .await;
            match ran {
                // Nothing reached the client: a replica that stopped answering, a recovery
                // conflict, or a copy built by another proxy naming a column a replica has
                // not replayed yet. The primaries' copy answers instead.
                Err(Ran::Failed(failed)) if on_replicas && failed.report.is_retry_safe() => {
                    let error = &failed.report.message;
                    tracing::warn!(%error, "a federated read on the replicas failed before any result; reading the primaries");
                    backends[0].conn.mark_broken();
                    replicas_allowed = false;
                }
                ran => break ran,
            }
        };
        ran.map_err(|ran| match ran {
            Ran::Refused(report) => Attempt::Refused(report),
            Ran::Failed(failed) | Ran::UnknownOids(failed, ..) => Attempt::Failed {
                report: failed.report,
                retry: false,
            },
        })
    }
}

/// Whether a checkout failed because the copy's database is gone (another proxy dropped it as
/// stale while this one held no connection to it: see `control::federation`).
fn dropped_as_stale(error: &crate::pool::PoolError) -> bool {
    error.refused_with() == Some(sqlstate::INVALID_CATALOG_NAME.as_str())
}

/// Whether the merge's refusal names something PostgreSQL computes in the federation: any
/// construct of a read, but not row locks, writes, EXPLAIN or other statements.
fn federable(error: &RouteError) -> bool {
    match error {
        RouteError::CrossShard { construct, .. } => !matches!(
            construct,
            Construct::RowLocks
                | Construct::WritingSubquery
                | Construct::Explain
                | Construct::OtherStatement
        ),
        RouteError::Unsupported(Unsupported::ScatterNotComputable { .. }) => true,
        _ => false,
    }
}
