//! Part of the merge stage (pure): cross-shard GROUP BY, and aggregates without one.
//!
//! Owns the groups: shard rows are per-group partials, grouped by the value of the group
//! key (as PostgreSQL's `=` equates values), each group keeping its first row (whose
//! visible bytes show the group key) and one state per aggregate. Once every shard is done
//! it computes the finals, keeps the groups HAVING accepts, sorts them by ORDER BY and writes
//! the rows. Without a group key there is exactly one group, even with no rows. It never
//! holds more than the buffer's bound: past it the statement fails with 54000.

use std::cmp::Ordering;

use bytes::BytesMut;

use super::aggregate::{Combiner, State};
use super::encode::write_value;
use super::frame::{Column, Layout, OwnedRow, Row, RowWriter, write_row};
use super::having::{Condition, Scope, TypedSlot};
use super::key::{Budget, ENTRY_OVERHEAD, KeyIndex};
use super::plan::{Aggregation, Output, Slot, SortKey};
use super::sink::Sink;
use super::sorted::compare_sort_values;
use super::value::{self, SqlType, Value, hidden_type};
use super::{Buffered, MergeError, MergeLimits, ParamValue};

/// What one visible column of a merged group shows.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// The group's first row's bytes.
    GroupValue,
    /// MIN/MAX `aggregate`: the winning row's bytes.
    Winner(usize),
    /// The final of `aggregate` (of type `ty`), written by the merge in text or binary.
    Final {
        aggregate: usize,
        ty: SqlType,
        binary: bool,
    },
}

#[derive(Debug)]
struct Group {
    first: Option<OwnedRow>,
    states: Vec<State>,
}

/// A group's final values, in binary of each aggregate's result type.
struct Finals {
    bytes: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
}

/// The groups of one statement.
#[derive(Debug)]
pub(super) struct Grouping {
    keys: Option<KeyIndex>,
    combiners: Vec<Combiner>,
    columns: Vec<Shown>,
    having: Option<Condition>,
    order: Vec<(TypedSlot, SortKey)>,
    groups: Vec<Group>,
    budget: Budget,
}

/// Refuses HAVING comparisons that order text (`<`, `>=`, …) when the merge's bytewise order
/// is not the database's; equality is the same under every deterministic collation.
fn check_ordered_comparisons(
    predicate: &crate::merge::plan::Predicate,
    slot_type: &dyn Fn(Slot) -> Result<SqlType, MergeError>,
    bytewise_text: bool,
) -> Result<(), MergeError> {
    use crate::merge::plan::{CompareOp, Operand, Predicate};
    match predicate {
        Predicate::And(items) | Predicate::Or(items) => (items.iter())
            .try_for_each(|item| check_ordered_comparisons(item, slot_type, bytewise_text)),
        Predicate::Not(inner) => check_ordered_comparisons(inner, slot_type, bytewise_text),
        Predicate::IsNull { .. } => Ok(()),
        Predicate::Compare { left, op, right } => {
            if matches!(op, CompareOp::Eq | CompareOp::NotEq) {
                return Ok(());
            }
            for side in [left, right] {
                if let Operand::Slot(slot) = side {
                    value::ordered_text(slot_type(*slot)?, bytewise_text, "a HAVING comparison")?;
                }
            }
            Ok(())
        }
    }
}

