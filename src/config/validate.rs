//! Raw structs → validated domain types, reporting every problem with its YAML path.
//!
//! Part of the config stage. This module owns the rules a config must satisfy; it does not
//! stop at the first problem, so an operator fixes a file in one pass. It must never read
//! files itself (shard maps come through the loader it is given) and never open sockets.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::HumanDuration;
use super::load::{ConfigError, Problem};
use super::raw::{
    RawConfig, RawDatabase, RawLimits, RawLog, RawLogFormat, RawPool, RawPoolMode, RawReplicas,
    RawTransactions,
};
use super::{Config, DatabaseEntry, Limits, LogFormat, LogSettings, PoolMode, PoolSettings};
use super::{ReplicaSettings, ShardMap, TlsFiles, TransactionSettings};

mod protection;
mod shard_map;
mod tables;
mod users;

pub(super) use shard_map::shard_map;

/// Reads and validates the shard map at a path; `load_shard_map` in production, fakes in tests.
pub(super) type MapLoader<'a> = &'a mut dyn FnMut(&Path) -> Result<ShardMap, ConfigError>;

/// Problems found so far in one file.
pub(super) struct Problems {
    file: PathBuf,
    found: Vec<Problem>,
}

impl Problems {
    pub(super) fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            found: Vec::new(),
        }
    }

    /// Records a problem at a YAML path such as `users[0].name`.
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Display) {
        self.found.push(Problem {
            file: self.file.clone(),
            path: path.into(),
            message: message.to_string(),
        });
    }

    /// Records the error, if any, at `path` and passes the value on.
    pub(super) fn check<T, E: Display>(&mut self, path: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|error| self.add(path, error)).ok()
    }

    /// Records problems found in another file.
    pub(super) fn append(&mut self, more: Vec<Problem>) {
        self.found.extend(more);
    }

    /// Every problem found, in the order found, if there were any; otherwise the value.
    pub(super) fn finish<T>(self, value: T) -> Result<T, Vec<Problem>> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.found)
        }
    }

    /// Checks that `name` is non-empty and not yet in `seen` (name → path of first use).
    pub(super) fn unique_name(
        &mut self,
        seen: &mut HashMap<String, String>,
        path: String,
        name: &str,
        kind: &str,
    ) {
        if name.is_empty() {
            self.add(path, format!("{kind} name must not be empty"));
        } else if let Some(first) = seen.get(name) {
            self.add(
                path,
                format!("duplicate {kind} name {name:?} (first used at {first})"),
            );
        } else {
            seen.insert(name.to_owned(), path);
        }
    }
}

/// Validates a whole config read from `file`; relative paths are resolved against its
/// directory, and each shard map is read through `load_map`.
pub(super) fn config(
    raw: &RawConfig,
    file: &Path,
    load_map: MapLoader<'_>,
) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::new(file);
    let dir = config_dir(file);
    let listen = problems.check("listen", parse_listen(&raw.listen));
    let auth_method = users::auth_method(raw.auth.method);
    let users = users::users(&raw.users, auth_method, &mut problems);
    let tls = raw.tls.as_ref().map(|tls| TlsFiles {
        cert: non_empty_path(&mut problems, "tls.cert", dir, &tls.cert),
        key: non_empty_path(&mut problems, "tls.key", dir, &tls.key),
    });
    let pool = pool(&raw.pool, &mut problems);
    let limits = limits(&raw.limits, &mut problems);
    let log = log(&raw.log, &mut problems);
    let replicas = replicas(&raw.replicas, &mut problems);
    let shutdown = protection::shutdown(&raw.shutdown, &mut problems);
    let transactions = transactions(&raw.transactions, &mut problems);
    let databases = databases(&raw.databases, dir, load_map, &mut problems);
    let metrics_listen = match &raw.metrics {
        Some(metrics) => problems
            .check("metrics.listen", parse_listen(&metrics.listen))
            .map(Some),
        None => Some(None),
    };
    admin_users(raw, &mut problems);
    let (Some(listen), Some(pool), Some(limits), Some(log), Some(replicas), Some(shutdown)) =
        (listen, pool, limits, log, replicas, shutdown)
    else {
        return Err(problems.found);
    };
    let (Some(metrics_listen), Some(transactions)) = (metrics_listen, transactions) else {
        return Err(problems.found);
    };
    let fleet_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if raw.fleet.is_empty() || raw.fleet.len() > 63 || !raw.fleet.chars().all(fleet_ok) {
        problems.add("fleet", "must be 1 to 63 letters, digits, '_' or '-'");
    }
    let fleet_lease = optional_timeout(&mut problems, "fleet_lease", &raw.fleet_lease);
    if fleet_lease
        .flatten()
        .is_some_and(|lease| lease < MIN_FLEET_LEASE)
    {
        let why = "must be at least 2s (renewals take a round trip; null: no lease)";
        problems.add("fleet_lease", why);
    }
    if raw.runtime.worker_threads == Some(0) {
        problems.add(
            "runtime.worker_threads",
            "must be at least 1 (or absent for one per core)",
        );
    }
    problems.finish(Config {
        listen,
        auth_method,
        users,
        tls,
        pool,
        limits,
        databases,
        replicas,
        log,
        worker_threads: raw.runtime.worker_threads,
        metrics_listen,
        admin_users: raw.admin.users.clone(),
        shutdown,
        transactions,
        fleet: Some(raw.fleet.clone()),
        fleet_lease: fleet_lease.flatten(),
    })
}

