//! What a WHERE clause says about the shard key, and which shards that leaves once parameter
//! values are known.
//!
//! Part of the router (pure). A [`Condition`] keeps only what narrows the key (`=`, `IN`,
//! `= ANY`, `<`, `<=`, `>`, `>=`, `BETWEEN`, combined with AND/OR); anything else becomes
//! [`Condition::Any`], which can only widen the set of shards. So a condition may send a
//! statement to more shards than needed, never to fewer.

use std::ops::Bound;

use sqlparser::ast::{BinaryOperator, Expr, InTarget};

use super::operand::{Operand, Params, key_value};
use super::scope::Scope;
use super::strategy::Placer;
use super::{RouteError, array};
use crate::config::{KeyType, ShardId};

/// A constraint on the shard key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Nothing known: every shard.
    Any,
    /// `key = operand`
    Eq(Operand),
    /// `key IN (…)`
    In(Vec<Operand>),
    /// `key = ANY(operand)` with an array operand.
    AnyOf(Operand),
    /// `key` between two bounds (either may be unbounded).
    Interval(Bound<Operand>, Bound<Operand>),
    /// Every part holds.
    And(Vec<Condition>),
    /// Some part holds.
    Or(Vec<Condition>),
}

impl Condition {
    /// What `expr` (a WHERE or JOIN … ON clause) says about the keys in `scope`.
    pub fn from_expr(expr: &Expr, scope: &Scope) -> Condition {
        match expr {
            Expr::Nested(inner) => Condition::from_expr(inner, scope),
            Expr::BinaryOp { left, op, right } => binary(left, op, right, scope),
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } if scope.is_key(expr) => {
                let operands: Option<Vec<_>> = list.iter().map(Operand::from_expr).collect();
                operands.map_or(Condition::Any, Condition::In)
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } if scope.is_key(left) => any_of(right),
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } if scope.is_key(expr) => match (Operand::from_expr(low), Operand::from_expr(high)) {
                (Some(low), Some(high)) => {
                    Condition::Interval(Bound::Included(low), Bound::Included(high))
                }
                _ => Condition::Any,
            },
            _ => Condition::Any,
        }
    }

    /// Whether the condition narrows the key at all.
    pub fn is_any(&self) -> bool {
        matches!(self, Condition::Any)
    }

    /// The shards whose rows can satisfy the condition, sorted; `None` means every shard
    /// `placer` places on (nothing narrowed the key).
    pub fn shards(
        &self,
        table: &str,
        placer: &Placer,
        key_type: KeyType,
        params: &Params<'_>,
    ) -> Result<Option<Vec<ShardId>>, RouteError> {
        let eval = Evaluation {
            table,
            placer,
            key_type,
            params,
        };
        eval.shards(self)
    }
}

fn binary(left: &Expr, op: &BinaryOperator, right: &Expr, scope: &Scope) -> Condition {
    let each = |chained| {
        let operands = chain_operands(left, right, chained).into_iter();
        operands.map(|e| Condition::from_expr(e, scope)).collect()
    };
    match op {
        BinaryOperator::And => Condition::And(each(op)),
        BinaryOperator::Or => Condition::Or(each(op)),
        _ => comparison(left, op, right, scope)
            .or_else(|| comparison(right, &flipped(op)?, left, scope))
            .unwrap_or(Condition::Any),
    }
}

/// The operands of `left op right` where either side may itself be a chain of `op`
/// (`a OR b OR c`, parenthesized or not), flattened in order without recursion: the parser
/// makes a chain of n operators a tree n levels deep.
fn chain_operands<'e>(left: &'e Expr, right: &'e Expr, op: &BinaryOperator) -> Vec<&'e Expr> {
    let mut operands = Vec::new();
    let mut pending = vec![right, left];
    while let Some(expr) = pending.pop() {
        let mut inner = expr;
        while let Expr::Nested(nested) = inner {
            inner = nested;
        }
        match inner {
            Expr::BinaryOp {
                left,
                op: chained,
                right,
            } if chained == op => {
                pending.push(right);
                pending.push(left);
            }
            _ => operands.push(expr),
        }
    }
    operands
}

/// `key op operand`, if that is what the sides are.
fn comparison(key: &Expr, op: &BinaryOperator, value: &Expr, scope: &Scope) -> Option<Condition> {
    if !scope.is_key(key) {
        return None;
    }
    let value = Operand::from_expr(value)?;
    Some(match op {
        BinaryOperator::Eq => Condition::Eq(value),
        BinaryOperator::Lt => Condition::Interval(Bound::Unbounded, Bound::Excluded(value)),
        BinaryOperator::LtEq => Condition::Interval(Bound::Unbounded, Bound::Included(value)),
        BinaryOperator::Gt => Condition::Interval(Bound::Excluded(value), Bound::Unbounded),
        BinaryOperator::GtEq => Condition::Interval(Bound::Included(value), Bound::Unbounded),
        _ => return None,
    })
}

