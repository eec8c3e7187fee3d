//! HAVING of a cross-shard aggregation as a [`Predicate`] the merge evaluates on merged
//! groups (a shard sees only part of each group, so it cannot filter them).
//!
//! Part of the scatter planner (pure). It translates AND, OR, NOT, IS [NOT] NULL and
//! comparisons of group keys and aggregates with each other, constants or parameters; it
//! never passes on a condition it cannot translate exactly.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use super::construct::Construct;
use super::items::unparenthesized;
use super::slots::Slots;
use super::{Planned, Unsupported};
use crate::merge::plan::{CompareOp, Operand, Predicate};

/// The predicate of a HAVING condition.
pub(super) fn predicate(condition: &Expr, slots: &mut Slots<'_>) -> Planned<Predicate> {
    let condition = unparenthesized(condition);
    let refuse = || Unsupported(Construct::Having(condition.to_string()));
    match condition {
        Expr::BinaryOp { op, .. } if matches!(op, BinaryOperator::And | BinaryOperator::Or) => {
            let mut parts = Vec::new();
            for part in operands_of(condition, op) {
                parts.push(predicate(part, slots)?);
            }
            Ok(match op {
                BinaryOperator::And => Predicate::And(parts),
                _ => Predicate::Or(parts),
            })
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Predicate::Not(Box::new(predicate(expr, slots)?))),
        Expr::IsNull(value) | Expr::IsNotNull(value) => Ok(Predicate::IsNull {
            value: slots.slot(value)?.ok_or_else(refuse)?,
            negated: matches!(condition, Expr::IsNotNull(_)),
        }),
        Expr::BinaryOp { left, op, right } => {
            let op = compare_op(op).ok_or_else(refuse)?;
            match (operand(left, slots)?, operand(right, slots)?) {
                (Some(left), Some(right))
                    if matches!(left, Operand::Slot(_)) || matches!(right, Operand::Slot(_)) =>
                {
                    Ok(Predicate::Compare { left, op, right })
                }
                _ => Err(refuse()),
            }
        }
        _ => Err(refuse()),
    }
}

/// The operands of a chain of one operator (`a AND b AND c`), flattened.
fn operands_of<'e>(expr: &'e Expr, chained: &BinaryOperator) -> Vec<&'e Expr> {
    match unparenthesized(expr) {
        Expr::BinaryOp { left, op, right } if op == chained => {
            let mut operands = operands_of(left, chained);
            operands.extend(operands_of(right, chained));
            operands
        }
        other => vec![other],
    }
}

fn compare_op(op: &BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        BinaryOperator::Eq => CompareOp::Eq,
        BinaryOperator::NotEq => CompareOp::NotEq,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::LtEq,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    })
}

/// A comparison side: a slot, a constant's text or a parameter; `None` for anything else.
fn operand(expr: &Expr, slots: &mut Slots<'_>) -> Planned<Option<Operand>> {
    if let Some(slot) = slots.slot(expr)? {
        return Ok(Some(Operand::Slot(slot)));
    }
    Ok(constant(unparenthesized(expr)))
}

fn constant(expr: &Expr) -> Option<Operand> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) | Value::SingleQuotedString(text) => {
                Some(Operand::Literal(text.clone()))
            }
            Value::Boolean(b) => Some(Operand::Literal(b.to_string())),
            Value::Placeholder(name) => {
                let number = name.strip_prefix('$')?.parse().ok()?;
                Some(Operand::Param(number))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match &**expr {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => Some(Operand::Literal(format!("-{text}"))),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}
