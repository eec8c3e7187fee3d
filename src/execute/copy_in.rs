//! `COPY … FROM STDIN` into a table spread over several shards: one COPY on each shard's
//! backend (inside the caller's transaction), the client's data split into rows as it arrives
//! and each row streamed to the shard the caller's placement picks, with memory bounded by
//! the flush size and the longest row however big the input.
//!
//! Part of the execute stage. The client sees one CopyInResponse and, at its CopyDone, the
//! caller's one CommandComplete with the total count. A failure anywhere (a row PostgreSQL
//! rejects on any shard, a row without a key, the client's CopyFail) ends the COPY on every
//! shard, and the caller rolls the transaction back everywhere: all or nothing. A shard's
//! error names the client's line, not the shard's.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::broadcast::{
    OnStatus, count_of, next_frame, query, read_hidden_reply, run_prelude, send,
};
use super::{Buffers, flush_client};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::copy_rows::{Key, Piece, RowSplitter};
use crate::wire::{self, TxStatus, encode, tag};

/// Rows queued for one shard are sent once this many bytes are waiting.
const FLUSH_AT: usize = 64 * 1024;

/// Client line numbers remembered per shard, to name the client's line in a shard's error.
const LINES_REMEMBERED: usize = 1 << 18;

/// One shard's COPY.
pub struct CopyLeg<'a> {
    /// Shard name, for errors.
    pub shard: &'a str,
    /// The transaction's backend on it.
    pub conn: &'a mut BackendConn,
    /// Hidden queries it runs first (settings, the BEGIN joining the transaction).
    pub prelude: Vec<String>,
    pending: BytesMut,
    /// The client's line of each of this shard's most recent lines.
    lines: VecDeque<u64>,
    /// This shard's lines forgotten from the front of `lines`.
    lines_forgotten: u64,
}

impl<'a> CopyLeg<'a> {
    /// A leg on `conn` of shard `shard`.
    pub fn new(shard: &'a str, conn: &'a mut BackendConn, prelude: Vec<String>) -> Self {
        Self {
            shard,
            conn,
            prelude,
            pending: BytesMut::new(),
            lines: VecDeque::new(),
            lines_forgotten: 0,
        }
    }

    fn queue(&mut self, bytes: &[u8], client_line: Option<u64>) {
        self.pending.extend_from_slice(bytes);
        if let Some(line) = client_line {
            if self.lines.len() == LINES_REMEMBERED {
                self.lines.pop_front();
                self.lines_forgotten += 1;
            }
            self.lines.push_back(line);
        }
    }

    /// The client's line for this shard's line `line` (1-based), if still remembered.
    fn client_line(&self, line: u64) -> Option<u64> {
        let index = line.checked_sub(1 + self.lines_forgotten)?;
        self.lines.get(usize::try_from(index).ok()?).copied()
    }

    async fn flush(&mut self) -> Result<(), ErrorReport> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut frame = BytesMut::with_capacity(self.pending.len() + 5);
        encode::copy_data(&mut frame, &self.pending);
        self.pending.clear();
        send(self.conn, &frame).await
    }
}

/// Where a row goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowTo {
    /// The leg at this index.
    Leg(usize),
    /// Every leg (a reference table, a header).
    Every,
    /// Not known before [`RowPlacer::look_up`] (a directory table entry not cached yet).
    Later,
}

/// Picks each row's shard by its key (the caller's knowledge of the shard map).
pub trait RowPlacer: Send {
    /// Where the row with `key` goes; an error refuses the row (and fails the COPY).
    fn place(&mut self, key: &Key<'_>) -> Result<RowTo, ErrorReport>;

    /// Reads what the last [`RowTo::Later`] waited for; the row is then placed again.
    fn look_up(&mut self) -> Pin<Box<dyn Future<Output = Result<(), ErrorReport>> + Send + '_>>;
}

/// The end of a COPY into several shards.
pub struct CopyOutcome {
    /// Rows copied (the first leg's count when every leg took every row).
    pub rows: Result<u64, ErrorReport>,
    /// Each leg's transaction status afterwards.
    pub statuses: Vec<TxStatus>,
}

/// What one COPY into several shards runs, and how it reads the client's data.
pub struct CopyPlan<'a> {
    /// The client's COPY FROM STDIN, run on every leg.
    pub sql: &'a str,
    /// Splits the client's data into rows.
    pub splitter: RowSplitter,
    /// Every leg takes every row (a reference table): the count is one leg's.
    pub copies: bool,
    /// A longer row (or message) fails the COPY (54000, 08P01).
    pub max_row_bytes: usize,
}

