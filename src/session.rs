//! One client's session: the loop that connects a client to backends under transaction (or
//! session) pooling.
//!
//! The session owns what must outlive any one backend: the client's settings, its prepared
//! statements, its transaction status. It takes a backend from the pool when a transaction
//! starts, forwards frames both ways through [`execute::pump`], tracks
//! every reply with `replies::Replies`, and gives the backend back when the transaction ends.
//! It never decodes rows, and it never hands a backend back in an unknown state: anything
//! doubtful marks the connection broken so the pool closes it.

mod batch;
mod broadcast;
mod client;
mod copy_in;
mod extended;
mod fence;
mod implicit;
mod key_move;
mod limits;
mod local;
mod meter;
mod per_statement;
mod prepared;
mod rate_limit;
mod replica;
mod replies;
mod routing;
mod savepoints;
mod scatter;
mod server;
mod settings;
mod simple;
mod spanning;
mod sql_prepared;
mod start;
pub mod statements;
mod timeouts;
mod torn;
mod transaction;
mod two_phase;
mod wait;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::backend::{BackendConn, CancelSlot};
use crate::clients::{ClientInfo, ClientState};
use crate::config::PoolMode;
use crate::config::ShardId;
use crate::error::{Blame, Cause, ErrorReport, Unsupported, sqlstate};
use crate::execute::{self, Buffers, PumpError, PumpEvent};
use crate::metrics::{Metrics, Ran};
use crate::pool::{Checkout, Liveness};
use crate::router::Hint;
use crate::topology::{Database, Topology};
use crate::wire::{BackendKeyData, TxStatus, encode};

use prepared::PreparedStatements;
use replies::{Expect, Replies, Undo};
use settings::ClientSettings;
use sql_prepared::SqlStatements;
use statements::PinReason;

pub use limits::{Phase, SessionLimits};
pub use rate_limit::{UserRate, UserRates};
pub use timeouts::StatementTimer;

/// Everything a session needs from the proxy around it.
pub struct SessionEnv {
    /// The database the client connected to, at the topology epoch the session last saw.
    pub database: Arc<Database>,
    /// Newer topologies (shard-map reloads), taken up between transactions.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// When backends go back to the pool.
    pub mode: PoolMode,
    /// Largest client message accepted.
    pub max_message_bytes: usize,
    /// Bytes one cross-shard merge may buffer.
    pub max_merge_bytes: usize,
    /// Backend-side prepared statements per connection before it is recycled.
    pub max_prepared_statements: usize,
    /// The cancel key this client was given.
    pub cancel_key: BackendKeyData,
    /// Where to publish the backend in use, for cancel requests.
    pub cancel_slot: CancelSlot,
    /// This client's entry in the registry (`SHOW CLIENTS`, client gauges).
    pub client: Arc<ClientInfo>,
    /// The proxy's metrics.
    pub metrics: Arc<Metrics>,
    /// Queries slower than this are logged.
    pub slow_statement: Option<std::time::Duration>,
    /// Timeouts, the user's rate limit and the proxy's shutdown phase (see `limits`).
    pub limits: SessionLimits,
}

/// Runs a logged-in client until it leaves. `client_in` holds bytes the client pipelined after
/// its startup packet; `startup` are its startup parameters other than user and database.
pub fn run<C>(
    client: C,
    client_in: BytesMut,
    startup: Vec<(String, String)>,
    env: SessionEnv,
) -> impl Future<Output = ()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    // Built here, not in the future: an async fn keeps its arguments' space for as long as it
    // runs, and the session's state would be held twice.
    run_session(Box::new(Session::new(client, client_in, env)), startup)
}

async fn run_session<C>(mut session: Box<Session<C>>, startup: Vec<(String, String)>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    // Start and finish run once each, boxed: the future that lives as long as the client
    // holds the wait between transactions (see `serve`).
    let ending = if let Err(report) = Box::pin(session.start(startup)).await {
        Ending::Fatal(report)
    } else {
        session.serve().await
    };
    Box::pin(session.finish(ending)).await;
}

/// Why a session ended.
enum Ending {
    /// The client sent Terminate or closed its socket.
    ClientLeft,
    /// The session must end with this error sent to the client.
    Fatal(ErrorReport),
}

