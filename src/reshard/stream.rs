//! The changes a source takes while its rows copy with the fence down: a publication of the
//! moving tables and a logical replication slot whose exported snapshot the copy reads at
//! ([`Stream::start`]), then the slot's changes (`pgoutput`) read in rounds
//! ([`Stream::catch_up`]) and the moving keys' ones applied in the targets' open
//! transactions. Every change is in the copy (committed before the snapshot) or in the stream
//! (after), so once the fence is up and the stream has reached the source's current WAL
//! position, the targets hold exactly the moving rows.
//!
//! A target finds the row a change names by the source's replica identity among the rows its
//! own transaction wrote (`xmin`): the move's rows, never the target's own. When the
//! identity holds the shard key, that locates the row outright; otherwise the candidate's key
//! is placed by the old map, so that only a row that came from this source is touched.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use super::copy::{self, Role, Side};
use crate::backend::create_slot_exporting_snapshot;
use crate::config::{BackendUri, ShardMap};
use crate::control::ControlConn;
use crate::router::Router;
use crate::sql::quote;
use crate::wire::pgoutput::{self, Change, Relation, Tuple, Value};

/// Changes read from a slot per round (a round reads whole transactions, so it may be more).
const ROUND: i32 = 20_000;

/// Changes applied per pipelined flush to the targets.
const FLUSH_EVERY: usize = 1_000;

/// Creating a slot waits for the source's running transactions to end; at most this long.
const SLOT_WAIT: Duration = Duration::from_secs(30);

/// One source's slot, publication and what its changes brought.
pub struct Stream {
    /// The source shard.
    pub shard: String,
    uri: BackendUri,
    /// The name of both its slot and its publication.
    name: String,
    poll: ControlConn,
    tables: Vec<String>,
    /// Each moving table's shard key column.
    key_columns: HashMap<String, String>,
    /// Each moving table's columns by name (type, and whether it is an identity column
    /// `GENERATED ALWAYS`), read when the stream started.
    column_types: HashMap<String, HashMap<String, (String, bool)>>,
    relations: HashMap<u32, Known>,
    /// Moving keys the changes wrote, per table: deleted from the source with the copied ones.
    pub keys: HashMap<String, Vec<String>>,
    /// Changes applied on targets.
    pub applied: u64,
}

/// The routers that place a key before and after the move.
pub struct Maps<'a> {
    /// The map in force.
    pub old: &'a Router,
    /// The edit.
    pub new: &'a Router,
}

impl Stream {
    /// Starts streaming shard `shard`'s (on `uri`) changes to `tables` (`name` names the
    /// slot and publication; `new` is the edit, for the shard keys), and opens the copy's
    /// transaction at the slot's snapshot. `Err` says why this source cannot stream (the move
    /// then copies with the fence up).
    pub async fn start(
        (shard, uri): (&str, &BackendUri),
        tables: &[String],
        new: &ShardMap,
        name: &str,
        timeout: Duration,
    ) -> Result<(Stream, Side), String> {
        let key_columns = (tables.iter())
            .filter_map(|t| Some((t.clone(), new.sharding(t)?.key_column.clone())))
            .collect();
        let poll = copy::connect(uri, timeout)
            .await
            .map_err(|why| format!("shard {shard}: {why}"))?;
        let limits = "SET lock_timeout = '10s'; SET statement_timeout = '120s'";
        (poll.client.batch_execute(limits).await).map_err(|e| copy::on(shard, e))?;
        let tables = streamable(&poll, shard, tables).await?;
        let mut column_types = HashMap::new();
        for table in &tables {
            let types = types_of(&poll, table)
                .await
                .map_err(|e| copy::on(shard, e))?;
            column_types.insert(table.clone(), types);
        }
        let mut stream = Stream {
            shard: shard.to_owned(),
            uri: uri.clone(),
            name: name.to_owned(),
            poll,
            tables,
            key_columns,
            column_types,
            relations: HashMap::new(),
            keys: HashMap::new(),
            applied: 0,
        };
        match stream.open(timeout).await {
            Ok(side) => Ok((stream, side)),
            Err(why) => {
                stream.finish().await;
                Err(why)
            }
        }
    }

