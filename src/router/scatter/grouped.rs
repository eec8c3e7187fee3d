//! Aggregates whose groups span shards: each shard computes partials per group, the merge
//! combines them, then applies HAVING, ORDER BY, OFFSET and LIMIT to the merged groups.
//!
//! Part of the scatter planner (pure). The shards keep the client's GROUP BY and select list
//! (so names and types are the client's) and lose HAVING, ORDER BY and the window, which only
//! merged groups can answer. It never accepts a select item, HAVING condition or sort key it
//! cannot express as a group key or an aggregate the merge combines exactly.

use sqlparser::ast::{Distinct, Expr, Select, UnaryOperator, Value};

use super::aggregate::{is_aggregate, is_aggregate_expr, partials};
use super::construct::Construct;
use super::items::unparenthesized;
use super::slots::Slots;
use super::{Planned, Read, ShardQuery, Unsupported, finish, having, order, walk};
use crate::merge::plan::{Aggregation, MergePlan, Output, ScatterPlan, Slot, SortKey};

/// The plan of a read whose groups may span shards.
pub(super) fn plan(read: &Read<'_>) -> Planned<ScatterPlan> {
    if matches!(read.select.distinct, Some(Distinct::Distinct)) && !read.group_by.is_empty() {
        return Err(Unsupported(Construct::DistinctWithGroupBy));
    }
    let mut slots = Slots::new(&read.group_by)?;
    let (columns, item_slots) = outputs(read, &mut slots)?;
    let having = (read.select.having.as_ref())
        .map(|condition| having::predicate(condition, &mut slots))
        .transpose()?;
    let order = sort_keys(read, &mut slots, &item_slots)?;
    let select = shard_select(read, &mut slots);
    let (hidden, group_keys, aggregates) = slots.into_parts();
    let merge = MergePlan {
        hidden: 0,
        aggregation: Some(Aggregation {
            group_keys,
            aggregates,
            columns,
            having,
        }),
        distinct: None,
        order,
        offset: read.window.offset,
        limit: read.window.limit,
    };
    let shard = ShardQuery {
        select,
        order_by: None,
        limit_clause: None,
    };
    Ok(finish(read, shard, hidden, merge))
}

/// The client's SELECT without HAVING, which the shards cannot evaluate on partial groups;
/// parameters of the clauses the shards no longer see are anchored as hidden columns.
fn shard_select(read: &Read<'_>, slots: &mut Slots<'_>) -> Select {
    let mut select = read.select.clone();
    if let Some(condition) = select.having.take()
        && walk::any(&condition, &is_param)
    {
        // Its parameters keep the types PostgreSQL infers from it: a condition of group
        // keys and aggregates is a valid (ignored) column of a grouped select list.
        slots.hidden_mut().add(&Expr::Nested(Box::new(condition)));
    }
    read.window.anchor_params(slots.hidden_mut());
    select
}

/// What each select item shows, and the slot ORDER BY reads for it (none for a constant).
fn outputs(read: &Read<'_>, slots: &mut Slots<'_>) -> Planned<(Vec<Output>, Vec<Option<Slot>>)> {
    let mut columns = Vec::new();
    let mut item_slots = Vec::new();
    for item in read.items.exprs("aggregates or GROUP BY")? {
        let expr = unparenthesized(item);
        let (output, slot) = match expr {
            Expr::Function(call) if is_aggregate(call) => {
                let index = slots.aggregate(call)?;
                (Output::Aggregate(index), Some(Slot::Aggregate(index)))
            }
            _ => match slots.group(expr) {
                Some(hidden) => (Output::GroupValue, Some(Slot::Hidden(hidden))),
                None if is_constant(expr) => (Output::GroupValue, None),
                None => return Err(unsupported_item(expr)),
            },
        };
        columns.push(output);
        item_slots.push(slot);
    }
    Ok((columns, item_slots))
}

/// Why a select item is neither an aggregate nor a group value: the first aggregate inside
/// it when that one cannot be combined (it names the construct), else the item itself.
fn unsupported_item(item: &Expr) -> Unsupported {
    let mut inner = None;
    let _ = walk::walk(item, &mut |node| {
        if let walk::Node::Expr(Expr::Function(call)) = node
            && is_aggregate(call)
            && inner.is_none()
        {
            inner = Some(partials(call).err());
        }
        Ok(())
    });
    match inner {
        Some(Some(why)) => why,
        Some(None) => Unsupported(Construct::AggregateInExpression(item.to_string())),
        None => Unsupported(Construct::UngroupedItem(item.to_string())),
    }
}

/// Sort keys of merged groups: a select item (by position or name), a group key or an
/// aggregate.
fn sort_keys(
    read: &Read<'_>,
    slots: &mut Slots<'_>,
    item_slots: &[Option<Slot>],
) -> Planned<Vec<SortKey>> {
    let mut keys = Vec::new();
    for key in read.order_by {
        order::check_collations(&key.expr)?;
        let refuse = || Unsupported(Construct::OrderByNotGrouped(key.expr.to_string()));
        let slot = match read.items.order_target(&key.expr)? {
            Some(item) => item_slots[item].ok_or_else(refuse)?,
            None => slots
                .slot(order::sorted_value(&key.expr))?
                .ok_or_else(refuse)?,
        };
        keys.push(order::sort_key(slot, key)?);
    }
    Ok(keys)
}

/// A constant: the same on every row, so a valid select item of any group.
fn is_constant(expr: &Expr) -> bool {
    match unparenthesized(expr) {
        Expr::Value(_) | Expr::TypedString(_) => true,
        Expr::Cast { expr, .. }
        | Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => is_constant(expr),
        _ => false,
    }
}

fn is_param(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
}

/// Whether any select item, HAVING or ORDER BY key holds an aggregate (outside subqueries).
pub(super) fn aggregates_anywhere(read: &Read<'_>) -> bool {
    let items = read.items.all_exprs();
    let order = read.order_by.iter().map(|key| &key.expr);
    let mut exprs = items
        .into_iter()
        .chain(read.select.having.as_ref())
        .chain(order);
    exprs.any(|expr| walk::any(expr, &is_aggregate_expr))
}
