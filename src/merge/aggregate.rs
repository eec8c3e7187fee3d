//! Part of the merge stage (pure): one aggregate's per-shard partials combined into the
//! value a single PostgreSQL computes (the aggregate's combine and final functions).
//!
//! Owns which partial types each aggregate takes and how they combine: COUNT and SUM of
//! int8 partials with int8pl's overflow check, SUM of numeric exactly, SUM of floats as
//! float4pl/float8pl (overflow checked), AVG as sum / count (numeric_div, or float8), MIN and
//! MAX by PostgreSQL's order keeping the winning row, bool_and/bool_or; and the final value
//! in the result type's binary format. It never reads a visible column.

use std::cmp::Ordering;

use bytes::BufMut;

use super::MergeError;
use super::frame::{Layout, OwnedRow, Row};
use super::key::Budget;
use super::numeric::{Numeric, NumericView};
use super::plan::{Aggregate, Function};
use super::value::{self, SqlType, hidden_type};

/// What a SUM (or AVG's sum) adds, by the partials' type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SumKind {
    Int8,
    Numeric,
    Float4,
    Float8,
}

/// A running sum: NULL until a non-NULL partial arrives.
#[derive(Debug, Clone)]
pub(super) struct Sum {
    kind: SumKind,
    total: Option<Total>,
}

#[derive(Debug, Clone)]
enum Total {
    Int8(i64),
    Numeric(Numeric),
    Float4(f32),
    Float8(f64),
}

/// One aggregate resolved against the shards' columns.
#[derive(Debug)]
pub(super) struct Combiner {
    /// Hidden column of the partial (AVG: of the sum).
    input: usize,
    /// AVG: hidden column of the count.
    count_input: Option<usize>,
    partial: SqlType,
    result: SqlType,
    /// A group's state before any partial.
    start: State,
}

/// One aggregate's state in one group.
#[derive(Debug, Clone)]
pub(super) enum State {
    /// COUNT: the total.
    Count(i64),
    /// SUM.
    Sum(Sum),
    /// AVG: the sum and count so far.
    Avg(Sum, i64),
    /// MIN (`max` false) or MAX: the row whose partial wins so far.
    Extreme { max: bool, winner: Option<OwnedRow> },
    /// bool_and (`and`) or bool_or.
    Bool { and: bool, value: Option<bool> },
}

impl Combiner {
    /// The type of the partials it orders (MIN, MAX), whose order must then be the merge's.
    pub(super) fn ordered_partial(&self) -> Option<SqlType> {
        matches!(self.start, State::Extreme { .. }).then_some(self.partial)
    }

    /// Checks the partials' types for `aggregate`.
    pub(super) fn resolve(aggregate: &Aggregate, layout: &Layout) -> Result<Combiner, MergeError> {
        let function = aggregate.function;
        let (input, count_input) = match (function, aggregate.inputs.as_slice()) {
            (Function::Avg, &[sum, count]) => (sum, Some(count)),
            (Function::Avg, _) => return Err(arity(function, 2)),
            (_, &[input]) => (input, None),
            (_, _) => return Err(arity(function, 1)),
        };
        let partial = hidden_type(layout, input, &format!("an argument of {}", name(function)))?;
        if let Some(count) = count_input {
            expect(
                function,
                hidden_type(layout, count, "an AVG count")?,
                SqlType::Int8,
            )?;
        }
        let (start, result) = start(function, partial)?;
        Ok(Combiner {
            input,
            count_input,
            partial,
            result,
            start,
        })
    }

    /// The type of the final value.
    pub(super) fn result(&self) -> SqlType {
        self.result
    }

    /// Whether the client is shown a shard's own bytes (MIN/MAX) rather than a value the
    /// merge encodes.
    pub(super) fn shows_winner(&self) -> bool {
        matches!(self.start, State::Extreme { .. })
    }

    /// The state before any partial.
    pub(super) fn start(&self) -> State {
        self.start.clone()
    }

    /// Folds one shard row's partial into `state`; a MIN/MAX winner's copy is charged to
    /// `budget`.
    pub(super) fn add(
        &self,
        state: &mut State,
        row: &Row<'_>,
        budget: &mut Budget,
    ) -> Result<(), MergeError> {
        let partial = row.hidden(self.input)?;
        match state {
            State::Count(total) => add_count(total, partial),
            State::Sum(sum) => sum.add(partial),
            State::Avg(sum, count) => {
                sum.add(partial)?;
                let count_partial = self.count_input.map(|c| row.hidden(c)).transpose()?;
                add_count(count, count_partial.flatten())
            }
            State::Extreme { max, winner } => self.add_extreme(*max, winner, partial, row, budget),
            State::Bool { and, value } => {
                if let Some(bytes) = partial {
                    let next = value::boolean(bytes)?;
                    *value = Some(value.map_or(next, |v| if *and { v && next } else { v || next }));
                }
                Ok(())
            }
        }
    }

