//! Writes: INSERT, UPDATE and DELETE, routed by the key of the rows they change.

use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr, FromTable, GroupByExpr, Insert, ObjectName,
    OnConflictAction, OnInsert, SelectItem, SetExpr, TableFactor, TableObject, Update,
    UpdateTableFromKind,
};

use super::query::{all_of, is_reference};
use super::subquery::colocated_subqueries;
use super::{InsertRows, Keyed, Target, TokenFacts, as_select, sharding_of};
use crate::config::{ShardMap, Sharding};
use crate::error::Unsupported;
use crate::router::operand::Operand;
use crate::router::scope::{Scope, map_table_name};

/// INSERT: each row's key names its shard; reference tables take rows on every shard.
pub(super) fn insert(map: &ShardMap, insert: &Insert, facts: &TokenFacts) -> Target {
    let TableObject::TableName(name) = &insert.table else {
        return Target::DefaultShard;
    };
    let table = map_table_name(name).unwrap_or_default();
    if let Some(target) = insert_select_colocated(map, insert, &table, facts) {
        return target;
    }
    let others = facts.unseen_sharded(map, std::slice::from_ref(&table));
    if let Some(other) = others.first() {
        return Target::Refused(Unsupported::InsertReadsSharded {
            other: other.to_string(),
            table,
        });
    }
    if is_reference(map, &table) {
        return Target::EveryShard;
    }
    let Some(sharding) = sharding_of(map, &table) else {
        return Target::DefaultShard;
    };
    if let Some(refusal) = conflict_update_moves_key(insert, &table, sharding) {
        return refusal;
    }
    let key = &sharding.key_column;
    let position = insert.columns.iter().position(|c| column_name(c) == *key);
    let Some(position) = position else {
        return Target::Refused(if insert.columns.is_empty() {
            Unsupported::InsertWithoutColumns { table }
        } else {
            let key = key.clone();
            Unsupported::InsertWithoutKey { table, key }
        });
    };
    match row_keys(insert, position) {
        Some(keys) => Target::Insert(InsertRows {
            table,
            sharding: sharding.clone(),
            keys,
        }),
        None => Target::Refused(Unsupported::InsertKeyNotConstant {
            table,
            key: key.clone(),
        }),
    }
}

/// `INSERT INTO t (…) SELECT … FROM s …` where `s`, and whatever it is joined to on the key,
/// is co-located with `t` and every row's key is `s`'s key column: each shard then inserts
/// rows of its own, so the statement runs as it is on every shard that may hold source rows
/// (narrowed by the source's key condition). Only a select list of columns and constants
/// (aggregates, windows, DISTINCT and LIMIT would see one shard's rows); `None` for any
/// other INSERT.
fn insert_select_colocated(
    map: &ShardMap,
    insert: &Insert,
    table: &str,
    facts: &TokenFacts,
) -> Option<Target> {
    let sharding = sharding_of(map, table)?;
    let query = insert.source.as_ref()?;
    let select = as_select(&query.body).filter(|s| !s.from.is_empty())?;
    let per_row = query.with.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
        && select.projection.iter().all(is_column_or_constant);
    let key = &sharding.key_column;
    let position = insert.columns.iter().position(|c| column_name(c) == *key)?;
    if !per_row || conflict_update_moves_key(insert, table, sharding).is_some() {
        return None;
    }
    let mut scope = Scope::default();
    scope.add_from(map, &select.from);
    if let Some(selection) = &select.selection {
        scope.note_key_equalities(selection);
    }
    let groups = scope.groups();
    let colocated = groups.len() == 1 && groups.contains_key(sharding.group.as_str());
    let mut seen = scope.seen.clone();
    seen.push(table.to_owned());
    if !colocated || !scope.joined_on_key() || !facts.unseen_sharded(map, &seen).is_empty() {
        return None;
    }
    let (SelectItem::UnnamedExpr(key_expr) | SelectItem::ExprWithAlias { expr: key_expr, .. }) =
        select.projection.get(position)?
    else {
        return None;
    };
    if !scope.is_key(key_expr) {
        return None;
    }
    let mut conditions: Vec<Expr> = select.selection.iter().cloned().collect();
    conditions.extend(scope.narrowing_join_conditions().iter().cloned());
    Some(Target::Keyed(Keyed {
        table: table.to_owned(),
        sharding: scope.sharded[0].sharding.clone(),
        condition: all_of(&conditions, &scope),
        multi_shard_writes: map.tables[table].multi_shard_writes,
    }))
}

/// A select-list item that yields one value per source row on its own: columns, literals and
/// parameters, with casts and operators over them (no function: it could aggregate).
fn is_column_or_constant(item: &SelectItem) -> bool {
    fn plain(expr: &Expr) -> bool {
        match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => true,
            Expr::Cast { expr, .. } | Expr::Nested(expr) | Expr::UnaryOp { expr, .. } => {
                plain(expr)
            }
            Expr::BinaryOp { left, right, .. } => plain(left) && plain(right),
            _ => false,
        }
    }
    match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => plain(expr),
        _ => false,
    }
}

/// The key operand of every row of `VALUES (…), (…)` or of a FROM-less `SELECT`.
fn row_keys(insert: &Insert, position: usize) -> Option<Vec<Operand>> {
    let body = &insert.source.as_ref()?.body;
    match body.as_ref() {
        SetExpr::Values(values) => (values.rows.iter())
            .map(|row| Operand::from_expr(row.content.get(position)?))
            .collect(),
        _ => {
            // Only constants: rows selected from tables may come from any shard.
            let select = as_select(body).filter(|select| select.from.is_empty())?;
            match select.projection.get(position)? {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    Some(vec![Operand::from_expr(expr)?])
                }
                _ => None,
            }
        }
    }
}

