//! Copies the rows of one table that leave one shard: read with `COPY … TO STDOUT` in the
//! source's repeatable-read transaction (one snapshot for every table), each row's key placed
//! by both maps, and the rows that change shard streamed into their target's open transaction
//! (`COPY … FROM STDIN`); once every table is copied, they are deleted from the source.
//! Nothing here commits: the mover prepares and commits every side together. Both sides run
//! as a replica would apply changes (`session_replication_role = replica`, when the user may
//! set it): the application's triggers and foreign-key checks do not fire for rows that only
//! change place.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio_postgres::CopyInSink;

use super::job::Reshard;
use crate::config::BackendUri;
use crate::control::ControlConn;
use crate::router::Router;
use crate::sql::quote;
use crate::wire::copy_rows::{CopyFormat, Key, Piece, RowSplitter};

/// Rows queued for one target are sent once this many bytes wait.
const FLUSH_AT: usize = 64 * 1024;

/// Keys deleted from a source per statement.
const DELETE_BATCH: usize = 5_000;

/// How long a statement of the move waits for a lock: something the fence does not hold back
/// (a hinted write, DDL outside the proxy) fails the move instead of stalling it.
const LOCK_TIMEOUT: &str = "10s";

/// The move's sessions on the shards, as `pg_stat_activity` names them.
pub const APPLICATION_NAME: &str = "shardgate reshard";

/// One shard's open transaction in a move.
pub struct Side {
    /// The shard's name.
    pub shard: String,
    /// Its connection, inside `BEGIN`.
    pub conn: ControlConn,
    /// A target's transaction id: the rows it wrote are the move's (see `stream`).
    pub xid: Option<String>,
    /// Statements prepared on it, by text (`stream` applies changes with them).
    pub prepared: HashMap<String, tokio_postgres::Statement>,
}

impl Side {
    /// A transaction on shard `name`'s server `uri` for one side of the move; a source's
    /// reads at `snapshot` when given (exported by a replication slot, see `stream`).
    pub async fn open(
        name: &str,
        uri: &BackendUri,
        role: Role,
        snapshot: Option<&str>,
        timeout: Duration,
    ) -> Result<Side, String> {
        let conn = connect(uri, timeout)
            .await
            .map_err(|why| format!("shard {name}: {why}"))?;
        let replica = conn
            .client
            .batch_execute("SET session_replication_role = replica")
            .await;
        if let Err(error) = replica {
            tracing::warn!(shard = name, %error, "RESHARD: triggers and foreign keys fire for the rows it moves on this shard");
        }
        let begin = match (role, snapshot) {
            (Role::Source, Some(snapshot)) => format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}",
                quote::literal(snapshot)
            ),
            (Role::Source, None) => "BEGIN ISOLATION LEVEL REPEATABLE READ".to_owned(),
            (Role::Target, _) => "BEGIN".to_owned(),
        };
        let setup = format!("SET lock_timeout = '{LOCK_TIMEOUT}'; {begin}");
        (conn.client.batch_execute(&setup).await).map_err(|e| on(name, e))?;
        let xid = match role {
            Role::Source => None,
            Role::Target => {
                // `xmin` holds the transaction id without its epoch (PostgreSQL 8.3 and later).
                let sql = "SELECT (txid_current() % 4294967296)::text";
                let row = conn.client.query_one(sql, &[]).await;
                Some(row.map_err(|e| on(name, e))?.get(0))
            }
        };
        Ok(Side {
            shard: name.to_owned(),
            conn,
            xid,
            prepared: HashMap::new(),
        })
    }

    /// Ends a source's copy snapshot (it only read) and begins the transaction that deletes
    /// what moved, at a snapshot taken now: a row written after it makes its delete fail
    /// rather than be deleted unseen.
    pub async fn snapshot_for_deletes(&self) -> Result<(), String> {
        let sql = "COMMIT; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1";
        (self.conn.client.batch_execute(sql).await).map_err(|e| on(&self.shard, e))
    }
}

