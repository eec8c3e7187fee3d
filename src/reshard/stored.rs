//! Which rows a shard-map edit would move that the shards actually hold.
//!
//! [`probes`] turns a [`MoveReport`] into questions for the shards of the map in force (pure,
//! unit-tested); [`stored_rows`] asks them. A probe is exact where SQL can say which keys move
//! (a range's bounds, a directory's keys) and whole-table where it cannot (a hash ring's
//! share, a strategy change). It may overstate, never understate: a shard that cannot be
//! asked counts as holding rows.

use std::time::Duration;

use crate::config::key::{KeyType, KeyValue};
use crate::config::{Placement, ShardMap, Table};
use crate::control::ControlConn;
use crate::moves::{Change, DirectoryMove, MoveReport, Placed, RangeMove, RingMove};
use crate::sql::quote::{ident, literal};

/// One question to one shard of the map in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The shard asked (its name in the map in force).
    pub shard: String,
    /// The table asked about; `None` for the default shard's unlisted tables.
    pub table: Option<String>,
    /// Which of its rows, for operators: `keys moving to s2`.
    pub what: String,
    /// The statement: one row whose first column says whether such rows exist, or, for the
    /// default shard's unmapped tables, one row per table that has rows.
    pub sql: String,
    kind: ProbeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    /// `SELECT EXISTS (…)`: rows when true; a table missing there holds none.
    Exists,
    /// Names of tables with rows.
    UnmappedTables,
}

/// Rows a probe found (or could not rule out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRows {
    /// The shard holding them.
    pub shard: String,
    /// Their table, as the map names it (or as the catalog does, for unlisted tables).
    pub table: String,
    /// Which of its rows.
    pub what: String,
    /// `None` when the shard said so; otherwise why it could not be asked.
    pub unknown: Option<String>,
}

impl std::fmt::Display for StoredRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (table, what, shard) = (&self.table, &self.what, &self.shard);
        match &self.unknown {
            None => write!(f, "{table} ({what}) on {shard}"),
            Some(why) => write!(f, "{table} ({what}) on {shard}: cannot tell ({why})"),
        }
    }
}

/// The questions that decide whether replacing `old` by `new` (compared in `report`) moves
/// stored rows. Empty when the report moves nothing.
pub fn probes(old: &ShardMap, new: &ShardMap, report: &MoveReport) -> Vec<Probe> {
    let mut out = Vec::new();
    for moved in &report.tables {
        for name in &moved.tables {
            let table = old.tables.get(name);
            table_probes(old, name, table, &moved.change, &mut out);
        }
    }
    if let Some((old_default, _)) = &report.default_shard {
        out.push(unmapped_probe(old, new, old_default));
    }
    out
}

/// How long one probe may run: a range probe on a column without an index scans the table.
/// Past it, the shard counts as holding rows.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks every probe's shard (all at once, each connection bounded by `connect_timeout`) and
/// returns what holds rows, in probe order.
pub async fn stored_rows(
    old: &ShardMap,
    probes: &[Probe],
    connect_timeout: Duration,
) -> Vec<StoredRows> {
    let asked = probes.iter().map(|probe| ask(old, probe, connect_timeout));
    futures::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn ask(old: &ShardMap, probe: &Probe, timeout: Duration) -> Vec<StoredRows> {
    let asked_table = probe
        .table
        .clone()
        .unwrap_or_else(|| "unlisted tables".into());
    let found = |table: String, unknown: Option<String>| StoredRows {
        shard: probe.shard.clone(),
        table,
        what: probe.what.clone(),
        unknown,
    };
    let unknown = |why: String| vec![found(asked_table.clone(), Some(why))];
    let Some(shard) = old.shard_by_name(&probe.shard) else {
        return unknown("no such shard".into());
    };
    let conn = match ControlConn::connect(&shard.primary, "shardgate reshard check", timeout).await
    {
        Ok(conn) => conn,
        Err(why) => return unknown(why),
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, conn.client.query(&probe.sql, &[])).await;
    let rows = match answer {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) if missing_table(&error) => return Vec::new(),
        Ok(Err(error)) => return unknown(error.to_string()),
        Err(_) => return unknown(format!("no answer in {PROBE_TIMEOUT:?}")),
    };
    match probe.kind {
        ProbeKind::Exists => {
            let exists = rows.first().and_then(|row| row.try_get::<_, bool>(0).ok());
            match exists {
                Some(false) => Vec::new(),
                Some(true) => vec![found(asked_table, None)],
                None => unknown("no answer".into()),
            }
        }
        ProbeKind::UnmappedTables => (rows.iter())
            .map(|row| found(row.try_get(0).unwrap_or_default(), None))
            .collect(),
    }
}

