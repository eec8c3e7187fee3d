//! Pools of backend connections, one bb8 pool per backend endpoint.
//!
//! bb8 owns sizing, idle timeouts and lifetimes; [`BackendManager`] teaches it to open our own
//! raw-protocol connections and to drop the ones the session marked broken. Checkout does not
//! cost a round trip: bb8's `test_on_check_out` is off, and a single non-blocking read tells us
//! whether the server hung up while the connection sat idle. This module never reads or writes
//! protocol messages on a checked-out connection: that is the execute stage's job.

mod health;
mod liveness;
mod manager;
mod servers;
mod wal;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::metrics::EndpointMeters;

use crate::backend::{BackendConn, BackendError};
use crate::config::{BackendUri, PoolSettings};
use crate::error::{Blame, ErrorReport, sqlstate};

pub use health::{Observed, ServerHealth, Verdict};
pub use liveness::{FirstStopped, Liveness};
pub use manager::{BackendManager, LastConnectError, PooledBackend};
pub use servers::{ServerRow, Servers};
pub use wal::{Probe, WalClock};

/// A backend connection checked out of its pool; returned to it on drop.
pub struct Checkout {
    // Field order is drop order: the connection goes back before the next waiter is let in.
    conn: bb8::PooledConnection<'static, BackendManager>,
    _turn: OwnedSemaphorePermit,
    /// Wakes whoever waits on this connection when its server stops answering.
    liveness: Liveness,
}

impl Checkout {
    /// The connection and its server's liveness at once, so one `select!` can wait on the
    /// socket and on the health check together.
    pub fn with_liveness(&mut self) -> (&mut BackendConn, &mut Liveness) {
        (&mut self.conn, &mut self.liveness)
    }

    /// Its server's liveness, for waits that outlive this borrow (a fan-out leg).
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }
}

impl Deref for Checkout {
    type Target = BackendConn;

    fn deref(&self) -> &BackendConn {
        &self.conn
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut BackendConn {
        &mut self.conn
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.conn.entry.set_in_use(false);
    }
}

/// Why no backend connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every connection stayed busy for the whole checkout timeout.
    #[error("no connection to {endpoint} became free within {waited:?} (pool size {size})")]
    Exhausted {
        /// Shard and role, e.g. `s0 primary`.
        endpoint: Arc<str>,
        /// How long the client waited.
        waited: Duration,
        /// Configured pool size.
        size: u32,
    },
    /// The server's health check got no reply in time: it is up (maybe) but not answering,
    /// so nothing is sent there until a check gets one.
    #[error("{endpoint} stopped answering (no reply to its health check in time)")]
    StoppedAnswering {
        /// Shard and role.
        endpoint: Arc<str>,
    },
    /// The backend could not be reached or refused us.
    #[error("{endpoint} is unavailable: {source}")]
    Unavailable {
        /// Shard and role.
        endpoint: Arc<str>,
        /// Last connect error.
        #[source]
        source: Arc<BackendError>,
    },
}

impl PoolError {
    /// The SQLSTATE of the server's refusal, when the server refused the connection.
    pub fn refused_with(&self) -> Option<&str> {
        match self {
            PoolError::Unavailable { source, .. } => match &**source {
                BackendError::Refused { code, .. } => Some(code),
                _ => None,
            },
            _ => None,
        }
    }

    /// What the client is told: 53300 when we are saturated, 08006 when the shard is down.
    /// Nothing ran, so the statement is safe to retry; the pool's error is its cause.
    pub fn report(self) -> ErrorReport {
        let (code, blame) = match self {
            PoolError::Exhausted { .. } => (sqlstate::TOO_MANY_CONNECTIONS, Blame::Proxy),
            PoolError::Unavailable { .. } | PoolError::StoppedAnswering { .. } => {
                (sqlstate::CONNECTION_FAILURE, Blame::Backend)
            }
        };
        let message = self.to_string();
        ErrorReport::error(code, blame, message)
            .retry_safe()
            .caused_by(self)
    }
}

