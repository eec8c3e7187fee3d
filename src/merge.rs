//! Cross-shard rows → one result: the merge stage (pure: no I/O, no `await`, no globals).
//!
//! A [`Merger`] runs a [`MergePlan`] (made by the router, see `plan`) over the DataRows that
//! several shards return for the same statement, and produces the DataRows a single
//! PostgreSQL 15 holding all the rows would have sent. Rows stream through when the plan
//! allows (no order: as they arrive; ORDER BY: a k-way merge of the shards' sorted streams);
//! grouped results are buffered up to [`MergeLimits::max_buffered_bytes`], past which the
//! statement fails with a clear error instead of growing without bound.
//!
//! ```text
//!  push_row ─► frame (check, find hidden fields)
//!                ├─ forward / stream ────────────────┐
//!                ├─ sorted (k-way merge of legs) ────┤
//!                └─ group (key, aggregate, having) ──┴─► sink (distinct, window) ─► drain
//! ```
//!
//! Module map: `plan` (the router's contract), `frame` (row layout, client frames), `value`
//! and `numeric` (binary values, PostgreSQL's order), `float` and `encode` (text output),
//! `key` (group/distinct keys, the buffer bound), `sorted`, `group`, `aggregate`, `having`,
//! `window` (OFFSET/LIMIT), `sink`, `error`. Visible fields are forwarded as bytes; only
//! hidden columns are decoded, and bytes a backend sent never cause a panic.

mod aggregate;
pub mod copy_out;
mod encode;
mod error;
mod float;
mod frame;
mod group;
mod having;
mod key;
mod numeric;
pub mod plan;
mod sink;
mod sorted;
mod value;
mod window;

use bytes::BytesMut;

pub use error::{Buffered, MergeError};
use frame::{Layout, Row};
use group::Grouping;
use key::{Budget, KeyIndex};
pub use plan::{MergePlan, ScatterPlan};
pub use sink::HeldRows;
use sink::{Distinct, Sink};
use sorted::{OrderKey, SortedMerge};
use value::hidden_type;
pub use window::Clause;
use window::Window;

/// A Bind parameter as the client sent it (LIMIT $n, HAVING … $n).
#[derive(Debug, Clone, Copy)]
pub struct ParamValue<'a> {
    /// Type oid declared in the Parse (0: left to the server).
    pub oid: u32,
    /// Binary format.
    pub binary: bool,
    /// The value; `None` is NULL.
    pub value: Option<&'a [u8]>,
}

/// Bounds on what one merge may buffer.
#[derive(Debug, Clone, Copy)]
pub struct MergeLimits {
    /// Bytes of rows or groups held at once before the statement fails with 54000.
    pub max_buffered_bytes: usize,
    /// Every shard's database sorts text bytewise (C collation), as the merge does. When
    /// false, text can be merged in order only under an explicit `COLLATE "C"`.
    pub bytewise_text: bool,
}

/// How rows travel from the shards to the sink.
#[derive(Debug)]
enum Flow {
    /// No hidden columns, no DISTINCT: each frame is sent as it came.
    Forward,
    /// Hidden columns or DISTINCT, no order: each row is sent as it arrives.
    Stream,
    /// ORDER BY: the k-way merge.
    Sorted(SortedMerge),
    /// Aggregates: rows go to groups until every shard is done.
    Grouped(Box<Grouping>),
    /// The groups were written.
    Done,
}

/// One statement's merge, fed the DataRows of every shard ("leg").
#[derive(Debug)]
pub struct Merger {
    layout: Layout,
    flow: Flow,
    finished: Vec<bool>,
    sink: Sink,
    /// The rows go out as COPY … TO STDOUT data (see `copy_out`).
    copy_out: Option<copy_out::CopyOut>,
}

