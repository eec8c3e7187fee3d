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
use crate::wire::{encode, tag};

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
        if let Err(error) = self.env.database.router.scatter(&read.sql) {
            self.check_federable(&read, error)?;
        }
        self.hold_portal(portal, Held::Read(read));
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

    fn hold_portal(&mut self, portal: &str, work: Held) {
        self.batch.scatter_portal = Some(ScatterPortal {
            work,
            portal: portal.to_owned(),
            describe: false,
            bind_answered: false,
            description_sent: false,
        });
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
                        .execute_scatter_portal(pending, max_rows)
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
        if let Some(dropped) = self.batch.scatter_portal.take() {
            self.drop_portal(dropped.portal, false);
        }
        Ok(false)
    }

    /// An Execute of a cross-shard portal that other messages came between (it was answered
    /// and let go): refused with the reason rather than left to a backend that never saw it.
    pub(in crate::session) fn check_dropped_portal(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        if self.batch.dropped_portals.is_empty() {
            return Ok(()); // Every Execute passes here: decode nothing in the common case.
        }
        let body = &frame[crate::wire::HEADER_LEN..];
        let portal = crate::wire::execute_portal(body).unwrap_or_default();
        let dropped = self
            .batch
            .dropped_portals
            .iter()
            .position(|(p, _)| p == portal);
        if let Some(index) = dropped {
            let (_, suspended) = self.batch.dropped_portals.remove(index);
            let refusal = match suspended {
                true => Unsupported::PartialFetchAcrossShards,
                false => Unsupported::PortalNotExecutedAtOnce,
            };
            return Err(Refusal::Statement(self.unsupported(refusal)));
        }
        Ok(())
    }

    /// Remembers a cross-shard portal let go (`suspended`: after the rows of an Execute with
    /// a row limit), so executing it again is refused rather than sent to a backend that never
    /// heard of it. Bounded: the oldest is forgotten first.
    fn drop_portal(&mut self, portal: String, suspended: bool) {
        if self.batch.dropped_portals.len() >= 64 {
            self.batch.dropped_portals.remove(0);
        }
        self.batch.dropped_portals.push((portal, suspended));
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
            Held::Write(SpreadWrite { sql, .. })
            | Held::Move(MoveWrite { sql, .. })
            | Held::Copy(sql, _) => {
                if describe && returns_rows(sql) {
                    self.batch.scatter_portal = None;
                    let refusal = Unsupported::SpreadReturningDescribedApart;
                    return Err(Refusal::Statement(self.unsupported(refusal)));
                }
                if bind {
                    self.push(Expect::synthetic(Synthetic::BindComplete));
                }
                if describe {
                    self.push(Expect::synthetic(Synthetic::NoData));
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
        let read = match pending.work {
            Held::Read(read) => read,
            Held::Write(mut write) => {
                if !pending.bind_answered {
                    self.push(Expect::synthetic(Synthetic::BindComplete));
                }
                // The first shard describes the portal, RETURNING columns or NoData.
                let describe = pending.describe && !pending.description_sent;
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
            Held::Move(moving) => {
                if !pending.bind_answered {
                    self.push(Expect::synthetic(Synthetic::BindComplete));
                }
                let describe = pending.describe && !pending.description_sent;
                return self.move_rows_in_batch(moving, describe).await;
            }
            Held::Copy(sql, shards) => {
                if !pending.bind_answered {
                    self.push(Expect::synthetic(Synthetic::BindComplete));
                }
                if pending.describe && !pending.description_sent {
                    self.push(Expect::synthetic(Synthetic::NoData));
                }
                return self.copy_into_shards_in_batch(&sql, shards).await;
            }
        };
        // An Execute with a row limit gets the first rows and PortalSuspended, as from one
        // server (asyncpg's fetchrow, a JDBC fetch size); the rest are not kept, so executing
        // the portal again is refused. COPY ignores the limit, as in PostgreSQL.
        let limit = u64::try_from(max_rows).ok().filter(|&n| n > 0);
        let limit = limit.filter(|_| read.copy_out.is_none());
        let mut read = read;
        read.max_rows = limit;
        let mut preamble = Vec::new();
        if !pending.bind_answered {
            encode::bind_complete(&mut preamble);
        }
        let show = Show {
            preamble: &preamble,
            description: pending.describe && !pending.description_sent,
        };
        let finished = self.scatter(&read, show, true).await?;
        match limit {
            Some(limit) if finished.rows == limit => {
                self.bufs
                    .to_client
                    .extend_from_slice(&[tag::PORTAL_SUSPENDED, 0, 0, 0, 4]);
                self.drop_portal(pending.portal, true);
            }
            _ => self.complete_scatter(&finished),
        }
        Ok(())
    }
}
