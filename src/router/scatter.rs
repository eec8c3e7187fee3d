//! Cross-shard reads → [`ScatterPlan`]: the SQL every shard runs and how the merge combines
//! their rows, so that the client gets exactly what one PostgreSQL holding all the rows would
//! answer, or a refusal naming the construct that stands in the way.
//!
//! Part of the router (pure; cached per statement text by [`Router::scatter`]). Stages: the
//! router's plan must say the read is of one co-location group joined on its key; the
//! statement's shape is checked ([`Read::new`]); FROM must be shard-local (`from`); every
//! expression is searched for window functions and subqueries (`subquery`); then the rows
//! pass through (`passthrough`: no aggregates, or groups kept on one shard by the shard key)
//! or their aggregates are combined (`grouped`). It never guesses: what it cannot prove
//! correct is refused.

mod aggregate;
pub mod construct;
mod from;
mod grouped;
mod having;
mod hidden;
mod items;
mod limit;
mod order;
mod passthrough;
mod slots;
mod subquery;
mod walk;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, LimitClause, OrderBy, OrderByExpr, Query, Select, SelectFlavor,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::plan::{Keyed, Kind, Target};
use super::{RouteError, Router};
use crate::config::ShardMap;
use crate::merge::plan::{MergePlan, ScatterPlan};
use construct::Construct;
use from::FromFacts;
use hidden::Hidden;
use items::Items;
use limit::Window;
use walk::{Node, walk};

/// A construct that cannot be computed across shards, named for the client.
#[derive(Debug)]
pub(super) struct Unsupported(pub(super) Construct);

/// A planning step's result.
type Planned<T> = Result<T, Unsupported>;

/// The scatter plan of a read the router sends to several shards, or why there is none.
pub(super) fn plan(router: &Router, sql: &str) -> Result<ScatterPlan, RouteError> {
    let keyed = scattered_read(router, sql)?;
    let planned = parse(sql).and_then(|query| plan_query(router.map(), &query));
    planned.map_err(|unsupported| refusal(router, &keyed, unsupported))
}

/// The router's view of the statement: a read of one co-location group.
fn scattered_read(router: &Router, sql: &str) -> Result<Keyed, RouteError> {
    use crate::error::Unsupported as Refused;
    let plan = router.plan(sql);
    match plan.parts.as_slice() {
        [part] if part.kind == Kind::Read => match &part.target {
            Target::Keyed(keyed) => Ok(keyed.clone()),
            Target::Scatter(reason) => Err(Refused::ScatterNotComputable {
                reason: reason.clone(),
            }
            .into()),
            _ => Err(Refused::ScatterNotAShardedRead.into()),
        },
        _ => Err(Refused::ScatterNotOneSelect.into()),
    }
}

/// The refusal the client sees: the construct, where the rows are, and what to do.
fn refusal(router: &Router, keyed: &Keyed, Unsupported(construct): Unsupported) -> RouteError {
    let shards = router.placer(&keyed.sharding.group).shards();
    let names: Vec<String> = (shards.iter())
        .map(|&id| router.map().shard(id).name.clone())
        .collect();
    RouteError::CrossShard {
        construct,
        table: keyed.table.clone(),
        shards: names,
        key: keyed.sharding.key_column.clone(),
    }
}

fn parse(sql: &str) -> Planned<Box<Query>> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql);
    match statements.map(|mut s| (s.len(), s.pop())) {
        Ok((1, Some(Statement::Query(query)))) => Ok(query),
        Ok((1, Some(Statement::Explain { .. }))) => Err(Unsupported(Construct::Explain)),
        _ => Err(Unsupported(Construct::OtherStatement)),
    }
}

fn plan_query(map: &ShardMap, query: &Query) -> Planned<ScatterPlan> {
    let read = Read::new(map, query)?;
    let grouped = !read.group_by.is_empty()
        || read.select.having.is_some()
        || grouped::aggregates_anywhere(&read);
    let groups_on_one_shard = (read.group_by.iter()).any(|k| read.from.groups_stay_on_one_shard(k));
    if grouped && !groups_on_one_shard {
        grouped::plan(&read)
    } else {
        passthrough::plan(&read)
    }
}

/// A SELECT whose shape the planner understands, with what every mode reads of it.
struct Read<'a> {
    query: &'a Query,
    select: &'a Select,
    items: Items<'a>,
    /// GROUP BY expressions, positions and aliases resolved to the expressions they name.
    group_by: Vec<&'a Expr>,
    order_by: &'a [OrderByExpr],
    window: Window,
    from: FromFacts,
}