impl Merger {
    /// A merge of `legs` shards' results. `shard_description` is the body (no header) of a
    /// shard's RowDescription for the shard SQL; `params` are the Bind's parameters.
    pub fn new(
        plan: &MergePlan,
        shard_description: &[u8],
        legs: usize,
        params: &[ParamValue<'_>],
        limits: MergeLimits,
    ) -> Result<Merger, MergeError> {
        let layout = Layout::parse(shard_description, plan.hidden)?;
        let window = Window::new(plan.offset, plan.limit, params)?;
        let distinct = (plan.distinct.as_deref())
            .map(|columns| distinct(columns, &layout, limits))
            .transpose()?;
        let flow = match &plan.aggregation {
            Some(_) if distinct.is_some() => {
                return Err(MergeError::Unsupported(
                    "SELECT DISTINCT over a cross-shard GROUP BY".into(),
                ));
            }
            Some(aggregation) => Flow::Grouped(Box::new(Grouping::new(
                aggregation,
                &plan.order,
                &layout,
                params,
                limits,
            )?)),
            None if !plan.order.is_empty() => {
                Flow::Sorted(SortedMerge::new(order_keys(plan, &layout, limits)?, legs))
            }
            None if layout.has_hidden() || distinct.is_some() => Flow::Stream,
            None => Flow::Forward,
        };
        let mut merger = Merger {
            sink: Sink::new(layout.visible, distinct, window),
            layout,
            flow,
            finished: vec![false; legs],
            copy_out: None,
        };
        // With no legs at all, an aggregate still answers its one row.
        merger.settle()?;
        Ok(merger)
    }

    /// The same merge with its rows written as `COPY … TO STDOUT` data in `format` (with a
    /// CSV `header` line).
    pub fn into_copy_out(
        mut self,
        format: crate::wire::copy_rows::CopyFormat,
        header: bool,
    ) -> Result<Merger, MergeError> {
        let copy = copy_out::CopyOut::new(format, header, &self.layout.description)?;
        self.copy_out = Some(copy);
        Ok(self)
    }

    /// What the client sees before the rows: the RowDescription frame of the visible columns,
    /// or, for COPY output, its CopyOutResponse and header.
    pub fn row_description(&self) -> &[u8] {
        match &self.copy_out {
            Some(copy) => copy.head(),
            None => &self.layout.description,
        }
    }

    /// One DataRow frame (header included) from shard `leg`.
    pub fn push_row(&mut self, leg: usize, frame: &[u8]) -> Result<(), MergeError> {
        self.check_open(leg)?;
        if self.sink.done() {
            return Ok(());
        }
        match &mut self.flow {
            Flow::Forward => {
                frame::check_header(frame, self.layout.columns.len())?;
                self.sink.forward(frame);
                Ok(())
            }
            Flow::Stream => self.sink.offer(&Row::parse(frame, &self.layout)?),
            Flow::Sorted(merge) => {
                merge.push(leg, Row::parse(frame, &self.layout)?);
                release(merge, &self.finished, &mut self.sink)
            }
            Flow::Grouped(grouping) => grouping.add(&Row::parse(frame, &self.layout)?),
            Flow::Done => Err(MergeError::Contract(
                "a row after the result was complete".into(),
            )),
        }
    }

    /// Shard `leg` sent its last row.
    pub fn finish_leg(&mut self, leg: usize) -> Result<(), MergeError> {
        self.check_open(leg)?;
        self.finished[leg] = true;
        self.settle()
    }

    /// Appends the DataRow frames (or COPY data) that are ready for the client.
    pub fn drain(&mut self, out: &mut BytesMut) -> Result<(), MergeError> {
        match &mut self.copy_out {
            Some(copy) => {
                let mut rows = BytesMut::new();
                self.sink.drain(&mut rows);
                copy.rows(&rows, out)
            }
            None => {
                self.sink.drain(out);
                Ok(())
            }
        }
    }

    /// Bytes of rows from `leg` waiting in the merge; the executor stops reading a leg whose
    /// queue is over its budget (an ordered merge waits only on legs with nothing queued).
    pub fn queued_bytes(&self, leg: usize) -> usize {
        match &self.flow {
            Flow::Sorted(merge) => merge.queued_bytes(leg),
            _ => 0,
        }
    }

    /// At most `rows` rows go out (an Execute's row limit, on top of the query's own
    /// OFFSET/LIMIT); the rest, up to `budget` bytes, are held for the portal's next Execute
    /// (see [`Merger::take_held`]).
    pub fn hold_after(&mut self, rows: u64, budget: usize) {
        self.sink.hold_after(rows, budget);
    }

    /// The rows held after an Execute's row limit, once every leg has finished.
    pub fn take_held(&mut self) -> Option<HeldRows> {
        let mut held = self.sink.take_held()?;
        held.description = self.layout.description.to_vec();
        Some(held)
    }

    /// Whether the LIMIT is reached (or held rows are over their budget): later rows are
    /// dropped, so the executor may stop reading rows (it still reads every leg to its end).
    pub fn satisfied(&self) -> bool {
        self.sink.done()
    }

    /// Whether the rows go out as COPY data.
    pub fn copies_out(&self) -> bool {
        self.copy_out.is_some()
    }

    /// For COPY output, what ends it (the binary trailer, CopyDone).
    pub fn copy_end(&mut self) -> Option<BytesMut> {
        let copy = self.copy_out.as_mut()?;
        let mut end = BytesMut::new();
        copy.end(&mut end);
        Some(end)
    }

    /// Rows written to the client so far (the count of `SELECT n`).
    pub fn rows_sent(&self) -> u64 {
        self.sink.rows()
    }

    fn check_open(&self, leg: usize) -> Result<(), MergeError> {
        match self.finished.get(leg) {
            Some(false) => Ok(()),
            Some(true) => Err(MergeError::Contract(format!("leg {leg} already finished"))),
            None => Err(MergeError::Contract(format!(
                "leg {leg} of a merge of {}",
                self.finished.len()
            ))),
        }
    }

    /// Releases what the legs finished so far allow: sorted rows, or the groups once all
    /// are done.
    fn settle(&mut self) -> Result<(), MergeError> {
        match &mut self.flow {
            Flow::Sorted(merge) => release(merge, &self.finished, &mut self.sink),
            Flow::Grouped(_) if self.finished.iter().all(|&done| done) => {
                if let Flow::Grouped(grouping) = std::mem::replace(&mut self.flow, Flow::Done) {
                    grouping.finish(&mut self.sink)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Moves rows from the k-way merge to the sink while every open leg has one queued.
fn release(merge: &mut SortedMerge, finished: &[bool], sink: &mut Sink) -> Result<(), MergeError> {
    while !sink.done() {
        match merge.pop(finished)? {
            Some(queued) => sink.offer(&queued.row())?,
            None => return Ok(()),
        }
    }
    merge.clear();
    Ok(())
}

fn order_keys(
    plan: &MergePlan,
    layout: &Layout,
    limits: MergeLimits,
) -> Result<Vec<OrderKey>, MergeError> {
    let key = |key: &plan::SortKey| match key.value {
        plan::Slot::Hidden(column) => Ok(OrderKey {
            column,
            ty: value::ordered_text(
                hidden_type(layout, column, "an ORDER BY key")?,
                key.bytewise || limits.bytewise_text,
                "ORDER BY",
            )?,
            key: *key,
        }),
        plan::Slot::Aggregate(index) => Err(MergeError::Contract(format!(
            "ORDER BY aggregate {index} without aggregation"
        ))),
    };
    plan.order.iter().map(key).collect()
}

fn distinct(
    columns: &[usize],
    layout: &Layout,
    limits: MergeLimits,
) -> Result<Distinct, MergeError> {
    if columns.len() != layout.visible {
        return Err(MergeError::Contract(format!(
            "DISTINCT on {} keys for {} visible columns",
            columns.len(),
            layout.visible
        )));
    }
    let columns = (columns.iter())
        .map(|&column| Ok((column, hidden_type(layout, column, "a DISTINCT key")?)))
        .collect::<Result<Vec<_>, MergeError>>()?;
    Ok(Distinct {
        keys: KeyIndex::new(columns),
        budget: Budget::new(limits.max_buffered_bytes, Buffered::Distinct),
    })
}

/// Result-format codes a shard's Bind asks for: the client's for each visible column (its
/// Bind gave none = all text, one = for all, or one per column), binary for hidden columns.
pub fn shard_result_formats(client_formats: &[i16], visible: usize, hidden: usize) -> Vec<i16> {
    let client = |i: usize| match client_formats.len() {
        0 => 0,
        1 => client_formats[0],
        _ => client_formats.get(i).copied().unwrap_or(0),
    };
    (0..visible)
        .map(client)
        .chain((0..hidden).map(|_| 1))
        .collect()
}

#[cfg(test)]
mod tests;