/// Runs `plan` on every leg and streams the client's data, each row where `place` says (an
/// error refuses the row and fails the COPY).
pub async fn copy_in<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [CopyLeg<'_>],
    plan: CopyPlan<'_>,
    place: &mut dyn RowPlacer,
    on_status: OnStatus<'_>,
) -> CopyOutcome {
    let CopyPlan {
        sql,
        mut splitter,
        copies,
        max_row_bytes,
    } = plan;
    let mut statuses = vec![TxStatus::InTransaction; legs.len()];
    if let Err(report) = start(client, bufs, legs, sql, on_status).await {
        // The transaction fails as a whole (a leg that never began it rolls back harmlessly).
        statuses.fill(TxStatus::Failed);
        return CopyOutcome {
            rows: Err(report),
            statuses,
        };
    }
    let streamed = stream(client, bufs, legs, &mut splitter, place, max_row_bytes).await;
    let rows = match streamed {
        Ok(Ended::Done) => finish(legs, copies).await,
        Ok(Ended::Failed(message)) => Err(fail_all(legs, &message, None).await),
        Err(Failure::Proxy(report)) => {
            let message = report.message.clone();
            let _ = fail_all(legs, &message, None).await;
            Err(*report)
        }
        Err(Failure::Leg(index, report)) => {
            let _ = fail_all(legs, "another shard failed", Some(index)).await;
            Err(with_client_line(*report, &legs[index]))
        }
    };
    if rows.is_err() {
        statuses.fill(TxStatus::Failed);
    }
    CopyOutcome { rows, statuses }
}

/// Brings every leg into COPY IN and tells the client it may send data.
async fn start<C: AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [CopyLeg<'_>],
    sql: &str,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    let mut response = None;
    for index in 0..legs.len() {
        let leg = &mut legs[index];
        let started = async {
            run_prelude(leg.conn, &leg.prelude, on_status).await?;
            let mut out = BytesMut::new();
            query(&mut out, sql)?;
            send(leg.conn, &out).await?;
            copy_in_response(leg.conn).await
        };
        match started.await {
            Ok(frame) => {
                response.get_or_insert(frame);
            }
            Err(report) => {
                // The legs already copying are ended; their errors are not the client's.
                let _ = fail_all(&mut legs[..index], "another shard failed", None).await;
                return Err(report);
            }
        }
    }
    if let Some(frame) = response {
        bufs.to_client.extend_from_slice(&frame);
    }
    flush_client(client, bufs)
        .await
        .map_err(|e| ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Client, e.to_string()))
}

/// The CopyInResponse `conn` answers its COPY with, or its error (read to ReadyForQuery).
async fn copy_in_response(conn: &mut BackendConn) -> Result<BytesMut, ErrorReport> {
    let mut error = None;
    loop {
        let frame = next_frame(conn).await?;
        match frame[0] {
            tag::COPY_IN_RESPONSE => return Ok(frame),
            tag::ERROR_RESPONSE => {
                error = Some(wire::error_report(
                    &frame[wire::HEADER_LEN..],
                    Blame::Backend,
                ));
            }
            tag::READY_FOR_QUERY => {
                return Err(error.unwrap_or_else(|| {
                    ErrorReport::error(
                        sqlstate::PROTOCOL_VIOLATION,
                        Blame::Backend,
                        "the server did not start COPY",
                    )
                }));
            }
            _ => {}
        }
    }
}

enum Ended {
    /// The client's CopyDone.
    Done,
    /// The client's CopyFail, with its message.
    Failed(String),
}

enum Failure {
    /// The proxy refused the data (a row without a key, a message out of place).
    Proxy(Box<ErrorReport>),
    /// A leg failed: its index and error.
    Leg(usize, Box<ErrorReport>),
}

