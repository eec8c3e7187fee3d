//! The backends a cross-shard read runs on, and the request each leg sends.
//!
//! Outside a transaction every shard gives a read backend (a healthy replica where the map
//! allows, the primary for shards this session wrote to or when no replica can be had), taken
//! in shard order so concurrent fan-outs cannot each hold a backend another waits for. Inside
//! one, the read runs on the transaction's own backends (primaries): the one in use, parked
//! ones, and new ones that join it, all kept in the transaction afterwards.

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::transaction::Phase;
use super::ScatterRead;
use crate::config::ShardId;
use crate::counters::Event;
use crate::error::ErrorReport;
use crate::execute::fanout::{Leg, leg_batch};
use crate::merge::ScatterPlan;
use crate::pool::{Checkout, EndpointPool};
use crate::topology::{Database, Freshness, Role};
use crate::wire::TxStatus;

/// A backend a read runs on, with where it came from.
pub(in crate::session) struct ReadBackend {
    pub conn: Checkout,
    origin: Origin,
}

enum Origin {
    /// Checked out for this read alone.
    Pool { pool: EndpointPool, role: Role },
    /// A backend of the client's transaction: `begin` when it joins it with this read, else
    /// the status it had.
    Transaction {
        begin: Option<String>,
        prior: TxStatus,
    },
}

impl ReadBackend {
    /// A backend of `pool` checked out for one read.
    pub fn pooled(conn: Checkout, pool: EndpointPool, role: Role) -> Self {
        let origin = Origin::Pool { pool, role };
        Self { conn, origin }
    }

    /// The hidden queries the leg runs first: the client's settings, then (a query of its
    /// own, so the settings stay out of the transaction block and take no snapshot in it)
    /// the BEGIN of a backend joining the transaction with what follows it there (`joining`:
    /// the transaction's tag, settings and open savepoints, see `spanning`).
    pub fn prelude(&self, settings: Option<String>, joining: &[String]) -> Vec<String> {
        let mut queries: Vec<String> = settings.into_iter().collect();
        if let Origin::Transaction {
            begin: Some(begin), ..
        } = &self.origin
        {
            let parts = std::iter::once(begin).chain(joining);
            queries.push(parts.cloned().collect::<Vec<_>>().join("; "));
        }
        queries
    }

    /// Whether it is a replica checked out for this read.
    pub fn is_replica(&self) -> bool {
        matches!(
            self.origin,
            Origin::Pool {
                role: Role::Replica,
                ..
            }
        )
    }

    /// Its connection failed: keep its server out of reads for a while.
    pub fn note_lost(&self) {
        if let Origin::Pool { pool, .. } = &self.origin {
            pool.note_lost();
        }
    }
}