fn transactions(raw: &RawTransactions, problems: &mut Problems) -> Option<TransactionSettings> {
    let interval = timeout(
        problems,
        "transactions.recovery_interval",
        &raw.recovery_interval,
    );
    let after = timeout(problems, "transactions.recover_after", &raw.recover_after);
    let deadlocks = timeout(
        problems,
        "transactions.deadlock_check_interval",
        &raw.deadlock_check_interval,
    );
    Some(TransactionSettings {
        atomic: raw.atomic,
        recovery_interval: interval?,
        recover_after: after?,
        deadlock_check_interval: deadlocks?,
    })
}

/// Admin users must be configured users who prove who they are, and no database may take the
/// console's name.
fn admin_users(raw: &RawConfig, problems: &mut Problems) {
    if !raw.admin.users.is_empty() && raw.auth.method == super::raw::RawAuthMethod::Trust {
        problems.add(
            "admin.users",
            "the admin console needs passwords: with auth.method trust anyone could log in as an \
             admin and PAUSE or RELOAD the proxy",
        );
    }
    for (i, name) in raw.admin.users.iter().enumerate() {
        if !raw.users.iter().any(|user| &user.name == name) {
            problems.add(
                format!("admin.users[{i}]"),
                format!("{name:?} is not one of `users`"),
            );
        }
    }
    for (i, db) in raw.databases.iter().enumerate() {
        if db.name == super::CONSOLE_DATABASE {
            problems.add(
                format!("databases[{i}].name"),
                "`shardgate` is the admin console's database; choose another name",
            );
        }
    }
}

/// The directory relative paths in `file` are resolved against.
pub(super) fn config_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new(""))
}

fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an IP address and port such as 127.0.0.1:6432 \
             (host names are not resolved)"
        )
    })
}

fn non_empty_path(problems: &mut Problems, path: &str, dir: &Path, file: &Path) -> PathBuf {
    if file.as_os_str().is_empty() {
        problems.add(path, "file path must not be empty");
    }
    dir.join(file)
}

fn pool(raw: &RawPool, problems: &mut Problems) -> Option<PoolSettings> {
    if raw.size == 0 {
        problems.add("pool.size", "must be at least 1");
    }
    if raw.min_idle > raw.size {
        let message = format!("{} is more than pool.size ({})", raw.min_idle, raw.size);
        problems.add("pool.min_idle", message);
    }
    if raw.max_prepared_statements == 0 {
        problems.add("pool.max_prepared_statements", "must be at least 1");
    }
    let checkout_timeout = timeout(problems, "pool.checkout_timeout", &raw.checkout_timeout);
    let connect_timeout = timeout(problems, "pool.connect_timeout", &raw.connect_timeout);
    let idle_timeout = optional_timeout(problems, "pool.idle_timeout", &raw.idle_timeout);
    let max_lifetime = optional_timeout(problems, "pool.max_lifetime", &raw.max_lifetime);
    Some(PoolSettings {
        mode: match raw.mode {
            RawPoolMode::Transaction => PoolMode::Transaction,
            RawPoolMode::Session => PoolMode::Session,
        },
        size: raw.size,
        min_idle: raw.min_idle,
        checkout_timeout: checkout_timeout?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        max_lifetime: max_lifetime?,
        max_prepared_statements: raw.max_prepared_statements,
    })
}

