//! Running statements on several shards' primaries as if on one server: DDL and writes to
//! reference tables on every shard, broadcast writes, and multi-row INSERTs split by shard,
//! sent as simple queries or (a client's extended-protocol portal) as Parse/Bind/Execute.
//!
//! Part of the execute stage. Each shard runs its statement inside its own transaction, and
//! no shard commits before all of them succeeded; an error anywhere rolls every shard back.
//! The client sees one result: the first shard's RowDescription, and either every shard's
//! rows with the counts summed (shards holding different rows) or the first shard's rows and
//! counts (shards holding copies). How the shards then commit is the caller's choice
//! ([`Commit`]): in two phases (`two_phase`, the protocol of `control::two_phase`), all or
//! nothing; or one after another (`transactions.atomic: false`), where a COMMIT failing after
//! others succeeded is reported with the shards that committed (`commit`). It never touches
//! the session: what it needs (the decision of an atomic commit) comes in [`How`].

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod two_phase;

use super::commit::{TornCommit, commit, torn_commit_report};
use super::{Buffers, flush_client};
use crate::backend::BackendConn;
use crate::control::catalog_oids::CatalogOids;
use crate::control::two_phase::{Decision, DecisionsTable};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::pool::Liveness;
use crate::wire::{self, ParameterStatus, TxStatus, encode, tag};

/// Flush rows to the client once this much is queued.
const FLUSH_AT: usize = 64 * 1024;

/// One shard's part of a broadcast.
pub struct Leg<'a> {
    /// Shard name, for errors.
    pub shard: &'a str,
    /// Its primary, checked out by the caller.
    pub conn: &'a mut BackendConn,
    /// Its primary's liveness: a step of a two-phase commit waiting on a server that stopped
    /// answering its health checks is given up (recovery ends what it left prepared).
    pub liveness: &'a mut Liveness,
    /// Hidden queries it runs first, one by one: settings the backend needs to match the
    /// client, the BEGIN that brings it into the client's transaction.
    pub prelude: Vec<String>,
    /// The statement(s) to run there.
    pub statement: LegStatement,
}

/// What a leg runs.
#[derive(Debug, Clone)]
pub enum LegStatement {
    /// Statement text, as one simple Query.
    Simple(String),
    /// One statement with the parameters of the client's Bind: sent as an unnamed Parse, a
    /// Bind carrying `bind_rest` (the client's parameter section and result formats), a
    /// Describe of the portal when the client asked for one, Execute and Sync.
    Bound {
        /// Statement text.
        sql: String,
        /// Parameter type OIDs from the client's Parse.
        param_types: Vec<u32>,
        /// The client's Bind after its portal and statement names (for a split INSERT, with
        /// only this shard's parameters).
        bind_rest: Vec<u8>,
        /// Whether the client described the portal: the first shard's description is its.
        describe: bool,
    },
}

/// Whether the legs run inside transactions (statements like `CREATE INDEX CONCURRENTLY` or
/// `VACUUM` refuse to), and whose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// BEGIN on each shard, COMMIT on all once every shard succeeded.
    Transaction,
    /// Each shard commits on its own.
    Autocommit,
    /// Every leg's backend is already inside the caller's transaction, which the caller ends
    /// (see [`broadcast_in_transaction`]).
    InTransaction,
}

/// What the shards hold, which decides what the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Different rows (split INSERTs, broadcast writes): every shard's rows, counts summed.
    Disjoint,
    /// Copies (reference tables, schema): the first shard's rows and counts, as one server.
    Copies,
    /// Rows the caller reads itself (what an UPDATE of the shard key deletes, to insert it
    /// where it goes), up to this many bytes in all: nothing of them goes to the client.
    Kept(usize),
}

/// How the legs of a [`Wrapping::Transaction`] broadcast commit once all succeeded.
#[derive(Debug, Clone)]
pub enum Commit {
    /// One after another (`transactions.atomic: false`, or a statement PostgreSQL cannot
    /// prepare): a failure part-way leaves the legs before it committed, and the error names
    /// them.
    OnePhase,
    /// Two-phase commit coordinated by the first leg, recording this decision: every leg
    /// commits or none does. With a single leg there is nothing to coordinate: it commits.
    TwoPhase(Atomic),
}