struct Session<C> {
    client: C,
    bufs: Buffers,
    env: SessionEnv,
    backend: Option<Checkout>,
    /// The shard of the backend held.
    held_shard: Option<ShardId>,
    /// Whether the backend held is its shard's primary or a replica (a single read).
    held_role: crate::topology::Role,
    /// The client's `shardgate.shard` / `shardgate.shard_key` setting.
    hint: Option<Hint>,
    /// The hint was set with SET LOCAL: it ends with the transaction.
    hint_is_local: bool,
    /// A statement that may change the schema ran since the session was last idle: the
    /// federation database is built again when it is (see `control::federation`).
    schema_changed: bool,
    replies: Replies,
    statements: PreparedStatements,
    sql_statements: SqlStatements,
    settings: ClientSettings,
    /// Status of the last ReadyForQuery the client saw.
    client_status: TxStatus,
    /// Status of the last ReadyForQuery the backend sent (hidden ones included).
    backend_status: TxStatus,
    /// State that keeps the client on its backend until it disconnects.
    pin: Option<PinReason>,
    /// A hidden statement is failing the backend's transaction on purpose; its error is not
    /// a replay failure.
    aborting_transaction: bool,
    /// A failed settings replay, reported to the client at startup.
    replay_error: Option<Box<ErrorReport>>,
    /// Shards (by name, stable across reloads) this session wrote to, with when its last
    /// write there completed (`None`: still in flight), so its reads always see its writes.
    written: Vec<(String, Option<std::time::Instant>)>,
    /// Bytes of a CopyData frame still to stream from client to backend.
    copy_data_remaining: usize,
    /// Bytes of a DataRow or CopyData frame still to stream from backend to client.
    row_bytes_remaining: usize,
    /// A description in the backend's read buffer names these oids of this shard, which the
    /// proxy looks up before sending it (see `control::catalog_oids`).
    oids_to_resolve: Option<Box<(String, crate::control::catalog_oids::Unknown)>>,
    /// How many more times the cross-shard read being run may stop to look up oids its
    /// description names (see `scatter`).
    description_lookups_left: usize,
    /// A simple Query read sent to a replica that has not answered it yet, with its shard:
    /// sent again elsewhere if the replica stops answering (see `replica`).
    replica_query: Option<(ShardId, bytes::Bytes)>,
    /// Times queries and transactions for the metrics.
    meter: meter::Meter,
    /// Where the client's transaction stands (see `transaction`).
    txn: transaction::Transaction,
    /// The extended-protocol batch in flight (see `batch`).
    batch: batch::Batch,
    /// Marked with the `RESHARD` fence while a transaction runs (see `fence`).
    fence: crate::topology::fence::Registration,
    /// How many times this proxy's lease had lapsed when `fence` was marked (see `fence`).
    entered_lapses: u64,
    terminated: bool,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    fn new(client: C, client_in: BytesMut, env: SessionEnv) -> Self {
        let meter = meter::Meter::new(env.slow_statement.is_some());
        let fence = env.database.fence.register();
        Self {
            client,
            bufs: Buffers::with_client_input(client_in),
            env,
            backend: None,
            held_shard: None,
            held_role: crate::topology::Role::Primary,
            hint: None,
            hint_is_local: false,
            schema_changed: false,
            replies: Replies::default(),
            statements: PreparedStatements::default(),
            sql_statements: SqlStatements::default(),
            settings: ClientSettings::default(),
            client_status: TxStatus::Idle,
            backend_status: TxStatus::Idle,
            pin: None,
            aborting_transaction: false,
            replay_error: None,
            written: Vec::new(),
            copy_data_remaining: 0,
            row_bytes_remaining: 0,
            oids_to_resolve: None,
            description_lookups_left: 0,
            replica_query: None,
            meter,
            txn: transaction::Transaction::default(),
            batch: batch::Batch::default(),
            fence,
            entered_lapses: 0,
            terminated: false,
        }
    }

