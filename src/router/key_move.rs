//! An UPDATE that changes rows' shard key, as statements that move them: PostgreSQL moves a
//! row between partitions the same way (a DELETE where it was, an INSERT where it goes).
//!
//! Part of the router (pure). Given the table's columns (from the catalog), the UPDATE
//! becomes a DELETE on the shards holding the rows that returns each row as the UPDATE would
//! leave it (the SET values, computed from the old row, and every other column as it was),
//! and the head of the INSERT that puts those rows on the shards of their new keys, with the
//! UPDATE's RETURNING list.

use sqlparser::ast::{AssignmentTarget, Statement, TableFactor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::RouteError;
use super::scope::{ident_name, identifier, map_table_name};
use crate::error::Unsupported;

/// The statements that move the rows an UPDATE of the shard key changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMove {
    /// `DELETE FROM t … RETURNING` the new value of every written column, in `columns` order.
    pub delete: String,
    /// `INSERT INTO t [AS alias] (columns) OVERRIDING SYSTEM VALUE`; the rows follow as VALUES.
    pub insert_head: String,
    /// The UPDATE's `RETURNING …` clause (with its keyword), for the INSERTs.
    pub returning: Option<String>,
    /// Where the key is among the values the DELETE returns.
    pub key_index: usize,
    /// The key column.
    pub key: String,
}

/// A column of a table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// Its name.
    pub name: String,
    /// A generated column (`GENERATED ALWAYS AS … STORED`): computed, never written.
    pub generated: bool,
    /// Its type, as SQL (`bigint`, `character varying(20)`).
    pub sql_type: String,
}

/// [`KeyMove`] of `sql`, an UPDATE of `table` that sets its key column `key`.
pub(super) fn key_move(
    sql: &str,
    table: &str,
    key: &str,
    columns: &[TableColumn],
) -> Result<KeyMove, RouteError> {
    let refuse = || {
        let (table, key) = (table.to_owned(), key.to_owned());
        RouteError::from(Unsupported::ShardKeyChange { table, key })
    };
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|_| refuse())?;
    let [Statement::Update(update)] = statements.as_slice() else {
        return Err(refuse());
    };
    let TableFactor::Table { name, alias, .. } = &update.table.relation else {
        return Err(refuse());
    };
    let reference = match alias {
        Some(alias) => ident_name(&alias.name),
        None => table.to_owned(),
    };
    let written: Vec<(&str, &str)> = (columns.iter())
        .filter(|c| !c.generated)
        .map(|c| (c.name.as_str(), c.sql_type.as_str()))
        .collect();
    let key_index = written
        .iter()
        .position(|(c, _)| *c == key)
        .ok_or_else(refuse)?;
    let mut values = Vec::with_capacity(written.len());
    for (column, sql_type) in &written {
        let set = update.assignments.iter().find(|a| match &a.target {
            AssignmentTarget::ColumnName(target) => {
                map_table_name(target).as_deref() == Some(*column)
            }
            AssignmentTarget::Tuple(_) => false,
        });
        // A SET value is cast to its column's type, as the UPDATE would assign it (which also
        // types its parameters).
        values.push(match set {
            Some(assignment) => format!("CAST(({}) AS {sql_type})", assignment.value),
            None => format!("{}.{}", identifier(&reference), identifier(column)),
        });
    }
    let selection = match &update.selection {
        Some(selection) => format!(" WHERE {selection}"),
        None => String::new(),
    };
    let relation = &update.table.relation;
    let delete = format!(
        "DELETE FROM {relation}{selection} RETURNING {}",
        values.join(", ")
    );
    let alias = match alias {
        Some(alias) => format!(" AS {}", alias.name),
        None => String::new(),
    };
    let names: Vec<String> = written
        .iter()
        .map(|(c, _)| identifier(c).to_string())
        .collect();
    let insert_head = format!(
        "INSERT INTO {name}{alias} ({}) OVERRIDING SYSTEM VALUE",
        names.join(", ")
    );
    let returning = update.returning.as_ref().map(|items| {
        let items: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!(" RETURNING {}", items.join(", "))
    });
    Ok(KeyMove {
        delete,
        insert_head,
        returning,
        key_index,
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<TableColumn> {
        let column = |name: &str, generated, sql_type: &str| TableColumn {
            name: name.to_owned(),
            generated,
            sql_type: sql_type.to_owned(),
        };
        vec![
            column("user_id", false, "bigint"),
            column("name", false, "text"),
            column("total", true, "numeric"),
        ]
    }

    #[test]
    fn the_delete_returns_each_row_as_the_update_leaves_it() {
        let sql = "UPDATE users u SET user_id = u.user_id + 1000, name = upper(name) \
                   WHERE u.user_id IN (1, 2) RETURNING u.user_id, name";
        let moved = key_move(sql, "users", "user_id", &columns()).unwrap();
        assert_eq!(
            moved,
            KeyMove {
                delete: "DELETE FROM users u WHERE u.user_id IN (1, 2) \
                         RETURNING CAST((u.user_id + 1000) AS bigint), CAST((upper(name)) AS text)"
                    .to_owned(),
                insert_head: "INSERT INTO users AS u (user_id, name) OVERRIDING SYSTEM VALUE"
                    .to_owned(),
                returning: Some(" RETURNING u.user_id, name".to_owned()),
                key_index: 0,
                key: "user_id".to_owned(),
            }
        );
        let plain = key_move(
            "UPDATE users SET user_id = 7",
            "users",
            "user_id",
            &columns(),
        );
        let plain = plain.unwrap();
        assert_eq!(
            plain.delete,
            "DELETE FROM users RETURNING CAST((7) AS bigint), users.name"
        );
        assert_eq!(plain.returning, None);
    }
}
