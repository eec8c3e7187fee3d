//! Which shard(s) a statement runs on (pure: no I/O, no globals).
//!
//! A [`Router`] is built from one shard map (so one per topology epoch). For a statement text
//! it makes a [`Plan`] once (sqlparser, cached per text) and, for each execution, turns the plan
//! plus the parameter values and hints into a [`Route`]. It never guesses: a write whose shard
//! it cannot determine is a [`RouteError`], and a read that needs several shards says so.

mod array;
mod cache;
pub(crate) mod condition;
mod copies;
mod hint;
mod insert_columns;
mod key_move;
mod kind;
pub(crate) mod normalize;
pub(crate) mod operand;
pub(crate) mod plan;
mod resolve;
mod scatter;
mod scope;
mod split;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{KeyError, KeyValue, ShardId, ShardMap};
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use crate::merge::ScatterPlan;

pub use hint::Hint;
pub use key_move::{KeyMove, TableColumn};
pub use operand::{Param, Params, execute_arguments};
pub use plan::copy::{CopyIn, CopyOut};
pub use plan::cursor::{CursorCommand, DeclaredCursor, cursor_command};
pub use plan::{Kind, Plan, Target};
pub use scatter::construct::Construct;
pub use split::BoundPart;
use strategy::{PlacementError, Placer};

/// Where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Touches no table: any backend (the one a transaction is on, else the default shard).
    Anywhere,
    /// On this one shard.
    Shard(ShardId),
    /// A read needing the rows of several shards (merged by the fan-out executor).
    Scatter(Vec<ShardId>),
    /// On each of these shards' primaries, which hold different rows (writes the map allows to
    /// broadcast): counts and RETURNING rows add up.
    Broadcast(Vec<ShardId>),
    /// On each of these shards' primaries, which hold copies (DDL, reference-table writes):
    /// the client sees one shard's result, as from one server.
    Replicate(Vec<ShardId>),
    /// Unparseable text naming map tables: only inside a transaction already on one shard.
    CurrentShardOnly,
    /// A multi-row INSERT whose rows belong to several shards: row indexes (0-based, in
    /// VALUES order) per shard; see [`Router::split_insert`].
    Split(Vec<(ShardId, Vec<usize>)>),
    /// A multi-statement query whose statements need different shards: each statement is
    /// routed on its own, and all of them run as one transaction, as on one server.
    PerStatement,
    /// An UPDATE of the shard key: the rows on these shards that it changes move to the
    /// shards of their new keys (see [`Router::key_move`]).
    MoveRows(Vec<ShardId>),
    /// COPY FROM STDIN into a sharded or reference table: each row to its key's shard (every
    /// row to every shard of a reference table); see [`Router::copy_in`].
    CopyIn(Vec<ShardId>),
}

/// Why a statement cannot be routed; each maps to a SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not supported by the proxy (yet): what it is.
    #[error("{0}")]
    Unsupported(#[from] Unsupported),
    /// A key value that is not valid for its column's type.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The map has no shard for a key.
    #[error("table {table}: {source}")]
    Placement {
        /// The table routed.
        table: String,
        /// What the strategy said.
        source: PlacementError,
    },
    /// The Bind carries fewer parameters than the statement uses.
    #[error("the statement uses parameter ${0} but the Bind message has no such parameter")]
    MissingParameter(usize),
    /// A text parameter that is not UTF-8.
    #[error("parameter ${0} is not valid UTF-8")]
    NotUtf8(usize),
    /// A binary array parameter that does not decode.
    #[error("parameter ${0} is not a one-dimensional array of shard keys")]
    BadArray(usize),
    /// A text array that does not parse.
    #[error("{0:?} is not a one-dimensional array of shard keys")]
    BadArrayText(String),
    /// A statement naming map tables whose syntax tree could be deeper than the proxy
    /// parses (its [`crate::sql::bounds::depth`]).
    #[error(
        "statement too complex to route: its expressions nest about {0} levels deep, more than the {max} shardgate parses; name a shard with /* shard: NAME */ or simplify it",
        max = crate::sql::MAX_DEPTH
    )]
    TooDeep(usize),
    /// A statement naming map tables that is longer than `limits.max_statement_bytes`.
    #[error(
        "statement too large to route: {size} bytes naming the table {table}, more than limits.max_statement_bytes ({max}); send it in smaller pieces or name a shard with /* shard: NAME */"
    )]
    TooLarge {
        /// Its length in bytes.
        size: usize,
        /// The limit.
        max: usize,
        /// A map table it names.
        table: String,
    },
    /// A read needing several shards with a construct the merge cannot compute.
    #[error(
        "{construct} cannot be computed across shards ({table} has rows on shards {}); add the shard key {key} to WHERE or name a shard with /* shard: NAME */",
        shards.join(", ")
    )]
    CrossShard {
        /// What cannot be computed.
        construct: Construct,
        /// The sharded table read.
        table: String,
        /// The shards holding its rows, by name.
        shards: Vec<String>,
        /// Its shard key column.
        key: String,
    },
    /// A hint naming a shard the map does not have.
    #[error("no shard is named {0:?}")]
    UnknownShard(String),
}

