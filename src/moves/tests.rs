//! Map edit → what moves, on small maps written as YAML.

use std::path::Path;

use super::*;
use crate::config::parse_shard_map;
use crate::config::tables::HashSpec;
use crate::router::strategy::HashPlacer;

/// Two shards on made-up servers (the reshard probes use them too).
pub(crate) const TWO: &str = "
shards:
  - {name: s0, primary: 'postgres://u@h:5433/d'}
  - {name: s1, primary: 'postgres://u@h:5434/d'}
";
/// The same two and a third.
pub(crate) const THREE: &str = "
shards:
  - {name: s0, primary: 'postgres://u@h:5433/d'}
  - {name: s1, primary: 'postgres://u@h:5434/d'}
  - {name: s2, primary: 'postgres://u@h:5435/d'}
";

/// A map of `shards` with default shard s0 and `tables` (YAML under `tables:`).
pub(crate) fn map(shards: &str, tables: &str) -> ShardMap {
    let text = format!("{shards}default_shard: s0\ntables:\n{tables}");
    parse_shard_map(&text, Path::new("map.yaml")).expect("test map is valid")
}

const USERS: &str = "
  users: {strategy: hash, key: user_id, key_type: bigint}
  orders: {colocated_with: users, key: user_id}
";

fn ring(report: &MoveReport) -> &RingMove {
    match &report.tables[..] {
        [
            TableMove {
                change: Change::Hash(ring),
                ..
            },
        ] => ring,
        other => panic!("expected one hash change, got {other:?}"),
    }
}

#[test]
fn a_third_shard_takes_about_a_third_of_the_ring_and_only_for_itself() {
    let report = diff(&map(TWO, USERS), &map(THREE, USERS));
    let moved = ring(&report);
    let fraction = moved.moved.fraction();
    assert!((0.25..=0.42).contains(&fraction), "{fraction}");
    for flow in &moved.flows {
        assert_eq!(flow.to.as_deref(), Some("s2"), "{flow:?}");
    }
    let sum: u128 = moved.flows.iter().map(|flow| flow.share.0).sum();
    assert_eq!(Share(sum), moved.moved);
    assert_eq!(report.tables[0].tables, ["orders", "users"]);
    assert_eq!(report.shards, [ShardChange::Added("s2".into())]);
    let text = report.to_string();
    assert!(
        text.contains("orders, users (co-located, group users): "),
        "{text}"
    );
    assert!(text.contains("% of keys move: s0 -> s2 "), "{text}");
    assert!(text.ends_with("rows move: 2 tables\n"), "{text}");
}

/// The walk is exact: the share it computes is what placing real keys with both rings shows.
#[test]
fn the_ring_walk_agrees_with_placing_keys() {
    let spec = |names: &[&str], vnodes: u32| HashSpec {
        shards: names
            .iter()
            .zip(0..)
            .map(|(n, i)| (ShardId(i), n.to_string()))
            .collect(),
        vnodes,
    };
    let (old, new) = (spec(&["a", "b", "c"], 16), spec(&["b", "c", "d", "e"], 24));
    let computed = ring::diff(&old, &new).moved.fraction();
    let (before, after) = (HashPlacer::build(&old), HashPlacer::build(&new));
    let name = |spec: &HashSpec, placer: &HashPlacer, key: &KeyValue| {
        let id = placer.shard_for(key).ok();
        spec.shards
            .iter()
            .find(|(i, _)| Some(*i) == id)
            .map(|(_, n)| n.clone())
    };
    let keys = 40_000;
    let moved = (0..keys)
        .map(KeyValue::Integer)
        .filter(|key| name(&old, &before, key) != name(&new, &after, key))
        .count();
    let sampled = moved as f64 / keys as f64;
    assert!((computed - sampled).abs() < 0.01, "{computed} vs {sampled}");
    assert_eq!(ring::diff(&old, &old), RingMove::default());
}

#[test]
fn identical_maps_move_nothing_even_when_ids_shift() {
    let reordered = "
shards:
  - {name: s1, primary: 'postgres://u@h:5434/d'}
  - {name: s0, primary: 'postgres://u@h:5433/d'}
";
    let tables = format!("{USERS}  countries: {{strategy: reference}}\n");
    let report = diff(&map(TWO, &tables), &map(reordered, &tables));
    assert!(!report.moves_rows(), "{report:?}");
    assert!(report.shards.is_empty());
    assert_eq!(report.unchanged, ["countries", "orders", "users"]);
    assert!(report.to_string().ends_with("nothing moves\n"));
}

/// A range table split between s0 and s1 at 2026.
pub(crate) const EVENTS: &str = "
  events:
    strategy: range
    key: created_at
    key_type: date
    ranges:
      - {shard: s0, to: '2026-01-01'}
      - {shard: s1, from: '2026-01-01'}
";

/// [`EVENTS`] with its second half split at July 2026, the part after it on s2.
pub(crate) const EVENTS_SPLIT: &str = "
  events:
    strategy: range
    key: created_at
    key_type: date
    ranges:
      - {shard: s0, to: '2026-01-01'}
      - {shard: s1, from: '2026-01-01', to: '2026-07-01'}
      - {shard: s2, from: '2026-07-01'}
";

#[test]
fn a_range_split_moves_exactly_the_split_part() {
    let report = diff(&map(THREE, EVENTS), &map(THREE, EVENTS_SPLIT));
    let date = |text| KeyValue::parse_text(crate::config::KeyType::Date, text).ok();
    let expected = vec![RangeMove {
        from: date("2026-07-01"),
        to: None,
        old: Some("s1".into()),
        new: Some("s2".into()),
    }];
    assert_eq!(report.tables[0].change, Change::Range(expected));
    let text = report.to_string();
    assert!(text.contains("  [2026-07-01, +inf): s1 -> s2\n"), "{text}");
}

