//! Configuration: the stage that turns YAML files into validated domain types.
//!
//! `raw` holds serde structs that mirror the files (`deny_unknown_fields`), `validate` turns
//! them into the types below, reporting every problem with its YAML path. Everything past this
//! module works with these types only: durations are `Duration`, backends are parsed
//! [`BackendUri`]s, shards are addressed by [`ShardId`]. This module is pure: it reads files,
//! it never opens sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod duration;
pub mod key;
mod load;
pub mod raw;
mod secret;
pub mod tables;
mod uri;
mod validate;

pub use duration::{DurationError, HumanDuration, format_duration, parse_duration};
pub use key::{KeyError, KeyType, KeyValue};
pub use load::{
    ConfigError, Problem, load_config, load_shard_map, parse_shard_map, render_problems,
};
pub use secret::{ScramVerifier, SecretError, normalize_md5_hash};
pub use tables::{MultiShardWrites, Placement, Sharding, Strategy, Table};
pub use uri::{BackendUri, UriError};

/// The whole proxy configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy accepts clients on.
    pub listen: SocketAddr,
    /// How clients prove who they are.
    pub auth_method: ClientAuthMethod,
    /// Users allowed to connect, with their secrets.
    pub users: Vec<UserEntry>,
    /// TLS for clients; `None` answers SSLRequest with `N`.
    pub tls: Option<TlsFiles>,
    /// Backend pool settings, shared by every pool.
    pub pool: PoolSettings,
    /// Protection limits for client connections.
    pub limits: Limits,
    /// Logical databases clients can connect to, each backed by a shard map.
    pub databases: Vec<DatabaseEntry>,
    /// How replicas are watched.
    pub replicas: ReplicaSettings,
    /// Log output settings.
    pub log: LogSettings,
    /// Threads running client sessions; `None` means one per CPU core.
    pub worker_threads: Option<usize>,
    /// Where the metrics endpoint listens; `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Users allowed into the admin console.
    pub admin_users: Vec<String>,
    /// How a SIGTERM/SIGINT drains clients.
    pub shutdown: ShutdownSettings,
    /// How transactions that write on several shards commit.
    pub transactions: TransactionSettings,
    /// The fleet whose record of the map in force this proxy shares (`control::map_record`);
    /// `None`: nothing is recorded (tests that run many independent proxies on one cluster).
    pub fleet: Option<String>,
    /// How long this proxy's lease in its fleet lasts (`app::fleet`); `None`: it takes none
    /// (it runs alone: no fleet's RESHARD waits for it, and it follows none).
    pub fleet_lease: Option<Duration>,
}

/// How transactions that write on several shards, and statements run on several primaries,
/// commit (see `control::two_phase`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSettings {
    /// Two-phase commit: all or nothing. Off: shard by shard, not atomic.
    pub atomic: bool,
    /// Time between two runs of recovery.
    pub recovery_interval: Duration,
    /// Recovery leaves younger prepared transactions to the proxy committing them.
    pub recover_after: Duration,
    /// Time between two polls for cycles of lock waits across shards.
    pub deadlock_check_interval: Duration,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        Self {
            atomic: true,
            recovery_interval: Duration::from_secs(5),
            recover_after: Duration::from_secs(10),
            deadlock_check_interval: Duration::from_millis(250),
        }
    }
}

impl Config {
    /// The database a client named in its startup message, if it is configured; `None` is
    /// answered with SQLSTATE 3D000. Names are compared exactly, as PostgreSQL does.
    pub fn database(&self, name: &str) -> Option<&DatabaseEntry> {
        self.databases.iter().find(|database| database.name == name)
    }

    /// The user a client logs in as, if it is configured; `None` fails authentication.
    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|user| user.name == name)
    }
}

/// Client authentication method (the `auth.method` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// SCRAM-SHA-256, the default: no password crosses the wire.
    ScramSha256,
    /// MD5 challenge: needs a plain password or an `md5…` hash per user.
    Md5,
    /// No password at all: only for local development.
    Trust,
}

/// One user the proxy accepts.
#[derive(Debug, Clone)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// What the proxy checks the client's proof against.
    pub secret: UserSecret,
}

/// A user's stored secret. Plain passwords are allowed for development and the demo; a SCRAM
/// verifier (as in `pg_authid.rolpassword`) keeps plain text out of the config.
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    /// Plain text password.
    Password(String),
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    ScramVerifier(String),
    /// `md5` followed by hex(md5(password || user)).
    Md5Hash(String),
    /// No secret: only valid with `auth.method: trust`.
    None,
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never render secrets, even in debug logs.
        let kind = match self {
            UserSecret::Password(_) => "Password(<redacted>)",
            UserSecret::ScramVerifier(_) => "ScramVerifier(<redacted>)",
            UserSecret::Md5Hash(_) => "Md5Hash(<redacted>)",
            UserSecret::None => "None",
        };
        f.write_str(kind)
    }
}

/// Certificate and key (PEM) for client TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// When a client gives its backend connection back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// At the end of every transaction (the default): many clients share few backends.
    Transaction,
    /// When the client disconnects: for applications that need full session semantics.
    Session,
}

/// Settings for every backend pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Transaction or session pooling.
    pub mode: PoolMode,
    /// Maximum connections per backend endpoint.
    pub size: u32,
    /// Connections kept open while idle, per endpoint.
    pub min_idle: u32,
    /// How long a client waits for a connection before SQLSTATE 53300.
    pub checkout_timeout: Duration,
    /// How long opening one backend connection may take.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are closed when returned.
    pub max_lifetime: Option<Duration>,
    /// Backend-side prepared statements kept per connection before it is recycled.
    pub max_prepared_statements: usize,
}