impl RouteError {
    /// The error the client sees.
    pub fn report(&self) -> ErrorReport {
        let code = match self {
            RouteError::Unsupported(_)
            | RouteError::CrossShard { .. }
            | RouteError::Placement { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            RouteError::MissingParameter(_) => sqlstate::PROTOCOL_VIOLATION,
            RouteError::UnknownShard(_) => sqlstate::UNDEFINED_OBJECT,
            RouteError::TooDeep(_) => sqlstate::STATEMENT_TOO_COMPLEX,
            RouteError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            RouteError::Key(_)
            | RouteError::NotUtf8(_)
            | RouteError::BadArray(_)
            | RouteError::BadArrayText(_) => sqlstate::INVALID_TEXT_REPRESENTATION,
        };
        ErrorReport::error(code, Blame::Client, format!("shardgate: {self}"))
    }
}

pub use crate::config::DEFAULT_MAX_STATEMENT_BYTES;

/// Routes statements with one shard map.
pub struct Router {
    map: ShardMap,
    /// Longer statement texts are routed without parsing them ([`plan::Target::TooLarge`]).
    max_statement_bytes: usize,
    /// Placers by co-location group.
    placers: HashMap<String, Placer>,
    plans: cache::TextCache<Arc<Plan>>,
    scatter_plans: cache::TextCache<Result<Arc<ScatterPlan>, RouteError>>,
}

impl Router {
    /// Builds the lookup structures of every strategy in the map. Directory tables answer
    /// nothing (offline tools): keys they would place are [`PlacementError::NeedsLookup`].
    pub fn new(map: &ShardMap) -> Router {
        Router::with_directories(map, &HashMap::new())
    }

    /// [`Router::new`], with the answers of the map's directory tables by table name (the
    /// control plane keeps them; the router only reads them).
    pub fn with_directories(
        map: &ShardMap,
        directories: &HashMap<String, Arc<dyn strategy::Directory>>,
    ) -> Router {
        let mut placers = HashMap::new();
        for table in map.tables.values() {
            if let crate::config::Placement::Sharded(sharding) = &table.placement {
                let directory = sharding
                    .strategy
                    .lookup_table()
                    .and_then(|lookup| directories.get(&lookup.table).cloned());
                (placers.entry(sharding.group.clone()))
                    .or_insert_with(|| Placer::build_with(&sharding.strategy, directory));
            }
        }
        Router {
            map: map.clone(),
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            placers,
            plans: cache::TextCache::default(),
            scatter_plans: cache::TextCache::default(),
        }
    }

    /// The router with another `limits.max_statement_bytes`: parsing costs over 100 times a
    /// statement's size in memory, so longer texts are routed by the tables they name alone.
    pub fn with_max_statement_bytes(mut self, bytes: usize) -> Router {
        self.max_statement_bytes = bytes;
        self
    }

    /// The shard map this router routes with.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// The plan of a statement text (cached).
    pub fn plan(&self, sql: &str) -> Arc<Plan> {
        let make = || Arc::new(plan::plan(&self.map, sql, self.max_statement_bytes));
        (self.plans).get_or_insert(sql, make)
    }