#[test]
fn a_moved_boundary_and_a_gap_are_reported_as_merged_intervals() {
    let moved = "
  events:
    strategy: range
    key: created_at
    key_type: date
    allow_gaps: true
    ranges:
      - {shard: s0, to: '2025-07-01'}
      - {shard: s1, from: '2025-07-01', to: '2027-01-01'}
";
    let report = diff(&map(TWO, EVENTS), &map(TWO, moved));
    let Change::Range(moves) = &report.tables[0].change else {
        panic!("{report:?}");
    };
    let text: Vec<String> = moves
        .iter()
        .map(|m| format!("{:?} {:?} {:?} {:?}", m.from, m.to, m.old, m.new))
        .collect();
    assert_eq!(moves.len(), 2, "{text:?}");
    assert_eq!(
        (moves[0].old.as_deref(), moves[0].new.as_deref()),
        (Some("s0"), Some("s1"))
    );
    assert_eq!(
        (moves[1].old.as_deref(), moves[1].new.as_deref()),
        (Some("s1"), None)
    );
    assert_eq!(moves[1].to, None);
}

#[test]
fn directory_entries_move_by_their_effective_shard() {
    let before = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s1}, fallback: s0}
";
    let after = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s0, 3: s1, 4: s0}, fallback: s0}
";
    let report = diff(&map(TWO, before), &map(TWO, after));
    let Change::Directory(moved) = &report.tables[0].change else {
        panic!("{report:?}");
    };
    let entry = |key, old: &str, new: &str| EntryMove {
        key: KeyValue::Integer(key),
        old: Placed::Shard(old.into()),
        new: Placed::Shard(new.into()),
    };
    // 4 -> s0 is where the fallback already put it: nothing moves for it.
    assert_eq!(moved.entries, [entry(2, "s1", "s0"), entry(3, "s0", "s1")]);
    assert_eq!(moved.fallback, None);
    let text = report.to_string();
    assert!(text.contains("  key 3: s0 -> s1\n"), "{text}");
}

#[test]
fn a_removed_shard_holding_rows_is_a_warning_and_its_keys_move() {
    let only_s0 = "
shards:
  - {name: s0, primary: 'postgres://u@h:5433/d'}
";
    let report = diff(&map(TWO, USERS), &map(only_s0, USERS));
    let holds = vec!["orders".to_owned(), "users".to_owned()];
    let removed = ShardChange::Removed {
        name: "s1".into(),
        holds,
    };
    assert_eq!(report.shards, [removed]);
    let moved = ring(&report);
    assert_eq!(moved.flows.len(), 1);
    assert_eq!(moved.flows[0].from.as_deref(), Some("s1"));
    let text = report.to_string();
    assert!(
        text.starts_with("WARNING: shard s1: removed from the map but holds rows of orders, users")
    );
}

#[test]
fn renames_repoints_default_and_placement_changes_are_named() {
    let renamed = "
shards:
  - {name: s0, primary: 'postgres://u@other:5433/d'}
  - {name: s9, primary: 'postgres://u@h:5434/d'}
";
    let old_tables = format!("{USERS}{EVENTS}  countries: {{strategy: reference}}\n");
    let new_tables = format!("{USERS}  countries: {{strategy: hash, key: code, key_type: text}}\n");
    let report = diff(&map(TWO, &old_tables), &map(renamed, &new_tables));
    let both = vec!["events".to_owned(), "orders".to_owned(), "users".to_owned()];
    let rename = ShardChange::Renamed {
        from: "s1".into(),
        to: "s9".into(),
        holds: both,
    };
    let repoint = ShardChange::Repointed {
        name: "s0".into(),
        old: "h:5433/d".into(),
        new: "other:5433/d".into(),
    };
    assert_eq!(report.shards, [rename, repoint]);
    let changes: Vec<(&str, &Change)> = (report.tables.iter())
        .map(|entry| (entry.tables[0].as_str(), &entry.change))
        .collect();
    let why = Change::EveryRow {
        why: "reference -> hash".into(),
    };
    assert_eq!(changes[0], ("countries", &why));
    assert!(matches!(changes[1], ("events", Change::Removed { .. })));
    assert!(matches!(changes[2], ("orders", Change::Hash(_))));
    assert_eq!(report.default_shard, None);
}

#[test]
fn new_shards_need_a_copy_of_reference_tables() {
    let tables = "  countries: {strategy: reference}\n";
    let report = diff(&map(TWO, tables), &map(THREE, tables));
    let copy = Change::Reference {
        copy_to: vec!["s2".into()],
    };
    assert_eq!(report.tables[0].change, copy);
    assert!(
        report
            .to_string()
            .contains("countries: reference table: copy it to s2\n")
    );
}

#[test]
fn a_directory_table_is_named_where_the_map_cannot_tell() {
    let before = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s1}, fallback: s0}
";
    let after = "
  documents:
    strategy: directory
    key: tenant_id
    key_type: integer
    entries: {1: s0}
    fallback: s0
    lookup: {uri: 'postgres://u:secret@h:5440/dir', table: tenants}
";
    let report = diff(&map(TWO, before), &map(TWO, after));
    let Change::Directory(moved) = &report.tables[0].change else {
        panic!("{report:?}");
    };
    let two = EntryMove {
        key: KeyValue::Integer(2),
        old: Placed::Shard("s1".into()),
        new: Placed::Lookup,
    };
    assert_eq!(moved.entries, [two]);
    let tables = ("none".to_owned(), "tenants at h:5440/dir".to_owned());
    assert_eq!(moved.lookup, Some(tables));
    let text = report.to_string();
    assert!(
        text.contains("  key 2: s1 -> (directory table)\n"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}
