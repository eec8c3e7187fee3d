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
use super::implicit::Unit;
use super::replies::{Expect, Synthetic};
use super::routing::columns_of;
use super::transaction::Phase;
use crate::config::ShardId;
use crate::error::Unsupported;
use crate::execute::broadcast::{LegStatement, Rows};
use crate::router::KeyMove;
use crate::wire::{self, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A simple Query that is one UPDATE of the shard key of rows on `sources`: moves them,
    /// then ReadyForQuery.
    pub(super) async fn query_moving_rows(
        &mut self,
        sql: &str,
        sources: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        if self.transaction_open() {
            self.move_rows(sql, sources).await?;
            self.note_ready(self.client_status);
            encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            return Ok(());
        }
        self.txn.phase = Phase::deferred("BEGIN".to_owned());
        self.txn.implicit = true;
        let unit = match self.move_rows(sql, sources).await {
            Ok(()) => Unit::Ran,
            Err(Refusal::Statement(report)) => {
                self.push(Expect::synthetic(Synthetic::Error(report)));
                Unit::Refused
            }
            Err(ending @ Refusal::Session(_)) => return Err(ending),
        };
        self.end_implicit(unit).await
    }

    /// Moves the rows an UPDATE of the shard key (`sql`) changes on `sources`, inside the open
    /// transaction, and writes its result (RETURNING rows, `UPDATE n`) to the client.
    pub(super) async fn move_rows(
        &mut self,
        sql: &str,
        sources: Vec<ShardId>,
    ) -> Result<(), Refusal> {
        let database = self.env.database.clone();
        let router = &database.router;
        let Some(table) = router.moved_table(sql) else {
            return Err(Refusal::Statement(super::internal(
                "no table to move rows of".into(),
            )));
        };
        let columns = columns_of(&database, &table).await?;
        let columns: Vec<(&str, bool)> = (columns.iter())
            .map(|c| (c.name.as_str(), c.generated))
            .collect();
        let moving = (router.key_move(sql, &table, &columns)).map_err(|e| self.route_failed(e))?;
        let delete: Parts = (sources.iter())
            .map(|&shard| (shard, LegStatement::Simple(moving.delete.clone())))
            .collect();
        let deleted = self.legs_in_transaction(sql, delete, Rows::Kept).await?;
        let mut rows = Vec::with_capacity(deleted.kept.len());
        for frame in &deleted.kept {
            let values = wire::data_row_text(&frame[wire::HEADER_LEN..]);
            rows.push(values.map_err(|e| Refusal::Statement(super::internal(e.to_string())))?);
        }
        let inserts = self.inserts_of(&table, &moving, &rows)?;
        let inserts = match inserts {
            inserts if !inserts.is_empty() => inserts,
            // Nothing moves; RETURNING still owes the client a row description.
            _ if moving.returning.is_some() => vec![(sources[0], describe_only(&moving, &columns))],
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
            LegStatement::Simple(sql)
        };
        Ok(groups.into_iter().map(|(s, t)| (s, insert(t))).collect())
    }
}

/// An INSERT of no row that describes the RETURNING columns.
fn describe_only(moving: &KeyMove, columns: &[(&str, bool)]) -> LegStatement {
    let written = columns.iter().filter(|(_, generated)| !generated).count();
    let nulls = vec!["NULL"; written].join(", ");
    let returning = moving.returning.as_deref().unwrap_or_default();
    let head = &moving.insert_head;
    LegStatement::Simple(format!("{head} SELECT {nulls} WHERE false{returning}"))
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