/// What an atomic commit of a broadcast records on its coordinator (the first leg).
#[derive(Debug, Clone)]
pub struct Atomic {
    /// The decision; its coordinator is the first leg's shard.
    pub decision: Decision,
    /// Whether the coordinator already has the table of decisions.
    pub table: DecisionsTable,
}

/// How a broadcast runs and answers.
#[derive(Debug, Clone)]
pub struct How {
    /// Transactions or not.
    pub wrapping: Wrapping,
    /// What the shards hold.
    pub rows: Rows,
    /// How the transactions of [`Wrapping::Transaction`] commit (unused for autocommit).
    pub commit: Commit,
    /// Puts the default shard's oids in the description the client sees (see
    /// `control::catalog_oids`).
    pub oids: Arc<CatalogOids>,
}

/// Called for every ParameterStatus a leg's backend reports, so the caller can keep the
/// backend's recorded settings right.
pub type OnStatus<'a> = &'a mut (dyn FnMut(&mut BackendConn, &str, &str) + Send);

/// Runs every leg and writes the combined result (without the final ReadyForQuery) to the
/// client. On error nothing has been committed, unless the report says otherwise (a
/// one-phase commit torn part-way, or `08007` when a COMMIT's outcome is unknown).
pub async fn broadcast<C: AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [Leg<'_>],
    how: &How,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    let wrapping = how.wrapping;
    let tags = match run_legs(client, bufs, legs, how, on_status).await {
        Ok(ran) => ran.tags,
        Err(failed) => {
            if wrapping == Wrapping::Transaction {
                finish_all(&mut legs[..=failed.leg], "ROLLBACK", on_status).await;
            }
            return Err(failed.report);
        }
    };
    if wrapping == Wrapping::Transaction {
        commit_legs(legs, &how.commit, on_status).await?;
    }
    for tag in combined_tags(how.rows, tags) {
        encode::command_complete(&mut bufs.to_client, &tag);
    }
    Ok(())
}

/// What the legs of a broadcast inside the caller's transaction gave.
#[derive(Debug, Default)]
pub struct Ran {
    /// The command tags the client is owed (the caller sends them).
    pub tags: Vec<String>,
    /// With [`Rows::Kept`]: every leg's DataRow frames, in leg order.
    pub kept: Vec<BytesMut>,
}

/// A leg of a broadcast inside the caller's transaction failed: the legs before it ran their
/// statement, the ones after it never started.
#[derive(Debug)]
pub struct LegFailed {
    /// Index of the leg that failed.
    pub leg: usize,
    /// Its error, saying which shard it came from.
    pub report: ErrorReport,
    /// Its backend's transaction status: failed, or still open when the proxy refused what
    /// the backend ran (the caller must abort it).
    pub status: TxStatus,
}

/// Runs every leg inside the transaction its backend is in (the caller's: it ends them),
/// writing the rows the client sees (without the command tags, returned) to the client.
pub async fn broadcast_in_transaction<C: AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [Leg<'_>],
    rows: Rows,
    oids: Arc<CatalogOids>,
    on_status: OnStatus<'_>,
) -> Result<Ran, LegFailed> {
    let how = How {
        wrapping: Wrapping::InTransaction,
        rows,
        commit: Commit::OnePhase,
        oids,
    };
    let ran = run_legs(client, bufs, legs, &how, on_status).await?;
    Ok(Ran {
        tags: combined_tags(rows, ran.tags),
        kept: ran.kept,
    })
}

/// Every leg's command tags, and the rows kept (and their bytes).
struct LegsRan {
    tags: Vec<Vec<String>>,
    kept: Vec<BytesMut>,
    kept_bytes: usize,
}

