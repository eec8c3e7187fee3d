//! The statements that apply a source's changes on a target: each value sent as a text
//! parameter and cast to its column's type in the statement, so one prepared statement
//! serves every change of a shape, and a round's statements go to a target pipelined.

use std::collections::HashMap;

use futures::future::try_join_all;
use tokio_postgres::types::{ToSql, Type};

use super::super::copy::{self, Side};
use crate::sql::quote;
use crate::wire::pgoutput::{Relation, Tuple, Value};

/// A relation of the stream, with what applying its changes needs.
pub(super) struct Known {
    pub(super) relation: Relation,
    /// The map table it is.
    pub(super) table: String,
    /// Each column's type, as `format_type` spells it.
    pub(super) types: Vec<String>,
    /// Whether each column is an identity column `GENERATED ALWAYS` (written only with
    /// `OVERRIDING SYSTEM VALUE`, never updated).
    pub(super) generated_always: Vec<bool>,
    /// The shard key's column.
    pub(super) key: usize,
    /// Whether the replica identity holds the shard key (then it says where a row was).
    pub(super) key_in_identity: bool,
}

/// A statement's text and its parameters (text, or NULL).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) params: Vec<Option<String>>,
}

impl Sql {
    /// A parameter of type `ty` holding `value`.
    fn param(&mut self, value: Option<&str>, ty: &str) -> String {
        self.params.push(value.map(str::to_owned));
        format!("${}::{ty}", self.params.len())
    }
}

/// One statement for a target, and whether it must find its row.
pub(super) struct Statement {
    pub(super) sql: Sql,
    pub(super) must_touch: bool,
}

/// Where the row a change names is on a target.
pub(super) enum Row<'a> {
    /// The row with this identity that transaction `xid` wrote.
    Identity { identity: &'a Tuple, xid: &'a str },
    /// The row at this tuple id (found by `Stream::find`).
    At(&'a str),
}

impl Known {
    /// A parameter for the value of column `index` (`None`: the value was not sent).
    fn value(&self, sql: &mut Sql, index: usize, value: &Value) -> Result<Option<String>, String> {
        let ty = self.type_of(index)?;
        Ok(match value {
            Value::Null => Some(sql.param(None, ty)),
            Value::Unchanged => None,
            Value::Text(text) => Some(sql.param(Some(text), ty)),
        })
    }

    /// Column `index`'s type; a change with more values than its relation has columns
    /// stops the move.
    fn type_of(&self, index: usize) -> Result<&str, String> {
        self.types
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| self.too_wide())
    }

    fn column_name(&self, index: usize) -> Result<String, String> {
        let column = self
            .relation
            .columns
            .get(index)
            .ok_or_else(|| self.too_wide())?;
        Ok(quote::ident(&column.name))
    }

    fn too_wide(&self) -> String {
        format!(
            "table {}: a change has more values than the table has columns",
            self.table
        )
    }

    /// An INSERT of the whole row `new`; a row with an unsent (TOASTed, unchanged) value
    /// cannot be written whole, and the move stops.
    pub(super) fn insert_whole(&self, new: &Tuple) -> Result<Sql, String> {
        let mut sql = Sql::default();
        let mut columns = Vec::new();
        let mut values = Vec::new();
        for (index, value) in new.iter().enumerate() {
            let param = self.value(&mut sql, index, value)?.ok_or_else(|| {
                format!(
                    "table {}: a row's shard key changed while a large (TOASTed) value stayed; move it by hand",
                    self.table
                )
            })?;
            columns.push(self.column_name(index)?);
            values.push(param);
        }
        let overriding = match self.generated_always.contains(&true) {
            true => " OVERRIDING SYSTEM VALUE",
            false => "",
        };
        sql.text = format!(
            "INSERT INTO {} ({}){overriding} VALUES ({})",
            quote::ident(&self.table),
            columns.join(", "),
            values.join(", ")
        );
        Ok(sql)
    }

    /// An UPDATE of `row` to the sent values of `new`.
    pub(super) fn update(&self, new: &Tuple, row: &Row<'_>) -> Result<Sql, String> {
        let mut sql = Sql::default();
        let mut set = Vec::new();
        for (index, value) in new.iter().enumerate() {
            if self.generated_always.get(index) == Some(&true) {
                continue; // Never changes.
            }
            if let Some(param) = self.value(&mut sql, index, value)? {
                set.push(format!("{} = {param}", self.column_name(index)?));
            }
        }
        let locate = self.locate(&mut sql, row)?;
        sql.text = format!(
            "UPDATE {} SET {} WHERE {locate}",
            quote::ident(&self.table),
            set.join(", ")
        );
        Ok(sql)
    }

    /// A DELETE of `row`.
    pub(super) fn delete(&self, row: &Row<'_>) -> Result<Sql, String> {
        let mut sql = Sql::default();
        let locate = self.locate(&mut sql, row)?;
        sql.text = format!("DELETE FROM {} WHERE {locate}", quote::ident(&self.table));
        Ok(sql)
    }

    /// The rows (tuple id and shard key) with `identity` that transaction `xid` wrote.
    pub(super) fn candidates(&self, identity: &Tuple, xid: &str) -> Result<Sql, String> {
        let mut sql = Sql::default();
        let matching = self.matching(&mut sql, identity, xid)?;
        let key = self.column_name(self.key)?;
        sql.text = format!(
            "SELECT ctid::text, {key}::text FROM {} WHERE {matching}",
            quote::ident(&self.table)
        );
        Ok(sql)
    }

    fn locate(&self, sql: &mut Sql, row: &Row<'_>) -> Result<String, String> {
        match row {
            Row::At(ctid) => Ok(format!("ctid = {}", sql.param(Some(ctid), "tid"))),
            Row::Identity { identity, xid } => Ok(format!(
                "ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)",
                quote::ident(&self.table),
                self.matching(sql, identity, xid)?
            )),
        }
    }

    /// The condition for the rows with `identity` that transaction `xid` wrote.
    fn matching(&self, sql: &mut Sql, identity: &Tuple, xid: &str) -> Result<String, String> {
        let mut terms = vec![format!("xmin = {}", sql.param(Some(xid), "xid"))];
        for (index, column) in self.relation.columns.iter().enumerate() {
            if !column.identity {
                continue;
            }
            let name = quote::ident(&column.name);
            match identity.get(index) {
                Some(Value::Null) => terms.push(format!("{name} IS NULL")),
                Some(Value::Text(text)) => {
                    let param = sql.param(Some(text), self.type_of(index)?);
                    terms.push(format!("{name} = {param}"));
                }
                Some(Value::Unchanged) | None => {
                    return Err(format!(
                        "table {}: a change's identity left {} unsent; move it by hand",
                        self.table, column.name
                    ));
                }
            }
        }
        Ok(terms.join(" AND "))
    }
}