fn missing_table(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
}

fn table_probes(
    old: &ShardMap,
    name: &str,
    table: Option<&Table>,
    change: &Change,
    out: &mut Vec<Probe>,
) {
    let every_shard = |what: String, out: &mut Vec<Probe>| {
        for shard in &old.shards {
            out.push(whole_table(&shard.name, name, what.clone()));
        }
    };
    match change {
        Change::Added {
            default_shard,
            placement,
        } => out.push(whole_table(
            default_shard,
            name,
            format!("unlisted, now placed by {placement}"),
        )),
        Change::Removed { default_shard, .. } => {
            let what = format!("leaving the map for {default_shard}");
            let reference = table.is_some_and(|t| matches!(t.placement, Placement::Reference));
            if reference && old.shard_by_name(default_shard).is_some() {
                return; // The new default shard already has every row.
            }
            let from_every = old.shards.iter().filter(|s| s.name != *default_shard);
            for shard in from_every {
                out.push(whole_table(&shard.name, name, what.clone()));
            }
        }
        Change::EveryRow { why } => every_shard(format!("every row: {why}"), out),
        Change::Reference { copy_to } => {
            let source = &old.shard(old.default_shard).name;
            let what = format!("a copy for {}", copy_to.join(", "));
            out.push(whole_table(source, name, what));
        }
        Change::Hash(ring) => ring_probes(name, ring, out),
        Change::Range(ranges) => match key_of(table) {
            Some((column, key_type)) => range_probes(name, column, key_type, ranges, out),
            None => every_shard("ranges changed".to_owned(), out),
        },
        Change::Directory(directory) => match key_of(table) {
            Some((column, key_type)) => {
                directory_probes(old, name, column, key_type, directory, out)
            }
            None => every_shard("directory changed".to_owned(), out),
        },
    }
}

/// The old placement's key column and type, for sharded tables.
fn key_of(table: Option<&Table>) -> Option<(&str, KeyType)> {
    match &table?.placement {
        Placement::Sharded(sharding) => Some((&sharding.key_column, sharding.key_type)),
        Placement::Reference => None,
    }
}

/// A hash ring's moving share cannot be named in SQL: any row on a shard that gives keys
/// away counts.
fn ring_probes(name: &str, ring: &RingMove, out: &mut Vec<Probe>) {
    let mut sources: Vec<(&str, Vec<&str>)> = Vec::new();
    for flow in &ring.flows {
        let Some(from) = flow.from.as_deref() else {
            continue;
        };
        let to = flow.to.as_deref().unwrap_or("nowhere");
        match sources.iter_mut().find(|(source, _)| *source == from) {
            Some((_, targets)) => targets.push(to),
            None => sources.push((from, vec![to])),
        }
    }
    for (from, targets) in sources {
        let what = format!("keys hashing to {}", targets.join(", "));
        out.push(whole_table(from, name, what));
    }
}

fn range_probes(
    name: &str,
    column: &str,
    key_type: KeyType,
    ranges: &[RangeMove],
    out: &mut Vec<Probe>,
) {
    for range in ranges {
        let Some(from_shard) = range.old.as_deref() else {
            continue; // A gap of the old map: writes there were refused.
        };
        let column = match key_type {
            // Range maps over text compare bytes, whatever the column's collation.
            KeyType::Text => format!("{} COLLATE \"C\"", ident(column)),
            _ => ident(column),
        };
        let mut bounds = Vec::new();
        if let Some(from) = &range.from {
            bounds.push(format!("{column} >= {}", key_literal(from, key_type)));
        }
        if let Some(to) = &range.to {
            bounds.push(format!("{column} < {}", key_literal(to, key_type)));
        }
        let keys = match (&range.from, &range.to) {
            (None, None) => "every key".to_owned(),
            (from, to) => format!("keys {}..{}", bound(from), bound(to)),
        };
        let target = range.new.as_deref().unwrap_or("a gap");
        let what = format!("{keys} moving to {target}");
        out.push(exists(from_shard, name, &bounds.join(" AND "), what));
    }
}

