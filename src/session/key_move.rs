//! UPDATEs that change rows' shard key: the rows move to the shards of their new keys, inside
//! the statement's transaction (the client's, or one of the proxy's, see `implicit`), the way
//! PostgreSQL moves a row between partitions. The rows are deleted where they are, returned as
//! the UPDATE leaves them (`router::key_move`), and inserted where their new key places them;
//! the client sees the UPDATE's RETURNING rows and `UPDATE n`, as from one server. Two phases
//! commit it when it touched two shards, like any transaction that wrote on several.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::broadcast::Parts;
use super::client::Refusal;
use super::routing::columns_of;
use super::scatter::MoveWrite;
use crate::config::ShardId;
use crate::error::Unsupported;
use crate::execute::broadcast::{LegStatement, Rows};
use crate::router::{KeyMove, TableColumn};
use crate::wire::{self, BindRest, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A simple Query that is one UPDATE of the shard key of rows on `sources`: moves them,
    /// then ReadyForQuery.
    pub(super) async fn query_moving_rows(
        &mut self,
        sql: &str,
        sources: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        if self.transaction_open() {
            self.move_rows(sql, sources, &Sent::Query).await?;
            self.note_ready(self.client_status);
            encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            return Ok(());
        }
        self.begin_implicit_query();
        let outcome = self.move_rows(sql, sources, &Sent::Query).await;
        self.end_implicit_query(outcome).await
    }

    /// An extended-protocol portal of an UPDATE of the shard key: its batch is one
    /// transaction up to its Sync, as on one server.
    pub(super) async fn move_rows_in_batch(
        &mut self,
        moving: MoveWrite,
        describe: bool,
    ) -> Result<(), Refusal> {
        self.check_spread_allowed()?;
        self.start_batch_transaction().await?;
        let bound =
            BindRest::decode(&moving.bind_rest).map_err(|e| Refusal::violation(e.to_string()))?;
        let sent = Sent::Portal {
            param_types: &moving.param_types,
            bind: &bound,
            describe,
        };
        self.move_rows(&moving.sql, moving.sources, &sent).await
    }

    /// Moves the rows an UPDATE of the shard key (`sql`) changes on `sources`, inside the open
    /// transaction, and writes its result (RETURNING rows, `UPDATE n`) to the client.
    pub(super) async fn move_rows(
        &mut self,
        sql: &str,
        sources: Vec<ShardId>,
        sent: &Sent<'_>,
    ) -> Result<(), Refusal> {
        let database = self.env.database.clone();
        let router = &database.router;
        let Some(table) = router.moved_table(sql) else {
            return Err(Refusal::Statement(super::internal(
                "no table to move rows of".into(),
            )));
        };
        let columns = columns_of(&database, &table).await?;
        let moving = (router.key_move(sql, &table, &columns)).map_err(|e| self.route_failed(e))?;
        let delete: Parts = (sources.iter())
            .map(|&shard| (shard, sent.deleting(&moving.delete)))
            .collect();
        let at_most = self.env.max_merge_bytes;
        let deleted = (self.legs_in_transaction(sql, delete, Rows::Kept(at_most))).await?;
        let mut rows = Vec::with_capacity(deleted.kept.len());
        for frame in &deleted.kept {
            let values = wire::data_row_text(&frame[wire::HEADER_LEN..]);
            rows.push(values.map_err(|e| Refusal::Statement(super::internal(e.to_string())))?);
        }
        let inserts = self.inserts_of(&table, &moving, &rows, sent)?;
        let inserts = match inserts {
            inserts if !inserts.is_empty() => inserts,
            // Nothing moves; RETURNING still owes the client a row description.
            _ if sent.describes(&moving) => {
                vec![(sources[0], sent.inserting(describe_only(&moving, &columns)))]
            }
            _ => Vec::new(),
        };
        if !inserts.is_empty() {
            self.legs_in_transaction(sql, inserts, Rows::Disjoint)
                .await?;
        }
        let tag = format!("UPDATE {}", rows.len());
        encode::command_complete(&mut self.bufs.to_client, &tag);
        Ok(())
    }

    /// One INSERT per shard the rows (as the DELETE returned them) go to, in shard order.
    fn inserts_of(
        &self,
        table: &str,
        moving: &KeyMove,
        rows: &[Vec<Option<String>>],
        sent: &Sent<'_>,
    ) -> Result<Parts, Refusal> {
        let router = &self.env.database.router;
        let mut groups: Vec<(ShardId, Vec<String>)> = Vec::new();
        for row in rows {
            let Some(Some(key)) = row.get(moving.key_index) else {
                let refusal = Unsupported::NullKeyInInsert {
                    table: table.to_owned(),
                    key: moving.key.clone(),
                    row: 1,
                };
                return Err(Refusal::Statement(self.unsupported(refusal)));
            };
            let shard = (router.shard_of_key(table, key)).map_err(|e| self.route_failed(e))?;
            let values: Vec<String> = row.iter().map(|v| literal(v.as_deref())).collect();
            let tuple = format!("({})", values.join(", "));
            match groups.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, tuples)) => tuples.push(tuple),
                None => groups.push((shard, vec![tuple])),
            }
        }
        groups.sort_by_key(|(shard, _)| *shard);
        let returning = moving.returning.as_deref().unwrap_or_default();
        let insert = |tuples: Vec<String>| {
            let sql = format!(
                "{} VALUES {}{returning}",
                moving.insert_head,
                tuples.join(", ")
            );
            sent.inserting(sql)
        };
        Ok(groups.into_iter().map(|(s, t)| (s, insert(t))).collect())
    }
}