fn limits(raw: &RawLimits, problems: &mut Problems) -> Option<Limits> {
    if raw.max_message_bytes < 1024 {
        let message = format!(
            "{} is below the minimum of 1024 bytes",
            raw.max_message_bytes
        );
        problems.add("limits.max_message_bytes", message);
    }
    if raw.max_client_connections == 0 {
        problems.add("limits.max_client_connections", "must be at least 1");
    }
    for (field, bytes) in [
        ("limits.max_merge_bytes", raw.max_merge_bytes),
        ("limits.max_statement_bytes", raw.max_statement_bytes),
    ] {
        if bytes < 1024 {
            problems.add(field, format!("{bytes} is below the minimum of 1024 bytes"));
        }
    }
    let startup_timeout = timeout(problems, "limits.startup_timeout", &raw.startup_timeout);
    let protection = protection::client_limits(raw, problems);
    let protection = protection?;
    Some(Limits {
        max_message_bytes: raw.max_message_bytes,
        startup_timeout: startup_timeout?,
        max_client_connections: raw.max_client_connections,
        max_merge_bytes: raw.max_merge_bytes,
        max_statement_bytes: raw.max_statement_bytes,
        max_connections_per_user: protection.max_connections_per_user,
        statement_timeout: protection.statement_timeout,
        idle_in_transaction_timeout: protection.idle_in_transaction_timeout,
        client_idle_timeout: protection.client_idle_timeout,
        rate_limit: protection.rate_limit,
    })
}

fn replicas(raw: &RawReplicas, problems: &mut Problems) -> Option<ReplicaSettings> {
    let check_interval = timeout(problems, "replicas.check_interval", &raw.check_interval);
    let check_timeout = timeout(problems, "replicas.check_timeout", &raw.check_timeout);
    let max_lag = timeout(problems, "replicas.max_lag", &raw.max_lag);
    Some(ReplicaSettings {
        check_interval: check_interval?,
        check_timeout: check_timeout?,
        max_lag: max_lag?,
    })
}

fn log(raw: &RawLog, problems: &mut Problems) -> Option<LogSettings> {
    if raw.level.trim().is_empty() {
        problems.add("log.level", "must not be empty (try `info`)");
        return None;
    }
    let parsed = tracing_subscriber::EnvFilter::try_new(&raw.level);
    let parsed =
        parsed.map_err(|e| format!("{:?} is not a tracing filter directive: {e}", raw.level));
    problems.check("log.level", parsed)?;
    Some(LogSettings {
        format: match raw.format {
            RawLogFormat::Text => LogFormat::Text,
            RawLogFormat::Json => LogFormat::Json,
        },
        level: raw.level.clone(),
        slow_statement: optional_timeout(problems, "log.slow_statement", &raw.slow_statement)?,
    })
}

/// The shortest lease a proxy may take in its fleet.
const MIN_FLEET_LEASE: Duration = Duration::from_secs(2);

/// A duration that must be positive: a zero timeout would fail every attempt at once.
pub(super) fn timeout(
    problems: &mut Problems,
    path: &str,
    raw: &HumanDuration,
) -> Option<Duration> {
    match problems.check(path, raw.parse())? {
        Duration::ZERO => {
            problems.add(path, "must be greater than 0");
            None
        }
        duration => Some(duration),
    }
}

/// Like [`timeout`], but `null` (absent in the domain) turns the limit off.
pub(super) fn optional_timeout(
    problems: &mut Problems,
    path: &str,
    raw: &Option<HumanDuration>,
) -> Option<Option<Duration>> {
    match raw {
        None => Some(None),
        Some(text) if text.parse() == Ok(Duration::ZERO) => {
            problems.add(path, "must be greater than 0 (use null to turn it off)");
            None
        }
        Some(text) => timeout(problems, path, text).map(Some),
    }
}

fn databases(
    raw: &[RawDatabase],
    dir: &Path,
    load_map: MapLoader<'_>,
    problems: &mut Problems,
) -> Vec<DatabaseEntry> {
    if raw.is_empty() {
        problems.add("databases", "at least one database is required");
    }
    let mut seen = HashMap::new();
    let mut entries = Vec::with_capacity(raw.len());
    for (i, database) in raw.iter().enumerate() {
        let name_path = format!("databases[{i}].name");
        problems.unique_name(&mut seen, name_path, &database.name, "database");
        let path = format!("databases[{i}].shard_map");
        entries.extend(database_entry(
            database,
            &path,
            dir,
            &mut *load_map,
            problems,
        ));
    }
    entries
}

/// Loads one database's shard map; its problems are reported against the shard-map file,
/// except a file that cannot be read, which is the config's problem at `path`.
fn database_entry(
    raw: &RawDatabase,
    path: &str,
    dir: &Path,
    load_map: MapLoader<'_>,
    problems: &mut Problems,
) -> Option<DatabaseEntry> {
    if raw.shard_map.as_os_str().is_empty() {
        problems.add(path, "file path must not be empty");
        return None;
    }
    let shard_map_path = dir.join(&raw.shard_map);
    match load_map(&shard_map_path) {
        Ok(shard_map) => Some(DatabaseEntry {
            name: raw.name.clone(),
            shard_map_path,
            shard_map,
        }),
        Err(ConfigError::Invalid(found)) => {
            problems.append(found);
            None
        }
        Err(read @ ConfigError::Read { .. }) => {
            problems.add(path, read);
            None
        }
    }
}

#[cfg(test)]
mod tests;