/// How a pool treats an endpoint that cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Keep trying until the checkout timeout (a primary: there is nowhere else to go).
    Retry,
    /// Fail at the first connect error and stay out of use for [`BREAKER_OPEN`] (a replica:
    /// the caller has the primary or another replica, so a dead one costs clients nothing).
    FailFast,
}

/// How long a fail-fast endpoint stays out of use after a connect failure before the next
/// checkout tries it again.
pub const BREAKER_OPEN: Duration = Duration::from_secs(2);

/// How often a checkout waiting for a new connection to a primary looks at its breaker.
const BREAKER_POLL: Duration = Duration::from_millis(50);

/// The pool of one backend endpoint (a shard's primary or one of its replicas).
#[derive(Clone)]
pub struct EndpointPool {
    pool: bb8::Pool<BackendManager>,
    /// One permit per connection. bb8 lets a newcomer take a freed connection ahead of a
    /// client that has been waiting; tokio's semaphore serves waiters in arrival order.
    turns: Arc<Semaphore>,
    endpoint: Arc<str>,
    last_error: LastConnectError,
    checkout_timeout: Duration,
    size: u32,
    on_failure: OnFailure,
    /// When a connection in use failed (fail-fast pools): the breaker opens as after a
    /// connect failure.
    lost_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// What the control plane last saw of this server.
    health: Arc<ServerHealth>,
    /// Its open connections, for `SHOW SERVERS`.
    servers: Arc<Servers>,
    /// Sessions waiting for a connection now.
    waiting: Arc<AtomicUsize>,
    /// True while the admin console has the pool paused: checkouts wait until it resumes.
    paused: PauseSwitch,
    meters: EndpointMeters,
}

/// A pool's pause state, shared with the pool that replaces it on a reload.
pub type PauseSwitch = Arc<watch::Sender<bool>>;

/// A pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Checked out by sessions.
    pub in_use: usize,
    /// Open and idle in the pool.
    pub idle: usize,
    /// Sessions waiting for one.
    pub waiting: usize,
    /// Most connections the pool opens.
    pub size: u32,
}

impl EndpointPool {
    /// Builds the pool without connecting: the first checkout opens the first connection, so a
    /// shard that is down at start-up does not stop the proxy from serving the others.
    pub fn new(
        endpoint: impl Into<Arc<str>>,
        uri: BackendUri,
        settings: &PoolSettings,
        on_failure: OnFailure,
        meters: EndpointMeters,
        paused: Option<PauseSwitch>,
    ) -> Self {
        let last_error = LastConnectError::default();
        let servers = Arc::new(Servers::default());
        let manager = BackendManager::new(
            uri,
            settings.connect_timeout,
            last_error.clone(),
            servers.clone(),
        );
        let pool = bb8::Pool::builder()
            .max_size(settings.size)
            .min_idle(Some(settings.min_idle).filter(|&n| n > 0))
            .test_on_check_out(false)
            // Most recently used first: a warm server process (caches, prepared statements)
            // serves the next transaction, and surplus connections age out idle.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .connection_timeout(settings.checkout_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            .retry_connection(on_failure == OnFailure::Retry)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(manager);
        Self {
            pool,
            turns: Arc::new(Semaphore::new(settings.size as usize)),
            endpoint: endpoint.into(),
            last_error,
            checkout_timeout: settings.checkout_timeout,
            size: settings.size,
            on_failure,
            lost_at: Arc::default(),
            health: Arc::default(),
            servers,
            waiting: Arc::default(),
            paused: paused.unwrap_or_default(),
            meters,
        }
    }

    /// Connections in use, idle and waited for now.
    pub fn stats(&self) -> PoolStats {
        let state = self.pool.state();
        let idle = state.idle_connections as usize;
        PoolStats {
            in_use: (state.connections as usize).saturating_sub(idle),
            idle,
            waiting: self.waiting.load(Ordering::Relaxed),
            size: self.size,
        }
    }