/// Runs the legs one after another, stopping at the first that fails.
async fn run_legs<C: AsyncWrite + Unpin>(
    client: &mut C,
    bufs: &mut Buffers,
    legs: &mut [Leg<'_>],
    how: &How,
    on_status: OnStatus<'_>,
) -> Result<LegsRan, LegFailed> {
    let mut ran = LegsRan {
        tags: Vec::with_capacity(legs.len()),
        kept: Vec::new(),
        kept_bytes: 0,
    };
    for index in 0..legs.len() {
        let leg = &mut legs[index];
        let sink = Sink {
            client: &mut *client,
            bufs: &mut *bufs,
            kept: &mut ran.kept,
            kept_bytes: &mut ran.kept_bytes,
        };
        // A leg over the limit of kept rows ran, and its transaction is still open there.
        let (report, status) = match run_leg(sink, leg, index == 0, how, on_status).await {
            Ok(leg_tags) => match how.rows {
                Rows::Kept(at_most) if ran.kept_bytes > at_most => {
                    (overflow(at_most), TxStatus::InTransaction)
                }
                _ => {
                    ran.tags.push(leg_tags);
                    continue;
                }
            },
            Err(report) => (report, TxStatus::Failed),
        };
        let (shard, done) = (legs[index].shard, &legs[..index]);
        let report = with_shard(report, shard, done, how.wrapping);
        return Err(LegFailed {
            leg: index,
            report,
            status,
        });
    }
    Ok(ran)
}

/// The error of legs whose kept rows exceeded `at_most` bytes.
fn overflow(at_most: usize) -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        Blame::Client,
        format!(
            "shardgate: the rows this statement moves between shards exceed \
             limits.max_merge_bytes ({at_most} bytes); move them in smaller statements"
        ),
    )
}

/// Where a leg's frames go: the client's buffers, or the rows kept for the caller.
struct Sink<'a, C> {
    client: &'a mut C,
    bufs: &'a mut Buffers,
    kept: &'a mut Vec<BytesMut>,
    kept_bytes: &'a mut usize,
}

/// The client's command tags: summed over shards holding different rows, the first shard's
/// for copies.
fn combined_tags(rows: Rows, tags: Vec<Vec<String>>) -> Vec<String> {
    match rows {
        Rows::Disjoint | Rows::Kept(_) => combine_tags(&tags),
        Rows::Copies => tags.into_iter().next().unwrap_or_default(),
    }
}

async fn run_leg<C: AsyncWrite + Unpin>(
    sink: Sink<'_, C>,
    leg: &mut Leg<'_>,
    first: bool,
    how: &How,
    on_status: OnStatus<'_>,
) -> Result<Vec<String>, ErrorReport> {
    let wrapping = how.wrapping;
    let mut out = BytesMut::new();
    let mut hidden = 0;
    for sql in leg.prelude.iter().map(String::as_str) {
        query(&mut out, sql)?;
        hidden += 1;
    }
    if wrapping == Wrapping::Transaction {
        query(&mut out, "BEGIN")?;
        hidden += 1;
    }
    match &leg.statement {
        LegStatement::Simple(sql) => query(&mut out, sql)?,
        LegStatement::Bound {
            sql,
            param_types,
            bind_rest,
            describe,
        } => bound(&mut out, sql, param_types, bind_rest, *describe)?,
    }
    send(leg.conn, &out).await?;
    for _ in 0..hidden {
        let reply = read_reply::<C>(leg.conn, on_status, None).await?;
        if let Some(report) = reply.error {
            // The rest of the batch is still unread: this connection cannot be reused.
            leg.conn.mark_broken();
            return Err(report);
        }
    }
    let mut forward = Forward {
        sink,
        first,
        rows: how.rows,
        shard: leg.shard,
        oids: &how.oids,
    };
    let reply = read_reply(leg.conn, on_status, Some(&mut forward)).await?;
    match reply.error {
        Some(report) => Err(report),
        None => Ok(reply.tags),
    }
}

/// Where the frames of a leg's statement go: rows from every shard (or, copies, the first
/// only; or, kept, to the caller), the row description and notices from the first only
/// (every shard sends the same).
struct Forward<'a, C> {
    sink: Sink<'a, C>,
    first: bool,
    rows: Rows,
    /// The leg's shard, whose description shows the default shard's oids.
    shard: &'a str,
    oids: &'a CatalogOids,
}