/// Reads the client's COPY messages up to its CopyDone or CopyFail, sending each row on.
async fn stream<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [CopyLeg<'_>],
    splitter: &mut RowSplitter,
    place: &mut dyn RowPlacer,
    max_row_bytes: usize,
) -> Result<Ended, Failure> {
    loop {
        let Some(header) = next_client_frame(client, bufs, max_row_bytes).await? else {
            return Err(Failure::Proxy(Box::new(client_gone())));
        };
        match header.tag {
            tag::COPY_DATA => {
                let body = &bufs.client_in[wire::HEADER_LEN..header.total_len];
                splitter.feed(body);
                bufs.client_in.advance(header.total_len);
                route_rows(legs, splitter, place, false).await?;
                if splitter.buffered() > max_row_bytes {
                    return Err(Failure::Proxy(Box::new(row_too_long(max_row_bytes))));
                }
                flush_full(legs).await?;
                check_legs(legs)?;
            }
            tag::COPY_DONE => {
                bufs.client_in.advance(header.total_len);
                route_rows(legs, splitter, place, true).await?;
                for (index, leg) in legs.iter_mut().enumerate() {
                    leg.flush()
                        .await
                        .map_err(|e| Failure::Leg(index, Box::new(e)))?;
                }
                return Ok(Ended::Done);
            }
            tag::COPY_FAIL => {
                let body = &bufs.client_in[wire::HEADER_LEN..header.total_len];
                let message = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(body));
                let message = message.into_owned();
                bufs.client_in.advance(header.total_len);
                return Ok(Ended::Failed(message));
            }
            // Ignored during COPY IN, as PostgreSQL ignores them.
            tag::FLUSH | tag::SYNC => bufs.client_in.advance(header.total_len),
            other => {
                return Err(Failure::Proxy(Box::new(ErrorReport::error(
                    sqlstate::PROTOCOL_VIOLATION,
                    Blame::Client,
                    format!("unexpected message type 0x{other:02X} during COPY from stdin"),
                ))));
            }
        }
    }
}