    /// Serves the client until the session ends. Between transactions (no backend held) the
    /// session waits in a small future; everything it does with a backend runs in a boxed
    /// one, allocated when the client sends something: an idle client costs the session's
    /// state, not the size of its largest path.
    async fn serve(&mut self) -> Ending {
        loop {
            if let Err(ending) = Box::pin(self.serve_while_busy()).await {
                return ending;
            }
            self.replies.release_when_empty();
            let rest = self.rest();
            let event = tokio::select! {
                biased;
                ending = self.env.limits.interrupt(rest) => return ending,
                event = execute::pump(&mut self.client, None, &mut self.bufs, true) => event,
            };
            match event {
                Ok(PumpEvent::ClientData) => {}
                Ok(PumpEvent::ClientClosed) | Err(PumpError::Client(_)) => {
                    return Ending::ClientLeft;
                }
                Ok(PumpEvent::BackendData | PumpEvent::BackendClosed)
                | Err(PumpError::Backend(_)) => {
                    return Ending::Fatal(internal("a backend event with no backend held".into()));
                }
            }
        }
    }

    /// Handles what the client sent and the backend's replies until no backend is held and
    /// what the client sent is handled (`Ok`), or the session ends (`Err`).
    async fn serve_while_busy(&mut self) -> Result<(), Ending> {
        // As after any event: a failed transaction's parked shards are rolled back.
        self.roll_back_parked_if_failed().await;
        loop {
            // Pipelined bytes may already be buffered (after startup, or behind a checkout).
            self.on_client_data().await?;
            if self.terminated {
                return Err(Ending::ClientLeft);
            }
            // A statement the proxy answered itself (a PREPARE the backend already had)
            // leaves no reply to wait for: the backend goes back now, not at the next event.
            self.release_if_done();
            // Before the task may sleep: what the client's messages and the backend's replies
            // changed (a cross-shard read answered within `on_client_data` included).
            self.publish_activity();
            self.track_statement_timer();
            if self.backend.is_none() {
                return Ok(());
            }
            let rest = self.rest();
            let (backend, liveness) = with_liveness(self.backend.as_mut());
            let event = tokio::select! {
                biased;
                ending = self.env.limits.interrupt(rest) => return Err(ending),
                // After the pump: polled (~90 ns to register) only when no socket is ready,
                // i.e. right before the task sleeps anyway; ~5 ns otherwise (measured, release).
                event = execute::pump(&mut self.client, backend, &mut self.bufs, true) => Some(event),
                () = Liveness::stopped_if_held(liveness) => None,
            };
            let result = match event {
                None => self.server_stopped_answering().await,
                Some(Ok(PumpEvent::ClientData)) => Ok(()),
                Some(Ok(PumpEvent::BackendData)) => {
                    self.replica_query = None; // Answered: no longer safe to send again.
                    self.on_backend_replies().await
                }
                Some(Ok(PumpEvent::ClientClosed) | Err(PumpError::Client(_))) => {
                    Err(Ending::ClientLeft)
                }
                Some(Ok(PumpEvent::BackendClosed)) => {
                    Err(self.backend_lost("server closed the connection", None))
                }
                Some(Err(PumpError::Backend(e))) => {
                    Err(self.backend_lost(&e.to_string(), Some(Cause::new(e))))
                }
            };
            result?;
            self.roll_back_parked_if_failed().await;
            self.release_if_done();
        }
    }

    /// Tells the registry and the byte counters what the session did since the last call.
    fn publish_activity(&mut self) {
        let state = if self.backend.is_some() || !self.txn.phase.parked().is_empty() {
            ClientState::Active
        } else {
            ClientState::Idle
        };
        self.env.client.set_state(state);
        let (received, sent) = self.bufs.take_byte_counts();
        if received > 0 {
            self.env.metrics.bytes_received.inc_by(received);
        }
        if sent > 0 {
            self.env.metrics.bytes_sent.inc_by(sent);
        }
    }