/// Opens the move's transaction on target `name` of `new` unless it is open.
pub async fn open_target(
    targets: &mut HashMap<String, Side>,
    new: &Router,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    if targets.contains_key(name) {
        return Ok(());
    }
    let shard = (new.map().shard_by_name(name)).ok_or_else(|| format!("no shard {name}"))?;
    let side = Side::open(name, &shard.primary, Role::Target, None, timeout).await?;
    targets.insert(name.to_owned(), side);
    Ok(())
}

/// A control connection to `uri` for the move.
pub async fn connect(uri: &BackendUri, timeout: Duration) -> Result<ControlConn, String> {
    ControlConn::connect(uri, APPLICATION_NAME, timeout).await
}

/// Which side of the move a transaction is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Rows leave it: one snapshot for every table.
    Source,
    /// Rows arrive.
    Target,
}

/// The rows of one table that left one source, to delete there once every table is copied.
pub struct Moved {
    /// The table.
    pub table: String,
    key: String,
    key_type: String,
    /// The moving keys found (the stream adds those it wrote).
    pub keys: Vec<String>,
}

/// The columns a table's rows are copied with: every stored column, in catalog order.
struct Columns {
    list: String,
    key_index: usize,
    key_type: String,
}

/// Copies `table`'s rows that `old` places on `source` and `new` elsewhere into their
/// targets (opened on demand, connecting within `timeout`); what to delete from `source`
/// afterwards (`None`: the table is not there).
pub async fn copy_table(
    job: &Reshard,
    (old, new): (&Router, &Router),
    table: &str,
    source: &Side,
    targets: &mut HashMap<String, Side>,
    timeout: Duration,
) -> Result<Option<Moved>, String> {
    let Some(key) = new.map().sharding(table).map(|s| s.key_column.clone()) else {
        return Err(format!("table {table} has no shard key in the new map"));
    };
    let Some(columns) = columns(&source.conn, table, &key).await? else {
        return Ok(None); // Not created on this shard: nothing to move.
    };
    let copy_out = format!(
        "COPY (SELECT {} FROM {}) TO STDOUT",
        columns.list,
        quote::ident(table)
    );
    let stream =
        (source.conn.client.copy_out(copy_out.as_str()).await).map_err(|e| on(&source.shard, e))?;
    let mut stream = std::pin::pin!(stream);
    let mut splitter = RowSplitter::new(CopyFormat::text(), columns.key_index);
    let mut sinks: HashMap<String, Sink> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    while let Some(chunk) = stream.next().await {
        splitter.feed(&chunk.map_err(|e| on(&source.shard, e))?);
        while let Some(found) = splitter.next(false).map_err(|e| e.to_string())? {
            let len = found.len;
            let row_key = match found.piece {
                Piece::Row(Key::Text(text)) => Some(String::from_utf8_lossy(&text).into_owned()),
                _ => None,
            };
            let target = match row_key {
                Some(key) => leaving(old, new, table, &source.shard, key)?,
                None => None,
            };
            if let Some((target, key)) = target {
                if !sinks.contains_key(&target) {
                    open_target(targets, new, &target, timeout).await?;
                    let side = &targets[&target];
                    let sink = Sink::open(side, table, &columns.list).await?;
                    sinks.insert(target.clone(), sink);
                }
                let sink = sinks.get_mut(&target).ok_or("no sink")?;
                sink.queue(splitter.bytes(len), &targets[&target].shard)
                    .await?;
                keys.push(key);
            }
            splitter.consume(len);
        }
    }
    for (target, sink) in sinks {
        let rows = sink.finish(&target).await?;
        job.copied(table, &source.shard, &target, rows);
    }
    Ok(Some(Moved {
        table: table.to_owned(),
        key,
        key_type: columns.key_type,
        keys,
    }))
}

