//! A [`MoveReport`] as `shardgate plan` prints it: one line per fact, lines that need an
//! operator's action first and starting with `WARNING:`, every line ending in a newline.
//!
//! Part of the router stage (pure formatting). The format is for humans and for scripts
//! (`grep WARNING`, the last line is `nothing moves` or `rows move: …`); it never prints a
//! backend's credentials.

use std::fmt;

use super::{
    Change, DirectoryMove, FallbackMove, Flow, MoveReport, Placed, RangeMove, RingMove,
    ShardChange, Share, TableMove, count,
};
use crate::config::key::KeyValue;

impl fmt::Display for MoveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.shards {
            writeln!(f, "{change}")?;
        }
        if let Some((old, new)) = &self.default_shard {
            writeln!(
                f,
                "WARNING: default shard {old} -> {new}: every table outside the map moves"
            )?;
        }
        for entry in &self.tables {
            write!(f, "{entry}")?;
        }
        if !self.unchanged.is_empty() {
            writeln!(f, "unchanged: {}", self.unchanged.join(", "))?;
        }
        if self.moves_rows() {
            let tables: usize = self.tables.iter().map(|entry| entry.tables.len()).sum();
            writeln!(f, "rows move: {}", count(tables, "table"))
        } else {
            writeln!(f, "nothing moves")
        }
    }
}

impl fmt::Display for ShardChange {
    /// One line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardChange::Added(name) => write!(f, "shard {name}: added"),
            ShardChange::Removed { name, holds } if holds.is_empty() => {
                write!(
                    f,
                    "shard {name}: removed (no sharded table placed rows on it)"
                )
            }
            ShardChange::Removed { name, holds } => write!(
                f,
                "WARNING: shard {name}: removed from the map but holds rows of {}; move them before serving with the new map",
                holds.join(", ")
            ),
            ShardChange::Renamed { from, to, holds } if holds.is_empty() => {
                write!(f, "shard {from}: renamed to {to} (same primary)")
            }
            ShardChange::Renamed { from, to, holds } => write!(
                f,
                "WARNING: shard {from}: renamed to {to} (same primary) but holds rows of {}; placement goes by name, so they move as shown below",
                holds.join(", ")
            ),
            ShardChange::Repointed { name, old, new } => write!(
                f,
                "shard {name}: primary {old} -> {new} (no key moves, but {new} must already hold {name}'s rows)"
            ),
        }
    }
}

impl fmt::Display for TableMove {
    /// One or more lines, each ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tables.join(", "))?;
        match &self.group {
            Some(group) if self.tables.len() > 1 => write!(f, " (co-located, group {group})")?,
            _ => {}
        }
        match &self.change {
            Change::Added {
                default_shard,
                placement,
            } => writeln!(
                f,
                ": added to the map ({placement}): rows on the old default shard {default_shard} move to where the map places them"
            ),
            Change::Removed {
                default_shard,
                placement,
            } => writeln!(
                f,
                ": removed from the map (was {placement}): every row moves to the default shard {default_shard}"
            ),
            Change::EveryRow { why } => writeln!(f, ": every row moves ({why})"),
            Change::Hash(ring) => writeln!(f, ": {}", RingText(ring, "keys")),
            Change::Range(moves) => write_ranges(f, moves),
            Change::Directory(directory) => write_directory(f, directory),
            Change::Reference { copy_to } => {
                writeln!(f, ": reference table: copy it to {}", copy_to.join(", "))
            }
        }
    }
}

fn write_ranges(f: &mut fmt::Formatter<'_>, moves: &[RangeMove]) -> fmt::Result {
    let verb = if moves.len() == 1 { "moves" } else { "move" };
    writeln!(f, ": {} {verb}:", count(moves.len(), "key range"))?;
    for range in moves {
        let from = range
            .from
            .as_ref()
            .map_or("(-inf".to_owned(), |k| format!("[{}", key(k)));
        let to = range
            .to
            .as_ref()
            .map_or("+inf)".to_owned(), |k| format!("{})", key(k)));
        let (old, new) = (shard(&range.old), shard(&range.new));
        writeln!(f, "  {from}, {to}: {old} -> {new}")?;
    }
    Ok(())
}

fn write_directory(f: &mut fmt::Formatter<'_>, directory: &DirectoryMove) -> fmt::Result {
    writeln!(f, ": directory placement changes:")?;
    for entry in &directory.entries {
        let (old, new) = (placed(&entry.old), placed(&entry.new));
        writeln!(f, "  key {}: {old} -> {new}", key(&entry.key))?;
    }
    if let Some((old, new)) = &directory.lookup {
        writeln!(
            f,
            "  directory table: {old} -> {new}: every key it places may move"
        )?;
    }
    match &directory.fallback {
        None => Ok(()),
        Some(FallbackMove::Ring(ring)) => {
            writeln!(f, "  fallback: {}", RingText(ring, "keys without an entry"))
        }
        Some(FallbackMove::Changed { old, new }) => writeln!(
            f,
            "  fallback: {old} -> {new}: every key without an entry may move"
        ),
    }
}

/// `33.4% of keys move: s0 -> s2 16.5%, s1 -> s2 16.9%`.
struct RingText<'a>(&'a RingMove, &'a str);

impl fmt::Display for RingText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RingText(ring, what) = self;
        write!(f, "{} of {what} move:", percent(ring.moved))?;
        for (index, Flow { from, to, share }) in ring.flows.iter().enumerate() {
            let separator = if index == 0 { " " } else { ", " };
            let (from, to) = (shard(from), shard(to));
            write!(f, "{separator}{from} -> {to} {}", percent(*share))?;
        }
        Ok(())
    }
}

/// One decimal; a share too small to show as 0.1% still shows as moving.
fn percent(share: Share) -> String {
    let percent = share.fraction() * 100.0;
    if share.0 > 0 && percent < 0.05 {
        "<0.1%".to_owned()
    } else {
        format!("{percent:.1}%")
    }
}

/// A shard name, or `(none)` for a gap, a refused key or an empty ring.
fn shard(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or("(none)")
}

/// Where a directory puts a key, in words.
fn placed(placed: &Placed) -> &str {
    match placed {
        Placed::Shard(name) => name,
        Placed::Refused => "(refused)",
        Placed::Lookup => "(directory table)",
    }
}

/// A key as an operator writes it in the map: text quoted (it may hold `,` or `)`).
fn key(key: &KeyValue) -> String {
    match key {
        KeyValue::Text(text) => format!("'{}'", text.replace('\'', "''")),
        other => other.to_string(),
    }
}