    /// The client is being sent ReadyForQuery with `status`: the query (and maybe the
    /// transaction) it ends is measured.
    fn note_ready(&mut self, status: TxStatus) {
        if status == TxStatus::Idle {
            // No transaction: the portals the proxy kept for the client ended with it.
            self.end_left_portals();
            if std::mem::take(&mut self.schema_changed) {
                self.env.database.federation.schema_changed();
                self.env.database.catalog_oids.schema_changed();
            }
        }
        let held = (self.backend.is_some())
            .then_some(self.held_shard)
            .flatten()
            .map(|shard| Ran::Shard(shard, self.held_role));
        let (database, slow) = (&self.env.database, self.env.slow_statement);
        self.meter.ready(status, held, database, slow);
    }

    /// Counts an error the client is sent.
    fn note_error(&self, sqlstate: crate::error::SqlState) {
        self.env.metrics.error(sqlstate);
    }

    /// Makes sure the session holds a backend of shard `needed` (`None`: the one it holds,
    /// else the default shard's), brought to the client's settings and inside the client's
    /// deferred BEGIN.
    async fn ensure_backend(
        &mut self,
        needed: Option<ShardId>,
    ) -> Result<&mut BackendConn, ErrorReport> {
        if let (Some(held), Some(needed)) = (self.held_shard, needed)
            && held != needed
        {
            self.leave_shard(held, needed).await?;
        }
        if self.backend.is_none() {
            let shard = needed.unwrap_or(self.env.database.router.map().default_shard);
            let mut conn = match self.checkout_primary(shard).await {
                Ok(conn) => conn,
                Err(report) => {
                    self.restore_after_failed_switch();
                    return Err(report);
                }
            };
            let sync = self.settings.sync_sql(&mut conn);
            self.use_backend(shard, conn, TxStatus::Idle);
            let synced = match sync {
                Some(sql) => self.run_hidden(&sql).await,
                None => Ok(()),
            };
            if let Err(report) = synced.and(self.join_current_transaction().await) {
                self.restore_after_failed_switch();
                return Err(report);
            }
        }
        if self.txn.phase.is_deferred() {
            self.start_pending_transaction().await?;
        }
        self.backend_in_use()
    }

    /// The backend in use, for a step that follows the one that attached it. Its absence would
    /// be a proxy bug: the client gets an error (XX000) and the proxy goes on serving.
    fn backend_in_use(&mut self) -> Result<&mut BackendConn, ErrorReport> {
        let missing = || internal("shardgate lost track of the backend in use (a bug)".into());
        self.backend.as_deref_mut().ok_or_else(missing)
    }

    /// Runs the client's deferred BEGIN on the backend held, which must have nothing unsynced
    /// in flight (a BEGIN cannot be slipped into the middle of an extended-protocol batch).
    async fn start_pending_transaction(&mut self) -> Result<(), ErrorReport> {
        if !self.replies.synced() {
            return Err(self.unsupported(Unsupported::FirstStatementSharesBatch));
        }
        if let Some(begin) = self.txn.take_deferred() {
            self.run_hidden(&begin).await?;
            self.txn.phase = transaction::Phase::started(begin);
        }
        Ok(())
    }

    /// Checks out a backend of `shard`'s primary (while watching the client, see `wait`); the
    /// caller prepares it and makes it the one in use (`use_backend`).
    async fn checkout_primary(&mut self, shard: ShardId) -> Result<Checkout, ErrorReport> {
        let database = self.env.database.clone();
        let pool = database.primary(shard);
        let checkout = async { pool.checkout().await.map_err(|e| e.report()) };
        self.watched(Box::pin(checkout)).await
    }

    /// Records that a statement that `writes`, about to run on `shard` (`None`: the backend
    /// held, else the default shard), may write there, so later reads of that shard see it.
    fn note_writes(&mut self, shard: Option<ShardId>, writes: bool) {
        if writes {
            let default = self.env.database.router.map().default_shard;
            self.note_written(shard.or(self.held_shard).unwrap_or(default));
        }
    }

    /// Records that the session may be writing to `shard` now.
    fn note_written(&mut self, shard: ShardId) {
        let name = &self.env.database.router.map().shard(shard).name;
        match self.written.iter_mut().find(|(w, _)| w == name) {
            Some((_, done)) => *done = None,
            None => self.written.push((name.clone(), None)),
        }
    }

