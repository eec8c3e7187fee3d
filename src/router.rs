//! Which shard a statement runs on (pure: no I/O, no globals).
//!
//! The session asks for a [`Route`] when a transaction starts. Until tables get sharding
//! strategies, every statement belongs to the map's default shard; the routing issue replaces
//! [`route_statement`] with shard-key extraction without changing its callers.

use crate::config::{ShardId, ShardMap};

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On one shard's primary.
    Shard(ShardId),
}

/// What the router is shown of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Statement<'a> {
    /// SQL text of a simple Query or a Parse.
    Sql(&'a str),
    /// A message that names no SQL (Bind of an unnamed statement, Sync, COPY data, …).
    Opaque,
}

/// Routes one statement with the shard map in force.
pub fn route_statement(map: &ShardMap, statement: Statement<'_>) -> Route {
    let _ = statement;
    Route::Shard(map.default_shard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendUri, Shard};

    fn map(default_shard: u32) -> ShardMap {
        let shard = |i: u32| Shard {
            id: ShardId(i),
            name: format!("s{i}"),
            primary: BackendUri::parse(&format!("postgres://u@127.0.0.1:{}/d", 5433 + i)).unwrap(),
            replicas: vec![],
        };
        ShardMap {
            shards: vec![shard(0), shard(1)],
            default_shard: ShardId(default_shard),
        }
    }

    #[test]
    fn everything_goes_to_the_default_shard() {
        for sql in ["SELECT 1", "INSERT INTO t VALUES (1)", "BEGIN", ""] {
            assert_eq!(
                route_statement(&map(1), Statement::Sql(sql)),
                Route::Shard(ShardId(1))
            );
        }
        assert_eq!(
            route_statement(&map(0), Statement::Opaque),
            Route::Shard(ShardId(0))
        );
    }
}