/// Limits that protect the proxy from clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message a client may send (CopyData is streamed and exempt).
    pub max_message_bytes: usize,
    /// Time a client has to finish startup and authentication.
    pub startup_timeout: Duration,
    /// Most client connections served at once; more are refused with 53300.
    pub max_client_connections: usize,
    /// Longest statement text the router parses; longer ones are routed by the tables they
    /// name alone.
    pub max_statement_bytes: usize,
    /// Bytes one cross-shard merge may buffer before the statement fails with 54000.
    pub max_merge_bytes: usize,
    /// Most clients one user may have connected at once (more: 53300); `None` = no limit.
    pub max_connections_per_user: Option<usize>,
    /// A statement running longer is cancelled on its backends (57014); `None` = never.
    pub statement_timeout: Option<Duration>,
    /// A client idle this long inside a transaction is disconnected (25P03); `None` = never.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// A client idle this long outside a transaction is disconnected (57P05); `None` = never.
    pub client_idle_timeout: Option<Duration>,
    /// Statements per second per user, over all its connections (more: 53400).
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket per user (`limits.rate_limit`): `burst` statements at once, refilled at
/// `statements_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained rate; finite and greater than 0.
    pub statements_per_second: f64,
    /// Bucket size; at least 1.
    pub burst: u32,
}

/// How the proxy stops (the `shutdown` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// How long clients inside a transaction may take to finish it once shutdown starts;
    /// then they are disconnected and their transactions rolled back.
    pub drain_timeout: Duration,
}

/// How the control plane watches replicas.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// Time between two checks of one replica.
    pub check_interval: Duration,
    /// A check (connect and query) without a reply within this marks the server as stopped
    /// answering: out of use, and work waiting on it abandoned.
    pub check_timeout: Duration,
    /// A replica further behind than this serves no reads.
    pub max_lag: Duration,
}

/// Log output settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Human-readable or JSON lines.
    pub format: LogFormat,
    /// A `tracing` env-filter directive such as `info` or `shardgate=debug`.
    pub level: String,
    /// Statements slower than this are logged; `None`: never.
    pub slow_statement: Option<Duration>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A logical database: the name clients put in their connection string, and its shard map.
#[derive(Debug, Clone)]
pub struct DatabaseEntry {
    /// Database name clients connect to.
    pub name: String,
    /// File the shard map was read from (reload re-reads it).
    pub shard_map_path: PathBuf,
    /// The validated shard map.
    pub shard_map: ShardMap,
}

/// Index of a shard in its [`ShardMap`]; stable for the life of one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

/// Where data lives: shards, and the tables placed on them by key or copied to all of them.
#[derive(Debug, Clone)]
pub struct ShardMap {
    /// Every shard, indexed by [`ShardId`].
    pub shards: Vec<Shard>,
    /// Shard for everything the map does not place elsewhere.
    pub default_shard: ShardId,
    /// Sharded and reference tables by lower-case name; any other table lives on the default
    /// shard.
    pub tables: HashMap<String, Table>,
}

impl ShardMap {
    /// The shard with this id. Ids come from this map, so the lookup cannot miss.
    pub fn shard(&self, id: ShardId) -> &Shard {
        &self.shards[id.0 as usize]
    }

    /// The placement of `table`, if the map shards it (reference and unlisted tables: `None`).
    pub fn sharding(&self, table: &str) -> Option<&Sharding> {
        match &self.tables.get(table)?.placement {
            Placement::Sharded(sharding) => Some(sharding),
            Placement::Reference => None,
        }
    }

    /// The shard an operator named (admin commands, `default_shard`), if the map has it.
    pub fn shard_by_name(&self, name: &str) -> Option<&Shard> {
        self.shards.iter().find(|shard| shard.name == name)
    }

    /// Every shard id, in order.
    pub fn shard_ids(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.shards.iter().map(|shard| shard.id)
    }
}

/// One shard: a primary and its streaming replicas.
#[derive(Debug, Clone)]
pub struct Shard {
    /// This shard's index in the map.
    pub id: ShardId,
    /// Operator-facing name, unique within the map.
    pub name: String,
    /// Where writes go.
    pub primary: BackendUri,
    /// Read replicas of the primary.
    pub replicas: Vec<BackendUri>,
    /// Where reads that may use a replica go.
    pub reads: ReadsFrom,
    /// What a read served by a replica must reflect.
    pub consistency: Consistency,
    /// How long a causal read waits for a replica to catch up before it reads the primary.
    pub causal_wait: std::time::Duration,
}

/// What a read served by a replica must reflect (`reads.consistency` in the shard map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Every write acknowledged through this proxy, by any session, before the read began
    /// (the default): a replica is used once it has replayed them.
    Causal,
    /// The reading session's own writes only.
    Session,
    /// Whatever the replica has, within `replicas.max_lag`.
    Eventual,
    /// Every write committed on the primary before the read began, through any proxy or
    /// none: the read learns the primary's position first (one probe, shared by concurrent
    /// reads of the shard).
    Global,
}

/// How long a causal read waits for a replica by default (`reads.causal_wait`).
pub const DEFAULT_CAUSAL_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Where a shard's replica-safe reads go (`reads` in the shard map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsFrom {
    /// A healthy replica when there is one (the default); the primary otherwise.
    Replica,
    /// Always the primary: for shards whose replicas lag too far for the application.
    Primary,
}

/// Which server of a shard: the primary (writes) or a streaming replica (reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The shard's primary.
    Primary,
    /// A streaming replica.
    Replica,
}

impl Role {
    /// `primary` or `replica`, as metrics, logs and the console say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// The database name that opens the admin console instead of a sharded database (no
/// database of the config may take it).
pub const CONSOLE_DATABASE: &str = "shardgate";

/// Default of `limits.max_statement_bytes`: the longest statement text the router parses.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 256 * 1024;