    /// The session's writes in flight are done (its transaction ended), and about to be
    /// acknowledged: causal reads of those shards by anyone must reflect them from now on.
    fn writes_completed(&mut self) {
        let now = std::time::Instant::now();
        let database = &self.env.database;
        for (name, done) in self.written.iter_mut().filter(|(_, done)| done.is_none()) {
            *done = Some(now);
            if let Some(shard) = database.router.map().shard_by_name(name) {
                database.write_acknowledged(shard.id);
            }
        }
    }

    /// How fresh this session's reads of `shard` must be to see its own writes.
    fn freshness(&self, shard: ShardId) -> crate::topology::Freshness {
        use crate::topology::Freshness;
        let name = &self.env.database.router.map().shard(shard).name;
        match self.written.iter().find(|(w, _)| w == name) {
            None => Freshness::Any,
            Some((_, None)) => Freshness::Primary,
            Some((_, Some(done))) => Freshness::After(*done),
        }
    }

    /// Runs SQL the client did not send (settings replay) and waits for it to finish: the
    /// client's own messages must never run on a backend whose settings failed to apply.
    async fn run_hidden(&mut self, sql: &str) -> Result<(), ErrorReport> {
        postgres_protocol::message::frontend::query(sql, &mut self.bufs.to_backend)
            .map_err(|e| internal(e.to_string()))?;
        // A simple Query drops the unnamed statement (exec_simple_query): the client's is
        // parsed again if it binds it later (an extended-protocol COMMIT that records the
        // decision of an atomic commit first, a BEGIN sent into a batch).
        self.batch.unnamed_on_backend = false;
        self.replies.push(Expect::hidden_query());
        let outcome = self.wait_for_replies().await;
        let failure = (outcome.err()).or_else(|| self.replay_error.take().map(|report| *report));
        match failure {
            None => Ok(()),
            Some(report) => {
                if let Some(conn) = self.backend.as_deref_mut() {
                    conn.mark_broken();
                }
                self.replies = Replies::default();
                self.release();
                Err(report)
            }
        }
    }

    /// Takes up a reloaded shard map. Only between transactions with no backend held, so a
    /// transaction finishes on the map it started with and shard ids never mix epochs.
    fn refresh_topology(&mut self) {
        if self.backend.is_some() || !self.env.topology.has_changed().unwrap_or(false) {
            return;
        }
        let topology = self.env.topology.borrow_and_update().clone();
        if let Some(database) = topology.database(&self.env.database.name) {
            tracing::debug!(epoch = topology.epoch, "session takes up the new shard map");
            self.env.database = database;
        }
    }

    /// Pumps the backend only (the client waits) until every queued reply has arrived.
    async fn wait_for_replies(&mut self) -> Result<(), ErrorReport> {
        while !self.replies.is_empty() {
            let (backend, liveness) = with_liveness(self.backend.as_mut());
            let event = tokio::select! {
                biased;
                event = execute::pump(&mut self.client, backend, &mut self.bufs, false) => Some(event),
                () = Liveness::stopped_if_held(liveness) => None,
            };
            let Some(event) = event else {
                return Err(self.abandon_backend());
            };
            let lost = || {
                ErrorReport::error(
                    sqlstate::CONNECTION_FAILURE,
                    Blame::Backend,
                    "server connection lost",
                )
            };
            match event {
                Ok(PumpEvent::BackendData) => {
                    self.on_backend_replies().await.map_err(|_| lost())?;
                }
                _ => return Err(lost()),
            }
        }
        Ok(())
    }

    /// True when the backend is idle with nothing in flight: safe to hand to another client.
    fn backend_is_clean(&self) -> bool {
        self.replies.is_empty()
            && !self.replies.skipping_to_sync()
            && self.backend_status == TxStatus::Idle
            && self.bufs.to_backend.is_empty()
            && self.pin.is_none()
    }

    /// Transaction pooling: give the backend back as soon as its transaction is over.
    fn release_if_done(&mut self) {
        self.leave_fence_if_quiet();
        if self.env.mode == PoolMode::Transaction
            && self.backend.is_some()
            && self.backend_is_clean()
        {
            self.release();
        }
    }