    /// MIN/MAX: `row` becomes the winner if its `partial` beats the winner's.
    fn add_extreme(
        &self,
        max: bool,
        winner: &mut Option<OwnedRow>,
        partial: Option<&[u8]>,
        row: &Row<'_>,
        budget: &mut Budget,
    ) -> Result<(), MergeError> {
        let Some(bytes) = partial else {
            return Ok(());
        };
        let wins = match self.winning_partial(winner)? {
            None => true,
            Some(held) => {
                let order = self
                    .partial
                    .decode(bytes)?
                    .compare(&self.partial.decode(held)?);
                order
                    == if max {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
            }
        };
        if wins {
            let kept = OwnedRow::new(row);
            budget.charge(kept.size())?;
            if let Some(old) = winner.replace(kept) {
                budget.release(old.size());
            }
        }
        Ok(())
    }

    /// The partial of a MIN/MAX winner (`None`: no winner yet).
    fn winning_partial<'a>(
        &self,
        winner: &'a Option<OwnedRow>,
    ) -> Result<Option<&'a [u8]>, MergeError> {
        Ok(match winner {
            Some(row) => row.row().hidden(self.input)?,
            None => None,
        })
    }

    /// Appends the final value in the result type's binary format; false for NULL.
    pub(super) fn finish(&self, state: &State, out: &mut Vec<u8>) -> Result<bool, MergeError> {
        match state {
            State::Count(total) => out.put_i64(*total),
            State::Sum(Sum { total: None, .. }) | State::Avg(Sum { total: None, .. }, _) => {
                return Ok(false);
            }
            State::Avg(_, 0) => return Ok(false),
            State::Sum(Sum {
                total: Some(total), ..
            }) => total.write(out)?,
            State::Avg(
                Sum {
                    total: Some(total), ..
                },
                count,
            ) => {
                let count = u64::try_from(*count).map_err(|_| MergeError::Malformed("count"))?;
                total.write_average(count, out)?;
            }
            State::Extreme { winner, .. } => match self.winning_partial(winner)? {
                Some(bytes) => out.put_slice(bytes),
                None => return Ok(false),
            },
            State::Bool { value: None, .. } => return Ok(false),
            State::Bool { value: Some(v), .. } => out.put_u8(u8::from(*v)),
        }
        Ok(true)
    }
}

impl State {
    /// MIN/MAX: the row whose partial won, whose visible bytes the client sees.
    pub(super) fn winner(&self) -> Option<Row<'_>> {
        match self {
            State::Extreme { winner, .. } => winner.as_ref().map(OwnedRow::row),
            _ => None,
        }
    }
}

impl Sum {
    /// Adds a partial; NULL partials are skipped, as SUM skips NULL inputs.
    fn add(&mut self, partial: Option<&[u8]>) -> Result<(), MergeError> {
        let Some(bytes) = partial else {
            return Ok(());
        };
        let overflow = || MergeError::OutOfRange("bigint out of range");
        self.total = Some(match self.total.take() {
            None => Total::decode(self.kind, bytes)?,
            Some(Total::Int8(a)) => {
                Total::Int8(a.checked_add(value::int8(bytes)?).ok_or_else(overflow)?)
            }
            Some(Total::Numeric(a)) => {
                Total::Numeric(a.add(&Numeric::from_view(&NumericView::decode(bytes)?)))
            }
            Some(Total::Float4(a)) => {
                let b = value::float4(bytes)?;
                Total::Float4(check_float(a + b, a.is_infinite() || b.is_infinite())?)
            }
            Some(Total::Float8(a)) => {
                let b = value::float8(bytes)?;
                Total::Float8(check_float(a + b, a.is_infinite() || b.is_infinite())?)
            }
        });
        Ok(())
    }
}

