//! Raw form of a shard map's `tables:` section, mirroring the YAML (see
//! `shard-maps/example.yaml`). Fields that only some strategies use are optional here;
//! validation says which belong together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of `tables:` (keyed by table name).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: a mapping with `strategy` (or `colocated_with`) and `key`"
)]
pub struct RawTable {
    /// `tables.T.strategy`: `hash`, `range`, `directory` or `reference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `tables.T.colocated_with`: another sharded table whose strategy this table shares, so
    /// rows with equal keys live on the same shard and joins on the key stay on one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocated_with: Option<String>,
    /// `tables.T.key`: the shard-key column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `tables.T.key_type`: `integer`, `text`, `uuid`, `date`, `timestamp` or `timestamptz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// `tables.T.multi_shard_writes`: `allow` (default) runs an UPDATE/DELETE that the key
    /// does not narrow to one shard on every shard that may hold its rows; `refuse` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_shard_writes: Option<String>,
    /// `tables.T.broadcast`: the older spelling of `multi_shard_writes` (`true` is `allow`,
    /// `false` is `refuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<bool>,
    /// `tables.T.vnodes`: hash ring points per shard (hash only, default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnodes: Option<u32>,
    /// `tables.T.shards`: the shards on the hash ring (hash only, default every shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<String>>,
    /// `tables.T.ranges`: key ranges in any order (range only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<RawRange>>,
    /// `tables.T.allow_gaps`: whether ranges may leave keys uncovered (range only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_gaps: Option<bool>,
    /// `tables.T.entries`: key → shard name (directory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<BTreeMap<RawScalar, String>>,
    /// `tables.T.fallback`: `error`, `hash` or a shard name (directory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// `tables.T.lookup`: a directory table in PostgreSQL (directory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<RawLookup>,
}

/// `tables.T.lookup`: where a directory keeps entries beyond those in the map.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a lookup: a mapping with `uri` and `table`"
)]
pub struct RawLookup {
    /// `lookup.uri`: `postgres://user:password@host:port/database` of the directory table.
    pub uri: String,
    /// `lookup.table`: the table (`key text PRIMARY KEY, shard text NOT NULL`).
    pub table: String,
    /// `lookup.channel`: the NOTIFY channel announcing changes (default: the table name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `lookup.cache_entries`: most keys cached per proxy (default 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_entries: Option<usize>,
}

/// One entry of `tables.T.ranges`: keys `from <= key < to` live on `shard`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a range: a mapping with `shard` and optional `from` and `to`"
)]
pub struct RawRange {
    /// `ranges[].shard`: where keys in this range live.
    pub shard: String,
    /// `ranges[].from`: inclusive lower bound (omitted: unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<RawScalar>,
    /// `ranges[].to`: exclusive upper bound (omitted: unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<RawScalar>,
}

/// A key written in YAML: a number or a string (dates and uuids are strings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged, expecting = "a key: a number or a string")]
pub enum RawScalar {
    /// `42`
    Integer(i64),
    /// `'2026-01-01'`, `abc`
    Text(String),
}

impl RawScalar {
    /// The key's text form, as a SQL literal would carry it.
    pub fn to_text(&self) -> String {
        match self {
            RawScalar::Integer(i) => i.to_string(),
            RawScalar::Text(text) => text.clone(),
        }
    }
}
