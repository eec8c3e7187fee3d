//! An extended-protocol portal that runs on several shards: a read to merge, or a statement
//! for several primaries (DDL, reference-table and broadcast writes). Held from its Bind until
//! the client executes it, then answered in order (BindComplete, the RowDescription or NoData
//! it asked for, rows, CommandComplete).
//!
//! Part of the session's fan-out (`scatter`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Session;
use super::super::client::Refusal;
use super::super::extended::returns_rows;
use super::super::replies::{Expect, Synthetic};
use super::ScatterRead;
use crate::error::Unsupported;
use crate::execute::broadcast::{LegStatement, Rows};
use crate::execute::fanout::Show;
use crate::router::{CursorCommand, DeclaredCursor};
use crate::wire::{TxStatus, encode, tag};

/// An extended-protocol portal that runs on several shards. Nothing runs at Bind: the portal
/// is executed when the client sends Execute, and whatever the client is owed (BindComplete, a
/// RowDescription it asked for) is answered then, in order; a Sync or Flush before any
/// Execute answers them (a read's description from one shard).
#[derive(Debug)]
pub(in crate::session) struct ScatterPortal {
    work: Held,
    /// The client's name for the portal.
    portal: String,
    /// The client sent Describe of the portal.
    describe: bool,
    /// BindComplete already went out (at a Flush).
    bind_answered: bool,
    /// The RowDescription the client asked for already went out.
    description_sent: bool,
}

/// What a held portal runs.
#[derive(Debug)]
pub(in crate::session) enum Held {
    /// A read merged from several shards.
    Read(ScatterRead),
    /// A statement on several primaries.
    Write(SpreadWrite),
    /// An UPDATE of the shard key, whose rows move.
    Move(MoveWrite),
    /// A COPY FROM STDIN into a sharded or reference table: the client's statement and the
    /// shards it copies into.
    Copy(String, Vec<crate::config::ShardId>),
    /// A DECLARE of a cursor whose query reads several shards (see `cursors`).
    Declare(ScatterRead, DeclaredCursor),
    /// A FETCH, MOVE or CLOSE of a cursor the session keeps.
    Cursor(CursorCommand),
}

/// An UPDATE of the shard key as the client bound it.
#[derive(Debug)]
pub(in crate::session) struct MoveWrite {
    /// The client's statement.
    pub sql: String,
    /// The shards holding the rows it changes.
    pub sources: Vec<crate::config::ShardId>,
    /// Parameter types from the client's Parse.
    pub param_types: Vec<u32>,
    /// The client's Bind after its portal and statement names.
    pub bind_rest: Vec<u8>,
}

/// A statement for several primaries, as its legs will run it.
#[derive(Debug)]
pub(in crate::session) struct SpreadWrite {
    /// The client's statement.
    pub sql: String,
    /// Each shard's part.
    pub parts: super::super::broadcast::Parts,
    /// Whether the shards hold different rows (counts add up) or copies.
    pub rows: Rows,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// A Bind of a statement that reads several shards: held until it is executed.
    pub(in crate::session) fn bind_shards(
        &mut self,
        portal: &str,
        read: ScatterRead,
    ) -> Result<(), Refusal> {
        self.check_scatter_allowed()?;
        let cursor = self.env.database.router.declared_cursor(&read.sql);
        let query = cursor.as_ref().map_or(&read.sql, |c| &c.query);
        if let Err(error) = self.env.database.router.scatter(query) {
            self.check_federable(&read, error)?;
        }
        let work = match cursor {
            Some(cursor) => Held::Declare(read, cursor),
            None => Held::Read(read),
        };
        self.hold_portal(portal, work);
        Ok(())
    }

    /// A Bind of a write for several primaries (a statement on each, or an UPDATE of the
    /// shard key): held until it is executed.
    pub(in crate::session) fn bind_primaries(
        &mut self,
        portal: &str,
        write: Held,
    ) -> Result<(), Refusal> {
        self.check_spread_allowed()?;
        self.hold_portal(portal, write);
        Ok(())
    }