    /// The pool's open connections.
    pub fn servers(&self) -> Vec<ServerRow> {
        self.servers.rows()
    }

    /// Pauses (`true`) or resumes the pool. While paused, checkouts wait (without their usual
    /// timeout) instead of taking a connection; connections in use are not touched.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Whether the pool is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// The pool's pause switch, for the pool that replaces it on a reload: pausing or resuming
    /// the new one reaches sessions still waiting on this one.
    pub fn pause_switch(&self) -> PauseSwitch {
        self.paused.clone()
    }

    /// Waits while the pool is paused.
    async fn wait_while_paused(&self) {
        let mut paused = self.paused.subscribe();
        if !*paused.borrow_and_update() {
            return;
        }
        let _waiting = Waiting::start(&self.waiting);
        let _ = paused.wait_for(|p| !*p).await;
    }

    /// Shard and role, e.g. `app/s0 replica 1`, for messages.
    pub fn endpoint(&self) -> &Arc<str> {
        &self.endpoint
    }

    /// Whether a fail-fast endpoint failed recently and is being kept out of use (its
    /// breaker is open). Retrying pools are never skipped.
    pub fn is_down(&self) -> bool {
        let lost = *self.lost_at.lock().unwrap_or_else(|e| e.into_inner());
        let lost_recently = lost.is_some_and(|at| at.elapsed() < BREAKER_OPEN);
        self.on_failure == OnFailure::FailFast
            && (lost_recently
                || self.last_error.recent(BREAKER_OPEN).is_some()
                || !self.health.serves_reads())
    }

    /// A primary's circuit breaker: open while our own connection attempts failed recently
    /// and the control plane's last health check could not reach the server either. Its
    /// clients then get 08006 at once instead of each waiting out the checkout timeout; the
    /// health check is the probe that closes it again (within `replicas.check_interval` of
    /// the server coming back). Returns the connect error clients are told. A primary whose
    /// check got no reply at all is refused at once by [`checkout`](Self::checkout), connect
    /// errors or not.
    fn primary_breaker_open(&self) -> Option<Arc<BackendError>> {
        if self.on_failure != OnFailure::Retry {
            return None; // Replicas have their own, shorter breaker (`is_down`).
        }
        let error = self
            .last_error
            .recent(self.checkout_timeout.max(BREAKER_OPEN))?;
        let unreachable = (self.health.last())
            .is_some_and(|check| matches!(check.verdict, Verdict::Unreachable(_)));
        unreachable.then_some(error)
    }

    /// Where the control plane records what it sees of this server.
    pub fn health(&self) -> &Arc<ServerHealth> {
        &self.health
    }

    /// Its metric handles: reads it served, causal waits before them.
    pub fn meters(&self) -> &EndpointMeters {
        &self.meters
    }