/// The next whole frame the client sent (its header; the frame stays in `client_in`), or
/// `None` when the client left.
async fn next_client_frame<C: AsyncRead + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    max_bytes: usize,
) -> Result<Option<wire::FrameHeader>, Failure> {
    let violation = |message: String| {
        Failure::Proxy(Box::new(ErrorReport::error(
            sqlstate::PROTOCOL_VIOLATION,
            Blame::Client,
            message,
        )))
    };
    loop {
        let header = wire::peek_header(&bufs.client_in).map_err(|e| violation(e.to_string()))?;
        if let Some(header) = header {
            if header.total_len > max_bytes {
                let size = header.total_len;
                return Err(violation(format!(
                    "message of {size} bytes exceeds the limit of {max_bytes} bytes"
                )));
            }
            if bufs.client_in.len() >= header.total_len {
                return Ok(Some(header));
            }
        }
        match client.read_buf(&mut bufs.client_in).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Sends every complete piece the splitter holds where it belongs.
async fn route_rows(
    legs: &mut [CopyLeg<'_>],
    splitter: &mut RowSplitter,
    place: &mut dyn RowPlacer,
    last: bool,
) -> Result<(), Failure> {
    loop {
        let found = splitter.next(last).map_err(|e| {
            Failure::Proxy(Box::new(ErrorReport::error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                Blame::Client,
                e.to_string(),
            )))
        })?;
        let Some(found) = found else {
            return Ok(());
        };
        let (len, line) = (found.len, found.line);
        let refused = |report: ErrorReport| {
            Failure::Proxy(Box::new(report.with_context(format!("COPY, line {line}"))))
        };
        let mut to = match &found.piece {
            Piece::Header | Piece::End => RowTo::Every,
            Piece::Row(key) => place.place(key).map_err(refused)?,
        };
        if let (RowTo::Later, Piece::Row(key)) = (to, &found.piece) {
            place.look_up().await.map_err(refused)?;
            to = place.place(key).map_err(refused)?;
        }
        let counted = (line > 0).then_some(line);
        let bytes = splitter.bytes(len);
        match to {
            RowTo::Leg(index) => legs[index].queue(bytes, counted),
            RowTo::Every => legs.iter_mut().for_each(|leg| leg.queue(bytes, counted)),
            RowTo::Later => {
                let report = ErrorReport::error(
                    sqlstate::INTERNAL_ERROR,
                    Blame::Proxy,
                    "a COPY row's shard was still unknown after its look-up",
                );
                return Err(refused(report));
            }
        }
        splitter.consume(len);
    }
}

async fn flush_full(legs: &mut [CopyLeg<'_>]) -> Result<(), Failure> {
    for (index, leg) in legs.iter_mut().enumerate() {
        if leg.pending.len() >= FLUSH_AT {
            leg.flush()
                .await
                .map_err(|e| Failure::Leg(index, Box::new(e)))?;
        }
    }
    Ok(())
}

/// A leg that already answered (with an error: PostgreSQL sends nothing else during COPY IN)
/// fails the COPY now rather than at the end.
fn check_legs(legs: &mut [CopyLeg<'_>]) -> Result<(), Failure> {
    for (index, leg) in legs.iter_mut().enumerate() {
        let (stream, buf) = leg.conn.io_mut();
        match stream.try_read_buf(buf) {
            Ok(0) => {
                leg.conn.mark_broken();
                let report = ErrorReport::error(
                    sqlstate::CONNECTION_FAILURE,
                    Blame::Backend,
                    format!("shard {} closed the connection during COPY", leg.shard),
                );
                return Err(Failure::Leg(index, Box::new(report)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                leg.conn.mark_broken();
                let report =
                    ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Backend, e.to_string());
                return Err(Failure::Leg(index, Box::new(report)));
            }
        }
        if let Some(report) = error_in(&leg.conn.read_buf) {
            return Err(Failure::Leg(index, Box::new(report)));
        }
    }
    Ok(())
}

/// The ErrorResponse among the whole frames of `buf`, if any.
fn error_in(buf: &[u8]) -> Option<ErrorReport> {
    let mut at = 0;
    while let Ok(Some(header)) = wire::peek_header(&buf[at..]) {
        if buf.len() - at < header.total_len {
            return None;
        }
        if header.tag == tag::ERROR_RESPONSE {
            let body = &buf[at + wire::HEADER_LEN..at + header.total_len];
            return Some(wire::error_report(body, Blame::Backend));
        }
        at += header.total_len;
    }
    None
}

/// Ends every leg's COPY with CopyDone and adds up their counts.
async fn finish(legs: &mut [CopyLeg<'_>], copies: bool) -> Result<u64, ErrorReport> {
    let mut done = BytesMut::new();
    encode::copy_done(&mut done);
    for (index, leg) in legs.iter_mut().enumerate() {
        if let Err(report) = send(leg.conn, &done).await {
            let _ = fail_all(legs, "another shard failed", Some(index)).await;
            return Err(report);
        }
    }
    let mut total = 0;
    let mut failure: Option<ErrorReport> = None;
    for leg in legs.iter_mut() {
        match copy_count(leg.conn).await {
            Ok(rows) if copies => total = rows,
            Ok(rows) => total += rows,
            Err(report) => {
                failure.get_or_insert_with(|| with_client_line(report, leg));
            }
        }
    }
    failure.map_or(Ok(total), Err)
}

/// The count of `conn`'s COPY (its CommandComplete `COPY n`), read to ReadyForQuery.
async fn copy_count(conn: &mut BackendConn) -> Result<u64, ErrorReport> {
    let mut ignore = |_: &mut BackendConn, _: &str, _: &str| {};
    let reply = read_hidden_reply(conn, &mut ignore).await?;
    match reply.error {
        Some(report) => Err(report),
        None => Ok(reply.tags.iter().filter_map(|tag| count_of(tag)).sum()),
    }
}

/// Ends the COPY on every leg but `except` with CopyFail (`message`), reading each to its
/// ReadyForQuery; returns the first leg's error (PostgreSQL's for a CopyFail).
async fn fail_all(legs: &mut [CopyLeg<'_>], message: &str, except: Option<usize>) -> ErrorReport {
    let mut frame = BytesMut::new();
    postgres_protocol::message::frontend::copy_fail(message, &mut frame)
        .unwrap_or_else(|_| frame.extend_from_slice(&[tag::COPY_FAIL, 0, 0, 0, 5, 0]));
    let mut first = None;
    for (index, leg) in legs.iter_mut().enumerate() {
        if Some(index) == except {
            let _ = copy_count(leg.conn).await;
            continue;
        }
        leg.pending.clear();
        let ended = match send(leg.conn, &frame).await {
            Ok(()) => copy_count(leg.conn).await.err(),
            Err(report) => Some(report),
        };
        if let Some(report) = ended {
            first.get_or_insert(report);
        }
    }
    first.unwrap_or_else(|| {
        ErrorReport::error(
            sqlstate::QUERY_CANCELED,
            Blame::Client,
            format!("COPY from stdin failed: {message}"),
        )
    })
}

/// `report` (from `leg`) with its `COPY table, line N` context naming the client's line.
fn with_client_line(report: ErrorReport, leg: &CopyLeg<'_>) -> ErrorReport {
    let shard = leg.shard;
    report.map_context(|context| {
        let Some(at) = context.find(", line ") else {
            return context.to_owned();
        };
        let digits_at = at + ", line ".len();
        let digits: String = context[digits_at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let line = digits.parse().ok().and_then(|line| leg.client_line(line));
        match line {
            Some(line) => format!(
                "{}, line {line}{} (on shard {shard})",
                &context[..at],
                &context[digits_at + digits.len()..]
            ),
            None => format!("{context} (line of shard {shard}'s part of the input)"),
        }
    })
}

fn client_gone() -> ErrorReport {
    ErrorReport::error(
        sqlstate::CONNECTION_FAILURE,
        Blame::Client,
        "the client closed its connection during COPY",
    )
}

fn row_too_long(max: usize) -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        Blame::Client,
        format!("a COPY row is longer than limits.max_message_bytes ({max} bytes)"),
    )
}
