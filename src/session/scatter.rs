//! Reads that need several shards: the session's side of a fan-out.
//!
//! The router plans the statement (`Router::scatter`: the SQL each shard runs and how the
//! results merge); this file takes one backend per shard (`backends`: outside transactions a
//! replica fresh enough for this session's own writes, or the primary; inside one, the
//! transaction's own backends), brings each to the client's settings, and lets
//! `execute::fanout` stream the merged result. Simple queries run at once; an extended-protocol
//! portal that reads several shards is held until the client executes it (see `portal`).

use tokio::io::{AsyncRead, AsyncWrite};

pub(super) mod backends;
mod cursors;
mod federated;
mod portal;
mod suspended;

use backends::{LegBatch, ReadBackend, checkout_reads};
pub(super) use portal::{Held, MoveWrite, ScatterPortal, SpreadWrite};
pub(super) use suspended::LeftPortal;

use super::Session;
use super::client::Refusal;
use crate::config::ShardId;
use crate::control::catalog_oids::Unknown;
use crate::counters::Event;
use crate::error::{ErrorReport, Unsupported, sqlstate};
use crate::execute::fanout::{self, Finished, NO_PARAMS, Show, column_count};
use crate::merge::{
    MergeError, MergeLimits, Merger, ParamValue, ScatterPlan, shard_result_formats,
};
use crate::metrics;
use crate::pool::Checkout;
use crate::router::CopyOut;
use crate::router::Params;
use crate::topology::{Database, Freshness, Role};
use crate::wire::copy_rows::CopyFormat;
use crate::wire::{HEADER_LEN, encode, tag};

/// A read of several shards, as the client sent it.
#[derive(Debug, Clone)]
pub(super) struct ScatterRead {
    /// The client's statement.
    pub sql: String,
    /// Parameter types from the client's Parse.
    pub param_types: Vec<u32>,
    /// The parameter section of the client's Bind, as sent ([`NO_PARAMS`] for a Query).
    pub params: Vec<u8>,
    /// Result formats the client asked for (none: all text).
    pub result_formats: Vec<i16>,
    /// The shards holding its rows.
    pub shards: Vec<ShardId>,
    /// It may write (calls a function with side effects): it runs on primaries.
    pub writes: bool,
    /// The client's `COPY … TO STDOUT` of this query: the merged rows go out as COPY data.
    pub copy_out: Option<CopyOut>,
    /// An Execute's row limit: at most this many rows go out, and the rest are held for the
    /// portal's next Execute, within this many bytes.
    pub max_rows: Option<(u64, usize)>,
}

