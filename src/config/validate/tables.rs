//! Validation of a shard map's `tables:` section into [`Table`]s.
//!
//! Part of the config stage. Owns the rules that keep routing unambiguous: one strategy per
//! table, fields that belong to its strategy only, co-located tables sharing their root's
//! strategy and key type, range bounds parsed, sorted and checked for overlaps and gaps,
//! directory entries and fallbacks naming real shards. Pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Problems;
use crate::config::key::{KeyType, KeyValue};
use crate::config::raw::{RawScalar, RawTable};
use crate::config::tables::{
    DEFAULT_VNODES, DirectorySpec, Fallback, HashSpec, MultiShardWrites, Placement, Sharding,
    Strategy, Table,
};
use crate::config::{Shard, ShardId};

mod lookup;
mod ranges;

/// Largest `vnodes`: more points only cost memory once spread is within a percent.
const MAX_VNODES: u32 = 4096;

/// Validates every table; problems are reported at `tables.NAME.field`.
pub(super) fn tables(
    raw: &BTreeMap<String, RawTable>,
    shards: &[Shard],
    problems: &mut Problems,
) -> HashMap<String, Table> {
    let mut names = HashMap::new();
    let mut found = HashMap::new();
    let roots = raw.iter().filter(|(_, t)| t.colocated_with.is_none());
    let colocated = raw.iter().filter(|(_, t)| t.colocated_with.is_some());
    for (name, table) in roots.chain(colocated) {
        let path = format!("tables.{name}");
        let lower = name.to_lowercase();
        problems.unique_name(&mut names, path.clone(), &lower, "table");
        if lower.contains('.') {
            problems.add(&path, "write the table name without a schema");
        }
        let context = Context {
            path,
            shards,
            tables: &found,
        };
        if let Some(placement) = placement(table, &context, problems) {
            let table = Table {
                name: lower.clone(),
                placement,
                multi_shard_writes: multi_shard_writes(table, &context, problems),
            };
            found.insert(lower, table);
        }
    }
    found
}

/// What validating one table needs to see.
struct Context<'a> {
    path: String,
    shards: &'a [Shard],
    /// Tables validated so far (every root before any co-located table).
    tables: &'a HashMap<String, Table>,
}

impl Context<'_> {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn shard(&self, problems: &mut Problems, path: String, name: &str) -> Option<ShardId> {
        let found = self.shards.iter().find(|shard| shard.name == name);
        if found.is_none() {
            problems.add(path, format!("no shard is named {name:?}"));
        }
        found.map(|shard| shard.id)
    }
}

fn placement(raw: &RawTable, cx: &Context<'_>, problems: &mut Problems) -> Option<Placement> {
    if let Some(root) = &raw.colocated_with {
        return colocated(raw, root, cx, problems);
    }
    let Some(strategy) = raw.strategy.as_deref() else {
        problems.add(&cx.path, "set `strategy` (or `colocated_with`)");
        return None;
    };
    refuse_foreign_fields(raw, strategy, cx, problems);
    if strategy == "reference" {
        if raw.key.is_some() || raw.key_type.is_some() {
            problems.add(cx.field("key"), "a reference table has no shard key");
        }
        return Some(Placement::Reference);
    }
    let key_column = key_column(raw, cx, problems);
    let key_type = key_type(raw, cx, problems);
    let strategy = match strategy {
        "hash" => hash(raw, cx, problems),
        "range" => ranges::range(raw, key_type?, cx, problems),
        "directory" => directory(raw, key_type?, cx, problems),
        other => {
            let expected = "`hash`, `range`, `directory` or `reference`";
            problems.add(cx.field("strategy"), format!("{other:?} is not {expected}"));
            None
        }
    };
    Some(Placement::Sharded(Sharding {
        key_column: key_column?,
        key_type: key_type?,
        strategy: Arc::new(strategy?),
        group: cx.path["tables.".len()..].to_lowercase(),
    }))
}

