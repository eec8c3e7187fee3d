//! An INSERT without a column list, given the table's columns from the catalog (as many as
//! its rows have values, as PostgreSQL fills them), so that the key is found among them.
//!
//! Part of the router (pure): the session reads the columns (`execute::catalog`) when the
//! plan asks for them, and routes the rewritten text; what runs on the shards is the same
//! statement either way.

use sqlparser::ast::{ObjectName, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::RouteError;
use super::plan::as_select;
use super::scope::identifier;
use crate::error::Unsupported;

/// `sql` (an INSERT into `table` without a column list) with `columns` written out.
pub(super) fn with_columns(
    sql: &str,
    table: &str,
    columns: &[String],
) -> Result<String, RouteError> {
    let refuse = || {
        let table = table.to_owned();
        RouteError::from(Unsupported::InsertWithoutColumns { table })
    };
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|_| refuse())?;
    let [Statement::Insert(insert)] = statements.as_slice() else {
        return Err(refuse());
    };
    let body = &insert.source.as_ref().ok_or_else(refuse)?.body;
    let width = match body.as_ref() {
        SetExpr::Values(values) => values.rows.iter().map(|row| row.content.len()).max(),
        other => as_select(other).map(|select| select.projection.len()),
    };
    let width = width.filter(|w| *w <= columns.len()).ok_or_else(refuse)?;
    let mut insert = insert.clone();
    insert.columns = (columns[..width].iter())
        .map(|name| ObjectName::from(vec![identifier(name)]))
        .collect();
    Ok(Statement::Insert(insert).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        ["user_id", "name", "Country"].map(String::from).to_vec()
    }

    #[test]
    fn the_columns_the_values_fill_are_written_out() {
        let sql = "INSERT INTO public.users VALUES (1, 'a'), (2, 'b') RETURNING *";
        assert_eq!(
            with_columns(sql, "users", &columns()).unwrap(),
            "INSERT INTO public.users (user_id, name) VALUES (1, 'a'), (2, 'b') RETURNING *"
        );
        let all = with_columns("INSERT INTO users VALUES ($1, $2, $3)", "users", &columns());
        assert_eq!(
            all.unwrap(),
            "INSERT INTO users (user_id, name, \"Country\") VALUES ($1, $2, $3)"
        );
        let select = with_columns("INSERT INTO users SELECT 5, 'x'", "users", &columns());
        assert_eq!(
            select.unwrap(),
            "INSERT INTO users (user_id, name) SELECT 5, 'x'"
        );
    }

    #[test]
    fn more_values_than_columns_are_refused() {
        let sql = "INSERT INTO users VALUES (1, 'a', 'b', 'c')";
        assert!(with_columns(sql, "users", &columns()).is_err());
        assert!(with_columns("INSERT INTO users VALUES (1)", "users", &[]).is_err());
    }
}