    pub(super) fn hold_portal(&mut self, portal: &str, work: Held) {
        self.batch.scatter_portal = Some(Box::new(ScatterPortal {
            work,
            portal: portal.to_owned(),
            describe: false,
            bind_answered: false,
            description_sent: false,
        }));
    }

    /// Handles a client message while a cross-shard portal waits. Returns whether the message
    /// was consumed; any message the portal does not take settles it first.
    pub(in crate::session) async fn on_scatter_portal_message(
        &mut self,
        frame_tag: u8,
        frame: &[u8],
    ) -> Result<bool, Refusal> {
        let Some(pending) = self.batch.scatter_portal.as_mut() else {
            return Ok(false);
        };
        let body = &frame[crate::wire::HEADER_LEN..];
        let names_portal = |name: &str| name == pending.portal;
        match frame_tag {
            tag::DESCRIBE => {
                let target = crate::wire::Target::decode_describe(body);
                if let Ok(t) = target
                    && t.kind == crate::wire::StatementOrPortal::Portal
                    && names_portal(t.name)
                {
                    pending.describe = true;
                    return Ok(true);
                }
            }
            tag::EXECUTE => {
                let (portal, max_rows) = crate::wire::execute_fields(body)
                    .map_err(|e| Refusal::violation(e.to_string()))?;
                if names_portal(portal)
                    && let Some(pending) = self.batch.scatter_portal.take()
                {
                    return self
                        .execute_scatter_portal(*pending, max_rows)
                        .await
                        .map(|()| true);
                }
            }
            tag::FLUSH => {
                self.answer_scatter_portal().await?;
                return Ok(true);
            }
            _ => {}
        }
        self.answer_scatter_portal().await?;
        let Some(pending) = self.batch.scatter_portal.take() else {
            return Ok(false);
        };
        // A Sync outside a transaction block, or a Close of it, ends the portal unexecuted.
        let ends = match frame_tag {
            tag::SYNC => self.client_status == TxStatus::Idle,
            tag::CLOSE => crate::wire::Target::decode_close(body).is_ok_and(|t| {
                t.kind == crate::wire::StatementOrPortal::Portal && t.name == pending.portal
            }),
            _ => false,
        };
        match pending.work {
            Held::Read(read) if !ends && !read.writes && read.copy_out.is_none() => {
                self.run_to_held(pending.portal, read).await?;
            }
            _ => self.leave_unexecuted(pending.portal),
        }
        Ok(false)
    }

    /// A read portal whose Execute did not come next (asyncpg binds a cursor, syncs, and
    /// executes it later; a pipeline binds two portals at once): it runs now, as a server
    /// would have started it at its Bind, and its rows are held for its Executes. (Reads that
    /// may write wait for their Execute, which is then refused by name.)
    async fn run_to_held(&mut self, portal: String, mut read: ScatterRead) -> Result<(), Refusal> {
        read.max_rows = Some((0, self.hold_budget()));
        let show = Show {
            preamble: &[],
            description: false,
        };
        let finished = self.scatter(&read, show, true).await;
        match finished.map_err(Refusal::Statement)?.held {
            Some(held) => self.leave_suspended(portal, held, read.result_formats),
            None => self.leave_unexecuted(portal),
        }
        Ok(())
    }