    async fn open(&mut self, timeout: Duration) -> Result<Side, String> {
        let on = |e| copy::on(&self.shard, e);
        let listed: Vec<String> = self.tables.iter().map(|t| quote::ident(t)).collect();
        let publication = match listed.is_empty() {
            true => format!("CREATE PUBLICATION {}", quote::ident(&self.name)),
            false => format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote::ident(&self.name),
                listed.join(", ")
            ),
        };
        self.poll
            .client
            .batch_execute(&publication)
            .await
            .map_err(on)?;
        let exported = create_slot_exporting_snapshot(&self.uri, &self.name, SLOT_WAIT)
            .await
            .map_err(|e| format!("shard {}: {e}", self.shard))?;
        let side = Side::open(
            &self.shard,
            &self.uri,
            Role::Source,
            Some(&exported.snapshot),
            timeout,
        )
        .await?;
        tracing::info!(
            shard = self.shard,
            slot = self.name,
            from = exported.consistent_point,
            "RESHARD: the copy reads at the slot's snapshot"
        );
        Ok(side)
    }

    /// How many bytes of WAL the source wrote that the slot has not been read past.
    pub async fn bytes_behind(&self) -> Option<i64> {
        let sql = "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint \
                   FROM pg_replication_slots WHERE slot_name = $1";
        let row = self
            .poll
            .client
            .query_opt(sql, &[&self.name])
            .await
            .ok()??;
        row.get(0)
    }

    /// The source's current WAL position: every change committed before it is read by a
    /// [`Stream::catch_up`] up to it.
    pub async fn position(&self) -> Result<String, String> {
        let on = |e| copy::on(&self.shard, e);
        let sql = "SELECT pg_current_wal_lsn()::text";
        let position: String = self
            .poll
            .client
            .query_one(sql, &[])
            .await
            .map_err(on)?
            .get(0);
        // A slot decodes only flushed WAL, and the WAL up to the position may not be flushed
        // (a commit with synchronous_commit = off; records no commit waited for, which stay
        // unflushed until something forces them: seconds once the fenced writers stop
        // committing). A transaction of our own that commits flushes everything before it.
        let flush = "SET synchronous_commit = on; SELECT txid_current()";
        (self.poll.client.batch_execute(flush).await).map_err(on)?;
        // Wait for the flush all the same (the server may commit asynchronously).
        let flushed = "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self
            .poll
            .client
            .query_one(flushed, &[&position])
            .await
            .map_err(on)?
            .get::<_, bool>(0)
        {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "shard {}: its WAL was not flushed to {position} within 5 s",
                    self.shard
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(position)
    }

    /// Reads the slot's changes (about [`ROUND`] of them at most; only those that committed
    /// before `upto`, when given) and applies the moving keys' ones on their targets; how
    /// many it read.
    pub async fn catch_up(
        &mut self,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
        upto: Option<&str>,
        timeout: Duration,
    ) -> Result<usize, String> {
        let limit = Some(ROUND);
        let sql = "SELECT data FROM pg_logical_slot_get_binary_changes($1, $2::text::pg_lsn, $3, \
                   'proto_version', '1', 'publication_names', $4)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&self.name, &upto, &limit, &self.name];
        let on = |e| copy::on(&self.shard, e);
        let rows = (self.poll.client.query_raw(sql, params).await).map_err(on)?;
        let mut rows = std::pin::pin!(rows);
        let mut batches: HashMap<String, Vec<Statement>> = HashMap::new();
        let (mut read, mut batched) = (0, 0);
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| copy::on(&self.shard, e))?;
            let data: &[u8] = row.get(0);
            let change =
                pgoutput::decode(data).map_err(|e| format!("shard {}: {e}", self.shard))?;
            self.apply(change, maps, targets, &mut batches, timeout)
                .await?;
            read += 1;
            batched += 1;
            // A large transaction streams through without piling up in memory.
            if batched >= FLUSH_EVERY {
                flush(targets, &mut batches).await?;
                batched = 0;
            }
        }
        flush(targets, &mut batches).await?;
        Ok(read)
    }

    async fn apply(
        &mut self,
        change: Change,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
        batches: &mut HashMap<String, Vec<Statement>>,
        timeout: Duration,
    ) -> Result<(), String> {
        match change {
            Change::Relation(relation) => self.learn(relation),
            Change::Insert { relation, new } => {
                let known = self.known(relation)?;
                let Some((target, key)) = self.destination(known, &new, maps)? else {
                    return Ok(());
                };
                let sql = known.insert_whole(&new)?;
                self.wrote(known.table.clone(), key);
                copy::open_target(targets, maps.new, &target, timeout).await?;
                batches.entry(target).or_default().push(Statement {
                    sql,
                    must_touch: false,
                });
                self.applied += 1;
                Ok(())
            }
            Change::Update { relation, old, new } => {
                self.update(relation, old, new, maps, targets, batches, timeout)
                    .await
            }
            Change::Delete { relation, old } => {
                self.delete(relation, old, maps, targets, batches).await
            }
            Change::Truncate { .. } => Err(format!(
                "shard {}: a moving table was truncated during the move; nothing moved",
                self.shard
            )),
            Change::Other(_) => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &mut self,
        relation: u32,
        old: Option<Tuple>,
        new: Tuple,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
        batches: &mut HashMap<String, Vec<Statement>>,
        timeout: Duration,
    ) -> Result<(), String> {
        let known = self.known(relation)?;
        let identity = old.as_ref().unwrap_or(&new);
        let going = self.destination(known, &new, maps)?;
        if !known.key_in_identity {
            flush(targets, batches).await?;
            return self
                .update_found(relation, identity, &new, going, maps, targets, timeout)
                .await;
        }
        let (to, key) = going.unzip();
        let was = self.destination(known, identity, maps)?.map(|(t, _)| t);
        let mut push = |target: String, sql, must_touch| {
            let statement = Statement { sql, must_touch };
            batches.entry(target).or_default().push(statement);
        };
        match (was, to) {
            (None, None) => return Ok(()), // A row that stays, before and after.
            (Some(was), Some(to)) if was == to => {
                let xid = xid(side(targets, &to)?)?;
                let sql = known.update(&new, &Row::Identity { identity, xid })?;
                push(to, sql, true);
                if let (true, Some(key)) = (old.is_some(), key) {
                    // The key may have changed to another that moves the same way: the
                    // source row, now under it, must go too.
                    let table = known.table.clone();
                    self.wrote(table, key);
                }
            }
            (was, to) => {
                if let Some(was) = was {
                    let xid = xid(side(targets, &was)?)?;
                    push(was, known.delete(&Row::Identity { identity, xid })?, true);
                }
                if let (Some(to), Some(key)) = (to, key) {
                    let sql = known.insert_whole(&new)?;
                    let table = known.table.clone();
                    copy::open_target(targets, maps.new, &to, timeout).await?;
                    let statement = Statement {
                        sql,
                        must_touch: false,
                    };
                    batches.entry(to).or_default().push(statement);
                    self.wrote(table, key);
                }
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// An update whose identity does not say where the row was: the copy this source made
    /// is found, then updated, or deleted and written whole where the new key goes.
    #[allow(clippy::too_many_arguments)]
    async fn update_found(
        &mut self,
        relation: u32,
        identity: &Tuple,
        new: &Tuple,
        going: Option<(String, String)>,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
        timeout: Duration,
    ) -> Result<(), String> {
        let found = self.find(relation, identity, maps, targets).await?;
        let known = self.known(relation)?;
        let table = known.table.clone();
        let (to, key) = going.unzip();
        let mut run = Vec::new();
        match (&found, &to) {
            (Some((at, ctid)), Some(to)) if at == to => {
                run.push((to.clone(), known.update(new, &Row::At(ctid))?, true));
            }
            (found, to) => {
                if let Some((at, ctid)) = found {
                    run.push((at.clone(), known.delete(&Row::At(ctid))?, true));
                }
                if let Some(to) = to {
                    copy::open_target(targets, maps.new, to, timeout).await?;
                    run.push((to.clone(), known.insert_whole(new)?, false));
                }
            }
        }
        // The key may have changed (the identity does not say): the source row goes too.
        if let (Some(_), Some(key)) = (&to, key) {
            self.wrote(table, key);
        }
        if run.is_empty() {
            return Ok(()); // A row that stays, before and after.
        }
        for (target, sql, must_touch) in run {
            let mut batch = HashMap::from([(target, vec![Statement { sql, must_touch }])]);
            flush(targets, &mut batch).await?;
        }
        self.applied += 1;
        Ok(())
    }

    async fn delete(
        &mut self,
        relation: u32,
        old: Tuple,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
        batches: &mut HashMap<String, Vec<Statement>>,
    ) -> Result<(), String> {
        let known = self.known(relation)?;
        if known.key_in_identity {
            let Some((target, _)) = self.destination(known, &old, maps)? else {
                return Ok(()); // A row that stays.
            };
            let xid = xid(side(targets, &target)?)?;
            let sql = known.delete(&Row::Identity {
                identity: &old,
                xid,
            })?;
            let statement = Statement {
                sql,
                must_touch: true,
            };
            batches.entry(target).or_default().push(statement);
        } else {
            flush(targets, batches).await?;
            let Some((at, ctid)) = self.find(relation, &old, maps, targets).await? else {
                return Ok(()); // Not a row this source moved.
            };
            let sql = self.known(relation)?.delete(&Row::At(&ctid))?;
            let statement = Statement {
                sql,
                must_touch: true,
            };
            flush(targets, &mut HashMap::from([(at, vec![statement])])).await?;
        }
        self.applied += 1;
        Ok(())
    }

    /// The target and tuple id of the row with `identity` that this source moved, when the
    /// identity lacks the shard key: among the rows each target's transaction wrote, the one
    /// whose key the old map places on this source.
    async fn find(
        &self,
        relation: u32,
        identity: &Tuple,
        maps: &Maps<'_>,
        targets: &mut HashMap<String, Side>,
    ) -> Result<Option<(String, String)>, String> {
        let known = self.known(relation)?;
        for (name, side) in targets.iter_mut() {
            let sql = known.candidates(identity, xid(side)?)?;
            for (ctid, key) in query_pairs(side, &sql).await? {
                let came_from =
                    (maps.old.shard_of_key(&known.table, &key)).map_err(|e| e.to_string())?;
                if maps.old.map().shard(came_from).name == self.shard {
                    return Ok(Some((name.clone(), ctid)));
                }
            }
        }
        Ok(None)
    }

    /// Takes in a relation's description. Nothing is asked of the source here: the slot's
    /// rows are still arriving on the same connection.
    fn learn(&mut self, relation: Relation) -> Result<(), String> {
        let table = (self.tables.iter())
            .find(|t| {
                **t == relation.name || **t == format!("{}.{}", relation.namespace, relation.name)
            })
            .cloned()
            .ok_or_else(|| {
                format!(
                    "shard {}: a change to {}, which does not move",
                    self.shard, relation.name
                )
            })?;
        let type_of = (self.column_types.get(&table))
            .ok_or_else(|| format!("table {table} has no columns"))?;
        let mut types = Vec::new();
        let mut generated_always = Vec::new();
        for column in &relation.columns {
            let (found, always) = type_of.get(&column.name).ok_or_else(|| {
                format!(
                    "shard {}: column {} of {table} changed during the move",
                    self.shard, column.name
                )
            })?;
            types.push(found.clone());
            generated_always.push(*always);
        }
        let key_name = (self.key_columns.get(&table))
            .ok_or_else(|| format!("table {table} has no shard key"))?;
        let key = (relation.columns.iter().position(|c| c.name == *key_name))
            .ok_or_else(|| format!("table {table} has no column {key_name}"))?;
        let key_in_identity = relation.columns[key].identity;
        let relation_id = relation.id;
        let known = Known {
            relation,
            table,
            types,
            generated_always,
            key,
            key_in_identity,
        };
        self.relations.insert(relation_id, known);
        Ok(())
    }

    fn known(&self, relation: u32) -> Result<&Known, String> {
        (self.relations.get(&relation))
            .ok_or_else(|| format!("shard {}: a change before its relation", self.shard))
    }

    /// Where the row with `tuple`'s key goes: `None` when it stays (or is stray).
    fn destination(
        &self,
        known: &Known,
        tuple: &Tuple,
        maps: &Maps<'_>,
    ) -> Result<Option<(String, String)>, String> {
        match tuple.get(known.key) {
            Some(Value::Text(key)) => {
                copy::leaving(maps.old, maps.new, &known.table, &self.shard, key.clone())
            }
            Some(Value::Null) | None => Ok(None),
            Some(Value::Unchanged) => Err(format!(
                "table {}: a change left the shard key unsent (a TOASTed key); move it by hand",
                known.table
            )),
        }
    }

    fn wrote(&mut self, table: String, key: String) {
        self.keys.entry(table).or_default().push(key);
    }

    /// Drops the slot and the publication (the move ended, either way), on a connection of
    /// its own: the one that read the slot may be what failed.
    pub async fn finish(&self) {
        let drop_slot = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                         WHERE slot_name = $1";
        let drop_publication = format!("DROP PUBLICATION IF EXISTS {}", quote::ident(&self.name));
        let dropped = match copy::connect(&self.uri, Duration::from_secs(10)).await {
            Ok(conn) => {
                let slot = conn.client.execute(drop_slot, &[&self.name]).await;
                let publication = conn.client.batch_execute(&drop_publication).await;
                slot.and(publication).map(|_| ()).map_err(|e| e.to_string())
            }
            Err(why) => Err(why),
        };
        if let Err(error) = dropped {
            tracing::warn!(
                shard = self.shard,
                slot = self.name,
                error,
                "RESHARD could not drop its slot or publication; the next RESHARD or start drops them"
            );
        }
    }
}

/// `table`'s columns by name: type as `format_type` spells it, and whether it is an identity
/// column `GENERATED ALWAYS`.
async fn types_of(
    poll: &ControlConn,
    table: &str,
) -> Result<HashMap<String, (String, bool)>, tokio_postgres::Error> {
    let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attidentity = 'a' \
               FROM pg_attribute a \
               WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
    let rows = poll.client.query(sql, &[&quote::ident(table)]).await?;
    Ok((rows.iter())
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect())
}

/// The tables of `tables` present on the source, or why one of them cannot stream.
async fn streamable(
    poll: &ControlConn,
    shard: &str,
    tables: &[String],
) -> Result<Vec<String>, String> {
    let on = |e| copy::on(shard, e);
    let settings = "SELECT current_setting('wal_level'), current_setting('server_encoding')";
    let row = poll.client.query_one(settings, &[]).await.map_err(on)?;
    let (level, encoding): (String, String) = (row.get(0), row.get(1));
    if level != "logical" {
        return Err(format!(
            "shard {shard} has wal_level = {level}, not logical"
        ));
    }
    if encoding != "UTF8" {
        return Err(format!(
            "shard {shard} stores text as {encoding}; the stream reads UTF-8"
        ));
    }
    let sql = "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i \
               WHERE i.indrelid = c.oid AND i.indisprimary), c.relkind::text \
               FROM pg_class c WHERE c.oid = to_regclass($1)";
    let mut present = Vec::new();
    for table in tables {
        let row = poll
            .client
            .query_opt(sql, &[&quote::ident(table)])
            .await
            .map_err(on)?;
        let Some(row) = row else { continue };
        let (identity, primary_key, kind): (String, bool, String) =
            (row.get(0), row.get(1), row.get(2));
        if kind != "r" {
            return Err(format!(
                "table {table} on shard {shard} is partitioned (its changes come by partition)"
            ));
        }
        if identity == "f" {
            return Err(format!(
                "table {table} on shard {shard} has REPLICA IDENTITY FULL (rows are found by a key)"
            ));
        }
        if identity == "n" || (identity == "d" && !primary_key) {
            return Err(format!(
                "table {table} on shard {shard} has no replica identity (no primary key)"
            ));
        }
        present.push(table.clone());
    }
    Ok(present)
}

mod statements;

use statements::{Known, Row, Statement, flush, query_pairs, side, xid};
