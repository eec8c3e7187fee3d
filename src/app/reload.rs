//! Live shard-map edits: on SIGHUP, when a shard-map file changes on disk, or when asked
//! ([`Reloader::reload`]), every database's map is read and validated again. Valid maps become
//! the next topology epoch, published to sessions, which pick it up between transactions; an
//! invalid map is rejected with every problem logged and the old maps keep serving. Pools of
//! unchanged backends are kept, so a reload drops no connection.
//!
//! A valid edit that would move rows the shards hold is held instead ([`crate::reshard`]):
//! that database keeps its map in force, the edit is logged and shown (`SHOW MAP`,
//! `SHOW PLAN`, a metric), and only `RELOAD FORCE` applies it as it is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::admin::Reloaded;
use crate::config::{self, Config, ConfigError, DatabaseEntry};
use crate::control::fleet::{Listed, Member};
use crate::control::map_record::{self, MapRecord, Recorded};
use crate::metrics::Metrics;
use crate::reshard::leftovers::{self, Undecided};
use crate::reshard::mover::{self, MovePlan};
use crate::reshard::{self, HeldEdit, Reshard};
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
    /// The databases in force and the file stamps last read; one reload at a time.
    state: tokio::sync::Mutex<Loaded>,
    /// Edits the last reload held.
    held: Mutex<Vec<Arc<HeldEdit>>>,
    /// The last `RESHARD` of each database.
    reshards: Mutex<HashMap<String, Arc<Reshard>>>,
    /// Itself, for the tasks `RESHARD` starts.
    this: Weak<Reloader>,
    /// This proxy's name in its fleet ([`super::fleet`]).
    proxy: String,
}