    /// Answers what the client is owed for a held portal (BindComplete, its RowDescription)
    /// without executing it.
    async fn answer_scatter_portal(&mut self) -> Result<(), Refusal> {
        let Some(pending) = self.batch.scatter_portal.as_mut() else {
            return Ok(());
        };
        let bind = !std::mem::replace(&mut pending.bind_answered, true);
        let describe = pending.describe && !pending.description_sent;
        pending.description_sent |= describe;
        let read = match &pending.work {
            Held::Read(read) => read.clone(),
            work => {
                let (returns, cursor) = match work {
                    Held::Write(SpreadWrite { sql, .. })
                    | Held::Move(MoveWrite { sql, .. })
                    | Held::Copy(sql, _) => (returns_rows(sql), None),
                    Held::Cursor(command) => (false, Some(command.clone())),
                    Held::Read(_) | Held::Declare(..) => (false, None),
                };
                if describe && returns {
                    self.batch.scatter_portal = None;
                    let refusal = Unsupported::SpreadReturningDescribedApart;
                    return Err(Refusal::Statement(self.unsupported(refusal)));
                }
                if bind {
                    self.push(Expect::synthetic(Synthetic::BindComplete));
                }
                if describe {
                    self.describe_statement_portal(cursor.as_ref());
                }
                return Ok(());
            }
        };
        let mut preamble = Vec::new();
        if bind {
            encode::bind_complete(&mut preamble);
        }
        if !describe {
            self.bufs.to_client.extend_from_slice(&preamble);
            return Ok(());
        }
        let show = Show {
            preamble: &preamble,
            description: true,
        };
        let outcome = self.scatter(&read, show, false).await;
        if outcome.is_err() {
            self.batch.scatter_portal = None;
        }
        outcome.map(|_| ()).map_err(Refusal::Statement)
    }

    async fn execute_scatter_portal(
        &mut self,
        pending: ScatterPortal,
        max_rows: i32,
    ) -> Result<(), Refusal> {
        let describe = pending.describe && !pending.description_sent;
        if !matches!(pending.work, Held::Read(_)) && !pending.bind_answered {
            self.push(Expect::synthetic(Synthetic::BindComplete));
        }
        let read = match pending.work {
            Held::Read(read) => read,
            Held::Write(mut write) => {
                // The first shard describes the portal, RETURNING columns or NoData.
                for (_, part) in &mut write.parts {
                    if let LegStatement::Bound {
                        describe: wanted, ..
                    } = part
                    {
                        *wanted = describe;
                    }
                }
                return (self.run_spread_in_batch(&write.sql, write.parts, write.rows)).await;
            }
            Held::Move(moving) => return self.move_rows_in_batch(moving, describe).await,
            Held::Copy(sql, shards) => {
                if describe {
                    self.describe_statement_portal(None);
                }
                return self.copy_into_shards_in_batch(&sql, shards).await;
            }
            Held::Declare(read, cursor) => {
                if describe {
                    self.describe_statement_portal(None);
                }
                let declared = self.declare_across(cursor, read).await;
                return declared.map_err(Refusal::Statement);
            }
            Held::Cursor(command) => {
                if describe {
                    self.describe_statement_portal(Some(&command));
                }
                let reply = self.cursor_reply(&command, false)?;
                self.push(Expect::synthetic(Synthetic::Frames(reply)));
                return Ok(());
            }
        };
        // An Execute with a row limit gets the first rows and PortalSuspended, as from one
        // server (asyncpg's fetchrow, a JDBC fetch size); the rest are held for the next
        // Execute (see `suspended`). COPY ignores the limit, as in PostgreSQL.
        let limit = u64::try_from(max_rows).ok().filter(|&n| n > 0);
        let limit = limit.filter(|_| read.copy_out.is_none());
        let mut read = read;
        read.max_rows = limit.map(|rows| (rows, self.hold_budget()));
        let mut preamble = Vec::new();
        if !pending.bind_answered {
            encode::bind_complete(&mut preamble);
        }
        let show = Show {
            preamble: &preamble,
            description: describe,
        };
        let mut finished = self.scatter(&read, show, true).await?;
        match limit {
            Some(limit) if finished.rows == limit => {
                encode::portal_suspended(&mut self.bufs.to_client)
            }
            _ => self.complete_scatter(&finished),
        }
        // The portal stays, as on a server, until it is closed or its transaction ends.
        if let Some(held) = finished.held.take() {
            self.leave_suspended(pending.portal, held, read.result_formats);
        }
        Ok(())
    }
}
