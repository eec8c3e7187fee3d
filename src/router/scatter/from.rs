//! FROM of a cross-shard read: whether running it on each shard and taking the union of the
//! rows gives exactly the rows one server would join, and which shard keys are never NULL.
//!
//! Part of the scatter planner (pure). The router has already checked that the sharded
//! tables are of one co-location group and joined on their key (`Scope`); this adds what
//! per-shard evaluation needs beyond routing: only map tables, no outer join that keeps a
//! reference table's rows against sharded ones (every shard would keep them), and, with outer
//! joins, each join of sharded rows pairing them by key in its own condition or in WHERE.
//! It never accepts a FROM it cannot prove shard-local.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Join, JoinConstraint, JoinOperator, ObjectName, Select,
    TableAlias, TableFactor, TableWithJoins,
};

use super::construct::Construct;
use super::subquery::same_on_every_shard;
use super::{Planned, Unsupported};
use crate::config::{Placement, ShardMap};
use crate::router::scope::{Scope, map_table_name};

/// What the FROM clause tells the rest of the planner.
pub(super) struct FromFacts {
    scope: Scope,
    /// By index into `scope.sharded`: an outer join may NULL-extend the table's rows.
    nullable: Vec<bool>,
}

impl FromFacts {
    /// Whether grouping by `expr` keeps each group on one shard: it is the shard key of a
    /// sharded table whose rows are never NULL-extended (NULL keys of several shards would
    /// make one group).
    pub(super) fn groups_stay_on_one_shard(&self, expr: &Expr) -> bool {
        (self.scope.key_of(expr)).is_some_and(|table| !self.nullable[table])
    }
}

/// Rows of the tables on one side of a join.
struct Side {
    /// Sharded tables (indexes into `scope.sharded`); none: the same rows on every shard.
    sharded: Vec<usize>,
}

impl Side {
    /// Rows every shard has the same copy of (reference tables, functions, constants).
    fn copies() -> Side {
        Side {
            sharded: Vec::new(),
        }
    }
}

/// A join of sharded rows with sharded rows, to be checked once all joins are known.
struct Pairing {
    left: Vec<usize>,
    right: Vec<usize>,
    /// Key equalities its own ON or USING states.
    own: Vec<(usize, usize)>,
}

/// Checks a FROM clause and returns its facts; `check` sees every expression in it (join
/// conditions, function arguments) and every derived table is checked as a subquery.
pub(super) fn analyse(
    map: &ShardMap,
    select: &Select,
    check: &mut dyn FnMut(&Expr) -> Planned<()>,
) -> Planned<FromFacts> {
    let mut scope = Scope::default();
    scope.add_from(map, &select.from);
    let mut walk = FromWalk {
        map,
        nullable: vec![false; scope.sharded.len()],
        scope,
        pairings: Vec::new(),
        outer_joins: false,
        check,
    };
    let mut joined: Option<Side> = None;
    for item in &select.from {
        let side = walk.item(item)?;
        joined = Some(match joined {
            None => side,
            Some(left) => walk.combine(left, side, Vec::new()),
        });
    }
    walk.check_pairings(select.selection.as_ref())?;
    Ok(FromFacts {
        scope: walk.scope,
        nullable: walk.nullable,
    })
}

struct FromWalk<'a, 'c> {
    map: &'a ShardMap,
    scope: Scope,
    nullable: Vec<bool>,
    pairings: Vec<Pairing>,
    outer_joins: bool,
    check: &'c mut dyn FnMut(&Expr) -> Planned<()>,
}

impl FromWalk<'_, '_> {
    fn item(&mut self, item: &TableWithJoins) -> Planned<Side> {
        let mut left = self.factor(&item.relation)?;
        for join in &item.joins {
            let right = self.factor(&join.relation)?;
            left = self.join(left, right, join)?;
        }
        Ok(left)
    }

    fn factor(&mut self, factor: &TableFactor) -> Planned<Side> {
        match factor {
            TableFactor::Table {
                args: Some(args), ..
            } => self.exprs(arg_exprs(&args.args))?,
            TableFactor::Table {
                name,
                alias,
                sample,
                args: None,
                ..
            } => return self.table(name, alias.as_ref(), sample.is_some()),
            TableFactor::Function { args, .. } => self.exprs(arg_exprs(args))?,
            TableFactor::UNNEST { array_exprs, .. } => self.exprs(array_exprs)?,
            TableFactor::Derived { subquery, .. } => same_on_every_shard(self.map, subquery)?,
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => return self.item(table_with_joins),
            _ => return Err(Unsupported(Construct::FromItem)),
        }
        Ok(Side::copies())
    }

