//! Running one read on several shards at once and streaming the merged result to the client.
//!
//! Part of the execute stage. Every leg (one shard's backend) is sent its whole request up
//! front, then one poll drives all of them and the client: whichever leg has bytes is read,
//! its rows go into the [`Merger`], and whatever the merge has ready is written to the client
//! while the other legs keep running. Reading stops only for a leg far ahead of an ordered
//! merge, or while the client's queue is over its high-water mark, so memory stays bounded and
//! nothing can deadlock (no leg is ever written to after its request). Every leg is read to its
//! ReadyForQuery, even after an error or a satisfied LIMIT, so its connection goes back clean;
//! a leg whose connection failed is marked broken.

use std::future::poll_fn;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Buffers, HIGH_WATER, drain, drain_to_client, read};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, Retry, sqlstate};
use crate::merge::{HeldRows, MergeError, Merger};
use crate::pool::{FirstStopped, Liveness};
use crate::wire::{self, ParameterStatus, TxStatus, tag};

mod request;

pub use request::{NO_PARAMS, aggregates_among, column_count, leg_batch};

/// Rows a leg may have waiting in an ordered merge before the executor stops reading it.
const LEG_BUDGET: usize = 256 * 1024;

/// Why a leg whose server's health check got no reply is given up.
const STOPPED_ANSWERING: &str =
    "the server stopped answering (no reply to its health check in time)";

/// One shard's part of a fan-out.
pub struct Leg<'a> {
    /// Shard name, for errors.
    pub shard: &'a str,
    /// Its backend, checked out by the caller.
    pub conn: &'a mut BackendConn,
    /// Everything to send: hidden simple queries first, then the extended-protocol batch that
    /// ends with Sync.
    pub request: BytesMut,
    /// Simple queries at the start of `request` the client must not see (settings replay).
    pub hidden_queries: usize,
    /// The leg runs inside the client's transaction, so it ends in one (status `T`), not idle.
    pub in_transaction: bool,
    /// Its server's liveness: a leg whose server stops answering is given up as lost.
    pub liveness: Liveness,
}

/// What the client is sent besides rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Show<'a> {
    /// Replies owed before the result (BindComplete of the client's Bind): written with the
    /// first message of the result, or at the end, but never before an error that happens
    /// first, which answers the Bind instead.
    pub preamble: &'a [u8],
    /// Write the merged RowDescription (the client described the portal, or a simple query).
    pub description: bool,
}

/// Called for every ParameterStatus a leg's backend reports.
pub type OnStatus<'a> = &'a mut (dyn FnMut(&mut BackendConn, &str, &str) + Send);

/// Builds the merge once the first RowDescription (the leg's name and the body) is known.
pub type MakeMerger<'a> = &'a mut (dyn FnMut(&str, &[u8]) -> Result<Merger, MergeError> + Send);

/// Why a fan-out failed (its report says whether running it again elsewhere is safe).
#[derive(Debug)]
pub struct Failed {
    /// What the client is told.
    pub report: ErrorReport,
    /// Legs whose connection failed (the others ran to their end).
    pub lost_legs: Vec<usize>,
    /// Each leg's transaction status at its end (`Failed` for a lost leg).
    pub statuses: Vec<TxStatus>,
    /// The merge refused the shards' columns (a type it cannot combine) before the client saw
    /// anything: PostgreSQL itself may still answer the read (see `control::federation`).
    pub merge_refused: bool,
}

/// How a fan-out ended, when it ran to the end on every leg.
#[derive(Debug)]
pub struct Finished {
    /// Rows the client received.
    pub rows: u64,
    /// Each leg's transaction status at its end.
    pub statuses: Vec<TxStatus>,
    /// For COPY output, what ends its data (the caller writes it before CommandComplete).
    pub copied_out: Option<bytes::BytesMut>,
    /// The rows after an Execute's row limit (see [`Merger::hold_after`]).
    pub held: Option<HeldRows>,
}