/// A co-located table takes its root's strategy; only its key column (and broadcast) are its own.
fn colocated(
    raw: &RawTable,
    root: &str,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<Placement> {
    refuse_foreign_fields(raw, "colocated_with", cx, problems);
    let key_column = key_column(raw, cx, problems);
    let path = cx.field("colocated_with");
    let Some(Placement::Sharded(root)) = cx.tables.get(&root.to_lowercase()).map(|t| &t.placement)
    else {
        problems.add(
            path,
            format!("{root:?} is not a sharded table with a `strategy`"),
        );
        return None;
    };
    if let Some(own) = raw.key_type.as_deref()
        && KeyType::from_name(own) != Some(root.key_type)
    {
        let shared = root.key_type;
        problems.add(
            cx.field("key_type"),
            format!("co-located keys must share {shared}"),
        );
    }
    Some(Placement::Sharded(Sharding {
        key_column: key_column?,
        ..root.clone()
    }))
}

fn key_column(raw: &RawTable, cx: &Context<'_>, problems: &mut Problems) -> Option<String> {
    let Some(key) = raw.key.as_deref().filter(|key| !key.is_empty()) else {
        problems.add(
            cx.field("key"),
            "a sharded table needs its shard-key column",
        );
        return None;
    };
    Some(key.to_lowercase())
}

fn key_type(raw: &RawTable, cx: &Context<'_>, problems: &mut Problems) -> Option<KeyType> {
    let expected = "integer, text, uuid, date, timestamp or timestamptz";
    let Some(name) = raw.key_type.as_deref() else {
        problems.add(
            cx.field("key_type"),
            format!("set the key's type: {expected}"),
        );
        return None;
    };
    let found = KeyType::from_name(name);
    if found.is_none() {
        problems.add(cx.field("key_type"), format!("{name:?} is not {expected}"));
    }
    found
}

/// Fields of other strategies are mistakes the operator should hear about, not ignore.
fn refuse_foreign_fields(
    raw: &RawTable,
    strategy: &str,
    cx: &Context<'_>,
    problems: &mut Problems,
) {
    let fields: [(&str, bool, &[&str]); 7] = [
        ("vnodes", raw.vnodes.is_some(), &["hash"]),
        ("shards", raw.shards.is_some(), &["hash"]),
        ("ranges", raw.ranges.is_some(), &["range"]),
        ("allow_gaps", raw.allow_gaps.is_some(), &["range"]),
        ("entries", raw.entries.is_some(), &["directory"]),
        ("fallback", raw.fallback.is_some(), &["directory"]),
        ("lookup", raw.lookup.is_some(), &["directory"]),
    ];
    for (field, present, allowed) in fields {
        if present && !allowed.contains(&strategy) {
            let only = allowed.join(", ");
            problems.add(
                cx.field(field),
                format!("only a {only} table takes `{field}`"),
            );
        }
    }
    if strategy == "colocated_with" && raw.strategy.is_some() {
        problems.add(
            cx.field("strategy"),
            "a co-located table shares its root's strategy",
        );
    }
}

fn hash(raw: &RawTable, cx: &Context<'_>, problems: &mut Problems) -> Option<Strategy> {
    let spec = hash_spec(raw.vnodes, raw.shards.as_deref(), cx, problems)?;
    Some(Strategy::Hash(spec))
}

fn hash_spec(
    vnodes: Option<u32>,
    names: Option<&[String]>,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<HashSpec> {
    let vnodes = vnodes.unwrap_or(DEFAULT_VNODES);
    if !(1..=MAX_VNODES).contains(&vnodes) {
        problems.add(cx.field("vnodes"), format!("must be 1 to {MAX_VNODES}"));
    }
    let shards: Vec<(ShardId, String)> = match names {
        None => (cx.shards.iter()).map(|s| (s.id, s.name.clone())).collect(),
        Some(names) => {
            let ids = names.iter().enumerate().map(|(i, name)| {
                let id = cx.shard(problems, cx.field(&format!("shards[{i}]")), name);
                id.map(|id| (id, name.clone()))
            });
            ids.collect::<Vec<_>>().into_iter().collect::<Option<_>>()?
        }
    };
    if shards.is_empty() {
        problems.add(cx.field("shards"), "a hash ring needs at least one shard");
    }
    Some(HashSpec { shards, vnodes })
}

fn directory(
    raw: &RawTable,
    key_type: KeyType,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<Strategy> {
    let mut entries = HashMap::new();
    let mut complete = true;
    for (key, shard) in raw.entries.iter().flatten() {
        let path = cx.field(&format!("entries.{}", key.to_text()));
        let key = problems.check(&path, parse_key(key_type, key));
        let shard = cx.shard(problems, path, shard);
        match (key, shard) {
            (Some(key), Some(shard)) => {
                entries.insert(key, shard);
            }
            _ => complete = false,
        }
    }
    let fallback = fallback(raw.fallback.as_deref(), cx, problems)?;
    let lookup = match &raw.lookup {
        None => None,
        Some(lookup) => Some(Box::new(lookup::lookup(lookup, cx, problems)?)),
    };
    complete.then_some(Strategy::Directory(DirectorySpec {
        entries,
        fallback,
        lookup,
    }))
}

fn fallback(name: Option<&str>, cx: &Context<'_>, problems: &mut Problems) -> Option<Fallback> {
    match name {
        None | Some("error") => Some(Fallback::Error),
        Some("hash") => Some(Fallback::Hash(hash_spec(None, None, cx, problems)?)),
        Some(shard) => {
            let id = cx.shard(problems, cx.field("fallback"), shard);
            id.map(Fallback::Shard)
        }
    }
}

/// `multi_shard_writes: allow | refuse`, or its older spelling `broadcast: true | false`.
fn multi_shard_writes(
    raw: &RawTable,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> MultiShardWrites {
    let written = match raw.multi_shard_writes.as_deref() {
        None => None,
        Some("allow") => Some(MultiShardWrites::Allow),
        Some("refuse") => Some(MultiShardWrites::Refuse),
        Some(other) => {
            let path = cx.field("multi_shard_writes");
            problems.add(path, format!("expected `allow` or `refuse`, not {other:?}"));
            None
        }
    };
    let old = raw.broadcast.map(|allow| match allow {
        true => MultiShardWrites::Allow,
        false => MultiShardWrites::Refuse,
    });
    if let (Some(written), Some(old)) = (written, old)
        && written != old
    {
        let path = cx.field("broadcast");
        problems.add(
            path,
            "contradicts `multi_shard_writes`; keep only `multi_shard_writes`",
        );
    }
    written.or(old).unwrap_or_default()
}

/// A key written in the map, parsed like a SQL literal of the key's type.
fn parse_key(key_type: KeyType, raw: &RawScalar) -> Result<KeyValue, crate::config::KeyError> {
    KeyValue::parse_text(key_type, &raw.to_text())
}

#[cfg(test)]
mod tests;