    fn table(
        &mut self,
        name: &ObjectName,
        alias: Option<&TableAlias>,
        sampled: bool,
    ) -> Planned<Side> {
        match self.placement(name)? {
            Placement::Reference => Ok(Side::copies()),
            Placement::Sharded(_) => {
                if sampled {
                    return Err(Unsupported(Construct::TableSample));
                }
                if alias.is_some_and(|a| !a.columns.is_empty()) {
                    return Err(Unsupported(Construct::ColumnAliases));
                }
                let reference = match alias {
                    Some(alias) => alias.name.value.to_lowercase(),
                    None => map_table_name(name).unwrap_or_default(),
                };
                let index = self
                    .scope
                    .sharded
                    .iter()
                    .position(|t| t.reference == reference);
                let index =
                    index.ok_or_else(|| Unsupported(Construct::TableUse(name.to_string())))?;
                Ok(Side {
                    sharded: vec![index],
                })
            }
        }
    }

    fn placement(&self, name: &ObjectName) -> Planned<&Placement> {
        let entry = map_table_name(name).and_then(|table| self.map.tables.get(&table));
        entry
            .map(|table| &table.placement)
            .ok_or_else(|| Unsupported(Construct::UnmappedJoin(name.to_string())))
    }

    fn join(&mut self, left: Side, right: Side, join: &Join) -> Planned<Side> {
        let (constraint, keeps_left, keeps_right) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                (c, false, false)
            }
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (c, true, false),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (c, false, true),
            JoinOperator::FullOuter(c) => (c, true, true),
            _ => return Err(Unsupported(Construct::JoinKind)),
        };
        let copies_kept = (keeps_left && left.sharded.is_empty() && !right.sharded.is_empty())
            || (keeps_right && right.sharded.is_empty() && !left.sharded.is_empty());
        if copies_kept {
            return Err(Unsupported(Construct::OuterJoinKeepingCopies));
        }
        self.outer_joins |= keeps_left || keeps_right;
        for (keeps, extended) in [(keeps_left, &right), (keeps_right, &left)] {
            if keeps {
                extended
                    .sharded
                    .iter()
                    .for_each(|&t| self.nullable[t] = true);
            }
        }
        let own = self.own_equalities(constraint, &left, &right)?;
        Ok(self.combine(left, right, own))
    }

    /// `left` and `right` as one side, noting the pairing when both hold sharded rows.
    fn combine(&mut self, left: Side, right: Side, own: Vec<(usize, usize)>) -> Side {
        if !left.sharded.is_empty() && !right.sharded.is_empty() {
            self.pairings.push(Pairing {
                left: left.sharded.clone(),
                right: right.sharded.clone(),
                own,
            });
        }
        let mut sharded = left.sharded;
        sharded.extend(right.sharded);
        Side { sharded }
    }

    /// Key equalities between the two sides that a join's own condition states.
    fn own_equalities(
        &mut self,
        constraint: &JoinConstraint,
        left: &Side,
        right: &Side,
    ) -> Planned<Vec<(usize, usize)>> {
        let mut found = Vec::new();
        match constraint {
            JoinConstraint::On(on) => {
                (self.check)(on)?;
                self.scope.key_equalities(on, &mut found);
            }
            JoinConstraint::Using(columns) => {
                let named: Vec<String> = columns.iter().filter_map(map_table_name).collect();
                let key = |t: usize| &self.scope.sharded[t].sharding.key_column;
                for (&l, &r) in left
                    .sharded
                    .iter()
                    .flat_map(|l| right.sharded.iter().map(move |r| (l, r)))
                {
                    if key(l) == key(r) && named.contains(key(l)) {
                        found.push((l, r));
                    }
                }
            }
            _ => {}
        }
        Ok(found)
    }

    /// With an outer join anywhere, each pairing of sharded rows must be by key in its own
    /// condition or in WHERE (which drops the NULL-extended and cross-shard pairs alike).
    /// Without one, the router's check holds: every condition then filters all rows.
    fn check_pairings(&self, selection: Option<&Expr>) -> Planned<()> {
        if !self.outer_joins {
            return Ok(());
        }
        let mut filtered = Vec::new();
        if let Some(selection) = selection {
            self.scope.key_equalities(selection, &mut filtered);
        }
        for pairing in &self.pairings {
            let (l, r) = (&pairing.left, &pairing.right);
            let crosses = |&(a, b): &(usize, usize)| {
                (l.contains(&a) && r.contains(&b)) || (l.contains(&b) && r.contains(&a))
            };
            if !pairing.own.iter().chain(&filtered).any(crosses) {
                return Err(Unsupported(Construct::OuterJoinOffKey));
            }
        }
        Ok(())
    }

    fn exprs<'e>(&mut self, exprs: impl IntoIterator<Item = &'e Expr>) -> Planned<()> {
        exprs.into_iter().try_for_each(|expr| (self.check)(expr))
    }
}

/// The expressions among function arguments.
pub(super) fn arg_exprs(args: &[FunctionArg]) -> impl Iterator<Item = &Expr> {
    args.iter().filter_map(|arg| match arg {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => match arg {
            FunctionArgExpr::Expr(expr) => Some(expr),
            _ => None,
        },
    })
}
