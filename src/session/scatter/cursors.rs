//! SQL cursors over several shards: `DECLARE … CURSOR FOR query` whose query reads several
//! shards keeps the merged rows in the session (within `limits.max_merge_bytes`, as a
//! suspended portal does, see `suspended`), and `FETCH`, `MOVE` and `CLOSE` of it are answered
//! from them, forward only, in a simple query (psql, psycopg2) or through the extended
//! protocol (psycopg 3). A cursor on one shard runs there, as any statement does.
//!
//! Part of the session's fan-out (`scatter`).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::client::Refusal;
use super::super::replies::{Expect, Synthetic};
use super::{Held, ScatterRead};
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use crate::execute::fanout::Show;
use crate::router::{CursorCommand, DeclaredCursor};
use crate::wire::{TxStatus, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A DECLARE whose query reads several shards (`read`, as the client sent it): runs the
    /// query and keeps its merged rows for the cursor's FETCHes.
    pub(in crate::session) async fn declare_across(
        &mut self,
        cursor: DeclaredCursor,
        mut read: ScatterRead,
    ) -> Result<(), ErrorReport> {
        if self.client_status == TxStatus::Idle && !cursor.hold {
            return Err(ErrorReport::error(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                Blame::Client,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        read.sql = cursor.query;
        read.result_formats = if cursor.binary { vec![1] } else { Vec::new() };
        read.copy_out = None;
        read.max_rows = Some((0, self.hold_budget()));
        let show = Show {
            preamble: &[],
            description: false,
        };
        let finished = self.scatter(&read, show, true).await?;
        let Some(held) = finished.held else {
            return Err(super::super::internal(
                "a cross-shard cursor's read kept no rows".into(),
            ));
        };
        self.leave_cursor(cursor.name, held, read.result_formats, cursor.hold);
        encode::command_complete(&mut self.bufs.to_client, "DECLARE CURSOR");
        Ok(())
    }

    /// A simple-protocol FETCH, MOVE or CLOSE of a cursor (or portal) the proxy keeps:
    /// answered from its rows. Returns whether `sql` was one.
    pub(in crate::session) fn on_cursor_command(&mut self, sql: &str) -> Result<bool, Refusal> {
        let Some(command) = self.kept_cursor_command(sql) else {
            return Ok(false);
        };
        let reply = self.cursor_reply(&command, true)?;
        self.push(Expect::synthetic(Synthetic::Frames(reply)));
        self.push(Expect::synthetic(Synthetic::ReadyForQuery));
        Ok(true)
    }

    /// `sql` as a FETCH, MOVE or CLOSE of a cursor the proxy keeps, if it is one. A `CLOSE
    /// ALL` forgets them all here, and goes on to the backend for its own cursors.
    pub(in crate::session) fn kept_cursor_command(&mut self, sql: &str) -> Option<CursorCommand> {
        if !self.has_left_portals() || self.client_status == TxStatus::Failed {
            // Every statement passes here: read nothing in the common case. In a failed
            // transaction the server answers 25P02, as it should.
            return None;
        }
        let command = crate::router::cursor_command(sql)?;
        match &command {
            CursorCommand::CloseAll => {
                self.forget_every_left_portal();
                None
            }
            CursorCommand::Fetch { name, .. }
            | CursorCommand::Backward { name }
            | CursorCommand::Close { name } => self.is_left_portal(name).then_some(command),
        }
    }

    /// What a FETCH, MOVE or CLOSE of a kept cursor answers: its rows (after the cursor's
    /// RowDescription when `describe`) and its CommandComplete.
    pub(super) fn cursor_reply(
        &mut self,
        command: &CursorCommand,
        describe: bool,
    ) -> Result<BytesMut, Refusal> {
        let mut out = BytesMut::new();
        match command {
            CursorCommand::Fetch { name, rows, moves } => {
                if describe
                    && !moves
                    && let Some(description) = self.left_portal_description(name)
                {
                    out.extend_from_slice(&description);
                }
                let Some(fetched) = self.fetch_left(name, *rows)? else {
                    let gone = super::super::internal(format!("cursor {name} is gone"));
                    return Err(Refusal::Statement(gone));
                };
                if !moves {
                    out.extend_from_slice(&fetched.frames);
                }
                let verb = if *moves { "MOVE" } else { "FETCH" };
                encode::command_complete(&mut out, &format!("{verb} {}", fetched.rows));
            }
            CursorCommand::Backward { .. } => {
                let refusal = self.unsupported(Unsupported::CursorBackward);
                return Err(Refusal::Statement(refusal));
            }
            CursorCommand::Close { name } => {
                self.forget_left_portal(name);
                encode::command_complete(&mut out, "CLOSE CURSOR");
            }
            CursorCommand::CloseAll => {
                self.forget_every_left_portal();
                encode::command_complete(&mut out, "CLOSE CURSOR");
            }
        }
        Ok(out)
    }

    /// An extended-protocol Bind of a FETCH, MOVE or CLOSE of a kept cursor (psycopg 3's
    /// named cursors): held like a cross-shard portal, answered at its Execute. A FETCH must
    /// ask for the rows in the format the cursor made them in.
    pub(in crate::session) fn bind_cursor_command(
        &mut self,
        portal: &str,
        command: CursorCommand,
        formats: Vec<i16>,
    ) -> Result<(), Refusal> {
        if let CursorCommand::Fetch {
            name, moves: false, ..
        } = &command
            && !self.left_portal_formats_match(name, &formats)
        {
            let refusal = self.unsupported(Unsupported::CursorFormatChanged);
            return Err(Refusal::Statement(refusal));
        }
        self.hold_portal(portal, Held::Cursor(command));
        Ok(())
    }

    /// What a Describe of a held portal that is not a read answers: a kept cursor's
    /// RowDescription for a FETCH of it (`cursor`), NoData for every other statement.
    pub(super) fn describe_statement_portal(&mut self, cursor: Option<&CursorCommand>) {
        let description = match cursor {
            Some(CursorCommand::Fetch {
                name, moves: false, ..
            }) => self.left_portal_description(name),
            _ => None,
        };
        match description {
            Some(frame) => self.push(Expect::synthetic(Synthetic::Frames(frame[..].into()))),
            None => self.push(Expect::synthetic(Synthetic::NoData)),
        }
    }
}
