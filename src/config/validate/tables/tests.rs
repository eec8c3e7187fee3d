use std::path::Path;

use crate::config::ShardMap;
use crate::config::key::KeyValue;
use crate::config::raw::RawShardMap;
use crate::config::tables::{Fallback, Gaps, Placement, Strategy};
use crate::config::{ShardId, Table};

const SHARDS: &str = "shards:\n\
    - {name: s0, primary: 'postgres://u@h:5433/d'}\n\
    - {name: s1, primary: 'postgres://u@h:5434/d'}\n\
    - {name: s2, primary: 'postgres://u@h:5435/d'}\n";

/// The map, or every problem as `path: message`.
fn validate(tables: &str) -> Result<ShardMap, Vec<String>> {
    let yaml = format!("{SHARDS}tables:\n{tables}");
    let raw: RawShardMap = serde_yaml::from_str(&yaml).expect("test YAML parses");
    let found = crate::config::validate::shard_map(&raw, Path::new("map.yaml"));
    found.map_err(|problems| {
        let lines = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message));
        lines.collect()
    })
}

fn problems(tables: &str) -> String {
    validate(tables)
        .expect_err("map must be refused")
        .join("\n")
}

fn strategy<'a>(map: &'a ShardMap, table: &str) -> &'a Strategy {
    match &map.tables[table].placement {
        Placement::Sharded(sharding) => &sharding.strategy,
        Placement::Reference => panic!("{table} is a reference table"),
    }
}

#[test]
fn every_strategy_validates() {
    let map = validate(
        "  Users: {strategy: hash, key: User_Id, key_type: bigint}\n\
         \x20 orders: {colocated_with: users, key: user_id}\n\
         \x20 events:\n\
         \x20   strategy: range\n\
         \x20   key: created_at\n\
         \x20   key_type: date\n\
         \x20   ranges:\n\
         \x20     - {shard: s1, from: '2026-01-01'}\n\
         \x20     - {shard: s0, to: '2026-01-01'}\n\
         \x20 documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s2}, fallback: hash}\n\
         \x20 countries: {strategy: reference}\n",
    )
    .unwrap();
    let users: &Table = &map.tables["users"];
    let Placement::Sharded(sharding) = &users.placement else {
        panic!("users is sharded")
    };
    assert_eq!(sharding.key_column, "user_id");
    let Strategy::Hash(ring) = strategy(&map, "users") else {
        panic!("users is hashed")
    };
    assert_eq!((ring.shards.len(), ring.vnodes), (3, 64));
    assert!(std::ptr::eq(
        strategy(&map, "users"),
        strategy(&map, "orders")
    ));
    let Strategy::Range(ranges) = strategy(&map, "events") else {
        panic!("events is ranged")
    };
    assert_eq!(ranges.ranges[0].shard, ShardId(0), "sorted by lower bound");
    assert_eq!(ranges.gaps, Gaps::Refuse);
    let Strategy::Directory(directory) = strategy(&map, "documents") else {
        panic!("documents is a directory")
    };
    assert_eq!(directory.entries[&KeyValue::Integer(2)], ShardId(2));
    assert!(matches!(directory.fallback, Fallback::Hash(_)));
    assert!(matches!(
        map.tables["countries"].placement,
        Placement::Reference
    ));
}