/// The operator with its sides swapped: `5 < k` is `k > 5`.
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        _ => return None,
    })
}

/// `= ANY($1)` or `= ANY(ARRAY[…])`.
fn any_of(right: &Expr) -> Condition {
    let mut inner = right;
    while let Expr::Nested(e) | Expr::Cast { expr: e, .. } = inner {
        inner = e;
    }
    if let Expr::Array(array) = inner {
        let operands: Option<Vec<_>> = array.elem.iter().map(Operand::from_expr).collect();
        return operands.map_or(Condition::Any, Condition::In);
    }
    Operand::from_expr(inner).map_or(Condition::Any, Condition::AnyOf)
}

struct Evaluation<'a> {
    table: &'a str,
    placer: &'a Placer,
    key_type: KeyType,
    params: &'a Params<'a>,
}

impl Evaluation<'_> {
    fn shards(&self, condition: &Condition) -> Result<Option<Vec<ShardId>>, RouteError> {
        Ok(Some(match condition {
            Condition::Any => return Ok(None),
            Condition::Eq(operand) => self.of_operands(std::slice::from_ref(operand))?,
            Condition::In(operands) => self.of_operands(operands)?,
            Condition::AnyOf(operand) => self.of_array(operand)?,
            Condition::Interval(low, high) => self.of_interval(low, high)?,
            Condition::And(parts) => return self.intersection(parts),
            Condition::Or(parts) => return self.union(parts),
        }))
    }

    fn of_operands(&self, operands: &[Operand]) -> Result<Vec<ShardId>, RouteError> {
        let mut shards = Vec::new();
        for operand in operands {
            if let Some(key) = key_value(operand, self.key_type, self.params)? {
                shards.push(self.shard_for(&key)?);
            }
        }
        Ok(sorted(shards))
    }

    fn shard_for(&self, key: &crate::config::KeyValue) -> Result<ShardId, RouteError> {
        place(self.table, self.placer, key)
    }

    fn of_array(&self, operand: &Operand) -> Result<Vec<ShardId>, RouteError> {
        let keys = array::keys(operand, self.key_type, self.params)?;
        let shards: Result<Vec<_>, _> = keys.iter().map(|k| self.shard_for(k)).collect();
        Ok(sorted(shards?))
    }

    fn of_interval(
        &self,
        low: &Bound<Operand>,
        high: &Bound<Operand>,
    ) -> Result<Vec<ShardId>, RouteError> {
        if self.key_type == KeyType::Text {
            // PostgreSQL compares text in the column's collation, ranges are placed in byte
            // order: only equality narrows a text key.
            return Ok(self.placer.shards());
        }
        let (Some(low), Some(high)) = (self.bound(low)?, self.bound(high)?) else {
            return Ok(Vec::new()); // A NULL bound matches nothing.
        };
        Ok(self.placer.shards_for_interval(low.as_ref(), high.as_ref()))
    }

    fn bound(
        &self,
        bound: &Bound<Operand>,
    ) -> Result<Option<Bound<crate::config::KeyValue>>, RouteError> {
        Ok(match bound {
            Bound::Unbounded => Some(Bound::Unbounded),
            Bound::Included(o) => key_value(o, self.key_type, self.params)?.map(Bound::Included),
            Bound::Excluded(o) => key_value(o, self.key_type, self.params)?.map(Bound::Excluded),
        })
    }

    fn intersection(&self, parts: &[Condition]) -> Result<Option<Vec<ShardId>>, RouteError> {
        let mut found: Option<Vec<ShardId>> = None;
        for part in parts {
            if let Some(shards) = self.shards(part)? {
                found = Some(match found {
                    None => shards,
                    Some(so_far) => so_far.into_iter().filter(|s| shards.contains(s)).collect(),
                });
            }
        }
        Ok(found)
    }

    fn union(&self, parts: &[Condition]) -> Result<Option<Vec<ShardId>>, RouteError> {
        let mut found = Vec::new();
        for part in parts {
            match self.shards(part)? {
                None => return Ok(None),
                Some(shards) => found.extend(shards),
            }
        }
        Ok(Some(sorted(found)))
    }
}

/// The shard of one key, with the table named in the error if there is none.
pub fn place(
    table: &str,
    placer: &Placer,
    key: &crate::config::KeyValue,
) -> Result<ShardId, RouteError> {
    placer
        .shard_for(key)
        .map_err(|source| RouteError::Placement {
            table: table.to_owned(),
            source,
        })
}

fn sorted(mut shards: Vec<ShardId>) -> Vec<ShardId> {
    shards.sort_unstable();
    shards.dedup();
    shards
}
