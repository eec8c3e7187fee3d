//! LIMIT, OFFSET and FETCH FIRST: the counts the merge applies and the LIMIT the shards get.
//!
//! Part of the scatter planner (pure). A shard cannot skip rows that another shard's rows may
//! precede, so OFFSET is always the merge's; a shard may stop after `offset + limit` rows of
//! its own (each of the final rows is among its shard's first that many). Counts are numbers
//! or `$n` parameters; anything computed is refused rather than evaluated here.

use sqlparser::ast::{BinaryOperator, Expr, Fetch, LimitClause, Query, Value};

use super::construct::Construct;
use super::hidden::{Hidden, bigint_param};
use super::{Planned, Unsupported};
use crate::merge::plan::Count;

/// The statement's OFFSET and LIMIT (or FETCH FIRST); `None`: absent, ALL or NULL.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Window {
    /// Rows skipped.
    pub offset: Option<Count>,
    /// Rows returned after the offset.
    pub limit: Option<Count>,
}

/// The window of a query.
pub(super) fn window(query: &Query) -> Planned<Window> {
    let (limit, offset) = match &query.limit_clause {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (limit.as_ref(), offset.as_ref().map(|o| &o.value)),
        Some(_) => return Err(Unsupported(Construct::LimitSyntax)),
    };
    let fetched = query.fetch.as_ref().map(fetch_count).transpose()?;
    let limit = match (limit, fetched) {
        (Some(_), Some(_)) => return Err(Unsupported(Construct::LimitAndFetch)),
        (Some(limit), None) => count(limit)?,
        (None, fetched) => fetched.flatten(),
    };
    let offset = offset.map(count).transpose()?.flatten();
    Ok(Window { offset, limit })
}

impl Window {
    /// The shards' LIMIT: `offset + limit` and no OFFSET (none without a limit). A parameter
    /// the shards then no longer see is anchored in `hidden`.
    pub(super) fn shard_limit_clause(&self, hidden: &mut Hidden) -> Option<LimitClause> {
        let Some(limit) = self.shard_limit() else {
            self.anchor_params(hidden);
            return None;
        };
        Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by: Vec::new(),
        })
    }

    /// Anchors the window's parameters in `hidden`, for shards sent no LIMIT or OFFSET.
    pub(super) fn anchor_params(&self, hidden: &mut Hidden) {
        for count in [self.offset, self.limit].into_iter().flatten() {
            if let Count::Param(number) = count {
                hidden.anchor_count_param(number);
            }
        }
    }

    /// `offset + limit` as the shards' LIMIT; `None` when there is no limit (or the sum of
    /// two numbers would overflow a bigint, where no limit is as correct).
    fn shard_limit(&self) -> Option<Expr> {
        let limit = self.limit?;
        Some(match (self.offset, limit) {
            (None | Some(Count::Value(0)), limit) => bare(limit),
            (Some(Count::Value(offset)), Count::Value(limit)) => {
                let sum = offset
                    .checked_add(limit)
                    .filter(|&s| s <= i64::MAX as u64)?;
                number(sum)
            }
            (Some(offset), limit) => Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(typed(offset)),
                op: BinaryOperator::Plus,
                right: Box::new(typed(limit)),
            })),
        })
    }
}

/// `FETCH FIRST n ROWS ONLY` (`FIRST ROW ONLY` is one row).
fn fetch_count(fetch: &Fetch) -> Planned<Option<Count>> {
    if fetch.with_ties || fetch.percent {
        return Err(Unsupported(Construct::FetchWithTiesOrPercent));
    }
    match &fetch.quantity {
        None => Ok(Some(Count::Value(1))),
        Some(quantity) => count(quantity),
    }
}

/// A count as written: a non-negative integer, `$n`, or NULL (no limit).
fn count(expr: &Expr) -> Planned<Option<Count>> {
    let refuse = || Unsupported(Construct::ComputedCount);
    let Expr::Value(value) = expr else {
        return Err(refuse());
    };
    match &value.value {
        Value::Null => Ok(None),
        Value::Number(text, _) => {
            let count = text.parse::<u64>().ok().filter(|&n| n <= i64::MAX as u64);
            count.map(|n| Some(Count::Value(n))).ok_or_else(refuse)
        }
        Value::Placeholder(name) => {
            let number = name
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0);
            number.map(|n| Some(Count::Param(n))).ok_or_else(refuse)
        }
        _ => Err(refuse()),
    }
}

/// A count alone: PostgreSQL types a lone `LIMIT $n` itself.
fn bare(count: Count) -> Expr {
    match count {
        Count::Value(n) => number(n),
        Count::Param(n) => Expr::value(Value::Placeholder(format!("${n}"))),
    }
}

/// A count in a sum: a parameter needs a type there (`unknown + unknown` has no operator).
fn typed(count: Count) -> Expr {
    match count {
        Count::Value(n) => number(n),
        Count::Param(n) => bigint_param(n),
    }
}

fn number(n: u64) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}