fn conflict_update_moves_key(insert: &Insert, table: &str, sharding: &Sharding) -> Option<Target> {
    let Some(OnInsert::OnConflict(conflict)) = &insert.on else {
        return None;
    };
    let OnConflictAction::DoUpdate(update) = &conflict.action else {
        return None;
    };
    sets_key(&update.assignments, table, sharding)
}

/// UPDATE: by key; changing a row's key would move it between shards, which is refused.
pub(super) fn update(map: &ShardMap, update: &Update, facts: &TokenFacts) -> Target {
    let mut scope = Scope::default();
    scope.add_from(map, std::slice::from_ref(&update.table));
    let target = map_table(map, &update.table.relation);
    match &update.from {
        Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) => {
            scope.add_from(map, from);
        }
        None => {}
    }
    let moves = match &target {
        Some(table) => match sharding_of(map, table) {
            Some(sharding) => sets_key(&update.assignments, table, sharding),
            None => None,
        },
        None => None,
    };
    let assigned: Vec<&Expr> = update.assignments.iter().map(|a| &a.value).collect();
    let written = Written {
        target,
        selection: update.selection.as_ref(),
        assigned: &assigned,
        verb: "UPDATE",
    };
    let Some(refusal) = moves else {
        return write(map, scope, written, facts);
    };
    // The rows move: one table, its columns set one by one (see `key_move`).
    let movable = update.from.is_none()
        && scope.sharded.len() == 1
        && (update.assignments.iter()).all(|a| matches!(a.target, AssignmentTarget::ColumnName(_)));
    match write(map, scope, written, facts) {
        Target::Keyed(keyed) if movable => Target::MovesRows(keyed),
        Target::Keyed(_) => refusal,
        other => other,
    }
}

/// DELETE: by key.
pub(super) fn delete(map: &ShardMap, delete: &Delete, facts: &TokenFacts) -> Target {
    let mut scope = Scope::default();
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    scope.add_from(map, from);
    scope.add_from(map, delete.using.as_deref().unwrap_or_default());
    let target = from.first().and_then(|item| map_table(map, &item.relation));
    let written = Written {
        target,
        selection: delete.selection.as_ref(),
        assigned: &[],
        verb: "DELETE",
    };
    write(map, scope, written, facts)
}

/// What an UPDATE or DELETE changes, and by which conditions.
struct Written<'a> {
    /// The table written, if in the map.
    target: Option<String>,
    /// Its WHERE.
    selection: Option<&'a Expr>,
    /// The values an UPDATE assigns.
    assigned: &'a [&'a Expr],
    verb: &'static str,
}

/// An UPDATE or DELETE over `scope`. Subqueries that read co-located tables tied to the row
/// by its key run per shard like the rest (see `subquery`).
fn write(map: &ShardMap, scope: Scope, written: Written<'_>, facts: &TokenFacts) -> Target {
    let Written {
        target,
        selection,
        assigned,
        verb,
    } = written;
    let mut seen = scope.seen.clone();
    let mut exprs: Vec<&Expr> = selection.into_iter().collect();
    exprs.extend(assigned);
    if let Some(tables) = colocated_subqueries(map, &scope, &exprs) {
        seen.extend(tables);
    }
    let unseen = facts.unseen_sharded(map, &seen);
    let Some(table) = target else {
        return match unseen
            .first()
            .or(scope.sharded.first().map(|t| &*t.table).as_ref())
        {
            None => Target::DefaultShard,
            Some(other) => Target::Refused(Unsupported::UnmappedWriteReadsSharded {
                verb,
                other: other.to_string(),
            }),
        };
    };
    if is_reference(map, &table) {
        return match scope.sharded.first() {
            None if unseen.is_empty() => Target::EveryShard,
            _ => Target::Refused(Unsupported::ReferenceWriteReadsSharded { verb, table }),
        };
    }
    if let Some(other) = unseen.first() {
        return Target::Refused(Unsupported::WriteReadsInSubquery {
            verb,
            table,
            other: other.to_string(),
        });
    }
    let mut scope = scope;
    if let Some(selection) = selection {
        scope.note_key_equalities(selection);
    }
    if scope.groups().len() > 1 || !scope.joined_on_key() {
        return Target::Refused(Unsupported::WriteJoinsOffKey { verb, table });
    }
    let sharded = &scope.sharded[0];
    let mut conditions: Vec<Expr> = selection.into_iter().cloned().collect();
    conditions.extend(scope.narrowing_join_conditions().iter().cloned());
    Target::Keyed(Keyed {
        table: table.clone(),
        sharding: sharded.sharding.clone(),
        condition: all_of(&conditions, &scope),
        multi_shard_writes: map.tables[&table].multi_shard_writes,
    })
}

/// A refusal when `assignments` set the shard key of `table`.
fn sets_key(assignments: &[Assignment], table: &str, sharding: &Sharding) -> Option<Target> {
    let key = &sharding.key_column;
    let sets = assignments.iter().any(|a| match &a.target {
        AssignmentTarget::ColumnName(name) => column_name(name) == *key,
        AssignmentTarget::Tuple(names) => names.iter().any(|n| column_name(n) == *key),
    });
    sets.then(|| {
        Target::Refused(Unsupported::ShardKeyChange {
            table: table.to_owned(),
            key: key.clone(),
        })
    })
}

/// The map name of the table a write changes, if the map has it.
fn map_table(map: &ShardMap, factor: &TableFactor) -> Option<String> {
    let TableFactor::Table { name, .. } = factor else {
        return None;
    };
    map_table_name(name).filter(|table| map.tables.contains_key(table))
}

fn column_name(name: &ObjectName) -> String {
    map_table_name(name).unwrap_or_default()
}
