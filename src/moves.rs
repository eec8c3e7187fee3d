//! What a shard-map edit moves (`shardgate plan`), and why a statement goes where it goes
//! (`shardgate route`, in [`explain`]): the operator's view of placement.
//!
//! Offline tooling above the router (pure, never on the request path): [`diff`] compares two validated [`ShardMap`]s and returns a
//! [`MoveReport`] that the binary prints (its `Display` is the command's output). No I/O, no
//! globals, and no panic on any pair of maps. Shards are compared by *name*, never by id: an
//! id is a position in the shard list and may shift between two maps, while hash rings,
//! operators and the data itself know shards by name. Must never understate a move: where it
//! cannot say exactly which keys move (a strategy or key change), it says every row moves.

mod directory;
pub mod explain;
mod ranges;
mod render;
mod ring;
mod shards;

use crate::config::key::KeyValue;
use crate::config::tables::Strategy;
use crate::config::{Placement, ShardId, ShardMap, Sharding, Table};

/// Everything that changes where rows live when `old` is replaced by `new`.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveReport {
    /// Shards added, removed, renamed or pointed at another server.
    pub shards: Vec<ShardChange>,
    /// `(old, new)` default shard names when the default shard changes: every table outside
    /// the map then lives somewhere else.
    pub default_shard: Option<(String, String)>,
    /// Tables whose rows move, co-located tables (and tables with an identical change)
    /// listed together, sorted by first table name.
    pub tables: Vec<TableMove>,
    /// Tables in both maps whose rows all stay where they are, sorted.
    pub unchanged: Vec<String>,
}

impl MoveReport {
    /// Whether any row has to move (or be copied) before `new` can serve: `false` means the
    /// two maps place every key of every table on the same shard name.
    pub fn moves_rows(&self) -> bool {
        !self.tables.is_empty() || self.default_shard.is_some()
    }
}

/// A change to the shard list itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardChange {
    /// A new shard name.
    Added(String),
    /// A shard name the new map no longer has; `holds` lists the sharded tables the old map
    /// placed rows on it (non-empty means data would be stranded).
    Removed {
        /// The shard's name in the old map.
        name: String,
        /// Sharded tables with rows on it, sorted.
        holds: Vec<String>,
    },
    /// A removed name whose primary (host, port, database) a new name now uses.
    Renamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
        /// Sharded tables with rows on it, sorted (hash rings place by name: they move).
        holds: Vec<String>,
    },
    /// The same name with another primary server (`host:port/database`, never credentials).
    Repointed {
        /// The shard's name.
        name: String,
        /// Old primary.
        old: String,
        /// New primary.
        new: String,
    },
}

/// One change that applies to one or more tables.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMove {
    /// The tables, sorted (several when co-located or changed in exactly the same way).
    pub tables: Vec<String>,
    /// Their co-location group in the new map (else the old), for sharded tables.
    pub group: Option<String>,
    /// What moves.
    pub change: Change,
}

/// How a table's placement changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// New in the map: rows that lived on the old default shard (as an unlisted table) are
    /// now placed by `placement`.
    Added {
        /// The old map's default shard.
        default_shard: String,
        /// The new placement (`hash`, `range`, `directory`, `reference`).
        placement: String,
    },
    /// Gone from the map: the table now lives on the new default shard only.
    Removed {
        /// The new map's default shard.
        default_shard: String,
        /// The old placement.
        placement: String,
    },
    /// Placement changed in a way that moves every row (strategy, key column or key type).
    EveryRow {
        /// What changed, e.g. `hash -> range` or `key user_id -> account_id`.
        why: String,
    },
    /// Two hash rings: the exact share of the hash space that changes shard.
    Hash(RingMove),
    /// Two range lists: the key ranges whose shard changes, in key order.
    Range(Vec<RangeMove>),
    /// Two directories: entries and fallback.
    Directory(DirectoryMove),
    /// A reference table: shards new to the map need a full copy.
    Reference {
        /// New shard names, sorted.
        copy_to: Vec<String>,
    },
}

/// A fraction of the 2^64 hash space: exact, so tests and scripts can rely on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Share(pub u128);

