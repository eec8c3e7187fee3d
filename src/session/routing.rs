//! Where the session's next statement runs: asks the router, then keeps, changes or refuses
//! the backend the session holds.
//!
//! Between transactions the session gives its backend back before it takes another shard's.
//! Inside a transaction block (the client's, or one the proxy began so that a batch needing a
//! second shard stays one transaction, see `implicit`) it parks the backend in use instead and
//! goes on on the other shard (see `spanning`), mid-batch too. What cannot move (a client
//! pinned to its backend) is refused with SQLSTATE 0A000 and a way around it.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, cold};
use crate::config::ShardId;
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use std::sync::Arc;

use crate::control::directory::{DirectoryLookup, LookupError};
use crate::execute::catalog::{index_tables, table_columns};
use crate::metrics::{Metrics, RouteKind};
use crate::router::TableColumn;
use crate::router::strategy::PlacementError;
use crate::router::{Hint, Params, Route, RouteError};
use crate::topology::Database;
use crate::topology::fence::{self, Verdict};
use crate::wire::TxStatus;

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// The route of `sql` with these parameters and the client's hint, reading directory
    /// tables for keys they have not cached yet, and waiting at the `RESHARD` fence when it
    /// blocks the statement (see `fence`).
    /// `params` are a Bind's (or an EXECUTE's); `None` for a simple Query, whose literals
    /// are parameters too.
    pub(super) async fn route_sql(
        &mut self,
        sql: &str,
        params: Option<&Params<'_>>,
    ) -> Result<Routed, ErrorReport> {
        loop {
            let registered = self.enter_fence();
            if registered {
                self.check_lapse_crossed(sql)?;
            }
            let fence = &self.env.database.fence;
            // Subscribed before the verdict, so a change it did not see wakes the wait.
            let judged = fence.is_moving().then(|| fence.subscribe());
            let (database, metrics) = (self.env.database.clone(), self.env.metrics.clone());
            let routed =
                route_with_lookups(database, metrics, self.hint.clone(), sql, params).await?;
            if !routed.blocked {
                return Ok(routed);
            }
            cold(self.wait_at_fence(registered, judged)).await?;
        }
    }

    /// The error for something not supported, counted by its kind.
    pub(super) fn unsupported(&self, what: Unsupported) -> ErrorReport {
        unsupported(&self.env.metrics, what)
    }

    /// The error for a route that failed, counted by kind when it is a refusal.
    pub(super) fn route_failed(&self, error: RouteError) -> ErrorReport {
        route_failure(&self.env.metrics, error)
    }

    /// Where a statement may be parsed or described before its parameters are known:
    /// `Some(shard)` when its route does not depend on them (`Some(None)`: anywhere; a route
    /// that will be refused also parses anywhere, and is refused at Bind), `None` when it does.
    pub(super) fn shard_before_bind(&self, sql: &str) -> Option<Option<ShardId>> {
        let router = &self.env.database.router;
        let plan = router.plan(sql);
        match router.route(&plan, &Params::none(), self.hint.as_ref()) {
            // Until a directory key is read, the shard is as unknown as a missing parameter.
            Err(RouteError::MissingParameter(_))
            | Err(RouteError::Placement {
                source: PlacementError::NeedsLookup(_),
                ..
            }) => None,
            Err(_) => Some(None),
            // Runs on several shards once bound: nothing to prepare anywhere now.
            Ok(
                Route::Scatter(_)
                | Route::Broadcast(_)
                | Route::Replicate(_)
                | Route::Split(_)
                | Route::PerStatement
                | Route::MoveRows(_)
                | Route::CopyIn(_),
            ) => None,
            Ok(route) => Some(self.shard_for_route(route).unwrap_or(None)),
        }
    }

    /// The one shard a route runs on; routes over several shards are refused here (a simple
    /// Query runs them through `broadcast` before asking).
    pub(super) fn shard_for_route(&self, route: Route) -> Result<Option<ShardId>, ErrorReport> {
        match route {
            Route::Anywhere => Ok(None),
            Route::Shard(shard) => Ok(Some(shard)),
            Route::Scatter(shards) => Err(self.unsupported(Unsupported::ScatterFromSqlPrepared {
                shards: shards.len(),
            })),
            Route::Broadcast(_) | Route::Replicate(_) | Route::Split(_) | Route::MoveRows(_) => {
                Err(self.unsupported(Unsupported::SpreadFromSqlPrepared))
            }
            Route::PerStatement => Err(self.unsupported(Unsupported::StatementsOnDifferentShards)),
            Route::CopyIn(_) => Err(self.unsupported(Unsupported::CopyInNotAlone)),
            Route::CurrentShardOnly => match self.held_shard {
                Some(shard) if self.tied_to_backend() => Ok(Some(shard)),
                _ => Err(self.unsupported(Unsupported::UnparsedNamesShardedTable)),
            },
        }
    }

    /// Whether the client is inside a transaction (or pinned), so it must stay on its shard.
    pub(super) fn in_transaction(&self) -> bool {
        self.transaction_open() || self.backend_status != TxStatus::Idle || self.pin.is_some()
    }

    /// Whether a transaction is open: the client's (begun, deferred or failed), or an
    /// implicit one the proxy carries over several shards (see `implicit`).
    pub(super) fn transaction_open(&self) -> bool {
        self.client_status != TxStatus::Idle || self.txn.implicit
    }

    /// Whether the backend held carries the client's transaction or session state, so the
    /// client must stay on it. (With a deferred BEGIN the transaction has not reached any
    /// backend yet.)
    pub(super) fn tied_to_backend(&self) -> bool {
        let open_transaction =
            self.client_status != TxStatus::Idle && !self.txn.phase.is_deferred();
        open_transaction || self.backend_status != TxStatus::Idle || self.pin.is_some()
    }

    /// Gives back the backend of shard `held` so that one of `needed` can be taken, if the
    /// client is between transactions and everything sent has been synced.
    pub(super) async fn leave_shard(
        &mut self,
        held: ShardId,
        needed: ShardId,
    ) -> Result<(), ErrorReport> {
        let name = |id: ShardId| self.env.database.router.map().shard(id).name.clone();
        if self.in_transaction_block() && self.pin.is_none() {
            return self.switch_shard(held, needed).await;
        }
        if self.tied_to_backend() {
            let (held, needed) = (name(held), name(needed));
            let refusal = Unsupported::PinnedToOtherShard { held, needed };
            return Err(self.unsupported(refusal));
        }
        if !self.replies.synced() {
            return self.begin_implicit(held, needed).await;
        }
        self.wait_for_replies().await?;
        self.release();
        Ok(())
    }
}

