//! The client-facing edge: accept connections, negotiate TLS, read the startup packet,
//! authenticate, answer cancel requests, then hand the connection to a session.
//!
//! pgwire does TLS negotiation (SSLRequest, GSSENCRequest refusal, direct TLS with ALPN) and
//! the SCRAM math; the proxy reads and writes the startup messages itself because it keeps the
//! raw socket for forwarding. Nothing here touches a backend except through the session it
//! starts and the cancel registry.

pub mod admission;
mod auth;
pub mod cancel;
pub mod credentials;
mod startup;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::admin;
use crate::admin::{AdminContext, CONSOLE_DATABASE};
use crate::config::{ClientAuthMethod, Config, Limits, PoolMode};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::session::{self, SessionEnv};
use crate::topology::Topology;
use crate::wire::{BackendKeyData, WireError};

use admission::Admission;
use cancel::CancelRegistry;
use credentials::Credentials;
use startup::{Login, Opening};

/// Why a connection did not get to a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The client went away (or its socket failed) before finishing startup.
    #[error("client disconnected during startup: {0}")]
    Disconnected(#[source] std::io::Error),
    /// The client was refused; the report was sent to it.
    #[error("client refused: {0}")]
    Rejected(ErrorReport),
}

impl LoginError {
    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        LoginError::Rejected(ErrorReport::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            Blame::Client,
            message,
        ))
    }

    pub(crate) fn wire(error: WireError) -> Self {
        Self::protocol(error.to_string())
    }

    pub(crate) fn password_failed(user: &str) -> Self {
        LoginError::Rejected(ErrorReport::fatal(
            sqlstate::INVALID_PASSWORD,
            Blame::Client,
            format!("password authentication failed for user \"{user}\""),
        ))
    }
}

/// What every client connection needs, shared by all of them.
pub struct FrontendContext {
    /// TLS acceptor when a certificate is configured.
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// How clients authenticate.
    pub auth_method: ClientAuthMethod,
    /// Users and their secrets.
    pub credentials: Credentials,
    /// Client limits.
    pub limits: Limits,
    /// Pool mode for sessions.
    pub pool_mode: PoolMode,
    /// Prepared statements per backend before it is recycled.
    pub max_prepared_statements: usize,
    /// Issued cancel keys.
    pub cancels: Arc<CancelRegistry>,
    /// The topology in force; replaced whole on reload.
    pub topology: watch::Receiver<Arc<Topology>>,
    /// Metrics, the client registry and the admin console's state.
    pub admin: Arc<AdminContext>,
    /// Statements slower than this are logged.
    pub slow_statement: Option<std::time::Duration>,
    /// Per-user limits, the lifecycle phase (see `admission`).
    pub admission: Admission,
    connections: AtomicUsize,
}

impl FrontendContext {
    /// Builds the context from a validated config (TLS files are read here).
    pub fn new(
        config: &Config,
        topology: watch::Receiver<Arc<Topology>>,
        admin: Arc<AdminContext>,
    ) -> Result<Self, tls::TlsError> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        Ok(Self {
            tls,
            auth_method: config.auth_method,
            credentials: Credentials::from_users(&config.users),
            limits: config.limits.clone(),
            pool_mode: config.pool.mode,
            max_prepared_statements: config.pool.max_prepared_statements,
            cancels: Arc::new(CancelRegistry::default()),
            topology,
            admin,
            slow_statement: config.log.slow_statement,
            admission: Admission::new(&config.limits),
            connections: AtomicUsize::new(0),
        })
    }

    /// Client connections open right now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Accepts clients until `shutdown` turns true. Each connection runs in its own task.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<FrontendContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Debug level: at the default level the span costs nothing per poll; the
                    // lifecycle events carry their own fields.
                    let span = tracing::debug_span!("conn", %peer);
                    tokio::spawn(handle_connection(tcp, ctx.clone()).instrument(span));
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut shutdown) => return,
        }
    }
}

pub(crate) use crate::lifecycle::stopped;

/// Counts a connection for as long as it lives.
struct ConnectionCount<'a>(&'a AtomicUsize);

impl Drop for ConnectionCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's session once it is logged in and admitted, boxed: the connection's task holds
/// it and nothing of the login.
type SessionFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

async fn handle_connection(tcp: TcpStream, ctx: Arc<FrontendContext>) {
    let count = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _count = ConnectionCount(&ctx.connections);
    // Boxed: the login's state is let go before the session's begins, so an idle client
    // costs its session's state only.
    if let Some(session) = Box::pin(log_in(tcp, &ctx, count)).await {
        session.await;
    }
}