    /// How a read routed to [`Route::Scatter`] runs across shards: the SQL each shard runs
    /// and how the merge combines their rows (cached per text, refusals too). `sql` is the
    /// statement as the client sent it (literals inline, or `$n` parameters); a construct
    /// whose cross-shard answer could differ from one server's is refused (SQLSTATE 0A000).
    pub fn scatter(&self, sql: &str) -> Result<Arc<ScatterPlan>, RouteError> {
        (self.scatter_plans).get_or_insert(sql, || {
            parsing(sql, || scatter::plan(self, sql).map(Arc::new))
        })
    }

    /// Where a simple-protocol statement text runs. Its literals are taken out first, so
    /// texts that differ only in constants share one cached plan (see `normalize`).
    pub fn route_simple(
        &self,
        sql: &str,
        session_hint: Option<&Hint>,
    ) -> Result<Route, RouteError> {
        self.route_simple_planned(sql, session_hint).0
    }

    /// [`Router::route_simple`], with the plan it routed by (what the session needs to know
    /// of the statement besides its route, e.g. [`Plan::may_write`], without planning again).
    pub fn route_simple_planned(
        &self,
        sql: &str,
        session_hint: Option<&Hint>,
    ) -> (Result<Route, RouteError>, Arc<Plan>) {
        if let Some((text, literals)) = normalize::normalize(sql) {
            let plan = self.plan(&text);
            if !plan.has_unparsed() {
                let route = self.route(&plan, &Params::from_text(&literals), session_hint);
                return (route, plan);
            }
        }
        let plan = self.plan(sql);
        (self.route(&plan, &Params::none(), session_hint), plan)
    }

    /// Where `plan` runs with these parameters; `session_hint` is the client's
    /// `shardgate.shard`/`shardgate.shard_key` setting, overridden by a comment hint.
    pub fn route(
        &self,
        plan: &Plan,
        params: &Params<'_>,
        session_hint: Option<&Hint>,
    ) -> Result<Route, RouteError> {
        resolve::route(self, plan, params, plan.hint.as_ref().or(session_hint))
    }

    /// One INSERT per shard of a [`Route::Split`]: the statement with only that shard's rows.
    pub fn split_insert(
        &self,
        sql: &str,
        groups: &[(ShardId, Vec<usize>)],
    ) -> Result<Vec<(ShardId, String)>, RouteError> {
        parsing(sql, || split::split_insert(sql, groups))
    }

    /// What each of `shards` runs of `sql`, a statement on every copy
    /// ([`Route::Replicate`]): `sql` itself, but the shards other than the default one leave
    /// out the tables only the default shard has (see `copies`).
    pub fn replicated(&self, sql: &str, shards: &[ShardId]) -> Vec<(ShardId, String)> {
        let elsewhere = parsing(sql, || Ok(copies::elsewhere(&self.map, sql)));
        let elsewhere = elsewhere.ok().flatten();
        let sql_on = |shard: ShardId| match &elsewhere {
            Some(trimmed) if shard != self.map.default_shard => trimmed.clone(),
            _ => sql.to_owned(),
        };
        shards.iter().map(|&shard| (shard, sql_on(shard))).collect()
    }

    /// `sql`, an INSERT into `table` without a column list, with `columns` (the table's, in
    /// catalog order) written out, to be routed instead.
    pub fn insert_with_columns(
        &self,
        sql: &str,
        table: &str,
        columns: &[String],
    ) -> Result<String, RouteError> {
        parsing(sql, || insert_columns::with_columns(sql, table, columns))
    }

    /// Where `sql`, a statement on indexes routed to [`Unsupported::IndexTableUnknown`],
    /// runs once the catalog said which `tables` its indexes belong to: on every shard when
    /// one is a map table (whose indexes every shard has), else on the default shard. Text
    /// of several statements runs statement by statement.
    pub fn route_on_index_tables(&self, sql: &str, tables: &[String]) -> Route {
        if self.plan(sql).parts.len() > 1 {
            return Route::PerStatement;
        }
        let folded = |table: &String| table.to_lowercase();
        if tables
            .iter()
            .map(folded)
            .any(|t| self.map.tables.contains_key(&t))
        {
            Route::Replicate(self.map.shard_ids().collect())
        } else {
            Route::Shard(self.map.default_shard)
        }
    }