/// Directory tables read per statement at most (an `IN` list may name several new keys).
const MAX_LOOKUPS: usize = 16;

/// A statement's route, and whether it may write (for read-your-writes and replica reads).
pub(super) struct Routed {
    pub route: Route,
    pub writes: bool,
    /// The `RESHARD` fence holds it back.
    pub blocked: bool,
}

async fn route_with_lookups(
    database: Arc<Database>,
    metrics: Arc<Metrics>,
    hint: Option<Hint>,
    sql: &str,
    params: Option<&Params<'_>>,
) -> Result<Routed, ErrorReport> {
    let routed = route_looking_up(&database, &metrics, hint, sql, params).await;
    database.meters.route(match &routed {
        Ok((_, kind)) => *kind,
        Err(_) => RouteKind::Refused,
    });
    routed.map(|(routed, _)| routed)
}

/// How a route is counted in `shardgate_routes_total`; `unmapped`: the statement names no
/// table of the map.
fn route_kind(route: &Route, unmapped: bool) -> RouteKind {
    match route {
        Route::Shard(_) if unmapped => RouteKind::Fallback,
        Route::Shard(_) => RouteKind::SingleShard,
        Route::Scatter(_) | Route::PerStatement => RouteKind::MultiShard,
        Route::Broadcast(_)
        | Route::Replicate(_)
        | Route::Split(_)
        | Route::MoveRows(_)
        | Route::CopyIn(_) => RouteKind::Broadcast,
        Route::Anywhere | Route::CurrentShardOnly => RouteKind::Fallback,
    }
}

async fn route_looking_up(
    database: &Database,
    metrics: &Metrics,
    hint: Option<Hint>,
    sql: &str,
    params: Option<&Params<'_>>,
) -> Result<(Routed, RouteKind), ErrorReport> {
    let router = &database.router;
    let plan = params.map(|_| router.plan(sql));
    let mut fetched = Fetched::default();
    route_fetching(
        database,
        metrics,
        &hint,
        sql,
        params,
        plan.as_deref(),
        &mut fetched.0,
    )
    .await
}

/// Directory keys fetched for one route: settled when it is made, and also when the session
/// is dropped mid-route (a client gone, a shutdown), so a one-route answer never lingers.
#[derive(Default)]
struct Fetched(Vec<(Arc<DirectoryLookup>, crate::config::KeyValue)>);

impl Drop for Fetched {
    fn drop(&mut self) {
        for (lookup, key) in &self.0 {
            lookup.settle(key);
        }
    }
}