impl<'a> Read<'a> {
    fn new(map: &ShardMap, query: &'a Query) -> Planned<Read<'a>> {
        let select = query_shape(query)?;
        select_shape(select)?;
        let items = Items::new(&select.projection)?;
        let mut check = |expr: &Expr| shard_local(map, expr);
        let from = from::analyse(map, select, &mut check)?;
        let order_by = order::keys(query)?;
        let group_elements = group_elements(select)?;
        let projection = select.projection.iter().filter_map(item_expr);
        let clauses = (select.selection.iter()).chain(&select.having);
        let groups = group_elements.iter().copied();
        let keys = order_by.iter().map(|key| &key.expr);
        (projection.chain(clauses).chain(groups).chain(keys)).try_for_each(&mut check)?;
        let group_by = (group_elements.iter())
            .map(|&e| {
                Ok(items
                    .group_target(e)?
                    .and_then(|i| items.expr(i))
                    .unwrap_or(e))
            })
            .collect::<Planned<_>>()?;
        Ok(Read {
            query,
            select,
            items,
            group_by,
            order_by,
            window: limit::window(query)?,
            from,
        })
    }
}

/// Refuses what makes the query more than one plain SELECT.
fn query_shape(query: &Query) -> Planned<&Select> {
    if query.with.is_some() {
        return Err(Unsupported(Construct::CommonTableExpressions));
    }
    if !query.locks.is_empty() {
        return Err(Unsupported(Construct::RowLocks));
    }
    let foreign = query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty();
    match &*query.body {
        SetExpr::Select(select) if !foreign => Ok(select),
        _ => Err(Unsupported(Construct::SetOperation)),
    }
}

/// Refuses SELECT clauses the planner does not handle.
fn select_shape(select: &Select) -> Planned<()> {
    if matches!(select.distinct, Some(Distinct::On(_))) {
        return Err(Unsupported(Construct::DistinctOn));
    }
    if !select.named_window.is_empty() {
        return Err(Unsupported(Construct::WindowFunctions));
    }
    let foreign = select.into.is_some()
        || select.top.is_some()
        || select.exclude.is_some()
        || select.select_modifiers.is_some()
        || !select.optimizer_hints.is_empty()
        || !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
        || select.qualify.is_some()
        || select.value_table_mode.is_some()
        || select.flavor != SelectFlavor::Standard;
    if foreign {
        return Err(Unsupported(Construct::SelectSyntax));
    }
    Ok(())
}

/// The GROUP BY elements as written.
fn group_elements(select: &Select) -> Planned<Vec<&Expr>> {
    let GroupByExpr::Expressions(elements, modifiers) = &select.group_by else {
        return Err(Unsupported(Construct::GroupByAll));
    };
    if !modifiers.is_empty() {
        return Err(Unsupported(Construct::GroupByModifiers));
    }
    let sets = |e: &&Expr| {
        matches!(
            e,
            Expr::GroupingSets(_) | Expr::Rollup(_) | Expr::Cube(_) | Expr::Tuple(_)
        )
    };
    if elements.iter().any(|e| sets(&e)) {
        return Err(Unsupported(Construct::GroupingSets));
    }
    Ok(elements.iter().collect())
}

/// The expression of a select item, if it has one (`*` has not).
fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr)
        | SelectItem::ExprWithAlias { expr, .. }
        | SelectItem::ExprWithAliases { expr, .. }
        | SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::Expr(expr), _) => {
            Some(expr)
        }
        SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => None,
    }
}

/// Refuses an expression a shard cannot evaluate on its own rows: a window function (its
/// frame would see one shard's rows) or a subquery that differs between shards.
fn shard_local(map: &ShardMap, expr: &Expr) -> Planned<()> {
    walk(expr, &mut |node| match node {
        Node::Expr(Expr::Function(call)) if call.over.is_some() => {
            Err(Unsupported(Construct::WindowFunctions))
        }
        Node::Subquery(query) => subquery::same_on_every_shard(map, query),
        Node::Expr(_) => Ok(()),
    })
}

/// What the shards run, before the hidden columns are appended.
struct ShardQuery {
    select: Select,
    order_by: Option<OrderBy>,
    limit_clause: Option<LimitClause>,
}

/// The plan: the shards' statement with `hidden` appended, and the merge.
fn finish(read: &Read<'_>, shard: ShardQuery, hidden: Hidden, merge: MergePlan) -> ScatterPlan {
    let merge = MergePlan {
        hidden: hidden.len(),
        ..merge
    };
    let mut select = shard.select;
    hidden.append_to(&mut select.projection);
    let query = Query {
        body: Box::new(SetExpr::Select(Box::new(select))),
        order_by: shard.order_by,
        limit_clause: shard.limit_clause,
        fetch: None,
        ..read.query.clone()
    };
    ScatterPlan {
        shard_sql: query.to_string(),
        visible: read.items.visible(),
        merge,
        functions: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