impl Grouping {
    /// Resolves `aggregation` and `order` against the shards' columns.
    pub(super) fn new(
        aggregation: &Aggregation,
        order: &[SortKey],
        layout: &Layout,
        params: &[ParamValue<'_>],
        limits: MergeLimits,
    ) -> Result<Grouping, MergeError> {
        let combiners = (aggregation.aggregates.iter())
            .map(|aggregate| Combiner::resolve(aggregate, layout))
            .collect::<Result<Vec<_>, _>>()?;
        for partial in combiners.iter().filter_map(Combiner::ordered_partial) {
            value::ordered_text(partial, limits.bytewise_text, "MIN/MAX")?;
        }
        let keys = (aggregation.group_keys.iter())
            .map(|&key| hidden_type(layout, key, "a GROUP BY key").map(|ty| (key, ty)))
            .collect::<Result<Vec<_>, _>>()?;
        let columns = visible_columns(aggregation, layout, &combiners)?;
        let slot_type = |slot: Slot| match slot {
            Slot::Hidden(index) => hidden_type(layout, index, "a HAVING or ORDER BY value"),
            Slot::Aggregate(index) => aggregate(&combiners, index).map(Combiner::result),
        };
        let scope = Scope {
            slot_type: &slot_type,
            params,
        };
        if let Some(predicate) = &aggregation.having {
            check_ordered_comparisons(predicate, &slot_type, limits.bytewise_text)?;
        }
        let having = (aggregation.having.as_ref())
            .map(|predicate| Condition::resolve(predicate, &scope))
            .transpose()?;
        let order = (order.iter())
            .map(|key| {
                let ty = slot_type(key.value)?;
                value::ordered_text(ty, key.bytewise || limits.bytewise_text, "ORDER BY")?;
                Ok((TypedSlot::resolve(key.value, &slot_type)?, *key))
            })
            .collect::<Result<Vec<_>, MergeError>>()?;
        let mut grouping = Grouping {
            keys: (!keys.is_empty()).then(|| KeyIndex::new(keys)),
            combiners,
            columns,
            having,
            order,
            groups: Vec::new(),
            budget: Budget::new(limits.max_buffered_bytes, Buffered::GroupBy),
        };
        if grouping.keys.is_none() {
            grouping.open_group()?;
        }
        Ok(grouping)
    }

    fn open_group(&mut self) -> Result<(), MergeError> {
        let states: Vec<State> = self.combiners.iter().map(Combiner::start).collect();
        self.budget
            .charge(ENTRY_OVERHEAD + std::mem::size_of_val(states.as_slice()))?;
        self.groups.push(Group {
            first: None,
            states,
        });
        Ok(())
    }

    /// Folds one shard row into its group.
    pub(super) fn add(&mut self, row: &Row<'_>) -> Result<(), MergeError> {
        let index = match &mut self.keys {
            None => 0,
            Some(keys) => {
                let (index, new) = keys.classify(row, &mut self.budget)?;
                if new {
                    self.open_group()?;
                }
                index
            }
        };
        let group = (self.groups.get_mut(index))
            .ok_or_else(|| MergeError::Contract(format!("group {index} was never opened")))?;
        if group.first.is_none() {
            let first = OwnedRow::new(row);
            self.budget.charge(first.size())?;
            group.first = Some(first);
        }
        for (combiner, state) in self.combiners.iter().zip(&mut group.states) {
            combiner.add(state, row, &mut self.budget)?;
        }
        Ok(())
    }

    /// Every shard is done: writes the groups HAVING keeps, in ORDER BY order, to `sink`.
    pub(super) fn finish(&self, sink: &mut Sink) -> Result<(), MergeError> {
        let finals = (self.groups.iter())
            .map(|group| Finals::compute(group, &self.combiners))
            .collect::<Result<Vec<_>, _>>()?;
        let mut kept = Vec::with_capacity(self.groups.len());
        for (group, finals) in self.groups.iter().zip(&finals) {
            let value = |slot: TypedSlot| slot_value(group, finals, slot);
            if let Some(having) = &self.having
                && having.eval(&value)? != Some(true)
            {
                continue;
            }
            let keys = (self.order.iter())
                .map(|(slot, _)| value(*slot))
                .collect::<Result<Vec<_>, _>>()?;
            kept.push((keys, group, finals));
        }
        kept.sort_by(|(a, ..), (b, ..)| self.compare(a, b));
        for (_, group, finals) in kept {
            if sink.done() {
                break;
            }
            if let Some(out) = sink.admit() {
                self.write(group, finals, out)?;
            }
        }
        Ok(())
    }

    fn compare(&self, a: &[Option<Value<'_>>], b: &[Option<Value<'_>>]) -> Ordering {
        (a.iter().zip(b).zip(&self.order))
            .map(|((a, b), (_, key))| compare_sort_values(a.as_ref(), b.as_ref(), key))
            .find(|order| *order != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }

    fn write(&self, group: &Group, finals: &Finals, out: &mut BytesMut) -> Result<(), MergeError> {
        write_row(out, self.columns.len(), |row: &mut RowWriter<'_>| {
            for (index, shown) in self.columns.iter().enumerate() {
                match *shown {
                    Shown::GroupValue => {
                        row.field(visible(group.first.as_ref().map(OwnedRow::row), index)?);
                    }
                    Shown::Winner(aggregate) => {
                        let winner = group.states.get(aggregate).and_then(State::winner);
                        row.field(visible(winner, index)?);
                    }
                    Shown::Final {
                        aggregate,
                        ty,
                        binary,
                    } => match finals.get(aggregate) {
                        Some(bytes) => row.field_with(|out| write_value(ty, bytes, binary, out))?,
                        None => row.field(None),
                    },
                }
            }
            Ok(())
        })
    }
}

/// Visible field `index` of a shard row, NULL without a row.
fn visible<'a>(row: Option<Row<'a>>, index: usize) -> Result<Option<&'a [u8]>, MergeError> {
    Ok(match row {
        Some(row) => row.visible(index)?,
        None => None,
    })
}