impl ScatterRead {
    /// The read a `COPY … TO STDOUT` (`sql`) stands for, if it is one: its query, all
    /// columns in text (binary for `FORMAT binary`).
    pub(super) fn copied_out(mut self, router: &crate::router::Router) -> Self {
        if let Some(copy) = router.copy_out(&self.sql) {
            self.sql = copy.query.clone();
            let binary = matches!(copy.format, CopyFormat::Binary);
            self.result_formats = if binary { vec![1] } else { Vec::new() };
            self.copy_out = Some(copy);
        }
        self
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A simple Query reading several shards: the merged result, CommandComplete and
    /// ReadyForQuery.
    pub(super) async fn query_shards(
        &mut self,
        sql: &str,
        shards: Vec<ShardId>,
        writes: bool,
    ) -> Result<(), Refusal> {
        self.read_shards(sql, shards, writes).await?;
        self.note_ready(self.client_status);
        encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
        Ok(())
    }

    /// One statement of a simple Query reading several shards: the merged result and its
    /// CommandComplete.
    pub(super) async fn read_shards(
        &mut self,
        sql: &str,
        shards: Vec<ShardId>,
        writes: bool,
    ) -> Result<(), ErrorReport> {
        let read = ScatterRead {
            sql: sql.to_owned(),
            param_types: Vec::new(),
            params: NO_PARAMS.to_vec(),
            result_formats: Vec::new(),
            shards,
            writes,
            copy_out: None,
            max_rows: None,
        }
        .copied_out(&self.env.database.router);
        if let Some(cursor) = self.env.database.router.declared_cursor(sql) {
            return self.declare_across(cursor, read).await;
        }
        let show = Show {
            preamble: &[],
            description: true,
        };
        let finished = self.scatter(&read, show, true).await?;
        self.complete_scatter(&finished);
        Ok(())
    }

    pub(super) fn complete_scatter(&mut self, finished: &Finished) {
        let command = match &finished.copied_out {
            Some(end) => {
                self.bufs.to_client.extend_from_slice(end);
                format!("COPY {}", finished.rows)
            }
            None => format!("SELECT {}", finished.rows),
        };
        encode::command_complete(&mut self.bufs.to_client, &command);
    }

    /// Cross-shard reads need a connection not pinned to one backend.
    pub(super) fn check_scatter_allowed(&self) -> Result<(), ErrorReport> {
        if self.pin.is_some() {
            return Err(self.unsupported(Unsupported::ScatterWhilePinned));
        }
        Ok(())
    }

    /// Runs `read` on its shards (only the first when `execute` is false: a description) and
    /// streams the merged result to the client. A replica that fails before the client saw
    /// anything is taken out of use and the read runs again, so a dying replica costs the
    /// client no error.
    pub(super) async fn scatter(
        &mut self,
        read: &ScatterRead,
        show: Show<'_>,
        execute: bool,
    ) -> Result<Finished, ErrorReport> {
        let mut retried = false;
        let database = &self.env.database;
        let on_replicas = !read.writes
            && !self.in_transaction()
            && self.replies.synced()
            && read.shards.iter().all(|s| database.reads_from_replicas(*s));
        let role = if on_replicas {
            Role::Replica
        } else {
            Role::Primary
        };
        self.meter.ran(metrics::Ran::Shards(role));
        // Each shard's description may name oids to look up once (see `run_legs`).
        self.description_lookups_left = read.shards.len();
        loop {
            match self.scatter_once(read, show, execute).await {
                Ok(finished) => return Ok(finished),
                Err(Attempt::Refused(report)) => return Err(report),
                Err(Attempt::UnknownOids(shard, unknown)) => {
                    self.description_lookups_left = self.description_lookups_left.saturating_sub(1);
                    self.env
                        .database
                        .catalog_oids
                        .resolve(&shard, &unknown)
                        .await;
                }
                Err(Attempt::MergeRefused(report)) => {
                    let reason = report.message.trim_start_matches("shardgate: ").to_owned();
                    let error = Unsupported::ScatterNotComputable { reason }.into();
                    let federated = self.federated(read, error, show, execute).await;
                    return federated.map_err(Attempt::into_report);
                }
                Err(Attempt::Failed { report, retry }) if retry && !retried => {
                    self.env.database.counters.count(Event::ScatterRetry);
                    let message = &report.message;
                    tracing::warn!(error = %message, "a cross-shard read failed before any result; running it again");
                    retried = true;
                }
                Err(Attempt::Failed { report, .. }) => return Err(report),
            }
        }
    }

    async fn scatter_once(
        &mut self,
        read: &ScatterRead,
        show: Show<'_>,
        execute: bool,
    ) -> Result<Finished, Attempt> {
        self.check_scatter_allowed()?;
        if read.shards.is_empty() {
            return Err(super::internal("a cross-shard read without shards".into()).into());
        }
        let plan = match self.env.database.router.scatter(&read.sql) {
            Ok(plan) => plan,
            Err(error) => return self.federated(read, error, show, execute).await,
        };
        if self.replies.synced() {
            self.wait_for_replies().await?;
        } else {
            // Messages of its batch went before it: the batch is one transaction, which the
            // read joins on every shard (see `implicit`).
            self.reach_transaction_block().await?;
        }
        let shards = if execute {
            &read.shards[..]
        } else {
            &read.shards[..1]
        };
        let transactional = self.transaction_open();
        (self.env.database.counters).count(Event::Scatter(shards.len()));
        let mut backends = if transactional {
            if read.writes {
                // A function that may write: the transaction has written (see `federated`).
                shards.iter().for_each(|&shard| self.note_written(shard));
            }
            self.transaction_backends(shards).await?
        } else {
            // Session pooling keeps its backend (and whatever state it carries) for itself.
            if self.env.mode == crate::config::PoolMode::Transaction {
                self.release();
            }
            // A read calling a function that may write runs on the primaries, and counts as
            // a write there for read-your-writes.
            let writes = read.writes || self.settings.serializable_by_default();
            if writes {
                shards.iter().for_each(|&shard| self.note_written(shard));
            }
            let wanted: Vec<_> = (shards.iter())
                .map(|&s| {
                    (
                        s,
                        if writes {
                            Freshness::Primary
                        } else {
                            self.freshness(s)
                        },
                    )
                })
                .collect();
            let database = self.env.database.clone();
            self.watched(Box::pin(checkout_reads(&database, &wanted)))
                .await?
        };
        let database = self.env.database.clone();
        let checked = refuse_catalog_aggregates(&database, &plan, &mut backends[0].conn).await;
        let checked = checked.map_err(|refusal| match refusal {
            Ok(unsupported) => self.unsupported(unsupported),
            Err(report) => report,
        });
        let outcome = match checked {
            Ok(()) => {
                let map = database.router.map();
                let names = (shards.iter())
                    .map(|&s| map.shard(s).name.clone())
                    .collect();
                (self.run_legs(&plan, read, names, &mut backends, show, execute)).await
            }
            Err(report) => Err(Ran::Refused(report)),
        };
        let statuses = match &outcome {
            Ok(finished) => Some(finished.statuses.clone()),
            Err(Ran::Failed(failed) | Ran::UnknownOids(failed, ..)) => {
                Some(failed.statuses.clone())
            }
            Err(Ran::Refused(_)) => None,
        };
        // A backend's 08P01 to the proxy's own well-formed Bind is PostgreSQL's "bind message
        // has N result formats but query has M columns" (PortalSetResultFormat): the cached
        // column count is stale.
        let stale_count = matches!(&outcome, Err(Ran::Failed(failed))
            if failed.report.code == sqlstate::PROTOCOL_VIOLATION);
        if matches!(&outcome, Err(Ran::Failed(_))) {
            self.env.database.column_counts.forget(&plan.shard_sql);
        }
        let retry = match &outcome {
            // A cached column count that the schema outdated: counted again on the retry.
            Err(Ran::Failed(failed)) if stale_count && !transactional => {
                failed.report.is_retry_safe()
            }
            Err(Ran::Failed(failed)) if !transactional => {
                (failed.lost_legs.iter()).for_each(|&leg| backends[leg].note_lost());
                let lost = failed.lost_legs.iter().map(|&leg| &backends[leg]);
                failed.report.is_retry_safe()
                    && !failed.lost_legs.is_empty()
                    && lost.clone().all(|b| b.is_replica())
            }
            _ => false,
        };
        if !transactional {
            self.writes_completed(); // What a function call in it wrote is committed now.
        }
        match statuses {
            Some(statuses) if transactional => {
                self.keep_transaction_backends(shards, backends, &statuses);
            }
            None if transactional => self.keep_unrun(shards, backends),
            _ => {}
        }
        outcome.map_err(|ran| match ran {
            Ran::Refused(report) => Attempt::Refused(report),
            Ran::Failed(failed)
                if failed.merge_refused
                    && (!transactional || self.federation_sees_transaction()) =>
            {
                Attempt::MergeRefused(failed.report)
            }
            Ran::Failed(failed) => Attempt::Failed {
                report: failed.report,
                retry,
            },
            Ran::UnknownOids(_, shard, unknown) => Attempt::UnknownOids(shard, unknown),
        })
    }

    /// Builds a leg on each of `backends` (named for errors by `names`, in order) and runs
    /// the fan-out.
    async fn run_legs(
        &mut self,
        plan: &ScatterPlan,
        read: &ScatterRead,
        names: Vec<String>,
        backends: &mut [ReadBackend],
        show: Show<'_>,
        execute: bool,
    ) -> Result<Finished, Ran> {
        let joining = self.joining_statements();
        let mut preludes: Vec<Vec<String>> = (backends.iter_mut())
            .map(|backend| {
                let settings = self.settings.sync_sql(&mut backend.conn);
                backend.prelude(settings, &joining)
            })
            .collect();
        let formats = (self.shard_formats(plan, read, &mut backends[0].conn, &mut preludes[0]))
            .await
            .map_err(Ran::Refused)?;
        let in_transaction = self.transaction_open();
        let bytewise_text = backends.iter().all(|b| b.conn.bytewise_text);
        let mut legs = Vec::with_capacity(backends.len());
        for ((name, backend), prelude) in names.iter().zip(backends.iter_mut()).zip(preludes) {
            let batch = LegBatch {
                plan,
                read,
                formats: &formats,
                execute,
                in_transaction,
            };
            let leg = batch.leg(name, &mut backend.conn, prelude);
            legs.push(leg.map_err(Ran::Refused)?);
        }
        let params = Params::from_bind(&read.params, &read.param_types)
            .map_err(|e| Ran::Refused(super::internal(e.to_string())))?;
        let values: Vec<ParamValue<'_>> = (1..)
            .map_while(|n| params.get(n))
            .map(|p| ParamValue {
                oid: p.oid,
                binary: p.binary,
                value: p.value,
            })
            .collect();
        let leg_count = legs.len();
        let limits = MergeLimits {
            max_buffered_bytes: self.env.max_merge_bytes,
            bytewise_text,
        };
        let (copy_out, max_rows) = (read.copy_out.as_ref(), read.max_rows);
        let oids = &self.env.database.catalog_oids;
        let may_look_up = !read.writes && self.description_lookups_left > 0;
        let mut unknown = None;
        let mut make_merger = |leg: &str, description: &[u8]| {
            // The client's catalog queries read the default shard's oids (see `catalog_oids`).
            // Oids not known yet are looked up, and the read runs again: the client has seen
            // nothing of it before the first row.
            let translated = match oids.translate_known(leg, tag::ROW_DESCRIPTION, description) {
                Ok(translated) => translated,
                Err(oids) if may_look_up => {
                    unknown = Some((leg.to_owned(), oids));
                    return Err(MergeError::Contract("oids to look up first".into()));
                }
                Err(_) => oids.translate(leg, tag::ROW_DESCRIPTION, description),
            };
            let description = translated
                .as_ref()
                .map_or(description, |t| &t[HEADER_LEN..]);
            let mut merger = Merger::new(&plan.merge, description, leg_count, &values, limits)?;
            if let Some((rows, budget)) = max_rows {
                merger.hold_after(rows, budget);
            }
            match copy_out {
                Some(copy) => merger.into_copy_out(copy.format.clone(), copy.header),
                None => Ok(merger),
            }
        };
        // A CancelRequest cancels every leg; afterwards, the backend in use again (if any).
        let targets = legs.iter().map(|leg| leg.conn.cancel_target()).collect();
        self.env.cancel_slot.set_all(targets);
        let settings = &mut self.settings;
        let mut on_status = |conn: &mut _, name: &str, value: &str| {
            settings.on_parameter_status(name, value, conn);
        };
        let (client, bufs) = (&mut self.client, &mut self.bufs);
        let outcome = fanout::fan_out(
            client,
            bufs,
            &mut legs,
            show,
            &mut make_merger,
            &mut on_status,
        )
        .await;
        drop(legs);
        let held = self.backend.as_deref().map(|conn| conn.cancel_target());
        self.env.cancel_slot.set(held);
        outcome.map_err(|failed| match unknown {
            Some((shard, oids)) => Ran::UnknownOids(failed, shard, oids),
            None => Ran::Failed(failed),
        })
    }

    /// Result formats the shards' Bind asks for: the client's for visible columns, binary for
    /// the merge's hidden ones. A `*` select list with hidden columns costs one round trip to
    /// count the columns (the prelude is sent with it, so it is consumed).
    async fn shard_formats(
        &mut self,
        plan: &ScatterPlan,
        read: &ScatterRead,
        first: &mut Checkout,
        prelude: &mut Vec<String>,
    ) -> Result<Vec<i16>, ErrorReport> {
        let hidden = plan.merge.hidden;
        if hidden == 0 {
            return Ok(read.result_formats.clone());
        }
        let fingerprint = self.settings.fingerprint();
        let counts = self.env.database.column_counts.clone();
        let visible = match plan.visible {
            Some(visible) => visible,
            None => match counts.get(&plan.shard_sql, fingerprint) {
                Some(total) => total.saturating_sub(hidden),
                None => {
                    let prelude = std::mem::take(prelude);
                    let settings = &mut self.settings;
                    let mut on_status = |conn: &mut _, name: &str, value: &str| {
                        settings.on_parameter_status(name, value, conn);
                    };
                    let sql = &plan.shard_sql;
                    let total =
                        column_count(first, &prelude, sql, &read.param_types, &mut on_status)
                            .await?;
                    counts.insert(&plan.shard_sql, fingerprint, total);
                    total.saturating_sub(hidden)
                }
            },
        };
        Ok(shard_result_formats(&read.result_formats, visible, hidden))
    }
}

/// Refuses a pass-through read that calls a function the catalog says is an aggregate
/// (one made with CREATE AGGREGATE): each shard would answer it with a row of its own.
/// Refuses (`Err(Ok(..))`) a read calling an aggregate the merge cannot combine that only
/// the catalog knows is one; `Err(Err(..))` when asking the catalog failed.
async fn refuse_catalog_aggregates(
    database: &Database,
    plan: &ScatterPlan,
    conn: &mut Checkout,
) -> Result<(), Result<Unsupported, ErrorReport>> {
    let names = &database.aggregate_names;
    let unknown = names.unknown(&plan.functions);
    if !unknown.is_empty() {
        let aggregates = (fanout::aggregates_among(conn, &unknown).await).map_err(Err)?;
        names.learn(&unknown, &aggregates);
    }
    match names.first_aggregate(&plan.functions) {
        Some(name) => Err(Ok(Unsupported::UncombinableAggregate {
            name: name.to_string(),
        })),
        None => Ok(()),
    }
}

/// How one attempt at a fan-out failed.
enum Attempt {
    /// Before any shard ran it (planning, checkouts).
    Refused(ErrorReport),
    /// The merge cannot combine the shards' columns; the client saw nothing yet.
    MergeRefused(ErrorReport),
    /// A shard's description named oids to look up (see `catalog_oids`); the client saw
    /// nothing yet.
    UnknownOids(String, Unknown),
    /// During the fan-out; `retry` when only replicas failed before the client saw anything.
    Failed {
        /// What the client is told if it is not retried.
        report: ErrorReport,
        /// Running it again on other servers is safe and may succeed.
        retry: bool,
    },
}

impl Attempt {
    fn into_report(self) -> ErrorReport {
        match self {
            Attempt::Refused(report)
            | Attempt::MergeRefused(report)
            | Attempt::Failed { report, .. } => report,
            Attempt::UnknownOids(shard, _) => super::internal(format!(
                "the description from {shard} names oids the proxy could not look up"
            )),
        }
    }
}

impl From<ErrorReport> for Attempt {
    fn from(report: ErrorReport) -> Self {
        Attempt::Refused(report)
    }
}

/// How running the legs failed.
enum Ran {
    /// Before the fan-out started.
    Refused(ErrorReport),
    /// During the fan-out.
    Failed(Box<fanout::Failed>),
    /// During the fan-out, which stopped at a description naming these oids of this shard.
    UnknownOids(Box<fanout::Failed>, String, Unknown),
}
