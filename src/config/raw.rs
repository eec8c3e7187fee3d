//! The config and shard-map files exactly as written: serde structs, one per YAML mapping.
//!
//! Part of the config stage. This module owns the file formats and their defaults; the doc
//! comment on each field is the reference for that key. It must never judge values (that is
//! `validate`'s job, so every problem is reported at once with its YAML path): the only errors
//! it raises are YAML syntax, unknown keys (`deny_unknown_fields`), missing required keys and
//! values of the wrong type.
//! Every struct serializes back to YAML that deserializes to an equal value, so tools (the
//! demo) can read a file, change it and write it out again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

mod protection;
mod tables;

pub use protection::{RawRateLimit, RawShutdown};
pub use tables::{RawLookup, RawRange, RawScalar, RawTable};

/// A whole `shardgate.yaml`. Only `users` and `databases` are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a shardgate config: a mapping with `users` and `databases`"
)]
pub struct RawConfig {
    /// `listen`: IP address and port clients connect to. Default `127.0.0.1:6432`; use
    /// `0.0.0.0:6432` to accept clients from other hosts. Host names are not resolved.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `auth`: how clients authenticate.
    #[serde(default)]
    pub auth: RawAuth,
    /// `users`: the logins the proxy accepts (at least one, names unique).
    pub users: Vec<RawUser>,
    /// `tls`: certificate and key for client TLS. Absent means TLS is refused (`N` to SSLRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// `pool`: settings shared by every backend connection pool.
    #[serde(default)]
    pub pool: RawPool,
    /// `limits`: protections against misbehaving or too many clients.
    #[serde(default)]
    pub limits: RawLimits,
    /// `replicas`: how replicas are watched.
    #[serde(default)]
    pub replicas: RawReplicas,
    /// `log`: log output.
    #[serde(default)]
    pub log: RawLog,
    /// `metrics`: the HTTP endpoint Prometheus scrapes. Absent: no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RawMetrics>,
    /// `admin`: who may open the admin console (database `shardgate`).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `runtime`: how the proxy uses the machine's cores.
    #[serde(default)]
    pub runtime: RawRuntime,
    /// `shutdown`: how a SIGTERM/SIGINT drains clients.
    #[serde(default)]
    pub shutdown: RawShutdown,
    /// `transactions`: how transactions that write on several shards commit.
    #[serde(default)]
    pub transactions: RawTransactions,
    /// `fleet`: proxies with the same fleet name in front of the same shards share the record
    /// of the shard map in force (in PostgreSQL, see `control::map_record`).
    #[serde(default = "default_fleet")]
    pub fleet: String,
    /// `fleet_lease`: how long a proxy's lease in its fleet lasts (renewed every second); a
    /// proxy that could not renew it for that long holds statements on sharded tables back.
    /// `null`: the proxy takes no lease and follows no other proxy's `RESHARD`.
    #[serde(default = "default_fleet_lease")]
    pub fleet_lease: Option<HumanDuration>,
    /// `databases`: the database names clients may connect to (at least one, names unique).
    pub databases: Vec<RawDatabase>,
}

fn default_fleet_lease() -> Option<HumanDuration> {
    Some(Duration::from_secs(10).into())
}

fn default_fleet() -> String {
    "default".to_owned()
}

fn default_listen() -> String {
    "127.0.0.1:6432".to_owned()
}

/// The `auth` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the auth section: a mapping with `method`"
)]
pub struct RawAuth {
    /// `auth.method`: `scram-sha-256` (default), `md5` or `trust`.
    pub method: RawAuthMethod,
}

/// Values of `auth.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RawAuthMethod {
    /// `scram-sha-256`: no password or reusable hash crosses the wire. Each user needs a
    /// `password` or a `scram_verifier`.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// `md5`: for old clients without SCRAM. Each user needs a `password` or an `md5` hash.
    #[serde(rename = "md5")]
    Md5,
    /// `trust`: anyone who can reach `listen` gets in as any listed user. Local development only.
    #[serde(rename = "trust")]
    Trust,
}

