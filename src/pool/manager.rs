//! The bb8 `ManageConnection` for raw-protocol backend connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::servers::{ServerEntry, Servers};
use crate::backend::{self, BackendConn, BackendError};
use crate::config::BackendUri;

/// Opens backend connections for one endpoint and decides which ones can be reused.
pub struct BackendManager {
    uri: BackendUri,
    connect_timeout: Duration,
    last_error: LastConnectError,
    servers: Arc<Servers>,
}

impl BackendManager {
    /// A manager for `uri` that records connect failures in `last_error` and lists the
    /// connections it opens in `servers`.
    pub fn new(
        uri: BackendUri,
        connect_timeout: Duration,
        last_error: LastConnectError,
        servers: Arc<Servers>,
    ) -> Self {
        Self {
            uri,
            connect_timeout,
            last_error,
            servers,
        }
    }
}

/// A pooled connection with its row in the pool's server list (gone when it is closed).
pub struct PooledBackend {
    /// Boxed: a session holding a checkout keeps a pointer, not the connection's state.
    conn: Box<BackendConn>,
    /// Its row in `SHOW SERVERS`.
    pub entry: ServerEntry,
}

impl std::ops::Deref for PooledBackend {
    type Target = BackendConn;

    fn deref(&self) -> &BackendConn {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledBackend {
    fn deref_mut(&mut self) -> &mut BackendConn {
        &mut self.conn
    }
}

impl bb8::ManageConnection for BackendManager {
    type Connection = PooledBackend;
    type Error = BackendError;

    async fn connect(&self) -> Result<PooledBackend, BackendError> {
        let conn = backend::connect(&self.uri, self.connect_timeout).await?;
        self.last_error.clear();
        let entry = self.servers.register(conn.cancel_target().key.pid);
        Ok(PooledBackend {
            conn: Box::new(conn),
            entry,
        })
    }

    async fn is_valid(&self, conn: &mut PooledBackend) -> Result<(), BackendError> {
        // Only reached if test_on_check_out is turned back on; the cheap idle probe stands in.
        if conn.went_away_while_idle() {
            conn.mark_broken();
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PooledBackend) -> bool {
        // A cancel sent to it may land on the next client's statement.
        conn.is_broken() || conn.was_sent_a_cancel()
    }
}

/// The most recent failure to open a connection, so a client that timed out waiting can be told
/// the shard is down rather than busy. bb8 hands connect errors to its error sink, not to waiters.
#[derive(Debug, Clone, Default)]
pub struct LastConnectError(Arc<Mutex<Option<ConnectFailure>>>, Arc<tokio::sync::Notify>);

#[derive(Debug)]
struct ConnectFailure {
    at: Instant,
    error: Arc<BackendError>,
}

impl LastConnectError {
    /// The last error if it happened within `window`.
    pub fn recent(&self, window: Duration) -> Option<Arc<BackendError>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let failure = guard.as_ref()?;
        (failure.at.elapsed() <= window).then(|| failure.error.clone())
    }

    /// Records a failure the caller saw (fail-fast pools get connect errors back directly).
    pub fn record(&self, error: Arc<BackendError>) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some(ConnectFailure {
            at: Instant::now(),
            error,
        });
    }

    /// Completes at the next connect failure (registered at once, before it is polled), so a
    /// fail-fast checkout can stop waiting for a connection that is not coming.
    pub fn next_failure(&self) -> tokio::sync::futures::Notified<'_> {
        self.1.notified()
    }

    /// A connection succeeded: the endpoint is reachable again.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl bb8::ErrorSink<BackendError> for LastConnectError {
    fn sink(&self, error: BackendError) {
        tracing::warn!(error = %error, "backend connect failed");
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some(ConnectFailure {
            at: Instant::now(),
            error: Arc::new(error),
        });
        drop(guard);
        self.1.notify_waiters();
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<BackendError>> {
        Box::new(self.clone())
    }
}