/// Routes, fetching each directory key the router asks for (at most [`MAX_LOOKUPS`]) and
/// routing again; `fetched` collects them, to be settled once the route is made.
async fn route_fetching(
    database: &Database,
    metrics: &Metrics,
    hint: &Option<Hint>,
    sql: &str,
    params: Option<&Params<'_>>,
    plan: Option<&crate::router::Plan>,
    fetched: &mut Vec<(Arc<DirectoryLookup>, crate::config::KeyValue)>,
) -> Result<(Routed, RouteKind), ErrorReport> {
    let router = &database.router;
    // An INSERT without a column list, routed again with the table's columns written out.
    let mut with_columns: Option<(String, Option<Arc<crate::router::Plan>>)> = None;
    for _ in 0..MAX_LOOKUPS {
        let (sql, plan) = match &with_columns {
            Some((sql, plan)) => (sql.as_str(), plan.as_deref()),
            None => (sql, plan),
        };
        let simple_plan;
        let (routed, used_plan) = match (plan, params) {
            (Some(plan), Some(params)) => (router.route(plan, params, hint.as_ref()), plan),
            _ => {
                let routed;
                (routed, simple_plan) = router.route_simple_planned(sql, hint.as_ref());
                (routed, &*simple_plan)
            }
        };
        let (writes, unmapped) = (used_plan.may_write(), used_plan.names_no_map_table());
        match routed {
            Err(RouteError::Placement {
                source: PlacementError::NeedsLookup(pending),
                ..
            }) => {
                let Some(lookup) = database.directories.get(&pending.table) else {
                    return Err(internal_lookup(&pending.table));
                };
                cold(lookup.fetch(&pending.key))
                    .await
                    .map_err(|e| lookup_report(&e))?;
                fetched.push((lookup.clone(), pending.key));
            }
            Err(RouteError::Unsupported(Unsupported::InsertWithoutColumns { table }))
                if with_columns.is_none() =>
            {
                let columns = cold(columns_of(database, &table)).await?;
                let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
                let rewritten = router.insert_with_columns(sql, &table, &names);
                let rewritten = rewritten.map_err(|e| route_failure(metrics, e))?;
                let plan = params.map(|_| router.plan(&rewritten));
                with_columns = Some((rewritten, plan));
            }
            Err(RouteError::Unsupported(Unsupported::IndexTableUnknown { indexes })) => {
                let tables = cold(index_tables_of(database, &indexes)).await?;
                let route = router.route_on_index_tables(sql, &tables);
                let kind = route_kind(&route, !matches!(route, Route::Replicate(_)));
                // Index commands on map tables: held back while any move runs.
                let blocked = database.fence.is_moving();
                return Ok((
                    Routed {
                        route,
                        writes,
                        blocked,
                    },
                    kind,
                ));
            }
            Ok(route) => {
                tracing::debug!(?route, writes, "routed");
                let kind = route_kind(&route, unmapped);
                let statement = fence::Routed {
                    sql,
                    params,
                    hint: hint.as_ref(),
                    plan: used_plan,
                    route: &route,
                    router,
                    epoch: database.epoch,
                    writes,
                };
                let blocked = database.fence.verdict(&statement) == Verdict::Blocked;
                return Ok((
                    Routed {
                        route,
                        writes,
                        blocked,
                    },
                    kind,
                ));
            }
            Err(error) => return Err(route_failure(metrics, error)),
        }
    }
    Err(unsupported(metrics, Unsupported::TooManyDirectoryMisses))
}

/// The columns of map table `table` in catalog order: remembered, or read on a backend of the
/// default shard (every shard has the map's tables).
pub(super) async fn columns_of(
    database: &Database,
    table: &str,
) -> Result<Arc<[TableColumn]>, ErrorReport> {
    if let Some(columns) = database.table_columns.get(table) {
        return Ok(columns);
    }
    let shard = database.router.map().default_shard;
    let mut conn = (database.primary(shard).checkout().await).map_err(|e| e.report())?;
    let columns: Arc<[TableColumn]> = table_columns(&mut conn, table).await?.into();
    database.table_columns.insert(table, columns.clone());
    Ok(columns)
}

/// The tables `indexes` belong to, read from the default shard's catalog (an index of a map
/// table exists on every shard, one of another table on the default shard).
async fn index_tables_of(
    database: &Database,
    indexes: &[String],
) -> Result<Vec<String>, ErrorReport> {
    let shard = database.router.map().default_shard;
    let mut conn = (database.primary(shard).checkout().await).map_err(|e| e.report())?;
    index_tables(&mut conn, indexes).await
}

fn unsupported(metrics: &Metrics, what: Unsupported) -> ErrorReport {
    metrics.unsupported(what.kind());
    what.report()
}

fn route_failure(metrics: &Metrics, error: RouteError) -> ErrorReport {
    match &error {
        RouteError::CrossShard { construct, .. } => metrics.cross_shard_refused(construct.kind()),
        RouteError::Unsupported(what) => metrics.unsupported(what.kind()),
        _ => {}
    }
    error.report()
}

/// A directory table the router asked about that the topology has no reader for (a bug).
fn internal_lookup(table: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::INTERNAL_ERROR,
        Blame::Proxy,
        format!("shardgate: no reader for the directory table {table}"),
    )
}

pub(super) fn lookup_report(error: &LookupError) -> ErrorReport {
    let (code, blame) = match error {
        LookupError::Unavailable { .. } => (sqlstate::CONNECTION_FAILURE, Blame::Backend),
        LookupError::UnknownShard { .. } => (sqlstate::CONFIG_FILE_ERROR, Blame::Proxy),
    };
    ErrorReport::error(code, blame, format!("shardgate: {error}"))
}