#[test]
fn overlaps_and_gaps_are_refused_unless_gaps_are_allowed() {
    let overlap = problems(
        "  t: {strategy: range, key: k, key_type: integer, ranges: [{shard: s0, to: 10}, {shard: s1, from: 5}]}\n",
    );
    assert!(overlap.contains("ranges overlap"), "{overlap}");
    let gap = problems(
        "  t: {strategy: range, key: k, key_type: integer, ranges: [{shard: s0, to: 10}, {shard: s1, from: 20}]}\n",
    );
    assert!(gap.contains("keys from 10 to 20 have no range"), "{gap}");
    let ends = problems(
        "  t: {strategy: range, key: k, key_type: integer, ranges: [{shard: s0, from: 0, to: 10}]}\n",
    );
    assert!(
        ends.contains("keys below 0") && ends.contains("keys from 10 up"),
        "{ends}"
    );
    validate(
        "  t: {strategy: range, key: k, key_type: integer, allow_gaps: true, ranges: [{shard: s0, from: 0, to: 10}, {shard: s1, from: 20, to: 30}]}\n",
    )
    .unwrap();
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let found = problems(
        "  a: {strategy: hash, key: k, key_type: float, ranges: []}\n\
         \x20 b: {colocated_with: nowhere, key: k}\n\
         \x20 c: {strategy: directory, key: k, key_type: integer, entries: {x: s0, 1: s9}}\n\
         \x20 d: {strategy: range, key: k, key_type: date, ranges: [{shard: s0, from: '2026-02-30'}]}\n\
         \x20 e: {strategy: hash, key_type: integer, vnodes: 0}\n\
         \x20 f: {strategy: reference, key: k}\n\
         \x20 g: {strategy: modulo, key: k, key_type: text}\n",
    );
    for expected in [
        "tables.a.key_type: \"float\" is not",
        "tables.a.ranges: only a range table takes `ranges`",
        "tables.b.colocated_with: \"nowhere\" is not a sharded table",
        "tables.c.entries.x:",
        "tables.c.entries.1: no shard is named \"s9\"",
        "tables.d.ranges[0].from:",
        "tables.e.key: a sharded table needs",
        "tables.e.vnodes: must be 1 to 4096",
        "tables.f.key: a reference table has no shard key",
        "tables.g.strategy: \"modulo\" is not",
    ] {
        assert!(found.contains(expected), "missing {expected:?} in\n{found}");
    }
}

#[test]
fn colocated_tables_share_the_key_type_and_need_a_sharded_root() {
    let found = problems(
        "  r: {strategy: reference}\n\
         \x20 u: {strategy: hash, key: id, key_type: integer}\n\
         \x20 o: {colocated_with: u, key: uid, key_type: text}\n\
         \x20 x: {colocated_with: r, key: id}\n\
         \x20 y: {colocated_with: u, key: id, strategy: hash}\n",
    );
    assert!(
        found.contains("tables.o.key_type: co-located keys must share integer"),
        "{found}"
    );
    assert!(
        found.contains("tables.x.colocated_with: \"r\" is not a sharded table"),
        "{found}"
    );
    assert!(
        found.contains("tables.y.strategy: a co-located table shares"),
        "{found}"
    );
}

#[test]
fn table_names_are_case_insensitive_and_unqualified() {
    let found = problems(
        "  Users: {strategy: reference}\n\
         \x20 users: {strategy: reference}\n\
         \x20 public.t: {strategy: reference}\n",
    );
    assert!(found.contains("duplicate table name \"users\""), "{found}");
    assert!(
        found.contains("tables.public.t: write the table name without a schema"),
        "{found}"
    );
}

#[test]
fn multi_shard_writes_default_to_allowed_and_keep_their_old_spelling() {
    use crate::config::MultiShardWrites::{Allow, Refuse};
    let map = validate(
        "  a: {strategy: hash, key: id, key_type: bigint}\n\
         \x20 b: {strategy: hash, key: id, key_type: bigint, multi_shard_writes: refuse}\n\
         \x20 c: {strategy: hash, key: id, key_type: bigint, broadcast: false}\n\
         \x20 d: {strategy: hash, key: id, key_type: bigint, broadcast: true}\n",
    )
    .unwrap();
    let writes = |t: &str| map.tables[t].multi_shard_writes;
    assert_eq!(
        [writes("a"), writes("b"), writes("c"), writes("d")],
        [Allow, Refuse, Refuse, Allow]
    );
    let found = problems(
        "  a: {strategy: hash, key: id, key_type: bigint, multi_shard_writes: never}\n\
         \x20 b: {strategy: hash, key: id, key_type: bigint, multi_shard_writes: allow, broadcast: false}\n",
    );
    assert_eq!(
        found,
        "tables.a.multi_shard_writes: expected `allow` or `refuse`, not \"never\"\n\
         tables.b.broadcast: contradicts `multi_shard_writes`; keep only `multi_shard_writes`"
    );
}
