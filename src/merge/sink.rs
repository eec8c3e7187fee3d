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
        }
    }

    /// Whether the LIMIT is reached.
    /// See [`super::Merger::cap_rows`].
    pub(super) fn cap_rows(&mut self, rows: u64) {
        self.window.cap(rows);
    }

    pub(super) fn done(&self) -> bool {
        self.window.done()
    }

    /// Rows sent (or ready to be).
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// A shard row, sent as it came (no hidden fields, no DISTINCT): one copy.
    pub(super) fn forward(&mut self, frame: &[u8]) {
        if self.window.admit() {
            self.ready.extend_from_slice(frame);
            self.rows += 1;
        }
    }

    /// A shard row, sent as its visible fields unless DISTINCT has sent its key already.
    pub(super) fn offer(&mut self, row: &Row<'_>) -> Result<(), MergeError> {
        if self.window.done() {
            return Ok(());
        }
        if let Some(distinct) = &mut self.distinct {
            let (_, new) = distinct.keys.classify(row, &mut distinct.budget)?;
            if !new {
                return Ok(());
            }
        }
        if self.window.admit() {
            row.write_visible(self.visible, &mut self.ready);
            self.rows += 1;
        }
        Ok(())
    }

    /// Room for the next computed row, if OFFSET and LIMIT let it through.
    pub(super) fn admit(&mut self) -> Option<&mut BytesMut> {
        self.window.admit().then(|| {
            self.rows += 1;
            &mut self.ready
        })
    }

    /// Moves the rows ready to send to `out`.
    pub(super) fn drain(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.ready);
        self.ready.clear();
    }
}
