//! Cross-shard rows → one result: the merge stage (pure: no I/O, no `await`).
//!
//! A [`Merger`] runs a [`MergePlan`] (made by the router, see `plan`) over the DataRows that
//! several shards return for the same statement, and produces the DataRows a single
//! PostgreSQL holding all the rows would have sent. Rows stream through when the plan allows
//! (no order: as they arrive; ORDER BY: a k-way merge of the shards' sorted streams); grouped
//! results are buffered up to [`MergeLimits::max_buffered_bytes`], past which the statement
//! fails with a clear error instead of growing without bound.
//!
//! SKELETON: only pass-through (no hidden columns, aggregates, order or limit) is implemented;
//! the full merge replaces it.

pub mod plan;

use bytes::BytesMut;

use crate::error::{Blame, ErrorReport, sqlstate};
pub use plan::{MergePlan, ScatterPlan};

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
}

/// Why a merge cannot produce a correct result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A construct or type the merge cannot combine exactly.
    #[error("{0}")]
    Unsupported(String),
}

impl MergeError {
    /// The error the client sees.
    pub fn report(&self) -> ErrorReport {
        let code = match self {
            MergeError::Unsupported(_) => sqlstate::FEATURE_NOT_SUPPORTED,
        };
        ErrorReport::error(code, Blame::Client, format!("shardgate: {self}"))
    }
}

/// One statement's merge, fed the DataRows of every shard ("leg").
pub struct Merger {
    description: BytesMut,
    ready: BytesMut,
    rows: u64,
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
        let _ = (legs, params, limits);
        if *plan != MergePlan::default() {
            return Err(MergeError::Unsupported("this cross-shard merge".into()));
        }
        let mut description = BytesMut::new();
        description.extend_from_slice(&[b'T']);
        description.extend_from_slice(&((shard_description.len() + 4) as i32).to_be_bytes());
        description.extend_from_slice(shard_description);
        Ok(Merger {
            description,
            ready: BytesMut::new(),
            rows: 0,
        })
    }

    /// The RowDescription frame the client sees (the visible columns).
    pub fn row_description(&self) -> &[u8] {
        &self.description
    }

    /// One DataRow frame (header included) from shard `leg`.
    pub fn push_row(&mut self, leg: usize, frame: &[u8]) -> Result<(), MergeError> {
        let _ = leg;
        self.ready.extend_from_slice(frame);
        self.rows += 1;
        Ok(())
    }

    /// Shard `leg` sent its last row.
    pub fn finish_leg(&mut self, leg: usize) -> Result<(), MergeError> {
        let _ = leg;
        Ok(())
    }

    /// Appends the DataRow frames that are ready for the client.
    pub fn drain(&mut self, out: &mut BytesMut) -> Result<(), MergeError> {
        out.extend_from_slice(&self.ready);
        self.ready.clear();
        Ok(())
    }

    /// Bytes of rows from `leg` waiting in the merge; the executor stops reading a leg whose
    /// queue is over its budget (an ordered merge waits only on legs with nothing queued).
    pub fn queued_bytes(&self, leg: usize) -> usize {
        let _ = leg;
        0
    }

    /// Whether the LIMIT is reached: later rows are dropped, so the executor may stop
    /// reading rows (it still reads every leg to its end).
    pub fn satisfied(&self) -> bool {
        false
    }

    /// Rows written to the client so far (the count of `SELECT n`).
    pub fn rows_sent(&self) -> u64 {
        self.rows
    }
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
