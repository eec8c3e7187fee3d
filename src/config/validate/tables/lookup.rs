//! Validation of `tables.T.lookup`: a directory table's URI, name and NOTIFY channel.

use super::Context;
use crate::config::BackendUri;
use crate::config::raw::RawLookup;
use crate::config::tables::LookupTable;
use crate::config::validate::Problems;

/// Default most keys a proxy caches per directory table.
const DEFAULT_CACHE_ENTRIES: usize = 100_000;

pub(super) fn lookup(
    raw: &RawLookup,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<LookupTable> {
    let uri = problems.check(&cx.field("lookup.uri"), BackendUri::parse(&raw.uri));
    let table = raw.table.to_lowercase();
    let table_ok =
        !table.is_empty() && table.split('.').count() <= 2 && table.split('.').all(is_identifier);
    if !table_ok {
        problems.add(
            cx.field("lookup.table"),
            "write a table name such as shardgate_directory or schema.table",
        );
    }
    let channel = raw
        .channel
        .clone()
        .unwrap_or_else(|| table.replace('.', "_"));
    if !is_identifier(&channel) {
        problems.add(cx.field("lookup.channel"), "must be a plain identifier");
    }
    let cache_entries = raw.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
    if cache_entries == 0 {
        problems.add(cx.field("lookup.cache_entries"), "must be at least 1");
    }
    let shards = cx.shards.iter().map(|s| (s.id, s.name.clone())).collect();
    (table_ok && is_identifier(&channel)).then_some(())?;
    Some(LookupTable {
        uri: uri?,
        table,
        channel,
        cache_entries,
        shards,
    })
}

/// Lower-case letters, digits, `_` and `$`, not starting with a digit: safe to write into SQL
/// unquoted.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}