/// Runs each target's statements, pipelined, in order; a statement that must find its row
/// and finds none stops the move.
pub(super) async fn flush(
    targets: &mut HashMap<String, Side>,
    batches: &mut HashMap<String, Vec<Statement>>,
) -> Result<(), String> {
    for (target, statements) in batches.drain() {
        let side = targets
            .get_mut(&target)
            .ok_or_else(|| lost(&target, "no row was moved there"))?;
        let mut prepared = Vec::new();
        for statement in &statements {
            prepared.push(prepare(side, &statement.sql).await?);
        }
        let runs = statements
            .iter()
            .zip(&prepared)
            .map(|(statement, prepared)| {
                let params: Vec<&(dyn ToSql + Sync)> = (statement.sql.params.iter())
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                let client = &side.conn.client;
                async move { client.execute(prepared, &params).await }
            });
        let counts = try_join_all(runs).await.map_err(|e| copy::on(&target, e))?;
        for (statement, rows) in statements.iter().zip(counts) {
            if statement.must_touch && rows == 0 {
                return Err(lost(&target, &statement.sql.text));
            }
        }
    }
    Ok(())
}

/// The rows `sql` ([`Known::candidates`]) finds on `side`: tuple id and key, as text.
pub(super) async fn query_pairs(
    side: &mut Side,
    sql: &Sql,
) -> Result<Vec<(String, String)>, String> {
    let prepared = prepare(side, sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = sql
        .params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let rows =
        (side.conn.client.query(&prepared, &params).await).map_err(|e| copy::on(&side.shard, e))?;
    // A row without a key was not moved by key: it is no candidate.
    let pairs = rows
        .iter()
        .filter_map(|row| Some((row.get(0), row.get::<_, Option<String>>(1)?)));
    Ok(pairs.collect())
}

/// `sql` prepared on `side`'s connection (once per text) with every parameter sent as text.
async fn prepare(side: &mut Side, sql: &Sql) -> Result<tokio_postgres::Statement, String> {
    if let Some(found) = side.prepared.get(&sql.text) {
        return Ok(found.clone());
    }
    let types = vec![Type::TEXT; sql.params.len()];
    let prepared = (side.conn.client.prepare_typed(&sql.text, &types).await)
        .map_err(|e| copy::on(&side.shard, e))?;
    side.prepared.insert(sql.text.clone(), prepared.clone());
    Ok(prepared)
}

pub(super) fn xid(side: &Side) -> Result<&str, String> {
    (side.xid.as_deref())
        .ok_or_else(|| format!("shard {}: a target without its transaction id", side.shard))
}

/// The open transaction on `target`: a move's row is only ever looked for where the move wrote.
pub(super) fn side<'t>(
    targets: &'t HashMap<String, Side>,
    target: &str,
) -> Result<&'t Side, String> {
    targets
        .get(target)
        .ok_or_else(|| lost(target, "no row was moved there"))
}

pub(super) fn lost(target: &str, sql: &str) -> String {
    format!("shard {target}: a change found no moved row to apply to ({sql}); nothing moved")
}

#[cfg(test)]
mod tests;
