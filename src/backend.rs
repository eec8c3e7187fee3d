//! One server connection: connect, authenticate, remember what the server told us.
//!
//! A [`BackendConn`] is the unit the pool hands out. It owns the socket and the facts about the
//! server session that the session layer needs to reuse it safely across clients: reported
//! parameters, settings the proxy applied, prepared statements that exist on it, and whether it
//! can still be trusted. It never interprets rows; the execute stage forwards its bytes.

mod auth;
mod connect;
mod replication;
mod state;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::BackendKeyData;

pub use connect::connect;
pub use replication::{ExportedSnapshot, create_slot_exporting_snapshot};
pub use state::{SessionState, Setting, is_server_owned};

/// Why a backend connection failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to backend {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing an established connection failed.
    #[error("backend {addr} I/O error: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server refused us during startup (bad password, unknown database, too many clients).
    #[error("backend {addr} refused the connection: {message} (SQLSTATE {code})")]
    Refused {
        /// `host:port`.
        addr: String,
        /// SQLSTATE the server sent.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server asked for something we cannot do, or sent something unexpected.
    #[error("backend {addr} protocol error: {message}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

impl BackendError {
    /// What a client is told when its statement needed this backend.
    pub fn report(&self) -> ErrorReport {
        ErrorReport::error(
            sqlstate::CONNECTION_FAILURE,
            Blame::Backend,
            self.to_string(),
        )
    }
}

/// Where and how to send a CancelRequest for whatever this connection is running.
///
/// A cancel is delivered asynchronously (the server handles it on a connection of its own,
/// whenever it gets to it), so under load it can land after the statement it was meant for, on
/// whatever the connection runs next. So the connection remembers that it was sent one
/// ([`BackendConn::was_sent_a_cancel`]) and the pool closes it rather than hand it to anyone
/// else.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// Server address.
    pub addr: SocketAddr,
    /// The server's key for this connection.
    pub key: BackendKeyData,
    /// Shared with the connection: a cancel was sent to it.
    sent: Arc<std::sync::atomic::AtomicBool>,
}

impl CancelTarget {
    /// The target of the connection at `addr` the server gave `key`.
    pub fn new(addr: SocketAddr, key: BackendKeyData) -> Self {
        Self {
            addr,
            key,
            sent: Arc::default(),
        }
    }
}

/// An authenticated server connection and what we know about its session.
pub struct BackendConn {
    stream: TcpStream,
    /// Bytes read from the server and not yet consumed.
    pub read_buf: BytesMut,
    cancel: CancelTarget,
    /// The server session's settings as last reported or applied.
    pub state: SessionState,
    /// Reported parameters right after connect: the clean slate a new client starts from.
    pub reported_at_connect: Arc<BTreeMap<String, String>>,
    /// Backend-side names of prepared statements that exist on this connection.
    pub prepared: HashSet<Arc<str>>,
    /// Its database's default collation orders text bytewise (see
    /// `connect::collation_is_bytewise`), so merged text order matches the server's.
    pub bytewise_text: bool,
    broken: bool,
    addr: Arc<str>,
}

impl BackendConn {
    /// The socket, for the execute stage's forwarding loop.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Socket and read buffer at once, so one poll can read into the buffer.
    pub fn io_mut(&mut self) -> (&mut TcpStream, &mut BytesMut) {
        (&mut self.stream, &mut self.read_buf)
    }

    /// Where a cancel for this connection goes.
    pub fn cancel_target(&self) -> CancelTarget {
        self.cancel.clone()
    }

    /// Whether a cancel was sent to this connection: it may still land on what runs next.
    pub fn was_sent_a_cancel(&self) -> bool {
        self.cancel.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the connection unusable: the pool closes it instead of handing it out again.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether [`mark_broken`](Self::mark_broken) was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// `host:port`, for errors and logs.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True when the server closed the socket or sent bytes nobody asked for while the
    /// connection sat idle in the pool. One non-blocking syscall instead of a round trip.
    pub fn went_away_while_idle(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => !self.read_buf.is_empty(),
            _ => true,
        }
    }
}

/// Where a client's running statement can be cancelled: the session publishes its current
/// backends here (one, or every leg of a cross-shard read), the cancel registry reads them
/// when a CancelRequest quotes the client's key.
#[derive(Debug, Clone, Default)]
pub struct CancelSlot(Arc<std::sync::Mutex<Vec<CancelTarget>>>);

impl CancelSlot {
    /// Publishes (or clears, with `None`) the one backend the client is using.
    pub fn set(&self, target: Option<CancelTarget>) {
        // In place: one per checkout and release, so no allocation once it held one.
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.clear();
        if let Some(target) = target {
            // Room for one: each idle client keeps this vector's capacity.
            slot.reserve_exact(1);
            slot.push(target);
        }
    }

    /// Publishes every backend a statement of the client runs on.
    pub fn set_all(&self, targets: Vec<CancelTarget>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// The backends the client is using right now (none between statements).
    pub fn get(&self) -> Vec<CancelTarget> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Asks the server behind `target` to cancel what that connection runs, on a new connection
/// (PostgreSQL docs, "Canceling Requests in Progress").
pub async fn send_cancel(target: CancelTarget) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    target
        .sent
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(
        target.key.pid,
        target.key.secret,
        &mut out,
    );
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.write_all(&out).await?;
    stream.shutdown().await
}