/// One entry of `users`. Give exactly one of `password`, `scram_verifier`, `md5`; with
/// `auth.method: trust` giving none is allowed too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a user: a mapping with `name` and one of `password`, `scram_verifier`, `md5`"
)]
pub struct RawUser {
    /// `users[].name`: login name, as the client sends it in its startup message.
    pub name: String,
    /// `users[].password`: plain-text password. Convenient for development; prefer
    /// `scram_verifier` in production so the file holds no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `users[].scram_verifier`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// as PostgreSQL stores it (`SELECT rolpassword FROM pg_authid`). Only for `scram-sha-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram_verifier: Option<String>,
    /// `users[].md5`: `md5` followed by hex(md5(password || name)), as PostgreSQL stores it.
    /// Only for `auth.method: md5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// The `tls` section: both files are required when it is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the tls section: a mapping with `cert` and `key`"
)]
pub struct RawTls {
    /// `tls.cert`: PEM certificate chain, relative to the config file's directory.
    pub cert: PathBuf,
    /// `tls.key`: PEM private key, relative to the config file's directory.
    pub key: PathBuf,
}

/// The `pool` section. Sizes apply to each pool; there is one pool per backend endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the pool section: a mapping of pool settings"
)]
pub struct RawPool {
    /// `pool.mode`: `transaction` (default) or `session`.
    pub mode: RawPoolMode,
    /// `pool.size`: most connections per backend endpoint (default 20, at least 1). Keep
    /// `size` × proxies below the backend's `max_connections`.
    pub size: u32,
    /// `pool.min_idle`: connections kept open while idle (default 0, at most `size`). Raise it
    /// to avoid connect latency after quiet periods.
    pub min_idle: u32,
    /// `pool.checkout_timeout`: how long a client waits for a free connection before failing
    /// with SQLSTATE 53300 (default `5s`).
    pub checkout_timeout: HumanDuration,
    /// `pool.connect_timeout`: how long opening one backend connection may take (default `5s`).
    pub connect_timeout: HumanDuration,
    /// `pool.idle_timeout`: close connections idle this long (default `10m`; `null` = never).
    pub idle_timeout: Option<HumanDuration>,
    /// `pool.max_lifetime`: close connections this old when they are returned (default `1h`;
    /// `null` = never). Bounds backend memory growth and spreads load after failovers.
    pub max_lifetime: Option<HumanDuration>,
    /// `pool.max_prepared_statements`: prepared statements a backend connection may hold before
    /// it is recycled (default 1000, at least 1).
    pub max_prepared_statements: usize,
}

impl Default for RawPool {
    fn default() -> Self {
        Self {
            mode: RawPoolMode::default(),
            size: 20,
            min_idle: 0,
            checkout_timeout: Duration::from_secs(5).into(),
            connect_timeout: Duration::from_secs(5).into(),
            idle_timeout: Some(Duration::from_secs(600).into()),
            max_lifetime: Some(Duration::from_secs(3600).into()),
            max_prepared_statements: 1000,
        }
    }
}

/// Values of `pool.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPoolMode {
    /// `transaction`: a backend is lent for one transaction, so many clients share few backends.
    #[default]
    Transaction,
    /// `session`: a backend is lent until the client disconnects; for applications that rely on
    /// session state the proxy does not carry over (advisory locks, `LISTEN`, temp tables).
    Session,
}