    fn release(&mut self) {
        let Some(mut conn) = self.backend.take() else {
            return;
        };
        self.held_shard = None;
        self.held_role = crate::topology::Role::Primary;
        self.replica_query = None;
        self.env.cancel_slot.set(None);
        Self::drop_parked(self.txn.let_go_of_parked());
        let leftover = !conn.read_buf.is_empty();
        if leftover
            || !self.backend_is_clean()
            || conn.prepared.len() > self.env.max_prepared_statements
        {
            conn.mark_broken();
        }
        self.replies.backend_left();
    }

    fn apply_undo(&mut self, undo: Undo) {
        if let Some(name) = undo.client_name {
            self.statements.remove(&name);
        }
        if let Some(name) = undo.sql_name {
            self.sql_statements.remove(&name);
        }
        if let (Some(name), Some(conn)) = (undo.backend_name, self.backend.as_deref_mut()) {
            conn.prepared.remove(&name);
        }
    }

    /// The server of the backend held stopped answering its health checks: whatever waits
    /// on it is given up and the connection closed. A replica read the client has seen
    /// nothing of runs again elsewhere; otherwise the session ends with 08006 (its
    /// statement's outcome, and its transaction's, are unknown).
    async fn server_stopped_answering(&mut self) -> Result<(), Ending> {
        let report = self.abandon_backend();
        if let Some((shard, query)) = self.replica_query.take()
            && self.replies.only_an_unanswered_query()
        {
            return self.rerun_replica_query(shard, query).await;
        }
        Err(Ending::Fatal(report.into_fatal()))
    }

    /// Marks the backend held as broken because its server stopped answering, and says so.
    fn abandon_backend(&mut self) -> ErrorReport {
        let Some(checkout) = self.backend.as_mut() else {
            return internal("no backend to abandon".into());
        };
        checkout.mark_broken();
        let (addr, liveness) = (checkout.addr(), checkout.liveness());
        tracing::warn!(
            endpoint = &**liveness.endpoint(),
            backend = addr,
            "abandoning a statement: its server stopped answering"
        );
        liveness.abandoned(addr)
    }

    fn backend_lost(&mut self, why: &str, cause: Option<Cause>) -> Ending {
        if let Some(conn) = self.backend.as_deref_mut() {
            conn.mark_broken();
        }
        if let Some(report) = self.commit_lost_report(why) {
            return Ending::Fatal(report);
        }
        if let Some(conn) = self.backend.as_deref() {
            tracing::warn!(
                backend = conn.addr(),
                why,
                "backend connection lost mid-session"
            );
        }
        let message = format!("server connection lost: {why}");
        let report = ErrorReport::fatal(sqlstate::CONNECTION_FAILURE, Blame::Backend, message);
        Ending::Fatal(ErrorReport { cause, ..report })
    }

    async fn finish(&mut self, ending: Ending) {
        if let Ending::Fatal(report) = &ending {
            self.note_error(report.code);
            encode::error_response(&mut self.bufs.to_client, &report.clone().into_fatal());
            let _ = execute::flush_client(&mut self.client, &mut self.bufs).await;
        }
        if !self.backend_is_clean() {
            // A transaction or pinned state would leak to the next client: close instead.
            if let Some(conn) = self.backend.as_deref_mut() {
                conn.mark_broken();
            }
        }
        self.release();
    }
}

/// A checkout's connection and its server's liveness, borrowed together.
fn with_liveness(held: Option<&mut Checkout>) -> (Option<&mut BackendConn>, Option<&mut Liveness>) {
    match held.map(Checkout::with_liveness) {
        Some((conn, liveness)) => (Some(conn), Some(liveness)),
        None => (None, None),
    }
}

/// Runs a rare, large sub-future from the heap: a cross-shard read, a statement split over
/// shards, COPY into several shards, a directory look-up, the end of a transaction across
/// shards. The session's own future is allocated for every
/// client for its whole life and is as big as its biggest path: boxing the rare paths keeps
/// an idle client small, for one allocation per statement that takes them.
fn cold<F: std::future::Future>(work: F) -> std::pin::Pin<Box<F>> {
    Box::pin(work)
}

fn internal(message: String) -> ErrorReport {
    ErrorReport::error(sqlstate::INTERNAL_ERROR, Blame::Proxy, message)
}