/// The value of `slot` in `group`: a hidden column of its first row, or an aggregate final.
fn slot_value<'a>(
    group: &'a Group,
    finals: &'a Finals,
    slot: TypedSlot,
) -> Result<Option<Value<'a>>, MergeError> {
    let bytes = match slot.slot {
        Slot::Hidden(index) => match &group.first {
            Some(first) => first.row().hidden(index)?,
            None => None,
        },
        Slot::Aggregate(index) => finals.get(index),
    };
    bytes.map(|b| slot.ty.decode(b)).transpose()
}

fn aggregate(combiners: &[Combiner], index: usize) -> Result<&Combiner, MergeError> {
    combiners.get(index).ok_or_else(|| {
        MergeError::Contract(format!(
            "aggregate {index} of {} is not in the plan",
            combiners.len()
        ))
    })
}

/// What each visible column shows; the plan must describe every one.
fn visible_columns(
    aggregation: &Aggregation,
    layout: &Layout,
    combiners: &[Combiner],
) -> Result<Vec<Shown>, MergeError> {
    if aggregation.columns.len() != layout.visible {
        return Err(MergeError::Contract(format!(
            "the plan describes {} of {} visible columns",
            aggregation.columns.len(),
            layout.visible
        )));
    }
    (aggregation.columns.iter().zip(&layout.columns))
        .map(|(output, column)| shown(*output, column, combiners))
        .collect()
}

/// What a visible column shows; a computed final must be of the column's type.
fn shown(output: Output, column: &Column, combiners: &[Combiner]) -> Result<Shown, MergeError> {
    let Output::Aggregate(index) = output else {
        return Ok(Shown::GroupValue);
    };
    let combiner = aggregate(combiners, index)?;
    if combiner.shows_winner() {
        return Ok(Shown::Winner(index));
    }
    if SqlType::from_oid(column.oid) != Some(combiner.result()) {
        return Err(MergeError::Unsupported(format!(
            "column \"{}\" of type oid {} showing an aggregate of type {} across shards",
            column.name,
            column.oid,
            combiner.result().name()
        )));
    }
    Ok(Shown::Final {
        aggregate: index,
        ty: combiner.result(),
        binary: column.binary,
    })
}

impl Finals {
    fn compute(group: &Group, combiners: &[Combiner]) -> Result<Finals, MergeError> {
        let mut finals = Finals {
            bytes: Vec::new(),
            spans: Vec::with_capacity(combiners.len()),
        };
        for (combiner, state) in combiners.iter().zip(&group.states) {
            let start = finals.bytes.len();
            let present = combiner.finish(state, &mut finals.bytes)?;
            finals
                .spans
                .push(present.then_some((start, finals.bytes.len())));
        }
        Ok(finals)
    }

    fn get(&self, index: usize) -> Option<&[u8]> {
        let (start, end) = self.spans.get(index).copied().flatten()?;
        self.bytes.get(start..end)
    }
}

#[cfg(test)]
mod tests;