/// How the client sent the UPDATE, which decides how the statements that move its rows run:
/// as simple queries, or bound with the client's parameters (the DELETE) and result formats
/// (the INSERTs' RETURNING rows), described only when the client described its portal.
pub(super) enum Sent<'a> {
    /// A simple Query.
    Query,
    /// An extended-protocol portal.
    Portal {
        /// Parameter types from the client's Parse.
        param_types: &'a [u32],
        /// The client's Bind.
        bind: &'a BindRest<'a>,
        /// The client described the portal (and has not had its description yet).
        describe: bool,
    },
}

impl Sent<'_> {
    /// The DELETE, returning text the proxy reads.
    fn deleting(&self, sql: &str) -> LegStatement {
        match self {
            Sent::Query => LegStatement::Simple(sql.to_owned()),
            Sent::Portal {
                param_types, bind, ..
            } => {
                let mut bind_rest = bind.params.to_vec();
                bind_rest.extend_from_slice(&0i16.to_be_bytes()); // Results in text.
                LegStatement::Bound {
                    sql: sql.to_owned(),
                    param_types: param_types.to_vec(),
                    bind_rest,
                    describe: false,
                }
            }
        }
    }

    /// An INSERT of moved rows (values written out), its RETURNING rows as the client asked.
    fn inserting(&self, sql: String) -> LegStatement {
        match self {
            Sent::Query => LegStatement::Simple(sql),
            Sent::Portal { bind, describe, .. } => {
                let mut bind_rest = vec![0, 0, 0, 0]; // No parameter formats, no parameters.
                let formats = i16::try_from(bind.result_formats.len()).unwrap_or(0);
                bind_rest.extend_from_slice(&formats.to_be_bytes());
                for format in &bind.result_formats {
                    bind_rest.extend_from_slice(&format.to_be_bytes());
                }
                LegStatement::Bound {
                    sql,
                    param_types: Vec::new(),
                    bind_rest,
                    describe: *describe,
                }
            }
        }
    }

    /// Whether the client is owed a description even when no row moves.
    fn describes(&self, moving: &KeyMove) -> bool {
        match self {
            Sent::Query => moving.returning.is_some(),
            Sent::Portal { describe, .. } => *describe,
        }
    }
}

/// An INSERT of no row that describes the RETURNING columns (or that there are none).
fn describe_only(moving: &KeyMove, columns: &[TableColumn]) -> String {
    let written = columns.iter().filter(|c| !c.generated).count();
    let nulls = vec!["NULL"; written].join(", ");
    let returning = moving.returning.as_deref().unwrap_or_default();
    let head = &moving.insert_head;
    format!("{head} SELECT {nulls} WHERE false{returning}")
}

/// A value as PostgreSQL printed it, as a literal it reads back the same (dollar-quoted, so
/// no setting changes how it is read).
fn literal(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "NULL".to_owned();
    };
    let tag = (0..)
        .map(|n| format!("$m{n}$"))
        .find(|tag| !value.contains(tag.as_str()) && !value.ends_with(&tag[..tag.len() - 1]))
        .unwrap_or_default();
    format!("{tag}{value}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_dollar_quoted_with_a_tag_they_do_not_hold() {
        assert_eq!(literal(None), "NULL");
        assert_eq!(literal(Some("it's")), "$m0$it's$m0$");
        assert_eq!(literal(Some("a$m0$b")), "$m1$a$m0$b$m1$");
    }
}