/// The target of a row of `table` with `key` found on `source`: `None` when it stays, or
/// when `old` does not place it on `source` (a stray row, left where it is).
pub(super) fn leaving(
    old: &Router,
    new: &Router,
    table: &str,
    source: &str,
    key: String,
) -> Result<Option<(String, String)>, String> {
    let name = |router: &Router| -> Result<String, String> {
        let shard = router.shard_of_key(table, &key).map_err(|e| {
            format!("cannot place key {key:?} of table {table}: {e} (RESHARD places keys by the map alone)")
        })?;
        Ok(router.map().shard(shard).name.clone())
    };
    if name(old)? != source {
        return Ok(None);
    }
    let target = name(new)?;
    Ok((target != source).then_some((target, key)))
}

/// The stored columns of `table` on `side`'s shard; `None` when the table is not there.
async fn columns(conn: &ControlConn, table: &str, key: &str) -> Result<Option<Columns>, String> {
    let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
               FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
               ORDER BY a.attnum";
    let rows = (conn.client.query(sql, &[&quote::ident(table)]).await)
        .map_err(|e| format!("reading the columns of {table}: {e}"))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let Some(key_index) = names.iter().position(|name| name == key) else {
        return Err(format!("table {table} has no column {key}"));
    };
    let key_type: String = rows[key_index].get(1);
    let list: Vec<String> = names.iter().map(|name| quote::ident(name)).collect();
    Ok(Some(Columns {
        list: list.join(", "),
        key_index,
        key_type,
    }))
}

/// Deletes from `source` the rows [`copy_table`] copied away.
pub async fn delete_moved(source: &Side, moved: &Moved) -> Result<(), String> {
    // Find the rows by the key's index even when the table's statistics are older than its
    // rows: a generic plan that scanned the table per batch took 20 s for 355,007 rows.
    let by_index = "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan";
    (source.conn.client.batch_execute(by_index).await).map_err(|e| on(&source.shard, e))?;
    let sql = format!(
        "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[])",
        quote::ident(&moved.table),
        quote::ident(&moved.key),
        moved.key_type
    );
    let statement = (source.conn.client.prepare(&sql).await).map_err(|e| on(&source.shard, e))?;
    let batches: Vec<Vec<&str>> = (moved.keys.chunks(DELETE_BATCH))
        .map(|batch| batch.iter().map(String::as_str).collect())
        .collect();
    // Sent pipelined: the server runs them one after the other without waiting for us.
    let client = &source.conn.client;
    let statement = &statement;
    let deletes =
        (batches.iter()).map(|batch| async move { client.execute(statement, &[batch]).await });
    (futures::future::try_join_all(deletes).await).map_err(|e| on(&source.shard, e))?;
    Ok(())
}

/// A COPY into one target, with the rows waiting to be sent.
struct Sink {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    pending: BytesMut,
}

impl Sink {
    async fn open(side: &Side, table: &str, columns: &str) -> Result<Sink, String> {
        let sql = format!("COPY {} ({columns}) FROM STDIN", quote::ident(table));
        let sink =
            (side.conn.client.copy_in(sql.as_str()).await).map_err(|e| on(&side.shard, e))?;
        Ok(Sink {
            sink: Box::pin(sink),
            pending: BytesMut::new(),
        })
    }

    async fn queue(&mut self, row: &[u8], shard: &str) -> Result<(), String> {
        self.pending.extend_from_slice(row);
        if self.pending.len() >= FLUSH_AT {
            let data = self.pending.split().freeze();
            self.sink.send(data).await.map_err(|e| on(shard, e))?;
        }
        Ok(())
    }

    async fn finish(mut self, shard: &str) -> Result<u64, String> {
        if !self.pending.is_empty() {
            let data = self.pending.split().freeze();
            self.sink.send(data).await.map_err(|e| on(shard, e))?;
        }
        self.sink.as_mut().finish().await.map_err(|e| on(shard, e))
    }
}

/// A server's error, naming its shard.
pub fn on(shard: &str, error: tokio_postgres::Error) -> String {
    let detail = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
    format!("shard {shard}: {detail}")
}
