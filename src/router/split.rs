//! A multi-row INSERT rewritten into one INSERT per shard, each with only its own rows.
//!
//! Part of the router (pure). The statement is parsed again (splitting is rare, its plan is
//! cached without the syntax tree) and printed back with sqlparser, whose output PostgreSQL
//! parses to the same statement. With parameters (an ORM's bulk insert, pgjdbc's rewritten
//! batch), each shard's statement numbers its own placeholders from `$1` and says which of
//! the client's parameters it takes.

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::RouteError;
use crate::config::ShardId;

/// One shard's INSERT of a statement with parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPart {
    /// The shard.
    pub shard: ShardId,
    /// Its rows only, placeholders renumbered from `$1`.
    pub sql: String,
    /// The client's parameter (0-based) each of its placeholders takes: `$k` is `params[k-1]`.
    pub params: Vec<usize>,
}

pub(super) fn split_insert(
    sql: &str,
    groups: &[(ShardId, Vec<usize>)],
) -> Result<Vec<(ShardId, String)>, RouteError> {
    let parts = split_statement(sql, groups)?;
    Ok((parts.into_iter())
        .map(|(shard, statement)| (shard, statement.to_string()))
        .collect())
}

pub(super) fn split_insert_bound(
    sql: &str,
    groups: &[(ShardId, Vec<usize>)],
) -> Result<Vec<BoundPart>, RouteError> {
    let parts = split_statement(sql, groups)?;
    (parts.into_iter())
        .map(|(shard, statement)| {
            let (sql, params) = renumber_placeholders(&statement.to_string())?;
            Ok(BoundPart { shard, sql, params })
        })
        .collect()
}

/// `sql` with its placeholders numbered from `$1` in order of first use, and the old number
/// (0-based) of each new one. The tokenizer finds them, so `$1` in a string or a comment is
/// left alone; the text around them is copied as it is.
fn renumber_placeholders(sql: &str) -> Result<(String, Vec<usize>), RouteError> {
    let cannot = || RouteError::from(crate::error::Unsupported::UnsplittableInsert);
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|_| cannot())?;
    let placeholders = tokens.iter().filter_map(|t| match &t.token {
        Token::Placeholder(name) => Some(((t.span.start.line, t.span.start.column), name)),
        _ => None,
    });
    let mut order: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (at, name) in placeholders {
        let start = byte_offset(sql, at).ok_or_else(cannot)?;
        let old = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
        let old = old.and_then(|n| n.checked_sub(1)).ok_or_else(cannot)?;
        let new = match order.iter().position(|&o| o == old) {
            Some(new) => new,
            None => {
                order.push(old);
                order.len() - 1
            }
        };
        out.push_str(sql.get(copied..start).ok_or_else(cannot)?);
        out.push_str(&format!("${}", new + 1));
        copied = start + name.len();
    }
    out.push_str(sql.get(copied..).ok_or_else(cannot)?);
    Ok((out, order))
}

/// The byte offset of a tokenizer location (line and column from 1, columns in chars).
fn byte_offset(sql: &str, (line, column): (u64, u64)) -> Option<usize> {
    let (mut at_line, mut at_column) = (1, 1);
    for (offset, c) in sql.char_indices() {
        if (at_line, at_column) == (line, column) {
            return Some(offset);
        }
        if c == '\n' {
            (at_line, at_column) = (at_line + 1, 1);
        } else {
            at_column += 1;
        }
    }
    None
}

/// The INSERT of `sql` once per group, with only the group's rows.
fn split_statement(
    sql: &str,
    groups: &[(ShardId, Vec<usize>)],
) -> Result<Vec<(ShardId, Statement)>, RouteError> {
    let cannot = || RouteError::from(crate::error::Unsupported::UnsplittableInsert);
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|_| cannot())?;
    let [Statement::Insert(insert)] = statements.as_slice() else {
        return Err(cannot());
    };
    let source = insert.source.as_ref().ok_or_else(cannot)?;
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Err(cannot());
    };
    let mut split = Vec::with_capacity(groups.len());
    for (shard, rows) in groups {
        let mut part = insert.clone();
        let mut part_source = source.as_ref().clone();
        let mut part_values = values.clone();
        part_values.rows = rows
            .iter()
            .filter_map(|&i| values.rows.get(i).cloned())
            .collect();
        if part_values.rows.len() != rows.len() {
            return Err(cannot());
        }
        part_source.body = Box::new(SetExpr::Values(part_values));
        part.source = Some(Box::new(part_source));
        split.push((*shard, Statement::Insert(part)));
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_their_shards_in_order() {
        let sql = "INSERT INTO users (user_id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c') RETURNING user_id";
        let groups = [(ShardId(0), vec![0, 2]), (ShardId(1), vec![1])];
        let split = split_insert(sql, &groups).unwrap();
        assert_eq!(
            split,
            [
                (
                    ShardId(0),
                    "INSERT INTO users (user_id, name) VALUES (1, 'a'), (3, 'c') RETURNING user_id"
                        .to_owned()
                ),
                (
                    ShardId(1),
                    "INSERT INTO users (user_id, name) VALUES (2, 'b') RETURNING user_id"
                        .to_owned()
                ),
            ]
        );
        assert!(split_insert("INSERT INTO t SELECT 1", &groups).is_err());
        assert!(split_insert(sql, &[(ShardId(0), vec![7])]).is_err());
    }

    #[test]
    fn each_shard_numbers_its_own_parameters_and_keeps_shared_ones() {
        let sql = "INSERT INTO users (user_id, name) VALUES ($1, $2), ($3, lower($4)), ($5, $2) \
                   ON CONFLICT (user_id) DO UPDATE SET name = $6";
        let groups = [(ShardId(0), vec![1]), (ShardId(1), vec![0, 2])];
        let parts = split_insert_bound(sql, &groups).unwrap();
        assert_eq!(
            parts[0],
            BoundPart {
                shard: ShardId(0),
                sql: "INSERT INTO users (user_id, name) VALUES ($1, lower($2)) \
                      ON CONFLICT(user_id) DO UPDATE SET name = $3"
                    .to_owned(),
                params: vec![2, 3, 5],
            }
        );
        assert_eq!(parts[1].params, [0, 1, 4, 5]);
        assert!(
            parts[1].sql.contains("VALUES ($1, $2), ($3, $2)"),
            "{}",
            parts[1].sql
        );
    }

    #[test]
    fn placeholders_in_strings_and_escapes_stay_as_written() {
        let sql = "INSERT INTO users (user_id, name) VALUES ($4, 'it''s $1'), ($2, E'\\n$3')";
        let parts = split_insert_bound(sql, &[(ShardId(0), vec![0, 1])]).unwrap();
        assert_eq!(parts[0].params, [3, 1]);
        assert_eq!(
            parts[0].sql,
            "INSERT INTO users (user_id, name) VALUES ($1, 'it''s $1'), ($2, E'\\n$3')"
        );
    }
}