impl Total {
    fn decode(kind: SumKind, bytes: &[u8]) -> Result<Total, MergeError> {
        Ok(match kind {
            SumKind::Int8 => Total::Int8(value::int8(bytes)?),
            SumKind::Numeric => Total::Numeric(Numeric::from_view(&NumericView::decode(bytes)?)),
            SumKind::Float4 => Total::Float4(value::float4(bytes)?),
            SumKind::Float8 => Total::Float8(value::float8(bytes)?),
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), MergeError> {
        match self {
            Total::Int8(v) => out.put_i64(*v),
            Total::Numeric(v) => v.write_binary(out)?,
            Total::Float4(v) => out.put_f32(*v),
            Total::Float8(v) => out.put_f64(*v),
        }
        Ok(())
    }

    /// AVG's final function: numeric_div(sum, count) for integer and numeric sums, float8
    /// division for float sums.
    fn write_average(&self, count: u64, out: &mut Vec<u8>) -> Result<(), MergeError> {
        match self {
            Total::Int8(v) => Numeric::from_i128((*v).into())
                .div_count(count)
                .write_binary(out),
            Total::Numeric(v) => v.div_count(count).write_binary(out),
            Total::Float4(v) => {
                out.put_f64(f64::from(*v) / count as f64);
                Ok(())
            }
            Total::Float8(v) => {
                out.put_f64(*v / count as f64);
                Ok(())
            }
        }
    }
}

/// float4pl / float8pl: a finite sum of finite inputs that overflows is an error.
fn check_float<T: Into<f64> + Copy>(sum: T, input_infinite: bool) -> Result<T, MergeError> {
    if sum.into().is_infinite() && !input_infinite {
        return Err(MergeError::OutOfRange("value out of range: overflow"));
    }
    Ok(sum)
}

fn add_count(total: &mut i64, partial: Option<&[u8]>) -> Result<(), MergeError> {
    if let Some(bytes) = partial {
        *total = total
            .checked_add(value::int8(bytes)?)
            .ok_or(MergeError::OutOfRange("bigint out of range"))?;
    }
    Ok(())
}

/// A group's state before any partial of type `partial`, and the final value's type.
fn start(function: Function, partial: SqlType) -> Result<(State, SqlType), MergeError> {
    let sum = |kind| Sum { kind, total: None };
    Ok(match function {
        Function::Count => (State::Count(0), expect(function, partial, SqlType::Int8)?),
        Function::Sum => (State::Sum(sum(sum_kind(function, partial)?)), partial),
        Function::Avg => match sum_kind(function, partial)? {
            // PostgreSQL averages real values in double precision; shards' real sums have
            // already lost those digits, so the merged average could differ.
            SumKind::Float4 => {
                return Err(MergeError::Unsupported(
                    "AVG of a real (float4) value across shards; average it as double \
                     precision: avg(x::float8)"
                        .into(),
                ));
            }
            kind @ SumKind::Float8 => (State::Avg(sum(kind), 0), SqlType::Float8),
            kind => (State::Avg(sum(kind), 0), SqlType::Numeric),
        },
        Function::Min | Function::Max => {
            let max = function == Function::Max;
            (State::Extreme { max, winner: None }, partial)
        }
        Function::BoolAnd | Function::BoolOr => {
            let and = function == Function::BoolAnd;
            let result = expect(function, partial, SqlType::Bool)?;
            (State::Bool { and, value: None }, result)
        }
    })
}

fn sum_kind(function: Function, ty: SqlType) -> Result<SumKind, MergeError> {
    match ty {
        SqlType::Int8 => Ok(SumKind::Int8),
        SqlType::Numeric => Ok(SumKind::Numeric),
        SqlType::Float4 => Ok(SumKind::Float4),
        SqlType::Float8 => Ok(SumKind::Float8),
        other => Err(MergeError::Unsupported(format!(
            "{} of {} partials across shards",
            name(function),
            other.name()
        ))),
    }
}

fn expect(function: Function, ty: SqlType, expected: SqlType) -> Result<SqlType, MergeError> {
    if ty != expected {
        return Err(MergeError::Contract(format!(
            "{} partials are {}, not {}",
            name(function),
            ty.name(),
            expected.name()
        )));
    }
    Ok(ty)
}

fn arity(function: Function, inputs: usize) -> MergeError {
    MergeError::Contract(format!(
        "{} reads {inputs} hidden column(s)",
        name(function)
    ))
}

fn name(function: Function) -> &'static str {
    match function {
        Function::Count => "count",
        Function::Sum => "sum",
        Function::Min => "min",
        Function::Max => "max",
        Function::Avg => "avg",
        Function::BoolAnd => "bool_and",
        Function::BoolOr => "bool_or",
    }
}

#[cfg(test)]
mod tests;
