//! SQL cursors over several shards: `DECLARE … CURSOR FOR query` whose query reads several
//! shards keeps the merged rows in the session (within `limits.max_merge_bytes`, as a
//! suspended portal does, see `suspended`), and `FETCH`, `MOVE` and `CLOSE` of it are answered
//! from them, forward only. A cursor on one shard runs there, as any statement does.
//!
//! Part of the session's fan-out (`scatter`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::client::Refusal;
use super::super::replies::{Expect, Synthetic};
use super::ScatterRead;
use crate::config::ShardId;
use crate::error::{Blame, ErrorReport, Unsupported, sqlstate};
use crate::execute::fanout::{NO_PARAMS, Show};
use crate::router::{CursorCommand, DeclaredCursor};
use crate::wire::{TxStatus, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A DECLARE whose query reads several shards: runs the query and keeps its merged rows
    /// for the cursor's FETCHes.
    pub(in crate::session) async fn declare_across(
        &mut self,
        cursor: DeclaredCursor,
        shards: Vec<ShardId>,
        writes: bool,
    ) -> Result<(), ErrorReport> {
        if self.client_status == TxStatus::Idle && !cursor.hold {
            return Err(ErrorReport::error(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                Blame::Client,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        let read = ScatterRead {
            sql: cursor.query,
            param_types: Vec::new(),
            params: NO_PARAMS.to_vec(),
            result_formats: if cursor.binary { vec![1] } else { Vec::new() },
            shards,
            writes,
            copy_out: None,
            max_rows: Some((0, self.hold_budget())),
        };
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
        self.leave_cursor(cursor.name, held, cursor.hold);
        encode::command_complete(&mut self.bufs.to_client, "DECLARE CURSOR");
        Ok(())
    }

    /// A FETCH, MOVE or CLOSE of a cursor (or portal) the proxy keeps: answered from its
    /// rows. Returns whether `sql` was one.
    pub(in crate::session) fn on_cursor_command(&mut self, sql: &str) -> Result<bool, Refusal> {
        if !self.has_left_portals() || self.client_status == TxStatus::Failed {
            // Every query passes here: read nothing in the common case. In a failed
            // transaction the server answers 25P02, as it should.
            return Ok(false);
        }
        let Some(command) = crate::router::cursor_command(sql) else {
            return Ok(false);
        };
        match command {
            CursorCommand::Fetch { name, rows, moves } => {
                let Some(fetched) = self.fetch_left(&name, rows)? else {
                    return Ok(false);
                };
                let mut out = bytes::BytesMut::new();
                let verb = if moves { "MOVE" } else { "FETCH" };
                if !moves {
                    out.extend_from_slice(&fetched.description);
                    out.extend_from_slice(&fetched.frames);
                }
                encode::command_complete(&mut out, &format!("{verb} {}", fetched.rows));
                self.push(Expect::synthetic(Synthetic::Frames(out)));
            }
            CursorCommand::Backward { name } => {
                if !self.is_left_portal(&name) {
                    return Ok(false);
                }
                let refusal = self.unsupported(Unsupported::CursorBackward);
                return Err(Refusal::Statement(refusal));
            }
            CursorCommand::Close { name } => {
                if !self.forget_left_portal(&name) {
                    return Ok(false);
                }
                self.push(Expect::synthetic(Synthetic::CommandComplete(
                    "CLOSE CURSOR",
                )));
            }
            CursorCommand::CloseAll => {
                self.forget_every_left_portal();
                return Ok(false); // The backend closes its own cursors.
            }
        }
        self.push(Expect::synthetic(Synthetic::ReadyForQuery));
        Ok(true)
    }
}
