//! The hidden columns a scatter plan appends to the shards' select list.
//!
//! Part of the scatter planner (pure). Each hidden column is a copy of an expression the
//! merge reads (sort key, group key, aggregate partial, distinct value) under an alias of
//! its own (`__sg_h0`, …) so it never collides with the client's names; an expression asked
//! for twice is one column. It never touches the client's columns, which stay first.

use std::collections::HashMap;

use sqlparser::ast::{CastKind, DataType, Expr, Ident, SelectItem, Value};

/// Prefix of hidden column aliases.
const ALIAS_PREFIX: &str = "__sg_h";

/// Hidden columns, in the order they are appended.
#[derive(Default)]
pub(super) struct Hidden {
    exprs: Vec<Expr>,
    /// Index of each expression by its SQL text, so a repeated one is not appended twice.
    by_text: HashMap<String, usize>,
}

impl Hidden {
    /// The hidden index (0 = first appended) of a column holding `expr`.
    pub(super) fn add(&mut self, expr: &Expr) -> usize {
        let text = expr.to_string();
        if let Some(&index) = self.by_text.get(&text) {
            return index;
        }
        self.exprs.push(expr.clone());
        self.by_text.insert(text, self.exprs.len() - 1);
        self.exprs.len() - 1
    }

    /// Keeps parameter `$n` in the shard SQL, typed `bigint` as LIMIT and OFFSET type it,
    /// when the clause that used it is left to the merge: PostgreSQL rejects a statement
    /// with a parameter it can neither see nor was told the type of.
    pub(super) fn anchor_count_param(&mut self, number: usize) {
        self.add(&bigint_param(number));
    }

    /// How many columns are hidden.
    pub(super) fn len(&self) -> usize {
        self.exprs.len()
    }

    /// Appends the hidden columns to a shard select list.
    pub(super) fn append_to(self, projection: &mut Vec<SelectItem>) {
        let aliased = self.exprs.into_iter().enumerate();
        projection.extend(aliased.map(|(index, expr)| SelectItem::ExprWithAlias {
            expr,
            alias: Ident::new(format!("{ALIAS_PREFIX}{index}")),
        }));
    }
}

/// `$n::bigint`.
pub(super) fn bigint_param(number: usize) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(Expr::value(Value::Placeholder(format!("${number}")))),
        data_type: DataType::BigInt(None),
        format: None,
    }
}
