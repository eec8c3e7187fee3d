//! Reads: which shards a SELECT needs.

use sqlparser::ast::{Expr, Query, SetExpr};

use super::{Keyed, Target, TokenFacts, as_select};
use crate::config::{MultiShardWrites, Placement, ShardMap};
use crate::router::condition::Condition;
use crate::router::scope::Scope;

/// Plans a query: one key narrows co-located tables joined on it; reference tables are
/// everywhere; anything else with sharded tables needs several shards.
pub(super) fn read(map: &ShardMap, query: &Query, facts: &TokenFacts) -> Target {
    let mut scope = Scope::default();
    let mut conditions = Vec::new();
    let mut plain = false;
    if let Some(select) = as_select(&query.body) {
        scope.add_from(map, &select.from);
        if let Some(selection) = &select.selection {
            scope.note_key_equalities(selection);
            conditions.push(selection.clone());
        }
        plain = query.with.is_none() && facts.from_clauses <= 1 && all_from_map(map, select);
    }
    conditions.extend(scope.narrowing_join_conditions().iter().cloned());
    keyed_read(map, &scope, &conditions, facts, plain)
}

/// The target of a read whose top level is `scope`. `plain`: every table it reads is a map
/// table at its top level (so reference-only reads may run on any shard).
pub(super) fn keyed_read(
    map: &ShardMap,
    scope: &Scope,
    conditions: &[Expr],
    facts: &TokenFacts,
    plain: bool,
) -> Target {
    let unseen = facts.unseen_sharded(map, &scope.seen);
    if let Some(table) = unseen.first() {
        return Target::Scatter(format!("{table} is read in a subquery or CTE"));
    }
    let Some(first) = scope.sharded.first() else {
        let reference_only = !scope.seen.is_empty() && plain;
        return if reference_only || !facts.names_tables {
            Target::Anywhere
        } else {
            Target::DefaultShard
        };
    };
    if scope.groups().len() > 1 {
        let names: Vec<&str> = scope.sharded.iter().map(|t| t.table.as_str()).collect();
        return Target::Scatter(format!(
            "{} are sharded by different keys",
            names.join(" and ")
        ));
    }
    if !scope.joined_on_key() {
        return Target::Scatter(format!(
            "co-located tables joined other than on their shard key {}",
            first.sharding.key_column
        ));
    }
    Target::Keyed(Keyed {
        table: first.table.clone(),
        sharding: first.sharding.clone(),
        condition: all_of(conditions, scope),
        multi_shard_writes: MultiShardWrites::Refuse,
    })
}

/// The conjunction of the key conditions of several clauses.
pub(super) fn all_of(conditions: &[Expr], scope: &Scope) -> Condition {
    let mut parts: Vec<Condition> = (conditions.iter())
        .map(|expr| Condition::from_expr(expr, scope))
        .filter(|c| !c.is_any())
        .collect();
    match parts.len() {
        0 => Condition::Any,
        1 => parts.remove(0),
        _ => Condition::And(parts),
    }
}

/// Whether every FROM item of a SELECT is a map table (no functions, subqueries or outside
/// tables).
fn all_from_map(map: &ShardMap, select: &sqlparser::ast::Select) -> bool {
    use sqlparser::ast::TableFactor;
    let is_map_table = |factor: &TableFactor| match factor {
        TableFactor::Table {
            name, args: None, ..
        } => {
            crate::router::scope::map_table_name(name).is_some_and(|n| map.tables.contains_key(&n))
        }
        _ => false,
    };
    select.from.iter().all(|item| {
        is_map_table(&item.relation) && item.joins.iter().all(|j| is_map_table(&j.relation))
    })
}

/// Whether a query changes data: a data-modifying WITH (or a body that is one), or
/// `SELECT … INTO new_table`.
pub(super) fn writes(query: &Query) -> bool {
    let body_writes = |body: &SetExpr| {
        let select_into = as_select(body).is_some_and(|select| select.into.is_some());
        select_into
            || matches!(
                body,
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
            )
    };
    let ctes = query.with.iter().flat_map(|with| &with.cte_tables);
    body_writes(&query.body) || ctes.into_iter().any(|cte| writes(&cte.query))
}

/// Whether a map table is a reference table.
pub(super) fn is_reference(map: &ShardMap, table: &str) -> bool {
    matches!(
        map.tables.get(table).map(|t| &t.placement),
        Some(Placement::Reference)
    )
}
