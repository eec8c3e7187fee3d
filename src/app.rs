//! Wiring: config → topology → frontend, and the proxy's lifecycle.
//!
//! [`Proxy::start`] binds nothing itself: the caller passes a listener, so tests run the whole
//! proxy in-process on port 0 and the binary binds the configured address.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminContext};
use crate::config::{Config, LogFormat, LogSettings};
use crate::frontend::{self, FrontendContext, tls::TlsError};
use crate::metrics::Metrics;

mod fleet;
mod reload;
mod shutdown;

pub use reload::{ReloadError, Reloader};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The shard map recorded in force cannot serve with this config's file.
    #[error("{0}")]
    MapRecord(String),
}

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub local_addr: SocketAddr,
    /// Where the metrics endpoint listens, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
    frontend: Arc<FrontendContext>,
    reloader: Arc<Reloader>,
    /// Keeps the proxy in its fleet until it stops.
    fleet: fleet::Membership,
}

impl Proxy {
    /// Binds `config.listen` and starts serving.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::start(config, listener).await
    }

    /// Starts serving on an already bound listener, once each database's map in force is
    /// known (the file's, or the one recorded in PostgreSQL when the file's edit would move
    /// stored rows).
    pub async fn start(config: &Config, listener: TcpListener) -> Result<Self, StartError> {
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        metrics.know_users(config.users.iter().map(|u| u.name.as_str()));
        let (reloader, topology) = Reloader::new(config, metrics.clone());
        reloader
            .adopt_records()
            .await
            .map_err(StartError::MapRecord)?;
        let admin = Arc::new(AdminContext {
            metrics,
            topology: topology.clone(),
            clients: Arc::default(),
            reloader: reloader.clone(),
            map_files: (config.databases.iter())
                .map(|db| (db.name.clone(), db.shard_map_path.clone()))
                .collect(),
            admin_users: config.admin_users.clone(),
        });
        let metrics_listener = config.metrics_listen.map(bind_metrics).transpose()?;
        let frontend = Arc::new(FrontendContext::new(config, topology, admin.clone())?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(reloader.clone().watch(shutdown_rx.clone()));
        let fleet = fleet::join(&reloader, &admin.topology.borrow());
        let mut metrics_addr = None;
        if let Some(listener) = metrics_listener {
            metrics_addr = listener.local_addr().ok();
            tokio::spawn(admin::serve_http(listener, admin, shutdown_rx.clone()));
        }
        let accept_loop = tokio::spawn(frontend::serve(listener, frontend.clone(), shutdown_rx));
        tracing::info!(%local_addr, ?metrics_addr, "shardgate listening");
        Ok(Self {
            local_addr,
            metrics_addr,
            shutdown,
            accept_loop,
            frontend,
            reloader,
            fleet,
        })
    }

    /// Reads the shard maps again now (as SIGHUP does); returns the epoch in force and the
    /// edits held, or why the maps were rejected (the old ones stay in force).
    pub async fn reload(&self) -> Result<crate::admin::Reloaded, ReloadError> {
        self.reloader.reload().await
    }

    /// The topology epoch in force (1 at start, +1 per accepted reload).
    pub fn epoch(&self) -> u64 {
        self.reloader.epoch()
    }

    /// What routing and execution decided so far for database `name`.
    pub fn counters(&self, name: &str) -> Option<crate::counters::CounterSnapshot> {
        let topology = self.frontend.topology.borrow().clone();
        Some(topology.database(name)?.counters.snapshot())
    }

    /// Client connections open right now.
    pub fn connection_count(&self) -> usize {
        self.frontend.connection_count()
    }
}

/// Binds the metrics endpoint (synchronously).
fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let failed = |source| StartError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    TcpListener::from_std(listener).map_err(failed)
}

/// The async runtime the proxy runs on, sized by `runtime.worker_threads`.
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().thread_name("shardgate").build()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}

/// Installs the global `tracing` subscriber (stderr; `RUST_LOG` overrides the configured
/// level). A second call is ignored, so tests and the demo can call it freely.
pub fn init_tracing(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
