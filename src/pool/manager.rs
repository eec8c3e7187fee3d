//! The bb8 `ManageConnection` for raw-protocol backend connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{self, BackendConn, BackendError};
use crate::config::BackendUri;

/// Opens backend connections for one endpoint and decides which ones can be reused.
pub struct BackendManager {
    uri: BackendUri,
    connect_timeout: Duration,
}

impl BackendManager {
    /// A manager for `uri`.
    pub fn new(uri: BackendUri, connect_timeout: Duration) -> Self {
        Self {
            uri,
            connect_timeout,
        }
    }
}

impl bb8::ManageConnection for BackendManager {
    type Connection = BackendConn;
    type Error = BackendError;

    async fn connect(&self) -> Result<BackendConn, BackendError> {
        backend::connect(&self.uri, self.connect_timeout).await
    }

    async fn is_valid(&self, conn: &mut BackendConn) -> Result<(), BackendError> {
        // Only reached if test_on_check_out is turned back on; the cheap idle probe stands in.
        if conn.went_away_while_idle() {
            conn.mark_broken();
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut BackendConn) -> bool {
        conn.is_broken()
    }
}

/// The most recent failure to open a connection, so a client that timed out waiting can be told
/// the shard is down rather than busy. bb8 hands connect errors to its error sink, not to waiters.
#[derive(Debug, Clone, Default)]
pub struct LastConnectError(Arc<Mutex<Option<(Instant, Arc<BackendError>)>>>);

impl LastConnectError {
    /// The last error if it happened within `window`.
    pub fn recent(&self, window: Duration) -> Option<Arc<BackendError>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (at, error) = guard.as_ref()?;
        (at.elapsed() <= window).then(|| error.clone())
    }
}

impl bb8::ErrorSink<BackendError> for LastConnectError {
    fn sink(&self, error: BackendError) {
        tracing::warn!(error = %error, "backend connect failed");
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some((Instant::now(), Arc::new(error)));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<BackendError>> {
        Box::new(self.clone())
    }
}