impl<C: AsyncWrite + Unpin> Forward<'_, C> {
    /// Keeps a row for the caller, up to `at_most` bytes in all; past that the rows are
    /// dropped (the reply is still read to its end, so the connection stays usable) and the
    /// leg fails once it ends (see [`overflow`]).
    fn keep(&mut self, frame: &[u8], at_most: usize) -> Result<(), ErrorReport> {
        *self.sink.kept_bytes += frame.len();
        if *self.sink.kept_bytes <= at_most {
            self.sink.kept.push(BytesMut::from(frame));
        }
        Ok(())
    }

    async fn frame(&mut self, frame_tag: u8, frame: &[u8]) -> Result<(), ErrorReport> {
        let kept = matches!(self.rows, Rows::Kept(_));
        if let Rows::Kept(at_most) = self.rows
            && frame_tag == tag::DATA_ROW
        {
            return self.keep(frame, at_most);
        }
        let wanted = match frame_tag {
            tag::DATA_ROW => self.first || self.rows == Rows::Disjoint,
            tag::ROW_DESCRIPTION | tag::NO_DATA => self.first && !kept,
            tag::NOTICE_RESPONSE => self.first,
            _ => false,
        };
        let bufs = &mut *self.sink.bufs;
        let translated = (wanted && frame_tag == tag::ROW_DESCRIPTION)
            .then(|| {
                self.oids
                    .translate(self.shard, frame_tag, &frame[wire::HEADER_LEN..])
            })
            .flatten();
        if let Some(description) = translated {
            bufs.to_client.extend_from_slice(&description);
        } else if wanted {
            bufs.to_client.extend_from_slice(frame);
        }
        if bufs.to_client.len() >= FLUSH_AT {
            flush_client(self.sink.client, bufs).await.map_err(|e| {
                ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Client, e.to_string())
            })?;
        }
        Ok(())
    }
}

