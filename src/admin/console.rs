//! The admin console: `psql -d shardgate` as an admin user opens a pseudo-database that
//! answers PgBouncer-style commands about the running proxy (`SHOW …`, `RELOAD`, `PAUSE`,
//! `RESUME`) instead of forwarding anything to a shard.
//!
//! It speaks the simple query protocol only (psql's), one command per Query. Results are text
//! columns. Nothing here touches a backend connection: it reads the topology, the pools and
//! the client registry, and steers the pools (pause) and the reloader.

mod commands;
mod show;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::AdminContext;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::lifecycle::Phase;
use crate::wire::{self, TxStatus, encode, tag};
use tokio::sync::watch;

/// What one command answers.
pub enum Reply {
    /// A result set of text columns, then CommandComplete with `tag`.
    Rows {
        /// Column names.
        columns: Vec<&'static str>,
        /// Rows, each as many values as columns (`None`: NULL).
        rows: Vec<Vec<Option<String>>>,
        /// CommandComplete tag.
        tag: String,
    },
    /// A command with no rows.
    Done(String),
    /// A command with no rows that went through with a warning (NoticeResponse first).
    Warned {
        /// The warning.
        warning: ErrorReport,
        /// CommandComplete tag.
        tag: String,
    },
    /// The command failed.
    Error(ErrorReport),
}

/// Parameters a client expects after login; psql reads `server_version` and the encodings.
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "15.0 (shardgate console)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("application_name", ""),
];

/// Serves an authenticated admin until it leaves. `input` holds bytes it pipelined after its
/// startup packet.
pub async fn run<C>(
    mut client: C,
    mut input: BytesMut,
    admin: Arc<AdminContext>,
    max_message: usize,
    mut phase: watch::Receiver<Phase>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    for (name, value) in PARAMETERS {
        encode::parameter_status(&mut out, name, value);
    }
    encode::ready_for_query(&mut out, TxStatus::Idle);
    let mut skipping = false;
    loop {
        if client.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        let next = tokio::select! {
            next = next_frame(&mut client, &mut input, max_message) => next,
            _ = phase.wait_for(|p| *p == Phase::Closing) => Err(ErrorReport::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                Blame::Proxy,
                "terminating connection due to administrator command",
            )),
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(report) => {
                encode::error_response(&mut out, &report);
                let _ = client.write_all(&out).await;
                return;
            }
        };
        match frame[0] {
            tag::QUERY => {
                let sql = wire::query_text(&frame[wire::HEADER_LEN..]).unwrap_or("");
                let reply = commands::run(&admin, sql).await;
                write_reply(&mut out, reply, &admin);
                encode::ready_for_query(&mut out, TxStatus::Idle);
            }
            tag::TERMINATE => return,
            tag::SYNC => {
                skipping = false;
                encode::ready_for_query(&mut out, TxStatus::Idle);
            }
            _ if skipping => {}
            _ => {
                skipping = true;
                let report = ErrorReport::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    Blame::Client,
                    "the admin console speaks the simple query protocol only",
                );
                admin.metrics.error(report.code);
                encode::error_response(&mut out, &report);
            }
        }
    }
}

fn write_reply(out: &mut BytesMut, reply: Reply, admin: &AdminContext) {
    match reply {
        Reply::Rows { columns, rows, tag } => {
            encode::row_description_text(out, &columns);
            for row in &rows {
                let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
                encode::data_row_text(out, &values);
            }
            encode::command_complete(out, &tag);
        }
        Reply::Done(tag) => encode::command_complete(out, &tag),
        Reply::Warned { warning, tag } => {
            encode::notice_response(out, &warning);
            encode::command_complete(out, &tag);
        }
        Reply::Error(report) => {
            admin.metrics.error(report.code);
            encode::error_response(out, &report);
        }
    }
}

/// The next whole message (tag byte included); `None` when the client left.
async fn next_frame<C>(
    client: &mut C,
    input: &mut BytesMut,
    max_message: usize,
) -> Result<Option<BytesMut>, ErrorReport>
where
    C: AsyncRead + Unpin,
{
    let violation =
        |message: String| ErrorReport::fatal(sqlstate::PROTOCOL_VIOLATION, Blame::Client, message);
    loop {
        if let Some(header) = wire::peek_header(input).map_err(|e| violation(e.to_string()))? {
            if header.total_len > max_message {
                return Err(violation(format!(
                    "message of {} bytes exceeds the limit of {max_message} bytes",
                    header.total_len
                )));
            }
            if input.len() >= header.total_len {
                return Ok(Some(input.split_to(header.total_len)));
            }
        }
        match client.read_buf(input).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}
