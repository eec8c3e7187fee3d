//! `COPY table FROM STDIN` into a sharded or reference table (psql's `\copy`, psycopg's
//! `cursor.copy()`, pgjdbc's `CopyManager`, asyncpg's `copy_records_to_table`): every shard
//! runs the client's COPY inside one transaction (the client's, or an implicit one of the
//! proxy's committed in two phases at the end, see `implicit`), and the execute stage
//! (`execute::copy_in`) streams each row to its key's shard, or every row to every shard of
//! a reference table. All or nothing: a failure anywhere rolls every shard back.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::client::Refusal;
use super::replies::{Expect, Synthetic};
use super::routing::columns_of;
use super::scatter::backends::ReadBackend;
use crate::config::{KeyType, KeyValue, ShardId};
use crate::counters::Event;
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use crate::execute::copy_in::{CopyLeg, CopyOutcome, CopyPlan, RowPlacer, RowTo, copy_in};
use crate::router::strategy::{PendingLookup, PlacementError};
use crate::router::{CopyIn, RouteError};
use crate::topology::Database;
use crate::wire::copy_rows::{Key, RowSplitter};
use crate::wire::{TxStatus, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Runs the client's COPY FROM STDIN (`sql`, a simple Query) into a table on `shards`,
    /// answered with one CommandComplete and ReadyForQuery.
    pub(super) async fn copy_into_shards(
        &mut self,
        sql: &str,
        shards: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        let (copy, key_index) = self.prepare_copy(sql).await?;
        if self.client_status != TxStatus::Idle {
            self.copy_rows(sql, &copy, key_index, shards).await?;
            self.push(Expect::synthetic(Synthetic::ReadyForQuery));
            return Ok(());
        }
        self.begin_implicit_query();
        let outcome = self.copy_rows(sql, &copy, key_index, shards).await;
        self.end_implicit_query(outcome).await
    }

    /// Runs the client's COPY FROM STDIN (`sql`, an extended-protocol portal) into a table on
    /// `shards`, answered with its CommandComplete: the batch is one transaction up to its
    /// Sync, as on one server (see `implicit`).
    pub(super) async fn copy_into_shards_in_batch(
        &mut self,
        sql: &str,
        shards: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        let (copy, key_index) = self.prepare_copy(sql).await?;
        self.start_batch_transaction().await?;
        self.copy_rows(sql, &copy, key_index, shards).await
    }

    /// What `sql` copies into, and where the shard key is among its columns.
    async fn prepare_copy(&mut self, sql: &str) -> Result<(CopyIn, usize), Refusal> {
        self.check_spread_allowed()?;
        let copy = self.env.database.router.copy_in(sql).ok_or_else(|| {
            Refusal::Statement(super::internal("a COPY routed as one lost its plan".into()))
        })?;
        match key_index(&self.env.database.clone(), &copy).await {
            Ok(index) => Ok((copy, index)),
            Err(KeyIndex::Report(report)) => Err(Refusal::Statement(report)),
            Err(KeyIndex::Refused(refusal)) => Err(Refusal::Statement(self.unsupported(refusal))),
        }
    }

    /// Runs the COPY on the transaction's backend of each of `shards` (joining it where it
    /// has none) and writes its CommandComplete; a failure aborts the transaction everywhere.
    async fn copy_rows(
        &mut self,
        sql: &str,
        copy: &CopyIn,
        key_index: usize,
        shards: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        self.reach_transaction_block().await?;
        let mut backends = self.transaction_backends(&shards).await?;
        for shard in &shards {
            self.note_written(*shard);
        }
        (self.env.database.counters).count(Event::MultiPrimary);
        let outcome = self
            .run_copy_legs(sql, copy, key_index, &shards, &mut backends)
            .await;
        self.keep_transaction_backends(&shards, backends, &outcome.statuses);
        let primaries = crate::metrics::Ran::Shards(crate::topology::Role::Primary);
        self.meter.ran(primaries);
        match outcome.rows {
            Ok(rows) => {
                encode::command_complete(&mut self.bufs.to_client, &format!("COPY {rows}"));
                Ok(())
            }
            Err(report) => {
                self.roll_back_parked_if_failed().await;
                Err(Refusal::Statement(report))
            }
        }
    }

    async fn run_copy_legs(
        &mut self,
        sql: &str,
        copy: &CopyIn,
        key_index: usize,
        shards: &[ShardId],
        backends: &mut [ReadBackend],
    ) -> CopyOutcome {
        let database = self.env.database.clone();
        let map = database.router.map().clone();
        let joining = self.joining_statements();
        let mut legs = Vec::with_capacity(backends.len());
        for (backend, shard) in backends.iter_mut().zip(shards) {
            let settings = self.settings.sync_sql(&mut backend.conn);
            let prelude = backend.prelude(settings, &joining);
            legs.push(CopyLeg::new(
                &map.shard(*shard).name,
                &mut backend.conn,
                prelude,
            ));
        }
        // A CancelRequest (the client's, or the deadlock detector's) cancels every shard's COPY.
        let targets = legs.iter().map(|leg| leg.conn.cancel_target()).collect();
        self.env.cancel_slot.set_all(targets);
        let plan = CopyPlan {
            sql,
            splitter: RowSplitter::new(copy.format.clone(), key_index),
            copies: copy.sharding.is_none(),
            max_row_bytes: self.env.max_message_bytes,
        };
        let mut placement = Placement::new(database, copy, shards);
        let settings = &mut self.settings;
        let mut on_status = |conn: &mut _, name: &str, value: &str| {
            settings.on_parameter_status(name, value, conn);
        };
        let (client, bufs) = (&mut self.client, &mut self.bufs);
        let outcome = copy_in(
            client,
            bufs,
            &mut legs,
            plan,
            &mut placement,
            &mut on_status,
        )
        .await;
        drop(legs);
        let held = self.backend.as_deref().map(|conn| conn.cancel_target());
        self.env.cancel_slot.set(held);
        outcome
    }
}