struct Loaded {
    databases: Vec<DatabaseEntry>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    /// Each database's map in force as recorded in PostgreSQL (`None`: not recorded).
    records: Vec<Option<Recorded>>,
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
            stamps: stamps(&config.databases),
            records: vec![None; config.databases.len()],
        };
        let reloader = Arc::new_cyclic(|this| Reloader {
            config: config.clone(),
            metrics,
            publish,
            state: tokio::sync::Mutex::new(loaded),
            held: Mutex::default(),
            reshards: Mutex::default(),
            this: this.clone(),
            proxy: super::fleet::proxy_name(),
        });
        (reloader, receiver)
    }

    /// The epoch in force.
    pub fn epoch(&self) -> u64 {
        self.publish.borrow().epoch
    }

    /// Reads every shard map again; on success publishes the next epoch (unless every edit
    /// was held) and returns the epoch in force with the edits held.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.reload_counted(false).await
    }

    /// As [`reload`](Self::reload), but applies edits that move stored rows as they are: for
    /// an operator who moved those rows already.
    pub async fn reload_forced(&self) -> Result<Reloaded, ReloadError> {
        self.reload_counted(true).await
    }

    /// The edits held now.
    pub fn held(&self) -> Vec<Arc<HeldEdit>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn reload_counted(&self, force: bool) -> Result<Reloaded, ReloadError> {
        let outcome = self.reload_maps(force).await;
        self.metrics.reload(match &outcome {
            Err(_) => "failed",
            Ok(reloaded) if !reloaded.held.is_empty() => "held",
            Ok(_) => "ok",
        });
        outcome
    }

    async fn reload_maps(&self, force: bool) -> Result<Reloaded, ReloadError> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        // Stamped before reading: an edit that lands while we read is seen by the next tick.
        state.stamps = stamps(&state.databases);
        let mut edited = Vec::with_capacity(state.databases.len());
        for db in &state.databases {
            let (map, text) = read_map(db).map_err(|e| rejected(db, e))?;
            let entry = DatabaseEntry {
                shard_map: map,
                ..db.clone()
            };
            edited.push((entry, text));
        }
        let mut databases = Vec::with_capacity(edited.len());
        let mut held = Vec::new();
        for (i, (edited, text)) in edited.into_iter().enumerate() {
            let in_force = &state.databases[i];
            if self.moving(&in_force.name) {
                // RESHARD switches this map when its rows moved; the edit waits for that.
                databases.push(in_force.clone());
                continue;
            }
            match self.edit_to_hold(in_force, &edited, force).await {
                Some(mut edit) => {
                    tracing::warn!(
                        summary = edit.summary(),
                        "shard-map edit held; the map in force stays"
                    );
                    edit.edited_text = Some(text);
                    held.push(Arc::new(edit));
                    databases.push(in_force.clone());
                }
                None => {
                    self.record(&edited, &text, &mut state.records[i]).await;
                    databases.push(edited);
                }
            }
        }
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held.clone();
        if held.len() == databases.len() {
            return Ok(Reloaded {
                epoch: self.epoch(),
                held,
            });
        }
        let epoch = self.publish_next(state, databases);
        tracing::info!(epoch, held = held.len(), "shard maps reloaded");
        Ok(Reloaded { epoch, held })
    }

    /// Publishes `databases` as the next epoch (pools of unchanged servers kept) and makes
    /// them the ones in force; returns the epoch.
    fn publish_next(&self, state: &mut Loaded, databases: Vec<DatabaseEntry>) -> u64 {
        let previous = self.publish.borrow().clone();
        let epoch = previous.epoch + 1;
        let topology = Topology::rebuild(
            &self.config,
            &databases,
            epoch,
            Some(&previous),
            &self.metrics,
        );
        state.databases = databases;
        self.publish.send_replace(Arc::new(topology));
        epoch
    }

    /// The edit of `in_force` to hold, if `edited` would move rows its shards hold.
    async fn edit_to_hold(
        &self,
        in_force: &DatabaseEntry,
        edited: &DatabaseEntry,
        force: bool,
    ) -> Option<HeldEdit> {
        if force {
            return None;
        }
        let timeout = self.config.pool.connect_timeout;
        reshard::check_edit(
            &in_force.name,
            &in_force.shard_map,
            &edited.shard_map,
            timeout,
        )
        .await
    }

    /// Applies `database`'s held edit by moving its rows ([`crate::reshard::mover`]); the
    /// database may be left out when one edit is held. Returns the move once it ended (it runs
    /// on in its own task if the caller stops waiting).
    pub async fn reshard(&self, database: Option<&str>) -> Result<Arc<Reshard>, String> {
        let edit = self.edit_to_move(database)?;
        let name = edit.database.clone();
        let plan = {
            let state = self.state.lock().await;
            let in_force = (state.databases.iter())
                .find(|db| db.name == name)
                .ok_or_else(|| format!("no database {name:?}"))?;
            let timeout = self.config.pool.connect_timeout;
            let (old, new) = (in_force.shard_map.clone(), edit.edited.clone());
            let mut plan = MovePlan::new(old, new, &edit.report, timeout)?;
            plan.fleet = self.member(&name);
            plan.map_text = edit.edited_text.clone();
            plan
        };
        let fence = (self.publish.borrow().database(&name))
            .ok_or_else(|| format!("no database {name:?}"))?
            .fence
            .clone();
        let job = Arc::new(Reshard::new(&name));
        {
            let mut reshards = self.reshards.lock().unwrap_or_else(|e| e.into_inner());
            if reshards.get(&name).is_some_and(|job| !job.finished()) {
                return Err(format!("a RESHARD of {name:?} is running; SHOW RESHARD"));
            }
            reshards.insert(name.clone(), job.clone());
        }
        let Some(this) = self.this.upgrade() else {
            job.abandon("the proxy is stopping");
            return Err("the proxy is stopping".into());
        };
        let task_job = job.clone();
        let task = tokio::spawn(async move {
            let text = edit.edited_text.clone();
            let switch: mover::Switch<'_> =
                Box::new(|| Box::pin(this.switch_to(&name, plan.new.clone(), text)));
            mover::run(&task_job, &plan, &fence, switch).await;
        });
        if let Err(error) = task.await {
            job.abandon(&error.to_string());
        }
        Ok(job)
    }

    /// Whether a `RESHARD` of `database` runs.
    pub(super) fn moving(&self, database: &str) -> bool {
        let reshards = self.reshards.lock().unwrap_or_else(|e| e.into_inner());
        reshards.get(database).is_some_and(|job| !job.finished())
    }

    /// The last `RESHARD` of each database.
    pub fn reshards(&self) -> Vec<Arc<Reshard>> {
        let reshards = self.reshards.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = reshards.values().cloned().collect();
        all.sort_by(|a, b| a.database.cmp(&b.database));
        all
    }

    fn edit_to_move(&self, database: Option<&str>) -> Result<Arc<HeldEdit>, String> {
        let held = self.held();
        let mut matching = held
            .iter()
            .filter(|e| database.is_none_or(|d| e.database == d));
        match (matching.next(), matching.next()) {
            (Some(edit), None) => Ok(edit.clone()),
            (Some(_), Some(_)) => {
                Err("edits of several databases are held: RESHARD <database>".into())
            }
            (None, _) => Err(match database {
                Some(name) => format!(
                    "no edit of database {name:?} is held: RELOAD reads the shard maps, SHOW PLAN shows held edits"
                ),
                None => "no edit is held: RELOAD reads the shard maps, SHOW PLAN shows held edits"
                    .into(),
            }),
        }
    }

    /// Puts `map` (file text `text`) in force for `database` at the next epoch (the switch of
    /// a move, this proxy's or another's of the fleet).
    pub(super) async fn switch_to(
        &self,
        database: &str,
        map: config::ShardMap,
        text: Option<String>,
    ) -> Result<u64, String> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let mut databases = state.databases.clone();
        let i = (databases.iter())
            .position(|db| db.name == database)
            .ok_or_else(|| format!("database {database:?} is gone from the config"))?;
        databases[i].shard_map = map;
        let epoch = self.publish_next(state, databases);
        // Recorded after the switch, outside the moment statements wait for it.
        if let (Some(text), Some(this)) = (text, self.this.upgrade()) {
            let name = database.to_owned();
            tokio::spawn(async move {
                let mut guard = this.state.lock().await;
                let state = &mut *guard;
                let Some(i) = state.databases.iter().position(|db| db.name == name) else {
                    return;
                };
                let db = state.databases[i].clone();
                this.record(&db, &text, &mut state.records[i]).await;
            });
        }
        (self.held.lock().unwrap_or_else(|e| e.into_inner())).retain(|e| e.database != database);
        tracing::info!(epoch, database, "RESHARD switched the shard map");
        Ok(epoch)
    }

    /// This proxy's place in its fleet for `database`, at the map in force (`None`: no fleet
    /// or no lease, or no such database).
    pub(super) fn member(&self, database: &str) -> Option<Member> {
        let fleet = self.config.fleet.clone()?;
        let lease = self.config.fleet_lease?;
        let map = self.map_in_force(database)?;
        Some(Member {
            fleet,
            database: database.to_owned(),
            proxy: self.proxy.clone(),
            primary: map.shard(map.default_shard).primary.clone(),
            lease,
            timeout: self.config.pool.connect_timeout,
        })
    }

    /// `database`'s map in force.
    pub(super) fn map_in_force(&self, database: &str) -> Option<config::ShardMap> {
        let topology = self.publish.borrow();
        Some(topology.database(database)?.router.map().clone())
    }

    /// The map a record (redacted `recorded`: the fleet's move or map in force) names, with
    /// the passwords of the same endpoints in `database`'s file now; why not when the file
    /// lacks one of its servers.
    pub(super) fn recorded_map(
        &self,
        database: &str,
        recorded: &str,
    ) -> Result<config::ShardMap, String> {
        let path = &self.entry(database)?.shard_map_path;
        let file = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = map_record::with_file_secrets(recorded, &file)?;
        config::parse_shard_map(&text, path).map_err(|e| e.to_string())
    }

    /// Notes `recorded` as the record of `database`'s map in force (one a move wrote).
    pub(super) async fn note_record(&self, database: &str, recorded: Recorded) {
        let mut state = self.state.lock().await;
        if let Some(i) = state.databases.iter().position(|db| db.name == database) {
            state.records[i] = Some(recorded);
        }
    }

    fn entry(&self, database: &str) -> Result<&DatabaseEntry, String> {
        (self.config.databases.iter())
            .find(|db| db.name == database)
            .ok_or_else(|| format!("no database {database:?}"))
    }

    /// Records `text` as `db`'s map in force, when the proxy records maps and it changed.
    /// Best effort: a primary that cannot take it is logged (a proxy starting later then
    /// finds an older record, and holds the file's edit if it would move stored rows).
    async fn record(&self, db: &DatabaseEntry, text: &str, current: &mut Option<Recorded>) {
        let Some(fleet) = &self.config.fleet else {
            return;
        };
        let text = match map_record::redact(text) {
            Ok(text) => text,
            Err(why) => return tracing::warn!(database = db.name, why, "cannot record the map"),
        };
        if current.as_ref().is_some_and(|r| r.text == text) {
            return;
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        let now = now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let next = current.as_ref().map(|r| r.version.saturating_add(1));
        let recorded = Recorded {
            version: next.map_or(now, |next| now.max(next)),
            text,
        };
        let written = self
            .map_record(fleet, db)
            .write(&primaries(db), &recorded)
            .await;
        // Known only once a primary took it: a failed write is tried again by the next one.
        *current = written.ok().map(|()| recorded);
    }

    fn map_record<'a>(&'a self, fleet: &'a str, db: &'a DatabaseEntry) -> MapRecord<'a> {
        MapRecord {
            fleet,
            database: &db.name,
            timeout: self.config.pool.connect_timeout,
        }
    }

    /// At start, before clients: each database's map in force is the one recorded in
    /// PostgreSQL, when the file's differs from it and would move rows the shards hold (that
    /// edit is then held, as a running proxy holds it); otherwise the file's, recorded.
    pub async fn adopt_records(&self) -> Result<(), String> {
        let Some(fleet) = self.config.fleet.clone() else {
            return Ok(());
        };
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let mut databases = state.databases.clone();
        let mut held = Vec::new();
        for (i, db) in state.databases.iter().enumerate() {
            // The file as it is now (the config read it a moment ago: an edit in between is
            // recorded as the file says, and the watcher reloads it at once).
            let Ok((file_map, text)) = read_map(db) else {
                continue;
            };
            let file = &DatabaseEntry {
                shard_map: file_map,
                ..db.clone()
            };
            let found = self.map_record(&fleet, file).read(&primaries(file)).await;
            let recorded = match found {
                Err(why) => {
                    tracing::warn!(
                        database = db.name,
                        why,
                        "could not read the shard map recorded in force; the file's map serves"
                    );
                    continue;
                }
                Ok(recorded) => recorded,
            };
            // A move that decided to commit before its proxy stopped is finished first.
            let timeout = self.config.pool.connect_timeout;
            leftovers::resolve(&[&file.shard_map], Undecided::Leave, timeout).await;
            let redacted = map_record::redact(&text).ok();
            if let Some(recorded) = recorded
                .as_ref()
                .filter(|r| Some(&r.text) == redacted.as_ref())
            {
                state.records[i] = Some(recorded.clone());
                continue;
            }
            let in_force = match &recorded {
                Some(recorded) => Some(recorded_map(db, &recorded.text, &text)?),
                None => None,
            };
            let edit = match &in_force {
                Some(map) => reshard::check_edit(&db.name, map, &file.shard_map, timeout).await,
                None => None,
            };
            match (edit, in_force) {
                (Some(mut edit), Some(map)) => {
                    tracing::warn!(
                        summary = edit.summary(),
                        "the shard-map file differs from the map recorded in force; that map serves and the file's edit is held"
                    );
                    edit.edited_text = Some(text);
                    held.push(Arc::new(edit));
                    databases[i].shard_map = map;
                    state.records[i] = recorded;
                }
                _ => {
                    let mut current = recorded;
                    self.record(file, &text, &mut current).await;
                    state.records[i] = current;
                }
            }
        }
        let any_held = !held.is_empty();
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        if any_held {
            self.publish_next(state, databases);
        }
        Ok(())
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
                    if !self.files_changed().await {
                        continue;
                    }
                    "a shard-map file changed"
                }
            };
            self.reload_logged(trigger).await;
        }
    }

    async fn files_changed(&self) -> bool {
        let state = self.state.lock().await;
        stamps(&state.databases) != state.stamps
    }

    async fn reload_logged(&self, trigger: &str) {
        // A rejected file's stamp is recorded too, so it is reported once, not every tick.
        if let Err(error) = self.reload().await {
            tracing::error!(trigger, epoch = self.epoch(), %error, "shard map reload rejected; the previous maps stay in force");
        }
    }
}