/// The `limits` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the limits section: a mapping of limits"
)]
pub struct RawLimits {
    /// `limits.max_message_bytes`: largest message a client may send (default 64 MiB, at least
    /// 1024). Bounds memory per client; CopyData is streamed and exempt.
    pub max_message_bytes: usize,
    /// `limits.startup_timeout`: time a client has to finish TLS, startup and authentication
    /// (default `10s`). Closes connections that never speak.
    pub startup_timeout: HumanDuration,
    /// `limits.max_client_connections`: most clients served at once; more are refused with
    /// SQLSTATE 53300 (default 10000, at least 1).
    pub max_client_connections: usize,
    /// `limits.max_statement_bytes`: longest statement text the proxy parses to route it
    /// (default 256 KiB, at least 1024). Parsing costs over 100 times a statement's size in
    /// memory; a longer statement is sent on untouched when it names no sharded or reference
    /// table or carries a shard hint, and refused with SQLSTATE 54000 otherwise.
    pub max_statement_bytes: usize,
    /// `limits.max_merge_bytes`: rows or groups one cross-shard read may hold in the proxy
    /// (GROUP BY, DISTINCT) before it fails with SQLSTATE 54000 (default 64 MiB, at least
    /// 1024).
    pub max_merge_bytes: usize,
    /// `limits.max_connections_per_user`: most clients one user may have connected at once;
    /// more are refused at login with SQLSTATE 53300 (default none: only
    /// `max_client_connections` applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<usize>,
    /// `limits.statement_timeout`: a statement (a Query, or an extended-protocol batch up to
    /// Sync) running longer than this is cancelled on its backends; the client gets SQLSTATE
    /// 57014 (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<HumanDuration>,
    /// `limits.idle_in_transaction_timeout`: a client idle inside a transaction longer than
    /// this is disconnected with SQLSTATE 25P03 and its transaction rolled back (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_in_transaction_timeout: Option<HumanDuration>,
    /// `limits.client_idle_timeout`: a client idle outside a transaction longer than this is
    /// disconnected with SQLSTATE 57P05 (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_idle_timeout: Option<HumanDuration>,
    /// `limits.rate_limit`: statements per second each user may run, over all its
    /// connections; more are refused with SQLSTATE 53400 (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RawRateLimit>,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024 * 1024,
            startup_timeout: Duration::from_secs(10).into(),
            max_client_connections: 10_000,
            max_statement_bytes: super::DEFAULT_MAX_STATEMENT_BYTES,
            max_merge_bytes: 64 * 1024 * 1024,
            max_connections_per_user: None,
            statement_timeout: None,
            idle_in_transaction_timeout: None,
            client_idle_timeout: None,
            rate_limit: None,
        }
    }
}

/// The `replicas` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the replicas section: a mapping with `check_interval`, `check_timeout` and \
                 `max_lag`"
)]
pub struct RawReplicas {
    /// `replicas.check_interval`: how often each replica (and each primary) is checked
    /// (default `1s`).
    pub check_interval: HumanDuration,
    /// `replicas.check_timeout`: a check that gets no reply within this (connect included)
    /// marks its server as stopped answering: it takes no new work and the statements waiting
    /// on it are abandoned, until a check gets a reply (default `2s`). A connection that
    /// opens proves nothing: a stopped server's kernel still accepts it.
    pub check_timeout: HumanDuration,
    /// `replicas.max_lag`: a replica further behind its primary than this serves no reads
    /// until it catches up (default `10s`).
    pub max_lag: HumanDuration,
}

impl Default for RawReplicas {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(1).into(),
            check_timeout: Duration::from_secs(2).into(),
            max_lag: Duration::from_secs(10).into(),
        }
    }
}

