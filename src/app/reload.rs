//! Live shard-map edits: on SIGHUP, when a shard-map file changes on disk, or when asked
//! ([`Reloader::reload`]), every database's map is read and validated again. Valid maps become
//! the next topology epoch, published to sessions, which pick it up between transactions; an
//! invalid map is rejected with every problem logged and the old maps keep serving. Pools of
//! unchanged backends are kept, so a reload drops no connection.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::{self, Config, ConfigError, DatabaseEntry};
use crate::metrics::Metrics;
use crate::topology::Topology;

/// How often shard-map files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a reload was rejected (the previous maps stay in force).
#[derive(Debug, thiserror::Error)]
#[error("shard map {file} rejected:\n{problems}")]
pub struct ReloadError {
    /// The file that failed.
    pub file: PathBuf,
    /// Every problem found, one per line.
    pub problems: String,
}

/// Publishes new topologies; shared by the signal/file watcher and callers of `reload`.
pub struct Reloader {
    config: Config,
    metrics: Arc<Metrics>,
    publish: watch::Sender<Arc<Topology>>,
    /// The databases in force and the file stamps they were read from.
    state: Mutex<Loaded>,
}

struct Loaded {
    databases: Vec<DatabaseEntry>,
    stamps: Vec<Option<(SystemTime, u64)>>,
}

impl Reloader {
    /// Starts at epoch 1 with the config's maps.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, watch::Receiver<Arc<Topology>>) {
        let first = Topology::build(config, 1, &metrics);
        let (publish, receiver) = watch::channel(Arc::new(first));
        let loaded = Loaded {
            databases: config.databases.clone(),
            stamps: config
                .databases
                .iter()
                .map(|db| stamp(&db.shard_map_path))
                .collect(),
        };
        let reloader = Reloader {
            config: config.clone(),
            metrics,
            publish,
            state: Mutex::new(loaded),
        };
        (Arc::new(reloader), receiver)
    }

    /// The epoch in force.
    pub fn epoch(&self) -> u64 {
        self.publish.borrow().epoch
    }

    /// Reads every shard map again; on success publishes the next epoch and returns it.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let outcome = self.reload_maps();
        self.metrics.reload(outcome.is_ok());
        outcome
    }

    fn reload_maps(&self) -> Result<u64, ReloadError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Stamped before reading: an edit that lands while we read is seen by the next tick.
        let stamps: Vec<_> = state
            .databases
            .iter()
            .map(|db| stamp(&db.shard_map_path))
            .collect();
        let mut databases = Vec::with_capacity(state.databases.len());
        for db in &state.databases {
            let map = config::load_shard_map(&db.shard_map_path).map_err(|e| rejected(db, e))?;
            databases.push(DatabaseEntry {
                shard_map: map,
                ..db.clone()
            });
        }
        let previous = self.publish.borrow().clone();
        let epoch = previous.epoch + 1;
        let topology = Topology::rebuild(
            &self.config,
            &databases,
            epoch,
            Some(&previous),
            &self.metrics,
        );
        state.stamps = stamps;
        state.databases = databases;
        self.publish.send_replace(Arc::new(topology));
        tracing::info!(epoch, "shard maps reloaded");
        Ok(epoch)
    }

    /// Reloads on SIGHUP and whenever a shard-map file changes, until `shutdown` turns true.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                _ = signalled => "SIGHUP",
                _ = tick.tick() => {
                    if !self.files_changed() {
                        continue;
                    }
                    "a shard-map file changed"
                }
            };
            self.reload_logged(trigger);
        }
    }

    fn files_changed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = state.databases.iter().map(|db| stamp(&db.shard_map_path));
        !now.eq(state.stamps.iter().copied())
    }

    fn reload_logged(&self, trigger: &str) {
        if let Err(error) = self.reload() {
            // Record the rejected file's stamp so a broken file is reported once, not every tick.
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.stamps = state
                .databases
                .iter()
                .map(|db| stamp(&db.shard_map_path))
                .collect();
            tracing::error!(trigger, epoch = self.epoch(), %error, "shard map reload rejected; the previous maps stay in force");
        }
    }
}

fn rejected(db: &DatabaseEntry, error: ConfigError) -> ReloadError {
    let problems = match error {
        ConfigError::Invalid(problems) => config::render_problems(&problems),
        other => other.to_string(),
    };
    ReloadError {
        file: db.shard_map_path.clone(),
        problems,
    }
}

/// A file's modification time and length; `None` when it cannot be read.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl crate::admin::ReloadMaps for Reloader {
    fn reload_maps(&self) -> Result<u64, String> {
        self.reload().map_err(|error| error.to_string())
    }
}