    /// What `sql`, a `COPY … TO STDOUT` routed to [`Route::Scatter`], copies out.
    pub fn copy_out(&self, sql: &str) -> Option<CopyOut> {
        plan::copy::copy_out(sql)
    }

    /// The query a `COPY (query) TO` or a `DECLARE … CURSOR FOR query` reads, or `sql` itself:
    /// what a cross-shard read of `sql` plans.
    pub fn query_read_by<'a>(&self, sql: &'a str) -> std::borrow::Cow<'a, str> {
        if let Some(copy) = self.copy_out(sql) {
            return copy.query.into();
        }
        match self.declared_cursor(sql) {
            Some(cursor) => cursor.query.into(),
            None => sql.into(),
        }
    }

    /// The cursor `sql` declares, if it is a `DECLARE … CURSOR FOR query`.
    pub fn declared_cursor(&self, sql: &str) -> Option<DeclaredCursor> {
        plan::cursor::declared_cursor(sql)
    }

    /// What `sql`, routed to [`Route::CopyIn`], copies into.
    pub fn copy_in(&self, sql: &str) -> Option<CopyIn> {
        let plan = self.plan(sql);
        (plan.parts.iter()).find_map(|part| match &part.target {
            plan::Target::CopyIn(copy) => Some((**copy).clone()),
            _ => None,
        })
    }

    /// The shard of key `key` of sharded table `table`.
    pub fn shard_of_value(&self, table: &str, key: &KeyValue) -> Result<ShardId, RouteError> {
        resolve::shard_of_value(self, table, key)
    }

    /// The table whose rows `sql`, routed to [`Route::MoveRows`], moves.
    pub fn moved_table(&self, sql: &str) -> Option<String> {
        let plan = self.plan(sql);
        (plan.parts.iter()).find_map(|part| match &part.target {
            plan::Target::MovesRows(keyed) => Some(keyed.table.clone()),
            _ => None,
        })
    }

    /// The statements that move the rows of [`Route::MoveRows`]: `sql` is an UPDATE of
    /// `table`'s shard key, `columns` the table's (name, generated) in catalog order.
    pub fn key_move(
        &self,
        sql: &str,
        table: &str,
        columns: &[TableColumn],
    ) -> Result<KeyMove, RouteError> {
        let key = match plan::sharding_of(&self.map, table) {
            Some(sharding) => sharding.key_column.clone(),
            None => String::new(),
        };
        parsing(sql, || key_move::key_move(sql, table, &key, columns))
    }

    /// Every shard the map can place rows of sharded table `table` on (empty for other
    /// tables).
    pub fn shards_of_table(&self, table: &str) -> Vec<ShardId> {
        match plan::sharding_of(&self.map, table) {
            Some(sharding) => self.placer(&sharding.group).shards(),
            None => Vec::new(),
        }
    }

    /// The shard of a key of sharded table `table`, written as PostgreSQL prints it.
    pub fn shard_of_key(&self, table: &str, key: &str) -> Result<ShardId, RouteError> {
        resolve::shard_of_key(self, table, key)
    }

    /// One INSERT per shard of a [`Route::Split`] of a statement with parameters, each
    /// numbering its own (see [`BoundPart`]).
    pub fn split_insert_bound(
        &self,
        sql: &str,
        groups: &[(ShardId, Vec<usize>)],
    ) -> Result<Vec<BoundPart>, RouteError> {
        parsing(sql, || split::split_insert_bound(sql, groups))
    }

    fn placer(&self, group: &str) -> &Placer {
        &self.placers[group]
    }

    fn shard_named(&self, name: &str) -> Result<ShardId, RouteError> {
        (self.map.shard_by_name(name))
            .map(|shard| shard.id)
            .ok_or_else(|| RouteError::UnknownShard(name.to_owned()))
    }
}

/// Runs `work`, which parses `sql` again (it was planned already, so it is not too deep), on a
/// stack that fits it; refuses it if it is too deep after all.
fn parsing<T>(sql: &str, work: impl FnOnce() -> Result<T, RouteError>) -> Result<T, RouteError> {
    let depth = crate::sql::bounds::depth(sql);
    if depth > crate::sql::MAX_DEPTH {
        return Err(RouteError::TooDeep(depth));
    }
    crate::sql::on_stack_for(depth, work)
}

#[cfg(test)]
mod tests;