/// Commits every leg, once all ran their statement, as `how` says.
async fn commit_legs(
    legs: &mut [Leg<'_>],
    how: &Commit,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    match how {
        Commit::TwoPhase(atomic) if legs.len() > 1 => {
            two_phase::commit_atomically(legs, atomic, on_status).await
        }
        Commit::TwoPhase(_) | Commit::OnePhase => commit_all(legs, on_status).await,
    }
}

/// Commits every leg, one after another; a failure after some committed names them, and the
/// shard whose outcome is unknown when a connection was lost (see `commit`).
async fn commit_all(legs: &mut [Leg<'_>], on_status: OnStatus<'_>) -> Result<(), ErrorReport> {
    let mut committed: Vec<String> = Vec::new();
    for index in 0..legs.len() {
        let failed = legs[index].shard;
        if let Err(failure) = commit(legs[index].conn, on_status).await {
            let rest = &mut legs[index + 1..];
            finish_all(rest, "ROLLBACK", on_status).await;
            let rolled_back: Vec<String> = rest.iter().map(|leg| leg.shard.to_owned()).collect();
            let torn = TornCommit {
                failed,
                committed: &committed,
                rolled_back: &rolled_back,
            };
            return Err(torn_commit_report(failure, torn));
        }
        committed.push(failed.to_owned());
    }
    Ok(())
}

async fn finish_all(legs: &mut [Leg<'_>], sql: &str, on_status: OnStatus<'_>) {
    for leg in legs {
        if run_simple(leg.conn, sql, on_status).await.is_err() {
            leg.conn.mark_broken();
        }
    }
}

/// Runs `sql` (a transaction's COMMIT or ROLLBACK) as a simple query and waits for the
/// backend to be idle again.
pub async fn run_simple(
    conn: &mut BackendConn,
    sql: &str,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    run_simple_tagged(conn, sql, on_status).await.map(drop)
}

/// Runs `sql` as a simple query inside the transaction `conn` is in, which it must leave open
/// (a savepoint command on a backend of a transaction spanning shards).
pub async fn run_in_transaction(
    conn: &mut BackendConn,
    sql: &str,
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    run_leaving(conn, sql, TxStatus::InTransaction, on_status)
        .await
        .map(drop)
}

/// [`run_simple`], returning the command tags (`PREPARE TRANSACTION` answers `ROLLBACK` when
/// the transaction had failed).
pub async fn run_simple_tagged(
    conn: &mut BackendConn,
    sql: &str,
    on_status: OnStatus<'_>,
) -> Result<Vec<String>, ErrorReport> {
    run_leaving(conn, sql, TxStatus::Idle, on_status).await
}

/// Runs `prelude` (hidden queries: settings, a BEGIN joining a transaction) one by one on
/// `conn`; the first error is returned.
pub(super) async fn run_prelude(
    conn: &mut BackendConn,
    prelude: &[String],
    on_status: OnStatus<'_>,
) -> Result<(), ErrorReport> {
    for sql in prelude {
        let mut out = BytesMut::new();
        query(&mut out, sql)?;
        send(conn, &out).await?;
        if let Some(report) = read_hidden_reply(conn, on_status).await?.error {
            return Err(report);
        }
    }
    Ok(())
}

/// Runs `sql` as a simple query that must leave the backend in status `leaves` (idle after
/// what ends a transaction, in it after a statement inside one); returns its command tags.
async fn run_leaving(
    conn: &mut BackendConn,
    sql: &str,
    leaves: TxStatus,
    on_status: OnStatus<'_>,
) -> Result<Vec<String>, ErrorReport> {
    let mut out = BytesMut::new();
    query(&mut out, sql)?;
    send(conn, &out).await?;
    let reply = read_reply::<tokio::io::Sink>(conn, on_status, None).await?;
    match (reply.error, reply.status) {
        (Some(report), _) => Err(report),
        (None, status) if status == leaves => Ok(reply.tags),
        (None, TxStatus::Idle) => Err(lost(conn, "the transaction ended unexpectedly")),
        (None, _) => Err(lost(conn, "the transaction did not end")),
    }
}

/// What one simple Query was answered with.
pub(super) struct Reply {
    pub(super) tags: Vec<String>,
    pub(super) error: Option<ErrorReport>,
    status: TxStatus,
}

/// Reads one hidden Query's replies up to ReadyForQuery (what it returns is not the client's).
pub(super) async fn read_hidden_reply(
    conn: &mut BackendConn,
    on_status: OnStatus<'_>,
) -> Result<Reply, ErrorReport> {
    read_reply::<tokio::io::Sink>(conn, on_status, None).await
}

/// Reads one Query's replies up to ReadyForQuery; frames other than the ones the proxy reads
/// go to `forward` (dropped when `None`: hidden statements).
async fn read_reply<C: AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    on_status: OnStatus<'_>,
    mut forward: Option<&mut Forward<'_, C>>,
) -> Result<Reply, ErrorReport> {
    let mut reply = Reply {
        tags: Vec::new(),
        error: None,
        status: TxStatus::Idle,
    };
    loop {
        let frame = next_frame(conn).await?;
        let (frame_tag, body) = (frame[0], &frame[wire::HEADER_LEN..]);
        match frame_tag {
            tag::COMMAND_COMPLETE => {
                let text = wire::command_tag(body).map_err(|e| lost(conn, &e.to_string()))?;
                reply.tags.push(text.to_owned());
            }
            tag::ERROR_RESPONSE => reply.error = Some(wire::error_report(body, Blame::Backend)),
            tag::PARAMETER_STATUS => {
                if let Ok(status) = ParameterStatus::decode(body) {
                    on_status(conn, status.name, status.value);
                }
            }
            tag::READY_FOR_QUERY => {
                let status = body.first().copied().and_then(TxStatus::from_byte);
                reply.status = status.unwrap_or(TxStatus::Failed);
                return Ok(reply);
            }
            tag::COPY_IN_RESPONSE | tag::COPY_OUT_RESPONSE => {
                return Err(lost(conn, "COPY cannot run on several shards at once"));
            }
            other => {
                if let Some(forward) = forward.as_deref_mut() {
                    forward.frame(other, &frame).await?;
                }
            }
        }
    }
}

/// The next whole frame from `conn`.
pub(super) async fn next_frame(conn: &mut BackendConn) -> Result<BytesMut, ErrorReport> {
    loop {
        let header = wire::peek_header(&conn.read_buf).map_err(|e| lost(conn, &e.to_string()))?;
        if let Some(header) = header
            && conn.read_buf.len() >= header.total_len
        {
            return Ok(conn.read_buf.split_to(header.total_len));
        }
        let (stream, buf) = conn.io_mut();
        match stream.read_buf(buf).await {
            Ok(0) => return Err(lost(conn, "server closed the connection")),
            Ok(_) => {}
            Err(e) => return Err(lost(conn, &e.to_string())),
        }
    }
}

pub(super) async fn send(conn: &mut BackendConn, bytes: &[u8]) -> Result<(), ErrorReport> {
    if let Err(e) = conn.stream_mut().write_all(bytes).await {
        return Err(lost(conn, &e.to_string()));
    }
    Ok(())
}

/// Parse, Bind, (Describe,) Execute and Sync of one statement with the client's parameters.
fn bound(
    out: &mut BytesMut,
    sql: &str,
    types: &[u32],
    rest: &[u8],
    describe: bool,
) -> Result<(), ErrorReport> {
    use postgres_protocol::message::frontend;
    let too_big = |e: std::io::Error| {
        ErrorReport::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            Blame::Client,
            e.to_string(),
        )
    };
    frontend::parse("", sql, types.iter().copied(), out).map_err(too_big)?;
    encode::bind_renamed(out, "", "", rest);
    if describe {
        frontend::describe(b'P', "", out).map_err(too_big)?;
    }
    frontend::execute("", 0, out).map_err(too_big)?;
    frontend::sync(out);
    Ok(())
}

pub(super) fn query(out: &mut BytesMut, sql: &str) -> Result<(), ErrorReport> {
    postgres_protocol::message::frontend::query(sql, out).map_err(|e| {
        ErrorReport::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            Blame::Client,
            e.to_string(),
        )
    })
}