impl Share {
    /// The whole hash space (every u64 point).
    pub const WHOLE: Share = Share(1 << 64);

    /// The share as a fraction in `0.0..=1.0`.
    pub fn fraction(self) -> f64 {
        self.0 as f64 / Share::WHOLE.0 as f64
    }
}

/// What replacing one hash ring by another moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingMove {
    /// Share of all keys whose shard name changes.
    pub moved: Share,
    /// Share moving between each pair of shard names, sorted by (from, to); `None` is "no
    /// shard" (an empty ring, which validation refuses).
    pub flows: Vec<Flow>,
}

/// Keys moving from one shard to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Old shard name.
    pub from: Option<String>,
    /// New shard name.
    pub to: Option<String>,
    /// Share of all keys.
    pub share: Share,
}

/// Keys `from <= key < to` (`None`: unbounded) that change shard; `None` shards are gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMove {
    /// Inclusive lower bound.
    pub from: Option<KeyValue>,
    /// Exclusive upper bound.
    pub to: Option<KeyValue>,
    /// Old shard name, `None` in a gap of the old map (no rows there: writes were refused).
    pub old: Option<String>,
    /// New shard name, `None` in a gap of the new map (rows there become unreachable).
    pub new: Option<String>,
}

/// What a directory edit moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryMove {
    /// Keys with an entry in either map whose placement changes, sorted by key.
    pub entries: Vec<EntryMove>,
    /// `(old, new)` directory tables (`table at host:port/db`, or `none`) when they differ:
    /// every key such a table places may move, and the map cannot say which.
    pub lookup: Option<(String, String)>,
    /// How keys without an entry move, if they do.
    pub fallback: Option<FallbackMove>,
}

/// One directory key that changes place (by entry, directory table or fallback in each map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMove {
    /// The key.
    pub key: KeyValue,
    /// Where the old map put it.
    pub old: Placed,
    /// Where the new map puts it.
    pub new: Placed,
}

/// Where one map's directory puts a key, as far as the map file alone can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// On the shard with this name.
    Shard(String),
    /// Nowhere: the key is refused (fallback `error`), so it has no rows.
    Refused,
    /// Wherever the directory table in PostgreSQL says (else the fallback).
    Lookup,
}

/// How a directory's fallback changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackMove {
    /// Both fallbacks are hash rings: the exact share of keys (without an entry) that move.
    Ring(RingMove),
    /// Another kind of fallback, described (`error`, `shard s1`, `hash ring of s0, s1`): every
    /// key without an entry may move.
    Changed {
        /// The old fallback.
        old: String,
        /// The new fallback.
        new: String,
    },
}

/// The two maps being compared; passed together so helpers can name shards on either side.
#[derive(Debug, Clone, Copy)]
struct Maps<'a> {
    old: &'a ShardMap,
    new: &'a ShardMap,
}

/// Compares two validated maps: which rows move, and which shards appear, disappear or are
/// renamed. Never fails; identical maps (up to shard ids and order) give a report whose
/// [`MoveReport::moves_rows`] is `false`.
pub fn diff(old: &ShardMap, new: &ShardMap) -> MoveReport {
    let maps = Maps { old, new };
    let (tables, unchanged) = table_moves(maps);
    let default_shard = (
        shard_name(old, old.default_shard),
        shard_name(new, new.default_shard),
    );
    MoveReport {
        shards: shards::changes(maps),
        default_shard: (default_shard.0 != default_shard.1).then_some(default_shard),
        tables,
        unchanged,
    }
}

