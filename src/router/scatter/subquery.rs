//! Subqueries of a cross-shard read: allowed only when every shard computes the same rows
//! for them.
//!
//! Part of the scatter planner (pure). A subquery runs on each shard against that shard's
//! tables, so it is correct only when it reads reference tables (copies on every shard) or no
//! table at all, at every depth. It never accepts a subquery reading a sharded table (each
//! shard would see a slice) or a table outside the map (each shard its own).

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, JoinConstraint, JoinOperator, LimitClause, ObjectName,
    OrderByKind, Query, Select, SetExpr, TableFactor, TableWithJoins,
};

use super::construct::Construct;
use super::walk::{self, Node, walk};
use super::{Planned, Unsupported};
use crate::config::{Placement, ShardMap};
use crate::router::scope::map_table_name;

/// Accepts a subquery that gives the same rows on every shard.
pub(super) fn same_on_every_shard(map: &ShardMap, query: &Query) -> Planned<()> {
    if query.with.is_some() {
        return Err(Unsupported(Construct::CteInSubquery));
    }
    body(map, &query.body)?;
    let order = query.order_by.iter().flat_map(|o| match &o.kind {
        OrderByKind::Expressions(exprs) => exprs.as_slice(),
        OrderByKind::All(_) => &[],
    });
    exprs(map, order.map(|key| &key.expr))?;
    if let Some(fetch) = &query.fetch {
        exprs(map, &fetch.quantity)?;
    }
    match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, offset, .. }) => {
            exprs(map, limit.iter().chain(offset.iter().map(|o| &o.value)))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => exprs(map, [offset, limit]),
        None => Ok(()),
    }
}

fn body(map: &ShardMap, set: &SetExpr) -> Planned<()> {
    match set {
        SetExpr::Select(select) => select_reads(map, select),
        SetExpr::Query(query) => same_on_every_shard(map, query),
        SetExpr::SetOperation { left, right, .. } => {
            body(map, left)?;
            body(map, right)
        }
        SetExpr::Values(values) => exprs(map, values.rows.iter().flat_map(|row| &row.content)),
        SetExpr::Table(table) => match &table.table_name {
            Some(name) => table_read(map, &ObjectName::from(vec![name.clone()])),
            None => Err(Unsupported(Construct::Subquery)),
        },
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Err(Unsupported(Construct::WritingSubquery))
        }
    }
}

fn select_reads(map: &ShardMap, select: &Select) -> Planned<()> {
    from(map, &select.from)?;
    // An aggregate of the outer query's columns inside a subquery belongs to the outer query
    // (`SELECT (SELECT max(o.x)) FROM t o` is one row); the planner cannot tell which level
    // an aggregate belongs to, so it takes none.
    let items = select.projection.iter().filter_map(super::item_expr);
    if (items.clone()).any(|item| walk::any(item, &super::aggregate::is_aggregate_expr)) {
        return Err(Unsupported(Construct::AggregateInSubquery));
    }
    let items = select.projection.iter().filter_map(super::item_expr);
    exprs(map, items)?;
    exprs(map, &select.selection)?;
    exprs(map, &select.having)?;
    if let GroupByExpr::Expressions(keys, _) = &select.group_by {
        exprs(map, keys)?;
    }
    if let Some(Distinct::On(on)) = &select.distinct {
        exprs(map, on)?;
    }
    Ok(())
}

/// FROM of a subquery: reference tables, functions and subqueries of the same kind.
fn from(map: &ShardMap, from: &[TableWithJoins]) -> Planned<()> {
    for item in from {
        factor(map, &item.relation)?;
        for join in &item.joins {
            factor(map, &join.relation)?;
            if let Some(on) = join_condition(&join.join_operator) {
                exprs(map, [on])?;
            }
        }
    }
    Ok(())
}

fn factor(map: &ShardMap, factor: &TableFactor) -> Planned<()> {
    match factor {
        TableFactor::Table {
            name, args: None, ..
        } => table_read(map, name),
        TableFactor::Table {
            args: Some(args), ..
        } => exprs(map, super::from::arg_exprs(&args.args)),
        TableFactor::Function { args, .. } => exprs(map, super::from::arg_exprs(args)),
        TableFactor::UNNEST { array_exprs, .. } => exprs(map, array_exprs),
        TableFactor::Derived { subquery, .. } => same_on_every_shard(map, subquery),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => from(map, std::slice::from_ref(table_with_joins)),
        _ => Err(Unsupported(Construct::SubqueryFromItem)),
    }
}

fn table_read(map: &ShardMap, name: &ObjectName) -> Planned<()> {
    let table = map_table_name(name);
    match table
        .as_ref()
        .and_then(|t| map.tables.get(t))
        .map(|t| &t.placement)
    {
        Some(Placement::Reference) => Ok(()),
        Some(Placement::Sharded(_)) => Err(Unsupported(Construct::SubqueryOfShardedTable(
            name.to_string(),
        ))),
        None => Err(Unsupported(Construct::SubqueryOfUnmappedTable(
            name.to_string(),
        ))),
    }
}

/// The ON condition of a join, if it has one.
fn join_condition(operator: &JoinOperator) -> Option<&Expr> {
    use JoinOperator as J;
    let constraint = match operator {
        J::Join(c) | J::Inner(c) | J::Left(c) | J::LeftOuter(c) | J::Right(c) => c,
        J::RightOuter(c) | J::FullOuter(c) | J::CrossJoin(c) | J::Semi(c) | J::LeftSemi(c) => c,
        J::RightSemi(c) | J::Anti(c) | J::LeftAnti(c) | J::RightAnti(c) | J::StraightJoin(c) => c,
        J::AsOf { constraint, .. } => constraint,
        J::CrossApply | J::OuterApply | J::ArrayJoin | J::LeftArrayJoin | J::InnerArrayJoin => {
            return None;
        }
    };
    match constraint {
        JoinConstraint::On(on) => Some(on),
        _ => None,
    }
}

/// Walks expressions of a subquery for the subqueries nested in them.
fn exprs<'a>(map: &ShardMap, exprs: impl IntoIterator<Item = &'a Expr>) -> Planned<()> {
    for expr in exprs {
        walk(expr, &mut |node| match node {
            Node::Subquery(query) => same_on_every_shard(map, query),
            Node::Expr(_) => Ok(()),
        })?;
    }
    Ok(())
}