fn lost(conn: &mut BackendConn, why: &str) -> ErrorReport {
    conn.mark_broken();
    ErrorReport::error(
        sqlstate::CONNECTION_FAILURE,
        Blame::Backend,
        format!("server connection lost ({}): {why}", conn.addr()),
    )
}

/// Says where an error happened and what became of the other shards.
fn with_shard(
    report: ErrorReport,
    shard: &str,
    done: &[Leg<'_>],
    wrapping: Wrapping,
) -> ErrorReport {
    let others: Vec<&str> = done.iter().map(|leg| leg.shard).collect();
    let fate = match wrapping {
        Wrapping::Transaction => "nothing was committed on any shard".to_owned(),
        Wrapping::InTransaction => "the transaction is aborted on every shard".to_owned(),
        Wrapping::Autocommit if others.is_empty() => "no shard ran it".to_owned(),
        Wrapping::Autocommit => format!("it already ran on: [{}]", others.join(", ")),
    };
    let own = report.detail.clone();
    let detail = match own {
        Some(own) => format!("{own}\non shard {shard}; {fate}"),
        None => format!("on shard {shard}; {fate}"),
    };
    report.with_detail(detail)
}

/// One tag per statement, counts summed over shards: `INSERT 0 5`, `UPDATE 3`, `CREATE TABLE`.
pub fn combine_tags(per_shard: &[Vec<String>]) -> Vec<String> {
    let Some(first) = per_shard.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let tags = per_shard.iter().filter_map(|tags| tags.get(i));
            let total: Option<u64> = tags.map(|t| count_of(t)).sum();
            match (total, first[i].rsplit_once(' ')) {
                (Some(total), Some((head, _))) => format!("{head} {total}"),
                _ => first[i].clone(),
            }
        })
        .collect()
}

/// The row count at the end of a tag (`None` for tags without one, like `CREATE TABLE`).
pub(super) fn count_of(tag: &str) -> Option<u64> {
    let counted = [
        "INSERT", "UPDATE", "DELETE", "SELECT", "MERGE", "MOVE", "FETCH", "COPY",
    ];
    let verb = tag.split(' ').next()?;
    if !counted.contains(&verb) {
        return None;
    }
    tag.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_sum_their_counts() {
        let tags = vec![
            vec!["INSERT 0 2".to_owned(), "CREATE TABLE".to_owned()],
            vec!["INSERT 0 3".to_owned(), "CREATE TABLE".to_owned()],
        ];
        assert_eq!(combine_tags(&tags), ["INSERT 0 5", "CREATE TABLE"]);
        let updates = vec![vec!["UPDATE 1".to_owned()], vec!["UPDATE 0".to_owned()]];
        assert_eq!(combine_tags(&updates), ["UPDATE 1"]);
        assert_eq!(combine_tags(&[]), Vec::<String>::new());
    }
}
