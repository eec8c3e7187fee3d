//! Part of the merge stage (pure): the client's side of the merge, where merged rows become
//! the DataRows sent: DISTINCT, then OFFSET and LIMIT, then the bytes ready to send.
//!
//! Owns the order those apply in (a duplicate never counts toward OFFSET or LIMIT) and the
//! count of rows sent. It never reorders rows: they arrive here in their final order.

use bytes::BytesMut;

use super::MergeError;
use super::frame::Row;
use super::key::{Budget, KeyIndex};
use super::window::Window;

/// SELECT DISTINCT across shards: the keys already sent, within their budget.
#[derive(Debug)]
pub(super) struct Distinct {
    /// The keys of rows already sent.
    pub(super) keys: KeyIndex,
    /// Bytes those keys may take.
    pub(super) budget: Budget,
}

/// Where merged rows go, in their final order.
#[derive(Debug)]
pub(super) struct Sink {
    visible: usize,
    distinct: Option<Distinct>,
    window: Window,
    ready: BytesMut,
    rows: u64,
    hold: Option<Hold>,
}

/// An Execute's row limit: the rows after it are kept for the portal's next Execute.
#[derive(Debug)]
struct Hold {
    after: u64,
    budget: usize,
    rows: HeldRows,
}

/// The merged rows after an Execute's row limit, kept so the suspended portal can resume as
/// it would on one server.
#[derive(Debug, Default)]
pub struct HeldRows {
    /// DataRow frames, in order.
    pub frames: BytesMut,
    /// How many.
    pub rows: u64,
    /// Every row of the result is here (false: the budget ran out and later rows were
    /// dropped).
    pub complete: bool,
    /// The RowDescription frame of the rows, for a Describe of the suspended portal.
    pub description: Vec<u8>,
}

impl Sink {
    /// A sink for rows of `visible` fields.
    pub(super) fn new(visible: usize, distinct: Option<Distinct>, window: Window) -> Sink {
        Sink {
            visible,
            distinct,
            window,
            ready: BytesMut::new(),
            rows: 0,
            hold: None,
        }
    }

    /// See [`super::Merger::hold_after`].
    pub(super) fn hold_after(&mut self, rows: u64, budget: usize) {
        let rows_held = HeldRows {
            complete: true,
            ..HeldRows::default()
        };
        self.hold = Some(Hold {
            after: rows,
            budget,
            rows: rows_held,
        });
    }

    /// The rows held after the Execute's row limit, once the result is complete.
    pub(super) fn take_held(&mut self) -> Option<HeldRows> {
        self.hold.take().map(|hold| hold.rows)
    }

    /// No later row is taken: the LIMIT is reached, or the held rows are over their budget.
    pub(super) fn done(&self) -> bool {
        self.window.done() || self.hold.as_ref().is_some_and(|h| !h.rows.complete)
    }

    /// Rows sent (or ready to be), not counting held ones.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// A shard row, sent as it came (no hidden fields, no DISTINCT): one copy.
    pub(super) fn forward(&mut self, frame: &[u8]) {
        if let Some(out) = self.admit() {
            out.extend_from_slice(frame);
        }
    }

    /// A shard row, sent as its visible fields unless DISTINCT has sent its key already.
    pub(super) fn offer(&mut self, row: &Row<'_>) -> Result<(), MergeError> {
        if self.done() {
            return Ok(());
        }
        if let Some(distinct) = &mut self.distinct {
            let (_, new) = distinct.keys.classify(row, &mut distinct.budget)?;
            if !new {
                return Ok(());
            }
        }
        let visible = self.visible;
        if let Some(out) = self.admit() {
            row.write_visible(visible, out);
        }
        Ok(())
    }

    /// Room for the next row, if OFFSET and LIMIT let it through: the rows ready to send, or
    /// after an Execute's row limit, the held rows (while they are within their budget).
    pub(super) fn admit(&mut self) -> Option<&mut BytesMut> {
        if self.done() || !self.window.admit() {
            return None;
        }
        match &mut self.hold {
            Some(hold) if self.rows >= hold.after => {
                if hold.rows.frames.len() > hold.budget {
                    hold.rows.complete = false;
                    return None;
                }
                hold.rows.rows += 1;
                Some(&mut hold.rows.frames)
            }
            _ => {
                self.rows += 1;
                Some(&mut self.ready)
            }
        }
    }

    /// Moves the rows ready to send to `out`.
    pub(super) fn drain(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.ready);
        self.ready.clear();
    }
}
