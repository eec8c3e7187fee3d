//! The values a cross-shard aggregation reads from merged groups: group keys (hidden
//! columns) and aggregates (their partials in hidden columns).
//!
//! Part of the scatter planner (pure). Owns the hidden columns of a grouped plan, so that the
//! select list, HAVING and ORDER BY asking for the same aggregate share one entry. It never
//! hands out a slot for an expression that is neither a group key nor an aggregate call.

use std::collections::HashMap;

use sqlparser::ast::{Expr, Function};

use super::aggregate::{is_aggregate, partials};
use super::construct::Construct;
use super::hidden::Hidden;
use super::items::{same_value, unparenthesized};
use super::{Planned, Unsupported, walk};
use crate::merge::plan::{Aggregate, Slot};

/// Group keys and aggregates of one grouped plan.
pub(super) struct Slots<'a> {
    hidden: Hidden,
    /// Each GROUP BY expression and its hidden column.
    groups: Vec<(&'a Expr, usize)>,
    aggregates: Vec<Aggregate>,
    /// Index into `aggregates` by the call's SQL text.
    by_text: HashMap<String, usize>,
}

impl<'a> Slots<'a> {
    /// Slots with one hidden column per GROUP BY expression.
    pub(super) fn new(group_by: &[&'a Expr]) -> Planned<Slots<'a>> {
        let mut hidden = Hidden::default();
        let mut groups = Vec::new();
        for &key in group_by {
            if walk::any(key, &super::aggregate::is_aggregate_expr) {
                return Err(Unsupported(Construct::AggregateInGroupBy));
            }
            groups.push((key, hidden.add(key)));
        }
        Ok(Slots {
            hidden,
            groups,
            aggregates: Vec::new(),
            by_text: HashMap::new(),
        })
    }

    /// The slot of a GROUP BY expression or an aggregate call; `None` for anything else.
    pub(super) fn slot(&mut self, expr: &Expr) -> Planned<Option<Slot>> {
        let expr = unparenthesized(expr);
        if let Expr::Function(call) = expr
            && is_aggregate(call)
        {
            return Ok(Some(Slot::Aggregate(self.aggregate(call)?)));
        }
        Ok(self.group(expr).map(Slot::Hidden))
    }

    /// The aggregate index of a call, adding its partials as hidden columns when new.
    pub(super) fn aggregate(&mut self, call: &Function) -> Planned<usize> {
        let text = call.to_string();
        if let Some(&index) = self.by_text.get(&text) {
            return Ok(index);
        }
        let partials = partials(call)?;
        let inputs = partials.inputs.iter().map(|e| self.hidden.add(e)).collect();
        self.aggregates.push(Aggregate {
            function: partials.function,
            inputs,
        });
        self.by_text.insert(text, self.aggregates.len() - 1);
        Ok(self.aggregates.len() - 1)
    }

    /// The hidden column of the GROUP BY expression `expr` is, if it is one.
    pub(super) fn group(&self, expr: &Expr) -> Option<usize> {
        let group = self.groups.iter().find(|(key, _)| same_value(key, expr));
        group.map(|&(_, hidden)| hidden)
    }

    /// The hidden columns, for parameters the shards must still see.
    pub(super) fn hidden_mut(&mut self) -> &mut Hidden {
        &mut self.hidden
    }

    /// Hidden columns, group-key columns and aggregates.
    pub(super) fn into_parts(self) -> (Hidden, Vec<usize>, Vec<Aggregate>) {
        let keys = self.groups.iter().map(|&(_, hidden)| hidden).collect();
        (self.hidden, keys, self.aggregates)
    }
}