/// The `transactions` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the transactions section: a mapping with `atomic`, `recovery_interval`, \
                 `recover_after` and `deadlock_check_interval`"
)]
pub struct RawTransactions {
    /// `transactions.atomic`: a transaction that wrote on several shards, and a statement run
    /// on several primaries (DDL, reference or broadcast writes, split multi-row INSERTs),
    /// commits with two-phase commit, all or nothing (default `true`). `false` commits shard
    /// by shard, which is not atomic: a failure part-way leaves some shards committed.
    pub atomic: bool,
    /// `transactions.recovery_interval`: how often the proxy looks for prepared transactions
    /// left behind by a proxy or a shard that failed part-way, and ends them (default `5s`).
    pub recovery_interval: HumanDuration,
    /// `transactions.recover_after`: how old a prepared transaction must be before recovery
    /// touches it, so the proxy committing it finishes on its own (default `10s`).
    pub recover_after: HumanDuration,
    /// `transactions.deadlock_check_interval`: how often, while a transaction spans shards,
    /// the proxy looks for cycles of lock waits across shards (default `250ms`). A cycle seen
    /// twice in a row loses one transaction (`40P01`), so one is broken within about two
    /// intervals.
    pub deadlock_check_interval: HumanDuration,
}

impl Default for RawTransactions {
    fn default() -> Self {
        Self {
            atomic: true,
            recovery_interval: Duration::from_secs(5).into(),
            recover_after: Duration::from_secs(10).into(),
            deadlock_check_interval: Duration::from_millis(250).into(),
        }
    }
}

/// The `runtime` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the runtime section: a mapping with `worker_threads`"
)]
pub struct RawRuntime {
    /// `runtime.worker_threads`: threads that run client sessions (default: one per CPU core).
    /// Set 1 when the proxy shares a small machine with the database or the load generator:
    /// one thread avoids cross-thread wake-ups, as single-threaded poolers do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the log section: a mapping with `format` and `level`"
)]
pub struct RawLog {
    /// `log.format`: `text` (default) or `json`.
    pub format: RawLogFormat,
    /// `log.level`: a `tracing` env-filter directive (default `info`), e.g.
    /// `info,shardgate::router=debug` to see routing decisions.
    pub level: String,
    /// `log.slow_statement`: statements taking longer than this are logged at WARN with their
    /// route and duration (default `1s`; `null` turns the log off).
    pub slow_statement: Option<HumanDuration>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: RawLogFormat::default(),
            level: "info".to_owned(),
            slow_statement: Some(Duration::from_secs(1).into()),
        }
    }
}

/// The `metrics` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the metrics section: a mapping with `listen`"
)]
pub struct RawMetrics {
    /// `metrics.listen`: IP address and port of the HTTP endpoint serving `/metrics`
    /// (Prometheus text format), `/health` and `/ready`.
    pub listen: String,
}

/// The `admin` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the admin section: a mapping with `users`"
)]
pub struct RawAdmin {
    /// `admin.users`: names from `users` that may connect to the admin console, the database
    /// `shardgate` (default: none, so no one can).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// Values of `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// `text`: one human-readable line per event.
    #[default]
    Text,
    /// `json`: one JSON object per line, for log shippers.
    Json,
}

/// One entry of `databases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a database: a mapping with `name` and `shard_map`"
)]
pub struct RawDatabase {
    /// `databases[].name`: the database name clients put in their connection string.
    pub name: String,
    /// `databases[].shard_map`: the shard-map file for this database, relative to the config
    /// file's directory.
    pub shard_map: PathBuf,
}

/// A whole shard-map file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a shard map: a mapping with `shards`"
)]
pub struct RawShardMap {
    /// `shards`: every shard, in order (at least one, names unique). A shard's position is its
    /// `ShardId`, so append new shards rather than reordering.
    #[serde(default)]
    pub shards: Vec<RawShard>,
    /// `default_shard`: shard for everything the map does not place elsewhere (default: the
    /// first shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_shard: Option<String>,
    /// `tables`: sharded and reference tables by name; tables not named here live on the
    /// default shard.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, RawTable>,
    /// `reads`: where reads that may use a replica go, for every shard without its own
    /// `reads` (default `replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<RawReads>,
}

/// `reads` of a shard map or a shard: where replica-safe reads go (`replica` or `primary`),
/// or a mapping with `from`, `consistency` and `causal_wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "reads: `replica`, `primary`, or a mapping with `from`, `consistency` \
                 (causal, global, session, eventual) and `causal_wait`"
)]
pub enum RawReads {
    /// `reads: replica | primary`.
    From(RawReadsFrom),
    /// `reads: {from, consistency, causal_wait}`.
    Settings(RawReadSettings),
}