/// Runs every leg and streams the merged rows to the client (RowDescription first when
/// `show.description`). CommandComplete and ReadyForQuery are the caller's to write.
pub async fn fan_out<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [Leg<'_>],
    show: Show<'_>,
    make_merger: MakeMerger<'_>,
    on_status: OnStatus<'_>,
) -> Result<Finished, Box<Failed>> {
    let mut run = Run {
        states: legs
            .iter()
            .map(|leg| LegState::new(leg.hidden_queries, leg.in_transaction))
            .collect(),
        merger: None,
        columns: None,
        error: None,
        lost: Vec::new(),
        show,
        preamble_sent: false,
        merge_refused: false,
        next: 0,
    };
    let mut stopped = FirstStopped::new(legs.iter().map(|leg| leg.liveness.clone()));
    while !run.all_done() {
        let ready = tokio::select! {
            biased; // The legs first: the liveness waits cost nothing while they have bytes.
            ready = run.poll_any(client, bufs, legs) => ready,
            index = stopped.next() => Err(Failure::Leg(index, STOPPED_ANSWERING.into())),
        };
        let leg = match ready {
            Ok(leg) => leg,
            Err(Failure::Client(e)) => {
                // The session ends; legs still running cannot be reused.
                let running = legs.iter_mut().zip(&run.states).filter(|(_, s)| !s.done);
                running.for_each(|(leg, _)| leg.conn.mark_broken());
                return Err(Box::new(Failed {
                    report: client_gone(e),
                    lost_legs: Vec::new(),
                    statuses: vec![TxStatus::Failed; legs.len()],
                    merge_refused: false,
                }));
            }
            Err(Failure::Leg(index, _)) if run.states[index].done => continue,
            Err(Failure::Leg(index, why)) => {
                run.leg_failed(index, &mut legs[index], &why);
                continue;
            }
        };
        run.on_leg_data(leg, &mut legs[leg], bufs, make_merger, on_status);
    }
    run.finish(bufs)
}

/// Everything known about the fan-out so far.
struct Run<'s> {
    states: Vec<LegState>,
    merger: Option<Merger>,
    /// Field count of the first RowDescription, which every leg must match.
    columns: Option<u16>,
    /// The first error; once set, rows are dropped and legs are only read to their end.
    error: Option<ErrorReport>,
    /// Legs whose connection failed.
    lost: Vec<usize>,
    show: Show<'s>,
    /// The head (preamble, RowDescription) has been written: the client has seen the result
    /// begin, so the read can no longer run again elsewhere.
    preamble_sent: bool,
    /// The first error is the merge refusing the shards' columns.
    merge_refused: bool,
    /// The leg polled first next time, so one busy leg cannot starve the others.
    next: usize,
}

#[derive(Debug)]
struct LegState {
    /// ReadyForQuery still expected for hidden queries.
    hidden_left: usize,
    done: bool,
    /// The status the leg must end in to be reusable.
    expected: TxStatus,
    /// The status it ended in.
    status: TxStatus,
}

impl LegState {
    fn new(hidden_queries: usize, in_transaction: bool) -> Self {
        let expected = match in_transaction {
            true => TxStatus::InTransaction,
            false => TxStatus::Idle,
        };
        Self {
            hidden_left: hidden_queries,
            done: false,
            expected,
            status: TxStatus::Failed,
        }
    }
}

enum Failure {
    Client(std::io::Error),
    Leg(usize, String),
}

