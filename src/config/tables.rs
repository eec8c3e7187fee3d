//! Tables of a shard map and how their rows are placed: the validated form of `tables:`.
//!
//! Part of the config stage, pure data. Validation guarantees what the router relies on: every
//! table has one placement, co-located tables share one [`Strategy`] (the same `Arc`), range
//! bounds are sorted and do not overlap, directory entries name existing shards. The router
//! turns a [`Strategy`] into something it can look keys up in (`router::strategy`).

use std::collections::HashMap;
use std::sync::Arc;

use super::ShardId;
use super::key::{KeyType, KeyValue};

/// A table the map names, with where its rows live.
#[derive(Debug, Clone)]
pub struct Table {
    /// Lower-case table name as written in the map (unqualified: `public.users` is `users`).
    pub name: String,
    /// How its rows are spread over the shards.
    pub placement: Placement,
    /// Whether an UPDATE/DELETE that the key does not narrow to one shard runs on every shard
    /// that may hold its rows (as one server would run it), or is refused (a guard some
    /// operators want against writes that lock every shard).
    pub multi_shard_writes: MultiShardWrites,
}

/// Whether UPDATE/DELETE statements of a sharded table may run on several shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiShardWrites {
    /// Run them on every shard that may hold rows, atomically (the default).
    #[default]
    Allow,
    /// Refuse them with SQLSTATE 0A000.
    Refuse,
}

/// Where a table's rows live.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Split over shards by the value of one column.
    Sharded(Sharding),
    /// A full copy on every shard: writes go to every primary, reads to any one shard.
    Reference,
}

/// The shard key of a sharded table and the strategy that places it.
#[derive(Debug, Clone)]
pub struct Sharding {
    /// Lower-case name of the key column.
    pub key_column: String,
    /// How key values are parsed, compared and hashed.
    pub key_type: KeyType,
    /// Shared (same `Arc`) by every table co-located with this one.
    pub strategy: Arc<Strategy>,
    /// Name of the table whose strategy this is (itself unless `colocated_with` is set):
    /// co-located tables are those with the same group.
    pub group: String,
}

/// How key values map to shards.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// A consistent-hashing ring.
    Hash(HashSpec),
    /// Ordered key ranges.
    Range(RangeSpec),
    /// Explicit key → shard entries, with a fallback.
    Directory(DirectorySpec),
}

impl Strategy {
    /// The PostgreSQL directory table a directory strategy consults, if it has one.
    pub fn lookup_table(&self) -> Option<&LookupTable> {
        match self {
            Strategy::Directory(spec) => spec.lookup.as_deref(),
            _ => None,
        }
    }
}

/// A consistent-hashing ring over some shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSpec {
    /// The shards on the ring with their names (placement hashes the name, so a shard keeps
    /// its keys when others are added or removed).
    pub shards: Vec<(ShardId, String)>,
    /// Points per shard on the ring.
    pub vnodes: u32,
}

/// Default points per shard on a hash ring: spreads keys within a few percent (DESIGN.md).
pub const DEFAULT_VNODES: u32 = 64;

/// Ordered, non-overlapping key ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    /// Sorted by lower bound; no two overlap. Gaps only when `gaps` is `Allow`.
    pub ranges: Vec<KeyRange>,
    /// Whether keys may fall between ranges (and then get an error).
    pub gaps: Gaps,
}

/// One range: keys `from <= key < to` live on `shard`. `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub from: Option<KeyValue>,
    /// Exclusive upper bound.
    pub to: Option<KeyValue>,
    /// Where these keys live.
    pub shard: ShardId,
}

/// Whether a range map must cover every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gaps {
    /// Ranges must cover every key from the first bound to the last (the map is refused
    /// otherwise).
    #[default]
    Refuse,
    /// Ranges may leave gaps; a key in a gap is an error naming the key and table.
    Allow,
}

/// Explicit key → shard entries.
#[derive(Debug, Clone)]
pub struct DirectorySpec {
    /// Entries written in the map.
    pub entries: HashMap<KeyValue, ShardId>,
    /// Where keys without an entry go.
    pub fallback: Fallback,
    /// A table in PostgreSQL holding more entries, consulted after `entries`.
    pub lookup: Option<Box<LookupTable>>,
}

/// A directory table (`key text PRIMARY KEY, shard text NOT NULL`) in a PostgreSQL database,
/// shared by every proxy: read on a cache miss, and invalidated by `NOTIFY channel, 'key'`
/// (an empty payload drops the whole cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupTable {
    /// Where the table lives.
    pub uri: super::BackendUri,
    /// The table, possibly schema-qualified; validated as plain identifiers.
    pub table: String,
    /// The LISTEN channel that announces changes.
    pub channel: String,
    /// Most keys cached (the cache starts over when full).
    pub cache_entries: usize,
    /// Every shard of the map by name: a row may name any of them.
    pub shards: Vec<(ShardId, String)>,
}

/// What a directory does with a key it has no entry for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Refuse the statement, naming the key and table.
    Error,
    /// Put the key on this shard.
    Shard(ShardId),
    /// Place the key by consistent hashing.
    Hash(HashSpec),
}