/// Where replica-safe reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawReadsFrom {
    /// A healthy replica when the shard has one, else the primary.
    Replica,
    /// Always the primary.
    Primary,
}

/// `reads` as a mapping; each field left out is the map's (for a shard) or the default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadSettings {
    /// `reads.from`: `replica` (default) or `primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<RawReadsFrom>,
    /// `reads.consistency`: what a replica read must reflect (default `causal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<RawConsistency>,
    /// `reads.causal_wait`: how long a causal read waits for a replica to catch up before it
    /// reads the primary (default 50ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causal_wait: Option<HumanDuration>,
}

/// `reads.consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawConsistency {
    /// Every write acknowledged through this proxy before the read began.
    Causal,
    /// The reading session's own writes only.
    Session,
    /// Bounded by `replicas.max_lag` only.
    Eventual,
    /// Also writes through other proxies or made directly on the primary.
    Global,
}

impl RawReads {
    /// The mapping form of either spelling.
    pub fn settings(self) -> RawReadSettings {
        match self {
            RawReads::From(from) => RawReadSettings {
                from: Some(from),
                ..RawReadSettings::default()
            },
            RawReads::Settings(settings) => settings,
        }
    }
}

/// One entry of `shards`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a shard: a mapping with `name`, `primary` and optional `replicas`"
)]
pub struct RawShard {
    /// `shards[].name`: operator-facing name, used in logs, metrics and `default_shard`.
    pub name: String,
    /// `shards[].primary`: `postgres://user:password@host:port/database` of the server that
    /// takes writes. The user and password are what the proxy logs in with.
    pub primary: String,
    /// `shards[].replicas`: URIs of streaming replicas of the primary, for reads (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// `shards[].reads`: overrides the map's `reads` for this shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<RawReads>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_sections_take_their_defaults() {
        let raw: RawConfig = serde_yaml::from_str("users: []\ndatabases: []\n").unwrap();
        assert_eq!(raw.listen, "127.0.0.1:6432");
        assert_eq!(raw.auth.method, RawAuthMethod::ScramSha256);
        assert_eq!(raw.pool, RawPool::default());
        assert_eq!(raw.limits, RawLimits::default());
        assert_eq!(raw.log, RawLog::default());
        assert_eq!(
            raw.pool.idle_timeout.as_ref().map(HumanDuration::as_str),
            Some("10m")
        );
    }

    #[test]
    fn null_turns_an_optional_timeout_off() {
        let yaml = "users: []\ndatabases: []\npool: {idle_timeout: null, size: 3}\n";
        let raw: RawConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(raw.pool.idle_timeout, None);
        assert_eq!(raw.pool.max_lifetime, RawPool::default().max_lifetime);
        assert_eq!(raw.pool.size, 3);
    }

    #[test]
    fn config_round_trips_through_yaml() {
        let yaml = "users: [{name: a, md5: md5x}]\ndatabases: [{name: d, shard_map: m.yaml}]\n\
                    auth: {method: md5}\npool: {idle_timeout: null}\nlog: {format: json}\n";
        let raw: RawConfig = serde_yaml::from_str(yaml).unwrap();
        let written = serde_yaml::to_string(&raw).unwrap();
        assert_eq!(serde_yaml::from_str::<RawConfig>(&written).unwrap(), raw);
    }

    #[test]
    fn shard_map_round_trips_through_yaml() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/shard-maps/demo.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let raw: RawShardMap = serde_yaml::from_str(&text).unwrap();
        assert_eq!(raw.shards.len(), 2);
        let written = serde_yaml::to_string(&raw).unwrap();
        assert_eq!(serde_yaml::from_str::<RawShardMap>(&written).unwrap(), raw);
    }
}
