//! Cross-shard portals the proxy let go of after answering them: suspended after an
//! Execute's row limit, or run before their Execute came, with the rows not yet fetched held
//! so the next Execute resumes them as one server would (pgjdbc's fetch size, asyncpg's
//! cursors); portals answered before their Execute came without running are refused by
//! name. SQL cursors over several shards keep their rows here too (see `cursors`).
//!
//! Part of the session's fan-out (`scatter`). The held rows of all of a session's portals
//! stay within `limits.max_merge_bytes`; they go when the portal is closed or re-bound, or
//! when the transaction it lives in ends (a `WITH HOLD` cursor's outlive it), as a server's
//! portal would.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::client::Refusal;
use super::super::replies::{Expect, Synthetic};
use crate::error::Unsupported;
use crate::merge::HeldRows;
use crate::wire::{StatementOrPortal, Target, TxStatus, encode};

/// Cross-shard portals let go of, at most this many (the oldest is forgotten first).
const MAX_LEFT_PORTALS: usize = 64;

/// A cross-shard portal the proxy answered and no backend knows of.
#[derive(Debug)]
pub(in crate::session) struct LeftPortal {
    /// The client's name for it.
    name: String,
    state: Left,
    /// The result formats its rows were made in (a Bind's, or `[1]` for a BINARY cursor).
    formats: Vec<i16>,
    /// A `WITH HOLD` cursor: it outlives its transaction.
    hold: bool,
}

/// Rows taken from a left portal.
pub(super) struct Taken {
    /// DataRow frames.
    pub frames: BytesMut,
    /// How many.
    pub rows: u64,
}

#[derive(Debug)]
enum Left {
    /// Answered (BindComplete, its description) before its Execute came without running: a
    /// write, or a read that may write.
    Unexecuted,
    /// Suspended after an Execute's row limit, with the rows still owed.
    Suspended(HeldRows),
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Remembers a portal answered before its Execute came, so executing it is refused.
    pub(super) fn leave_unexecuted(&mut self, name: String) {
        self.leave_portal(LeftPortal {
            name,
            state: Left::Unexecuted,
            formats: Vec::new(),
            hold: false,
        });
    }

    /// Keeps the rest of a portal suspended after an Execute's row limit (its rows made in
    /// the result `formats` of its Bind).
    pub(super) fn leave_suspended(&mut self, name: String, held: HeldRows, formats: Vec<i16>) {
        self.leave_cursor(name, held, formats, false);
    }

    /// Keeps the rows of a cursor (`hold`: it outlives its transaction).
    pub(super) fn leave_cursor(
        &mut self,
        name: String,
        held: HeldRows,
        formats: Vec<i16>,
        hold: bool,
    ) {
        self.leave_portal(LeftPortal {
            name,
            state: Left::Suspended(held),
            formats,
            hold,
        });
    }

    fn leave_portal(&mut self, portal: LeftPortal) {
        let left = &mut self.batch.left_portals;
        left.retain(|p| p.name != portal.name);
        if left.len() >= MAX_LEFT_PORTALS {
            left.remove(0);
        }
        left.push(portal);
    }

    /// Bytes the next suspended portal may hold: what the session's other portals leave of
    /// `limits.max_merge_bytes`.
    pub(super) fn hold_budget(&self) -> usize {
        let held: usize = (self.batch.left_portals.iter())
            .map(|p| match &p.state {
                Left::Suspended(rows) => rows.frames.len(),
                Left::Unexecuted => 0,
            })
            .sum();
        self.env.max_merge_bytes.saturating_sub(held)
    }

    /// Forgets a portal (a Bind replaces it, a CLOSE closes it); true if there was one.
    pub(in crate::session) fn forget_left_portal(&mut self, name: &str) -> bool {
        let before = self.batch.left_portals.len();
        self.batch.left_portals.retain(|p| p.name != name);
        self.batch.left_portals.len() < before
    }

    /// Forgets the left portals of a transaction that ended (`WITH HOLD` cursors stay).
    pub(in crate::session) fn end_left_portals(&mut self) {
        self.batch.left_portals.retain(|p| p.hold);
    }

    /// Forgets every left portal (`CLOSE ALL`).
    pub(super) fn forget_every_left_portal(&mut self) {
        self.batch.left_portals.clear();
    }

    pub(in crate::session) fn has_left_portals(&self) -> bool {
        !self.batch.left_portals.is_empty()
    }

    pub(super) fn is_left_portal(&self, name: &str) -> bool {
        self.left_portal(name).is_some()
    }

    /// The RowDescription frame of the left portal `name`, if it ran.
    pub(super) fn left_portal_description(&self, name: &str) -> Option<Vec<u8>> {
        let portal = &self.batch.left_portals[self.left_portal(name)?];
        match &portal.state {
            Left::Suspended(held) => Some(held.description.clone()),
            Left::Unexecuted => None,
        }
    }

    /// Whether result formats `wanted` (a FETCH's Bind) are those the rows of the left
    /// portal `name` were made in.
    pub(super) fn left_portal_formats_match(&self, name: &str, wanted: &[i16]) -> bool {
        let Some(index) = self.left_portal(name) else {
            return false;
        };
        let made = &self.batch.left_portals[index].formats;
        // One format for every column on both sides, however each Bind spelled it.
        match (uniform_format(made), uniform_format(wanted)) {
            (Some(one), Some(other)) => one == other,
            _ => made == wanted,
        }
    }