fn bound(value: &Option<KeyValue>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn directory_probes(
    old: &ShardMap,
    name: &str,
    column: &str,
    key_type: KeyType,
    directory: &DirectoryMove,
    out: &mut Vec<Probe>,
) {
    if directory.lookup.is_some() || directory.fallback.is_some() {
        // Keys without an entry (or placed by a directory table) move; the map cannot say
        // which.
        for shard in &old.shards {
            let what = "keys without an entry".to_owned();
            out.push(whole_table(&shard.name, name, what));
        }
        return;
    }
    let mut by_shard: Vec<(&str, Vec<&KeyValue>)> = Vec::new();
    for entry in &directory.entries {
        let sources: Vec<&str> = match &entry.old {
            Placed::Shard(shard) => vec![shard],
            Placed::Refused => Vec::new(),
            Placed::Lookup => old.shards.iter().map(|s| s.name.as_str()).collect(),
        };
        for source in sources {
            match by_shard.iter_mut().find(|(shard, _)| *shard == source) {
                Some((_, keys)) => keys.push(&entry.key),
                None => by_shard.push((source, vec![&entry.key])),
            }
        }
    }
    for (shard, keys) in by_shard {
        let list: Vec<String> = keys.iter().map(|k| key_literal(k, key_type)).collect();
        let filter = format!("{} IN ({})", ident(column), list.join(", "));
        let shown: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let what = format!("keys {} whose entry changed", shown.join(", "));
        out.push(exists(shard, name, &filter, what));
    }
}

/// Tables the new map does not list that have rows on the old default shard: they live on
/// the new default shard from the switch on.
fn unmapped_probe(old: &ShardMap, new: &ShardMap, old_default: &str) -> Probe {
    let mut mapped: Vec<String> = new.tables.keys().map(|name| literal(name)).collect();
    mapped.extend(old.tables.keys().map(|name| literal(name)));
    mapped.sort();
    mapped.dedup();
    let not_mapped = match mapped.is_empty() {
        true => String::new(),
        false => format!(" AND c.relname NOT IN ({})", mapped.join(", ")),
    };
    // One round trip: each candidate table is asked whether it has a row through
    // query_to_xml, PostgreSQL's way to run a query built from a catalog row.
    let sql = format!(
        "SELECT c.oid::regclass::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT LIKE 'shardgate%'{not_mapped} \
         AND (xpath('/row/x/text()', query_to_xml(format('SELECT EXISTS (SELECT 1 FROM %s) AS x', \
         c.oid::regclass), false, true, '')))[1]::text = 'true' ORDER BY 1"
    );
    Probe {
        shard: old_default.to_owned(),
        table: None,
        what: "unlisted, the default shard changes".to_owned(),
        sql,
        kind: ProbeKind::UnmappedTables,
    }
}

fn whole_table(shard: &str, table: &str, what: String) -> Probe {
    exists(shard, table, "true", what)
}

fn exists(shard: &str, table: &str, filter: &str, what: String) -> Probe {
    Probe {
        shard: shard.to_owned(),
        table: Some(table.to_owned()),
        what,
        sql: format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {filter})",
            ident(table)
        ),
        kind: ProbeKind::Exists,
    }
}

/// A key as a literal of its column's type.
fn key_literal(value: &KeyValue, key_type: KeyType) -> String {
    let text = literal(&value.to_string());
    match key_type {
        KeyType::Integer => format!("{text}::bigint"),
        KeyType::Text => text,
        KeyType::Uuid => format!("{text}::uuid"),
        KeyType::Date => format!("{text}::date"),
        KeyType::Timestamp => format!("{text}::timestamp"),
        KeyType::TimestampTz => format!("({text}::timestamp AT TIME ZONE 'UTC')"),
    }
}

#[cfg(test)]
mod tests;
