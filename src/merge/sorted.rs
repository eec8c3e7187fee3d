//! Part of the merge stage (pure): the streaming k-way merge of shard results that each
//! shard already sorted by the statement's ORDER BY.
//!
//! Owns one queue of rows per shard ("leg") and the rule that keeps memory bounded: the
//! smallest head is released only when every leg that has not finished has a row queued, so
//! a leg that is far ahead waits in its queue (the executor stops reading it, see
//! `queued_bytes`). Ties go to the lowest leg. It never reorders rows within a leg and never
//! decodes more than the sort keys.

use std::cmp::Ordering;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::MergeError;
use super::frame::Row;
use super::plan::SortKey;
use super::value::{SqlType, Value};

/// First allocation of a leg's row buffer; rows are carved from it without one allocation each.
const ARENA_CAPACITY: usize = 16 * 1024;

/// A sort key resolved against the layout: a hidden column and its type.
#[derive(Debug, Clone, Copy)]
pub(super) struct OrderKey {
    /// Hidden column index.
    pub(super) column: usize,
    /// Its type.
    pub(super) ty: SqlType,
    /// Direction and NULL placement.
    pub(super) key: SortKey,
}

/// A row waiting in a leg's queue.
#[derive(Debug)]
pub(super) struct Queued {
    frame: Bytes,
    hidden_at: usize,
}

impl Queued {
    /// The queued row.
    pub(super) fn row(&self) -> Row<'_> {
        Row::checked(&self.frame, self.hidden_at)
    }
}

#[derive(Debug, Default)]
struct Leg {
    rows: VecDeque<Queued>,
    arena: BytesMut,
    bytes: usize,
}

/// The k-way merge of the legs' sorted streams.
#[derive(Debug)]
pub(super) struct SortedMerge {
    keys: Vec<OrderKey>,
    legs: Vec<Leg>,
}

impl SortedMerge {
    /// A merge of `legs` streams sorted by `keys`.
    pub(super) fn new(keys: Vec<OrderKey>, legs: usize) -> SortedMerge {
        SortedMerge {
            keys,
            legs: (0..legs).map(|_| Leg::default()).collect(),
        }
    }

    /// Queues a row of `leg` (in range: the merger checks).
    pub(super) fn push(&mut self, leg: usize, row: Row<'_>) {
        let leg = &mut self.legs[leg];
        if leg.arena.capacity() - leg.arena.len() < row.frame().len() {
            leg.arena.reserve(ARENA_CAPACITY.max(row.frame().len()));
        }
        leg.arena.extend_from_slice(row.frame());
        leg.bytes += row.frame().len();
        let frame = leg.arena.split().freeze();
        leg.rows.push_back(Queued {
            frame,
            hidden_at: row.hidden_at(),
        });
    }

    /// Bytes of rows queued for `leg`.
    pub(super) fn queued_bytes(&self, leg: usize) -> usize {
        self.legs.get(leg).map_or(0, |leg| leg.bytes)
    }

    /// Drops every queued row (the LIMIT is reached).
    pub(super) fn clear(&mut self) {
        self.legs.iter_mut().for_each(|leg| *leg = Leg::default());
    }

    /// The next row in merged order, once every leg not `finished` has a row queued.
    pub(super) fn pop(&mut self, finished: &[bool]) -> Result<Option<Queued>, MergeError> {
        let mut best: Option<usize> = None;
        for (index, leg) in self.legs.iter().enumerate() {
            let Some(head) = leg.rows.front() else {
                if finished.get(index).copied().unwrap_or(true) {
                    continue;
                }
                return Ok(None);
            };
            let better = match best.and_then(|b| self.legs[b].rows.front()) {
                None => true,
                Some(current) => self.compare(&head.row(), &current.row())? == Ordering::Less,
            };
            if better {
                best = Some(index);
            }
        }
        let Some(index) = best else {
            return Ok(None);
        };
        let leg = &mut self.legs[index];
        let row = leg.rows.pop_front();
        leg.bytes -= row.as_ref().map_or(0, |r| r.frame.len());
        Ok(row)
    }

    fn compare(&self, a: &Row<'_>, b: &Row<'_>) -> Result<Ordering, MergeError> {
        for key in &self.keys {
            let (a, b) = (sort_value(a, key)?, sort_value(b, key)?);
            let order = compare_sort_values(a.as_ref(), b.as_ref(), &key.key);
            if order != Ordering::Equal {
                return Ok(order);
            }
        }
        Ok(Ordering::Equal)
    }
}

fn sort_value<'a>(row: &Row<'a>, key: &OrderKey) -> Result<Option<Value<'a>>, MergeError> {
    row.hidden(key.column)?
        .map(|b| key.ty.decode(b))
        .transpose()
}

/// The order of two values of one ORDER BY key: NULLs where `nulls_first` says, the rest
/// ascending or descending.
pub(super) fn compare_sort_values(
    a: Option<&Value<'_>>,
    b: Option<&Value<'_>>,
    key: &SortKey,
) -> Ordering {
    let (null_before, null_after) = if key.nulls_first {
        (Ordering::Less, Ordering::Greater)
    } else {
        (Ordering::Greater, Ordering::Less)
    };
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => null_before,
        (Some(_), None) => null_after,
        (Some(a), Some(b)) if key.descending => b.compare(a),
        (Some(a), Some(b)) => a.compare(b),
    }
}

#[cfg(test)]
mod tests;