/// The stamps of every database's shard-map file now.
fn stamps(databases: &[DatabaseEntry]) -> Vec<Option<(SystemTime, u64)>> {
    (databases.iter())
        .map(|db| stamp(&db.shard_map_path))
        .collect()
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

/// A database's shard-map file, parsed, and its text.
fn read_map(db: &DatabaseEntry) -> Result<(config::ShardMap, String), ConfigError> {
    let text = std::fs::read_to_string(&db.shard_map_path).map_err(|source| ConfigError::Read {
        file: db.shard_map_path.clone(),
        source,
    })?;
    let map = config::parse_shard_map(&text, &db.shard_map_path)?;
    Ok((map, text))
}

/// The map recorded in force for `db` (`recorded`, redacted), with the passwords of the file
/// `file`; why the proxy must not start when the record names servers the file does not.
fn recorded_map(
    db: &DatabaseEntry,
    recorded: &str,
    file: &str,
) -> Result<config::ShardMap, String> {
    let refused = |why: String| {
        format!(
            "database {:?}: the shard map recorded in force cannot serve: {why}. Put those shards back in {} (an edit that removes them is held until RESHARD moves their rows), or delete the record from shardgate.maps_in_force to serve the file as it is",
            db.name,
            db.shard_map_path.display()
        )
    };
    let text = map_record::with_file_secrets(recorded, file).map_err(refused)?;
    config::parse_shard_map(&text, &db.shard_map_path).map_err(|e| refused(e.to_string()))
}

/// The primaries of `db`'s map, where its record is kept.
fn primaries(db: &DatabaseEntry) -> Vec<&crate::config::BackendUri> {
    db.shard_map
        .shards
        .iter()
        .map(|shard| &shard.primary)
        .collect()
}

impl crate::admin::ReloadMaps for Reloader {
    fn reload_maps(&self, force: bool) -> BoxFuture<'_, Result<Reloaded, String>> {
        Box::pin(async move {
            let outcome = match force {
                true => self.reload_forced().await,
                false => self.reload().await,
            };
            outcome.map_err(|error| error.to_string())
        })
    }

    fn held_edits(&self) -> Vec<Arc<HeldEdit>> {
        self.held()
    }

    fn reshard(&self, database: Option<String>) -> BoxFuture<'_, Result<Arc<Reshard>, String>> {
        Box::pin(async move { Reloader::reshard(self, database.as_deref()).await })
    }

    fn reshards(&self) -> Vec<Arc<Reshard>> {
        Reloader::reshards(self)
    }

    fn fleet(&self) -> BoxFuture<'_, Result<(String, Vec<Listed>), String>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for db in &self.config.databases {
                let member = self.member(&db.name).ok_or(
                    "this proxy takes no lease in a fleet (`fleet` unset, or `fleet_lease: null`)",
                )?;
                all.extend(member.members().await.map_err(|why| {
                    format!(
                        "database {:?}: the fleet's table on {}: {why}",
                        db.name, member.primary
                    )
                })?);
            }
            Ok((self.proxy.clone(), all))
        })
    }
}
