//! A multi-row INSERT rewritten into one INSERT per shard, each with only its own rows.
//!
//! Part of the router (pure). The statement is parsed again (splitting is rare, its plan is
//! cached without the syntax tree) and printed back with sqlparser, whose output PostgreSQL
//! parses to the same statement.

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::RouteError;
use crate::config::ShardId;

pub(super) fn split_insert(
    sql: &str,
    groups: &[(ShardId, Vec<usize>)],
) -> Result<Vec<(ShardId, String)>, RouteError> {
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
        split.push((*shard, Statement::Insert(part).to_string()));
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
}