    /// Takes up to `wanted` rows (`None`: all) of the left portal `name`; `None` if it is
    /// not one. Refused when they go past the rows it could hold, or it never ran.
    pub(super) fn fetch_left(
        &mut self,
        name: &str,
        wanted: Option<u64>,
    ) -> Result<Option<Taken>, Refusal> {
        let Some(index) = self.left_portal(name) else {
            return Ok(None);
        };
        if self.client_status == TxStatus::Failed {
            return Err(Refusal::Statement(super::super::spanning::aborted()));
        }
        let held = match &mut self.batch.left_portals[index].state {
            Left::Suspended(held) => held,
            Left::Unexecuted => {
                self.batch.left_portals.remove(index);
                let refusal = self.unsupported(Unsupported::PortalNotExecutedAtOnce);
                return Err(Refusal::Statement(refusal));
            }
        };
        if wanted.is_none_or(|n| n > held.rows) && !held.complete {
            let limit = self.env.max_merge_bytes;
            self.batch.left_portals.remove(index);
            let refusal = Unsupported::PartialFetchAcrossShards { limit };
            return Err(Refusal::Statement(self.unsupported(refusal)));
        }
        let rows = wanted.map_or(held.rows, |n| n.min(held.rows));
        held.rows -= rows;
        Ok(Some(Taken {
            frames: take_frames(&mut held.frames, rows),
            rows,
        }))
    }

    /// An Execute of a left portal: a suspended one resumes from its held rows, an
    /// unexecuted one is refused. Returns whether the Execute was one of theirs.
    pub(in crate::session) fn execute_left_portal(
        &mut self,
        frame: &[u8],
    ) -> Result<bool, Refusal> {
        if self.batch.left_portals.is_empty() {
            return Ok(false); // Every Execute passes here: decode nothing in the common case.
        }
        let body = &frame[crate::wire::HEADER_LEN..];
        let (name, max_rows) =
            crate::wire::execute_fields(body).map_err(|e| Refusal::violation(e.to_string()))?;
        let wanted = u64::try_from(max_rows).ok().filter(|&n| n > 0);
        let Some(taken) = self.fetch_left(name, wanted)? else {
            return Ok(false);
        };
        let mut out = taken.frames;
        match wanted {
            Some(n) if taken.rows == n => encode::portal_suspended(&mut out),
            _ => encode::command_complete(&mut out, &format!("SELECT {}", taken.rows)),
        }
        self.push(Expect::synthetic(Synthetic::Frames(out)));
        Ok(true)
    }

    /// A Describe of a suspended portal: its RowDescription. Returns whether it was one.
    pub(in crate::session) fn describe_left_portal(&mut self, frame: &[u8]) -> bool {
        let body = &frame[crate::wire::HEADER_LEN..];
        let Ok(target) = Target::decode_describe(body) else {
            return false;
        };
        let description = (target.kind == StatementOrPortal::Portal)
            .then(|| self.left_portal_description(target.name))
            .flatten();
        let Some(description) = description else {
            return false;
        };
        self.push(Expect::synthetic(Synthetic::Frames(description[..].into())));
        true
    }

    /// A Close of a left portal: forgotten and answered. Returns whether it was one.
    pub(in crate::session) fn close_left_portal(&mut self, target: &Target<'_>) -> bool {
        let index = (target.kind == StatementOrPortal::Portal)
            .then(|| self.left_portal(target.name))
            .flatten();
        let Some(index) = index else {
            return false;
        };
        self.batch.left_portals.remove(index);
        self.push(Expect::synthetic(Synthetic::CloseComplete));
        true
    }

    fn left_portal(&self, name: &str) -> Option<usize> {
        self.batch.left_portals.iter().position(|p| p.name == name)
    }
}

/// The one format result formats ask for (none listed, or every one the same), if one.
fn uniform_format(formats: &[i16]) -> Option<i16> {
    match formats.first() {
        None => Some(0),
        Some(&first) => formats.iter().all(|&f| f == first).then_some(first),
    }
}

/// Splits the first `rows` DataRow frames off `frames`.
fn take_frames(frames: &mut BytesMut, rows: u64) -> BytesMut {
    let mut at = 0;
    for _ in 0..rows {
        let Some(len) = frames.get(at + 1..at + 5) else {
            break;
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at = (at + 1 + len).min(frames.len());
    }
    frames.split_to(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_row(value: &[u8]) -> Vec<u8> {
        let mut frame = vec![crate::wire::tag::DATA_ROW];
        frame.extend_from_slice(&(4 + 2 + 4 + value.len() as u32).to_be_bytes());
        frame.extend_from_slice(&1u16.to_be_bytes());
        frame.extend_from_slice(&(value.len() as u32).to_be_bytes());
        frame.extend_from_slice(value);
        frame
    }

    #[test]
    fn formats_are_uniform_when_none_or_all_are_the_same() {
        assert_eq!(uniform_format(&[]), Some(0));
        assert_eq!(uniform_format(&[1]), Some(1));
        assert_eq!(uniform_format(&[0, 0, 0]), Some(0));
        assert_eq!(uniform_format(&[0, 1]), None);
    }

    #[test]
    fn frames_are_taken_whole_and_in_order() {
        let mut frames = BytesMut::new();
        for value in [&b"a"[..], b"bcd", b""] {
            frames.extend_from_slice(&data_row(value));
        }
        let first = take_frames(&mut frames, 2);
        assert_eq!(&first[..], [data_row(b"a"), data_row(b"bcd")].concat());
        assert_eq!(&frames[..], data_row(b""));
        assert_eq!(take_frames(&mut frames, 5).len(), 11);
        assert!(frames.is_empty());
    }
}