impl Run<'_> {
    fn all_done(&self) -> bool {
        self.states.iter().all(|s| s.done)
    }

    /// Writes requests and queued client bytes, then waits until some leg has new bytes.
    async fn poll_any<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut C,
        bufs: &mut Buffers,
        legs: &mut [Leg<'_>],
    ) -> Result<usize, Failure> {
        let n = legs.len();
        let start = self.next;
        poll_fn(|cx| {
            drain_to_client(cx, client, bufs).map_err(|e| match e {
                super::PumpError::Client(e) | super::PumpError::Backend(e) => Failure::Client(e),
            })?;
            for offset in 0..n {
                let index = (start + offset) % n;
                let leg = &mut legs[index];
                if self.states[index].done {
                    continue;
                }
                let stream = leg.conn.stream_mut();
                drain(cx, stream, &mut leg.request)
                    .map_err(|e| Failure::Leg(index, e.to_string()))?;
                if !self.may_read(index, bufs) {
                    continue;
                }
                let (stream, buf) = leg.conn.io_mut();
                match read(cx, stream, buf).map_err(|e| Failure::Leg(index, e.to_string()))? {
                    Poll::Ready(0) => {
                        return Poll::Ready(Err(Failure::Leg(index, "server closed".into())));
                    }
                    Poll::Ready(_) => return Poll::Ready(Ok(index)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
        .inspect(|&index| self.next = (index + 1) % n)
    }

    /// Whether to take more bytes from a leg: not while the client is far behind, nor while
    /// an ordered merge already holds plenty of this leg's rows.
    fn may_read(&self, index: usize, bufs: &Buffers) -> bool {
        let ahead = (self.merger.as_ref()).is_some_and(|m| m.queued_bytes(index) >= LEG_BUDGET);
        bufs.to_client.len() < HIGH_WATER && !ahead
    }

    /// Handles every whole frame the leg has delivered.
    fn on_leg_data(
        &mut self,
        index: usize,
        leg: &mut Leg<'_>,
        bufs: &mut Buffers,
        make_merger: MakeMerger<'_>,
        on_status: OnStatus<'_>,
    ) {
        loop {
            let header = match wire::peek_header(&leg.conn.read_buf) {
                Ok(Some(h)) if leg.conn.read_buf.len() >= h.total_len => h,
                Ok(_) => break,
                Err(e) => return self.leg_failed(index, leg, &format!("malformed message: {e}")),
            };
            let frame = leg.conn.read_buf.split_to(header.total_len);
            self.on_frame(index, leg, &frame, bufs, make_merger, on_status);
            if self.states[index].done {
                break;
            }
        }
        self.drain_merger(bufs);
    }

    fn on_frame(
        &mut self,
        index: usize,
        leg: &mut Leg<'_>,
        frame: &[u8],
        bufs: &mut Buffers,
        make_merger: MakeMerger<'_>,
        on_status: OnStatus<'_>,
    ) {
        let body = &frame[wire::HEADER_LEN..];
        let state = &mut self.states[index];
        match frame[0] {
            tag::PARAMETER_STATUS => {
                if let Ok(status) = ParameterStatus::decode(body) {
                    on_status(leg.conn, status.name, status.value);
                }
            }
            tag::READY_FOR_QUERY if state.hidden_left > 0 => state.hidden_left -= 1,
            tag::READY_FOR_QUERY => {
                state.done = true;
                state.status = (body.first().copied())
                    .and_then(TxStatus::from_byte)
                    .unwrap_or(TxStatus::Failed);
                // Bytes after the last reply, or an unexpected transaction state: never reuse
                // it outside this session (a failed transaction is the session's to end).
                let failed_in_transaction =
                    state.expected == TxStatus::InTransaction && state.status == TxStatus::Failed;
                if !leg.conn.read_buf.is_empty()
                    || (state.status != state.expected && !failed_in_transaction)
                {
                    leg.conn.mark_broken();
                }
            }
            tag::ERROR_RESPONSE => {
                if state.hidden_left > 0 {
                    // A settings replay failed: what the proxy recorded as applied is wrong.
                    leg.conn.mark_broken();
                }
                // A FATAL (a replica's postmaster died, an administrator's terminate) ends the
                // connection: the leg is lost, and a read that sent nothing runs elsewhere.
                if wire::ends_connection(body) {
                    let report = wire::error_report(body, Blame::Backend);
                    return self.leg_failed(index, leg, &report.message);
                }
                let report = wire::error_report(body, Blame::Backend);
                self.fail(on_shard(report, leg.shard));
            }
            _ if state.hidden_left > 0 => {}
            tag::ROW_DESCRIPTION => self.on_description(leg.shard, body, make_merger),
            tag::DATA_ROW => self.on_row(index, frame),
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED => {
                let finished = (self.merger.as_mut()).map(|m| m.finish_leg(index));
                if let Some(Err(e)) = finished {
                    self.fail(e.report());
                }
            }
            tag::NOTICE_RESPONSE if index == 0 => bufs.to_client.extend_from_slice(frame),
            _ => {} // ParseComplete, BindComplete, NoData, notices of other legs.
        }
    }

    fn on_description(&mut self, shard: &str, body: &[u8], make_merger: MakeMerger<'_>) {
        let columns = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        match self.columns {
            None => self.columns = columns,
            Some(first) if Some(first) == columns => return,
            Some(_) => {
                return self.fail(ErrorReport::error(
                    sqlstate::INTERNAL_ERROR,
                    Blame::Backend,
                    "shardgate: the shards answered with different columns; \
                     is the table defined the same way on every shard?",
                ));
            }
        }
        if self.error.is_some() {
            return;
        }
        // The head (preamble, RowDescription) waits for the first merged row or the end, so
        // a leg lost before any row leaves the client untouched and the read can run again.
        match make_merger(shard, body) {
            Ok(merger) => self.merger = Some(merger),
            Err(e) => {
                self.merge_refused = self.error.is_none();
                self.fail(e.report());
            }
        }
    }

    fn on_row(&mut self, index: usize, frame: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Some(merger) = self.merger.as_mut() else {
            return self.fail(internal("a shard sent rows before describing them"));
        };
        if merger.satisfied() {
            return;
        }
        if let Err(e) = merger.push_row(index, frame) {
            self.fail(e.report());
        }
    }

    /// The preamble and, when shown, the RowDescription: once, before the first row.
    fn send_head(&mut self, bufs: &mut Buffers) {
        if !std::mem::replace(&mut self.preamble_sent, true) {
            bufs.to_client.extend_from_slice(self.show.preamble);
            // COPY output always starts with its CopyOutResponse, described or not.
            if let Some(merger) = &self.merger
                && (self.show.description || merger.copies_out())
            {
                bufs.to_client.extend_from_slice(merger.row_description());
            }
        }
    }

    fn drain_merger(&mut self, bufs: &mut Buffers) {
        if self.error.is_some() {
            return;
        }
        let mark = bufs.to_client.len();
        if let Some(Err(e)) = self.merger.as_mut().map(|m| m.drain(&mut bufs.to_client)) {
            return self.fail(e.report());
        }
        if bufs.to_client.len() > mark && !self.preamble_sent {
            let rows = bufs.to_client.split_off(mark);
            self.send_head(bufs);
            bufs.to_client.unsplit(rows);
        }
    }

    fn fail(&mut self, report: ErrorReport) {
        self.error.get_or_insert(report);
    }

    fn leg_failed(&mut self, index: usize, leg: &mut Leg<'_>, why: &str) {
        leg.conn.mark_broken();
        self.states[index].done = true;
        self.lost.push(index);
        tracing::warn!(
            shard = leg.shard,
            why,
            "shard connection lost during a fan-out"
        );
        self.fail(ErrorReport::error(
            sqlstate::CONNECTION_FAILURE,
            Blame::Backend,
            format!(
                "shardgate: lost the connection to shard {} ({}): {why}",
                leg.shard,
                leg.conn.addr()
            ),
        ));
    }

    fn finish(mut self, bufs: &mut Buffers) -> Result<Finished, Box<Failed>> {
        self.drain_merger(bufs);
        if let Some(report) = self.error {
            // Nothing of the result reached the client: it can run again from scratch.
            let retry = if self.preamble_sent {
                Retry::Unsafe
            } else {
                Retry::Safe
            };
            return Err(Box::new(Failed {
                report: report.with_retry(retry),
                lost_legs: self.lost,
                statuses: self.states.iter().map(|s| s.status).collect(),
                merge_refused: self.merge_refused && !self.preamble_sent,
            }));
        }
        self.send_head(bufs);
        Ok(Finished {
            rows: self.merger.as_ref().map_or(0, Merger::rows_sent),
            statuses: self.states.iter().map(|s| s.status).collect(),
            copied_out: self.merger.as_mut().and_then(Merger::copy_end),
            held: self.merger.as_mut().and_then(Merger::take_held),
        })
    }
}

fn on_shard(report: ErrorReport, shard: &str) -> ErrorReport {
    let detail = match &report.detail {
        Some(own) => format!("{own}\n(on shard {shard})"),
        None => format!("on shard {shard}"),
    };
    report.with_detail(detail)
}

fn client_gone(e: std::io::Error) -> ErrorReport {
    ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Client, e.to_string()).caused_by(e)
}

fn internal(message: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::INTERNAL_ERROR,
        Blame::Proxy,
        format!("shardgate: {message}"),
    )
}