/// Why the key's place among a COPY's columns is unknown.
enum KeyIndex {
    Report(ErrorReport),
    Refused(Unsupported),
}

/// Where the shard key is among the columns each row of `copy` carries (0 for a reference
/// table, whose rows go everywhere); without a column list, the catalog's columns but
/// generated ones, as COPY takes them.
async fn key_index(database: &Database, copy: &CopyIn) -> Result<usize, KeyIndex> {
    let Some(sharding) = &copy.sharding else {
        return Ok(0);
    };
    let columns: Vec<String> = if copy.columns.is_empty() {
        let catalog = columns_of(database, &copy.table)
            .await
            .map_err(KeyIndex::Report)?;
        if catalog.is_empty() {
            return Err(KeyIndex::Report(ErrorReport::error(
                sqlstate::UNDEFINED_TABLE,
                Blame::Client,
                format!("relation \"{}\" does not exist", copy.table),
            )));
        }
        let copied = catalog.iter().filter(|column| !column.generated);
        copied.map(|column| column.name.clone()).collect()
    } else {
        copy.columns.clone()
    };
    let key = &sharding.key_column;
    columns
        .iter()
        .position(|column| column == key)
        .ok_or_else(|| {
            let (table, key) = (copy.table.clone(), key.clone());
            KeyIndex::Refused(Unsupported::CopyWithoutKey { table, key })
        })
}

/// Which shard each row of a COPY goes to.
struct Placement {
    database: Arc<Database>,
    table: String,
    /// The key column and type; `None` for a reference table.
    key: Option<(String, KeyType)>,
    /// Each shard's leg.
    legs: HashMap<ShardId, usize>,
    /// The directory entry the last row waits for (see [`RowTo::Later`]).
    pending: Option<PendingLookup>,
}

impl Placement {
    fn new(database: Arc<Database>, copy: &CopyIn, shards: &[ShardId]) -> Self {
        let key = (copy.sharding.as_ref()).map(|s| (s.key_column.clone(), s.key_type));
        let legs = shards.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        Self {
            database,
            table: copy.table.clone(),
            key,
            legs,
            pending: None,
        }
    }
}

impl RowPlacer for Placement {
    fn place(&mut self, key: &Key<'_>) -> Result<RowTo, ErrorReport> {
        let Some((column, key_type)) = &self.key else {
            return Ok(RowTo::Every);
        };
        let value = match key {
            Key::Text(text) => {
                let text = std::str::from_utf8(text).map_err(|_| bad_key(column, "not UTF-8"))?;
                KeyValue::parse_text(*key_type, text)
            }
            Key::Binary(bytes) => KeyValue::from_binary(*key_type, 0, bytes),
            Key::Null => return Err(null_key(&self.table, column)),
            Key::Missing => {
                return Err(ErrorReport::error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    Blame::Client,
                    format!("missing data for column \"{column}\""),
                ));
            }
        };
        let value = value.map_err(|e| RouteError::from(e).report())?;
        let shard = match self.database.router.shard_of_value(&self.table, &value) {
            Ok(shard) => shard,
            Err(RouteError::Placement {
                source: PlacementError::NeedsLookup(pending),
                ..
            }) if self.pending.is_none() => {
                self.pending = Some(pending);
                return Ok(RowTo::Later);
            }
            Err(e) => return Err(e.report()),
        };
        self.pending = None;
        self.legs
            .get(&shard)
            .map(|&leg| RowTo::Leg(leg))
            .ok_or_else(|| {
                super::internal(format!(
                    "COPY row placed on shard {} outside the COPY",
                    shard.0
                ))
            })
    }

    fn look_up(&mut self) -> Pin<Box<dyn Future<Output = Result<(), ErrorReport>> + Send + '_>> {
        Box::pin(async move {
            let Some(pending) = &self.pending else {
                return Ok(());
            };
            let Some(lookup) = self.database.directories.get(&pending.table) else {
                return Err(super::internal(format!(
                    "no reader for the directory table {}",
                    pending.table
                )));
            };
            let fetched = lookup.fetch(&pending.key).await;
            fetched
                .map(drop)
                .map_err(|e| super::routing::lookup_report(&e))
        })
    }
}

fn null_key(table: &str, column: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::NOT_NULL_VIOLATION,
        Blame::Client,
        format!(
            "null value in column \"{column}\" of relation \"{table}\": a row copied into a sharded table needs its shard key"
        ),
    )
}

fn bad_key(column: &str, why: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        Blame::Client,
        format!("invalid shard key in column \"{column}\": {why}"),
    )
}