    /// A connection of this endpoint failed while in use: keep a fail-fast endpoint out of
    /// use for a while, as after a connect failure.
    pub fn note_lost(&self) {
        *self.lost_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Takes a connection that is believed healthy, waiting up to the checkout timeout. Waiting
    /// clients are served in arrival order.
    pub async fn checkout(&self) -> Result<Checkout, PoolError> {
        if let Some(error) = self.primary_breaker_open() {
            return Err(self.unavailable(error));
        }
        let liveness = self.health.liveness(self.endpoint.clone());
        if liveness.is_stopped() {
            return Err(self.stopped_answering());
        }
        let began = Instant::now();
        // A pause that comes while this session queues for a turn holds it too.
        let turn = loop {
            self.wait_while_paused().await;
            let turn = match self.turns.clone().try_acquire_owned() {
                Ok(turn) => turn,
                Err(_) => self.wait_for_turn().await?,
            };
            if !self.is_paused() {
                break turn;
            }
        };
        let checkout = self.checkout_with(turn, liveness).await;
        self.meters.checkout_waited(began.elapsed());
        checkout
    }

    async fn checkout_with(
        &self,
        turn: OwnedSemaphorePermit,
        mut liveness: Liveness,
    ) -> Result<Checkout, PoolError> {
        loop {
            // bb8 bounds this wait by the checkout timeout too; with a turn held it only ever
            // waits for a new connection to open, which a server that stopped answering never
            // finishes.
            // Biased: a connection bb8 has at hand is taken without arming the other wait.
            let got = tokio::select! {
                biased;
                got = self.get() => got,
                () = liveness.stopped() => return Err(self.stopped_answering()),
            };
            let mut conn = match got {
                Ok(conn) => conn,
                Err(bb8::RunError::User(e)) => {
                    let error = Arc::new(e);
                    self.last_error.record(error.clone());
                    return Err(self.unavailable(error));
                }
                Err(bb8::RunError::TimedOut) => return Err(self.timed_out()),
            };
            if !conn.went_away_while_idle() {
                conn.entry.set_in_use(true);
                return Ok(Checkout {
                    conn,
                    _turn: turn,
                    liveness,
                });
            }
            tracing::debug!(endpoint = %self.endpoint, "discarding a connection the server closed while idle");
            conn.mark_broken();
        }
    }

    /// A connection from bb8; a fail-fast pool gives up at the first connect failure instead
    /// of waiting out the checkout timeout while bb8 retries.
    async fn get(
        &self,
    ) -> Result<bb8::PooledConnection<'static, BackendManager>, bb8::RunError<BackendError>> {
        if self.on_failure == OnFailure::Retry {
            // bb8 keeps retrying a dead primary until the checkout timeout; a client already
            // waiting when the breaker opens gets 08006 then, as a newcomer does.
            // Biased: the breaker's poll timer is armed only when no connection is at hand.
            tokio::select! {
                biased;
                got = self.pool.get_owned() => return got,
                () = self.primary_breaker_opens() => return Err(bb8::RunError::TimedOut),
            }
        }
        let failure = self.last_error.next_failure();
        tokio::select! {
            got = self.pool.get_owned() => got,
            () = failure => Err(bb8::RunError::TimedOut),
        }
    }

    /// Resolves once the primary's breaker is open (never for a primary that stays up). Polled:
    /// it only runs while a checkout waits for a new connection to open.
    async fn primary_breaker_opens(&self) {
        loop {
            tokio::time::sleep(BREAKER_POLL).await;
            if self.primary_breaker_open().is_some() {
                return;
            }
        }
    }

    async fn wait_for_turn(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        let _waiting = Waiting::start(&self.waiting);
        let turns = self.turns.clone().acquire_owned();
        match tokio::time::timeout(self.checkout_timeout, turns).await {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) | Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> PoolError {
        match self.last_error.recent(self.checkout_timeout) {
            Some(source) => self.unavailable(source),
            None => PoolError::Exhausted {
                endpoint: self.endpoint.clone(),
                waited: self.checkout_timeout,
                size: self.size,
            },
        }
    }

    fn stopped_answering(&self) -> PoolError {
        PoolError::StoppedAnswering {
            endpoint: self.endpoint.clone(),
        }
    }

    fn unavailable(&self, source: Arc<BackendError>) -> PoolError {
        PoolError::Unavailable {
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

/// Counts a session as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_checkout_ran_nothing_so_it_is_safe_to_retry() {
        let exhausted = PoolError::Exhausted {
            endpoint: "s0 primary".into(),
            waited: Duration::from_secs(1),
            size: 4,
        };
        let report = exhausted.report();
        assert_eq!(report.code, sqlstate::TOO_MANY_CONNECTIONS);
        assert!(report.is_retry_safe());
        let cause = report.cause.map(|c| c.to_string()).unwrap_or_default();
        assert!(cause.contains("s0 primary"), "{cause}");
        let stopped = PoolError::StoppedAnswering {
            endpoint: "s1 replica".into(),
        };
        let report = stopped.report();
        assert_eq!(report.code, sqlstate::CONNECTION_FAILURE);
        assert!(report.is_retry_safe() && report.blame == Blame::Backend);
    }
}