/// Every table's change, tables with the same groups and the same change merged; and the
/// tables whose rows all stay. Both sorted by table name.
fn table_moves(maps: Maps<'_>) -> (Vec<TableMove>, Vec<String>) {
    let mut names: Vec<&String> = (maps.old.tables.keys())
        .chain(maps.new.tables.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut moves: Vec<(GroupKey, TableMove)> = Vec::new();
    let mut unchanged = Vec::new();
    for name in names {
        let (before, after) = (maps.old.tables.get(name), maps.new.tables.get(name));
        let Some(change) = table_change(maps, before, after) else {
            unchanged.push(name.clone());
            continue;
        };
        let key = (group(before), group(after));
        let same = |(k, m): &&mut (GroupKey, TableMove)| *k == key && m.change == change;
        match moves.iter_mut().find(same) {
            Some((_, entry)) => entry.tables.push(name.clone()),
            None => {
                let group = key.1.clone().or_else(|| key.0.clone());
                let tables = vec![name.clone()];
                moves.push((
                    key,
                    TableMove {
                        tables,
                        group,
                        change,
                    },
                ));
            }
        }
    }
    (moves.into_iter().map(|(_, m)| m).collect(), unchanged)
}

/// Old and new co-location group of a table (`None` unless sharded on that side).
type GroupKey = (Option<String>, Option<String>);

fn group(table: Option<&Table>) -> Option<String> {
    match &table?.placement {
        Placement::Sharded(sharding) => Some(sharding.group.clone()),
        Placement::Reference => None,
    }
}

/// The change to one table, `None` when every row stays.
fn table_change(maps: Maps<'_>, old: Option<&Table>, new: Option<&Table>) -> Option<Change> {
    match (old, new) {
        (None, None) => None,
        (None, Some(table)) => Some(Change::Added {
            default_shard: shard_name(maps.old, maps.old.default_shard),
            placement: placement_name(&table.placement).to_owned(),
        }),
        (Some(table), None) => Some(Change::Removed {
            default_shard: shard_name(maps.new, maps.new.default_shard),
            placement: placement_name(&table.placement).to_owned(),
        }),
        (Some(old), Some(new)) => match (&old.placement, &new.placement) {
            (Placement::Reference, Placement::Reference) => {
                let copy_to = shards::added_names(maps);
                (!copy_to.is_empty()).then_some(Change::Reference { copy_to })
            }
            (Placement::Sharded(a), Placement::Sharded(b)) => sharded_change(maps, a, b),
            (a, b) => Some(Change::EveryRow {
                why: format!("{} -> {}", placement_name(a), placement_name(b)),
            }),
        },
    }
}

fn sharded_change(maps: Maps<'_>, old: &Sharding, new: &Sharding) -> Option<Change> {
    let every_row = |why: String| Some(Change::EveryRow { why });
    if old.key_column != new.key_column {
        return every_row(format!("key {} -> {}", old.key_column, new.key_column));
    }
    if old.key_type != new.key_type {
        return every_row(format!("key type {} -> {}", old.key_type, new.key_type));
    }
    match (&*old.strategy, &*new.strategy) {
        (Strategy::Hash(a), Strategy::Hash(b)) => {
            let moved = ring::diff(a, b);
            (!moved.flows.is_empty()).then_some(Change::Hash(moved))
        }
        (Strategy::Range(a), Strategy::Range(b)) => {
            let moved = ranges::diff(maps, a, b);
            (!moved.is_empty()).then_some(Change::Range(moved))
        }
        (Strategy::Directory(a), Strategy::Directory(b)) => {
            let moved = directory::diff(maps, a, b);
            let changed =
                !moved.entries.is_empty() || moved.lookup.is_some() || moved.fallback.is_some();
            changed.then_some(Change::Directory(moved))
        }
        (a, b) => every_row(format!("{} -> {}", strategy_name(a), strategy_name(b))),
    }
}

fn placement_name(placement: &Placement) -> &'static str {
    match placement {
        Placement::Sharded(sharding) => strategy_name(&sharding.strategy),
        Placement::Reference => "reference",
    }
}

fn strategy_name(strategy: &Strategy) -> &'static str {
    match strategy {
        Strategy::Hash(_) => "hash",
        Strategy::Range(_) => "range",
        Strategy::Directory(_) => "directory",
    }
}

/// A shard's name; ids come from the map, but a report never panics on a foreign one.
fn shard_name(map: &ShardMap, id: ShardId) -> String {
    match map.shards.get(id.0 as usize) {
        Some(shard) => shard.name.clone(),
        None => format!("#{}", id.0),
    }
}

/// `1 shard`, `2 shards`, `3 entries`, `2 keys`.
fn count(n: usize, noun: &str) -> String {
    let consonant_y = noun
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'o', 'u']));
    match (n, consonant_y) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