/// One read backend per shard, outside transactions.
pub(in crate::session) async fn checkout_reads(
    database: &Database,
    shards: &[(ShardId, Freshness)],
) -> Result<Vec<ReadBackend>, ErrorReport> {
    let mut checkouts = Vec::with_capacity(shards.len());
    let fresh = shards
        .iter()
        .map(|&(s, own)| database.read_freshness(s, own));
    let fresh = futures::future::join_all(fresh).await;
    for (&(shard, _), ticket) in shards.iter().zip(fresh) {
        for (pool, role) in database.read_pools(shard, ticket.freshness) {
            match pool.checkout().await {
                Ok(conn) => {
                    ticket.served_by(pool);
                    database.counters.count(match role {
                        Role::Replica => Event::ReplicaRead,
                        Role::Primary => Event::PrimaryRead,
                    });
                    let origin = Origin::Pool {
                        pool: pool.clone(),
                        role,
                    };
                    checkouts.push(ReadBackend { conn, origin });
                    break;
                }
                Err(e) if role == Role::Replica => {
                    tracing::warn!(error = %e, "replica unavailable; trying the next server");
                }
                Err(e) => return Err(e.report()),
            }
        }
    }
    Ok(checkouts)
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// The transaction's backend on each of `shards`, joining it where it has none yet (a
    /// deferred BEGIN starts here).
    pub(in crate::session) async fn transaction_backends(
        &mut self,
        shards: &[ShardId],
    ) -> Result<Vec<ReadBackend>, ErrorReport> {
        if self.client_status == TxStatus::Failed || self.backend_status == TxStatus::Failed {
            return Err(super::super::spanning::aborted());
        }
        let elsewhere = self.held_shard.is_some_and(|held| !shards.contains(&held))
            || (self.txn.phase.parked().iter()).any(|p| !shards.contains(&p.shard));
        if (shards.len() > 1 || elsewhere) && !self.txn.phase.spans_shards() {
            if self.backend.is_some() {
                self.tag_backend_in_use().await?;
            }
            self.txn.step(Phase::span);
        }
        self.txn.step(Phase::start_on_read);
        let begin = self.txn.phase.begin().to_owned();
        let mut backends = Vec::with_capacity(shards.len());
        for &shard in shards {
            let prior = self.status_on(shard);
            let (conn, begin) = match self.take_transaction_backend(shard) {
                Some(conn) => (conn, None),
                None => match self.env.database.primary(shard).checkout().await {
                    Ok(conn) => (conn, Some(begin.clone())),
                    Err(e) => {
                        self.keep_unrun(shards, backends);
                        return Err(e.report());
                    }
                },
            };
            let origin = Origin::Transaction { begin, prior };
            backends.push(ReadBackend { conn, origin });
        }
        Ok(backends)
    }

    /// Puts back the backends of a transaction read that never ran: joined ones go back to
    /// their pool untouched, the transaction's own keep their status, and a transaction left
    /// with no backend is deferred again.
    pub(in crate::session) fn keep_unrun(
        &mut self,
        shards: &[ShardId],
        backends: Vec<ReadBackend>,
    ) {
        for (mut backend, &shard) in backends.into_iter().zip(shards) {
            match backend.origin {
                Origin::Transaction { begin: None, prior } => match self.backend {
                    None => self.use_backend(shard, backend.conn, prior),
                    Some(_) => self.park(shard, backend.conn, prior),
                },
                // It may have run its BEGIN already (counting the columns of a `*`): never
                // hand it to another client.
                Origin::Transaction { begin: Some(_), .. } => backend.conn.mark_broken(),
                Origin::Pool { .. } => {}
            }
        }
        if self.backend.is_none() && self.txn.phase.parked().is_empty() {
            self.txn.step(Phase::deferred_again);
        }
    }

    /// Puts a transaction read's backends back: the one in use stays in use (or the first
    /// becomes it), the others are parked in the transaction. A failed leg becomes the one in
    /// use, so the transaction is seen as failed.
    pub(in crate::session) fn keep_transaction_backends(
        &mut self,
        shards: &[ShardId],
        backends: Vec<ReadBackend>,
        statuses: &[TxStatus],
    ) {
        let failed = statuses.iter().position(|s| *s == TxStatus::Failed);
        let active = failed
            .or_else(|| shards.iter().position(|s| Some(*s) == self.held_shard))
            .unwrap_or(0);
        if let Some(mut conn) = self.backend.take() {
            match self.held_shard.take() {
                Some(shard) => self.park(shard, conn, self.backend_status),
                None => {
                    tracing::error!("a backend in use had no shard (a bug); closing it");
                    conn.mark_broken();
                }
            }
        }
        for (index, (backend, &shard)) in backends.into_iter().zip(shards).enumerate() {
            let status = statuses.get(index).copied().unwrap_or(TxStatus::Failed);
            if index == active {
                self.use_backend(shard, backend.conn, status);
            } else {
                self.park(shard, backend.conn, status);
            }
        }
    }
}

/// What every leg of one fan-out sends after its prelude.
pub(in crate::session) struct LegBatch<'a> {
    pub plan: &'a ScatterPlan,
    pub read: &'a ScatterRead,
    pub formats: &'a [i16],
    pub execute: bool,
    pub in_transaction: bool,
}

impl LegBatch<'_> {
    /// One leg's request: the prelude (hidden) and the extended-protocol batch.
    pub fn leg<'c>(
        &self,
        shard: &'c str,
        conn: &'c mut Checkout,
        prelude: Vec<String>,
    ) -> Result<Leg<'c>, ErrorReport> {
        let mut request = bytes::BytesMut::new();
        let hidden_queries = prelude.len();
        for sql in prelude {
            postgres_protocol::message::frontend::query(&sql, &mut request)
                .map_err(|e| super::super::internal(e.to_string()))?;
        }
        let (sql, types) = (&self.plan.shard_sql, &self.read.param_types);
        let (params, formats) = (&self.read.params, self.formats);
        leg_batch(&mut request, sql, types, params, formats, self.execute)?;
        Ok(Leg {
            shard,
            liveness: conn.liveness().clone(),
            conn,
            request,
            hidden_queries,
            in_transaction: self.in_transaction,
        })
    }
}
