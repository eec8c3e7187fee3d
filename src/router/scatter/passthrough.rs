//! Reads whose shard rows are client rows: no aggregates, or groups that never span shards
//! (GROUP BY the shard key). The merge interleaves, deduplicates and cuts them.
//!
//! Part of the scatter planner (pure). The shards run the statement as written (ORDER BY
//! kept, so each returns its rows sorted) with `LIMIT offset + limit` and no OFFSET, plus
//! hidden copies of the sort keys and, for SELECT DISTINCT, of every select item. It never
//! lets a hidden column change what the shards compute: with DISTINCT, a sort key must be a
//! select item (PostgreSQL's own rule), so its copy adds nothing to distinguish rows by.

use sqlparser::ast::Distinct;

use super::construct::Construct;
use super::hidden::Hidden;
use super::walk::{Node, walk};
use super::{Planned, Read, ShardQuery, Unsupported, finish, order};
use crate::merge::plan::{MergePlan, ScatterPlan, Slot, SortKey};
use crate::router::scope::ident_name;

/// The plan of a read whose shard rows pass through to the client.
pub(super) fn plan(read: &Read<'_>) -> Planned<ScatterPlan> {
    let mut hidden = Hidden::default();
    let distinct = match &read.select.distinct {
        Some(Distinct::Distinct) => Some(distinct_columns(read, &mut hidden)?),
        _ => None,
    };
    let order = sort_keys(read, &mut hidden, distinct.is_some())?;
    let limit_clause = read.window.shard_limit_clause(&mut hidden);
    let merge = MergePlan {
        hidden: 0,
        aggregation: None,
        distinct,
        order,
        offset: read.window.offset,
        limit: read.window.limit,
    };
    let shard = ShardQuery {
        select: read.select.clone(),
        order_by: read.query.order_by.clone(),
        limit_clause,
    };
    let mut plan = finish(read, shard, hidden, merge);
    if read.group_by.is_empty() && read.select.having.is_none() {
        plan.functions = called_functions(read);
    }
    Ok(plan)
}

/// Every function the select list and the sort keys call (lower-case, unqualified,
/// deduplicated), built-in aggregates aside: the planner cannot tell a user-defined aggregate
/// from a function, so the executor checks these against the catalog.
fn called_functions(read: &Read<'_>) -> Vec<String> {
    use sqlparser::ast::{Expr, SelectItem};
    let mut names: Vec<String> = Vec::new();
    let mut collect = |expr: &Expr| {
        let _ = walk(expr, &mut |node| {
            if let Node::Expr(Expr::Function(call)) = node
                && let Some(name) = call.name.0.last().and_then(|part| part.as_ident())
            {
                let name = ident_name(name);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Ok(())
        });
    };
    for item in &read.select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => collect(expr),
            _ => {}
        }
    }
    read.order_by.iter().for_each(|key| collect(&key.expr));
    names
}

/// One hidden copy of each select item, compared across shards to drop duplicates.
fn distinct_columns(read: &Read<'_>, hidden: &mut Hidden) -> Planned<Vec<usize>> {
    let items = read.items.exprs("DISTINCT")?;
    Ok(items.into_iter().map(|item| hidden.add(item)).collect())
}

/// A hidden copy of each sort key: the select item it names, else the key as written.
fn sort_keys(read: &Read<'_>, hidden: &mut Hidden, distinct: bool) -> Planned<Vec<SortKey>> {
    let mut keys = Vec::new();
    for key in read.order_by {
        order::check_collations(&key.expr)?;
        let item = match read.items.order_target(&key.expr)? {
            Some(item) => Some(item),
            None if distinct => read.items.find(&key.expr),
            None => None,
        };
        let value = match item.and_then(|item| read.items.expr(item)) {
            Some(expr) => expr,
            None if distinct => {
                let key = key.expr.to_string();
                return Err(Unsupported(Construct::DistinctOrderedByHidden(key)));
            }
            None => &key.expr,
        };
        keys.push(order::sort_key(Slot::Hidden(hidden.add(value)), key)?);
    }
    Ok(keys)
}
