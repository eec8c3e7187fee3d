//! Subqueries of an UPDATE or DELETE that each shard answers exactly for its own rows: they
//! read tables co-located with the written one (and reference tables), tied to the written
//! row by the shard key, so every row they can see for it lives on its shard:
//! - `key IN (SELECT key FROM colocated …)` (also `NOT IN`), the inner key selected as it is;
//! - `EXISTS (SELECT … FROM colocated c WHERE c.key = outer.key …)` and scalar subqueries
//!   correlated the same way, whatever they compute (all of it on one key's rows).
//!
//! Part of the router (pure). Anything else leaves the subquery's tables unaccounted for, and
//! the write is refused as before.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, Query, SelectItem};

use super::as_select;
use crate::config::ShardMap;
use crate::router::scope::{Scope, ident_name};

/// The map tables read by the subqueries in `exprs` that are tied to the written row
/// (`outer`, whose sharded tables share one group) by the shard key; `None` as soon as one
/// subquery is not.
pub(super) fn colocated_subqueries(
    map: &ShardMap,
    outer: &Scope,
    exprs: &[&Expr],
) -> Option<Vec<String>> {
    let mut seen = Vec::new();
    for expr in exprs {
        walk(map, outer, expr, &mut seen)?;
    }
    Some(seen)
}

fn walk(map: &ShardMap, outer: &Scope, expr: &Expr, seen: &mut Vec<String>) -> Option<()> {
    match expr {
        Expr::In {
            expr,
            target: InTarget::Subquery(subquery),
            ..
        } => {
            walk(map, outer, expr, seen)?;
            in_subquery(map, outer, expr, subquery, seen)
        }
        Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
            correlated(map, outer, subquery, seen)
        }
        Expr::BinaryOp { left, right, .. } => {
            walk(map, outer, left, seen)?;
            walk(map, outer, right, seen)
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsFalse(expr)
        | Expr::Cast { expr, .. } => walk(map, outer, expr, seen),
        // Subqueries anywhere else stay unaccounted for: the caller refuses the write.
        _ => Some(()),
    }
}

/// The scope of a subquery's FROM, when it reads only tables of `outer`'s group (joined on
/// their key) and reference tables.
fn inner_scope(map: &ShardMap, outer: &Scope, query: &Query) -> Option<Scope> {
    let select = as_select(&query.body)?;
    if query.with.is_some() {
        return None;
    }
    let mut inner = Scope::default();
    inner.add_from(map, &select.from);
    if let Some(selection) = &select.selection {
        inner.note_key_equalities(selection);
    }
    let group = &outer.sharded.first()?.sharding.group;
    let same_group = inner.sharded.iter().all(|t| &t.sharding.group == group);
    (same_group && !inner.sharded.is_empty() && inner.joined_on_key()).then_some(inner)
}

/// `outer_key IN (SELECT inner_key FROM …)`: a plain list of keys (no aggregate or limit could
/// make one shard's list differ from the whole list for its own keys).
fn in_subquery(
    map: &ShardMap,
    outer: &Scope,
    left: &Expr,
    query: &Query,
    seen: &mut Vec<String>,
) -> Option<()> {
    let inner = inner_scope(map, outer, query)?;
    let select = as_select(&query.body)?;
    let plain = query.limit_clause.is_none()
        && query.fetch.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let [SelectItem::UnnamedExpr(selected) | SelectItem::ExprWithAlias { expr: selected, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    (plain && outer.is_key(left) && inner.is_key(selected)).then_some(())?;
    seen.extend(inner.seen);
    Some(())
}

/// A subquery whose WHERE ties an inner key to the outer row's key (`c.key = outer.key`, the
/// outer side named by a table or alias the subquery does not reuse): it sees one key's rows.
fn correlated(map: &ShardMap, outer: &Scope, query: &Query, seen: &mut Vec<String>) -> Option<()> {
    let inner = inner_scope(map, outer, query)?;
    let selection = as_select(&query.body)?.selection.as_ref()?;
    let inner_names: Vec<&str> = inner.sharded.iter().map(|t| t.reference.as_str()).collect();
    let is_outer_key = |expr: &Expr| {
        let qualifier = qualifier(expr);
        qualifier.is_some_and(|q| !inner_names.contains(&q.as_str())) && outer.is_key(expr)
    };
    let ties = conjuncts(selection).any(|conjunct| match conjunct {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            (inner.is_key(left) && is_outer_key(right))
                || (inner.is_key(right) && is_outer_key(left))
        }
        _ => false,
    });
    ties.then_some(())?;
    seen.extend(inner.seen);
    Some(())
}

/// The table or alias a qualified column names (`u` of `u.user_id`).
fn qualifier(expr: &Expr) -> Option<String> {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            Some(ident_name(&parts[parts.len() - 2]))
        }
        Expr::Nested(inner) => qualifier(inner),
        _ => None,
    }
}

/// The top-level AND-ed parts of a condition.
fn conjuncts(expr: &Expr) -> Box<dyn Iterator<Item = &Expr> + '_> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => Box::new(conjuncts(left).chain(conjuncts(right))),
        Expr::Nested(inner) => conjuncts(inner),
        other => Box::new(std::iter::once(other)),
    }
}