/// Runs the startup (and a cancel request, a refusal, or the admin console to its end); the
/// session of a client that logged in.
async fn log_in(tcp: TcpStream, ctx: &FrontendContext, count: usize) -> Option<SessionFuture<'_>> {
    let peer = tcp.peer_addr().ok();
    let opening = tokio::time::timeout(ctx.limits.startup_timeout, startup::open(tcp, ctx)).await;
    match opening {
        Err(_) => tracing::info!("client did not finish startup in time"),
        Ok(Err(LoginError::Disconnected(error))) => {
            tracing::debug!(%error, "client left during startup")
        }
        Ok(Err(LoginError::Rejected(report))) => {
            ctx.admin.metrics.error(report.code);
            tracing::info!(code = %report.code, error = %report.message, "login refused")
        }
        Ok(Ok(Opening::Closed)) => {}
        Ok(Ok(Opening::Cancel { pid, secret })) => ctx.cancels.cancel(pid, secret).await,
        Ok(Ok(Opening::Login(login))) => return admit(login, ctx, count, peer).await,
    }
    None
}

/// Admits a logged-in client (limits, admin console, database): its session, or `None` once
/// it was refused or its console session ended.
async fn admit(
    login: Login,
    ctx: &FrontendContext,
    count: usize,
    peer: Option<SocketAddr>,
) -> Option<SessionFuture<'_>> {
    let Login {
        mut conn,
        user,
        database,
        params,
    } = login;
    let metrics = &ctx.admin.metrics;
    metrics.connections.inc();
    let refuse = |reason, report: ErrorReport| {
        metrics.refused_connection(reason);
        metrics.error(report.code);
        report
    };
    if count > ctx.limits.max_client_connections {
        let report = ErrorReport::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            Blame::Proxy,
            "sorry, too many clients already",
        );
        conn.reject(&refuse("max_client_connections", report)).await;
        return None;
    }
    if database == CONSOLE_DATABASE {
        if !ctx.admin.admin_users.contains(&user) {
            let report = ErrorReport::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                Blame::Client,
                format!("user \"{user}\" is not allowed to use the admin console"),
            );
            conn.reject(&refuse("not_admin", report)).await;
            return None;
        }
        let _registered = ctx.admin.clients.register(&user, &database, peer);
        tracing::info!(?peer, %user, "admin console connected");
        let admin = ctx.admin.clone();
        let phase = ctx.admission.phase().subscribe();
        let limit = ctx.limits.max_message_bytes;
        admin::console::run(conn.stream, conn.buf, admin, limit, phase).await;
        return None;
    }
    let user_slot = match ctx.admission.admit(&user) {
        Ok(slot) => slot,
        Err(report) => {
            let reason = match report.code {
                sqlstate::TOO_MANY_CONNECTIONS => "max_connections_per_user",
                _ => "shutting_down",
            };
            conn.reject(&refuse(reason, report)).await;
            return None;
        }
    };
    let topology = ctx.topology.borrow().clone();
    let Some(db) = topology.database(&database) else {
        let report = ErrorReport::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            Blame::Client,
            format!("database \"{database}\" does not exist"),
        );
        conn.reject(&refuse("unknown_database", report)).await;
        return None;
    };
    let registration = ctx.cancels.register();
    let registered = ctx.admin.clients.register(&user, &database, peer);
    tracing::info!(?peer, %user, %database, "client connected");
    let env = SessionEnv {
        database: db,
        topology: ctx.topology.clone(),
        mode: ctx.pool_mode,
        max_message_bytes: ctx.limits.max_message_bytes,
        max_merge_bytes: ctx.limits.max_merge_bytes,
        max_prepared_statements: ctx.max_prepared_statements,
        cancel_key: BackendKeyData {
            pid: registration.pid,
            secret: registration.secret,
        },
        cancel_slot: registration.slot.clone(),
        client: registered.info.clone(),
        metrics: ctx.admin.metrics.clone(),
        slow_statement: ctx.slow_statement,
        limits: ctx
            .admission
            .session_limits(&user, registration.slot.clone()),
    };
    // Every event of the session carries who it is (never a password or a parameter value).
    let span = tracing::info_span!("session", client = registered.info.id, %user, %database);
    // Let go in this order once the session ended (after it let its backend go).
    let held = (registered, registration, user_slot);
    // A map of the session's future, not an async block awaiting it: that would hold the
    // future twice (as what it captured and as what it awaits).
    let run = session::run(conn.stream, conn.buf, params, env).instrument(span);
    Some(Box::pin(run.map(move |()| {
        tracing::info!(?peer, %user, %database, "client disconnected");
        drop(held);
    })))
}
