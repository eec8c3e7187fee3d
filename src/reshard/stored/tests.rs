//! Map edit → the questions asked of the shards, on small maps written as YAML.

use super::*;
use crate::config::parse_shard_map;
use crate::moves::diff;
use crate::moves::tests::{EVENTS, EVENTS_SPLIT, THREE, TWO, map};

fn asked(old: &ShardMap, new: &ShardMap) -> Vec<(String, String)> {
    let report = diff(old, new);
    (probes(old, new, &report).into_iter())
        .map(|probe| (probe.shard, probe.sql))
        .collect()
}

const USERS: &str = "
  users: {strategy: hash, key: user_id, key_type: bigint}
";

#[test]
fn an_edit_that_moves_nothing_asks_nothing() {
    let users = map(TWO, USERS);
    assert!(asked(&users, &users).is_empty());
}

#[test]
fn a_new_hash_shard_asks_each_shard_giving_keys_about_any_row() {
    let questions = asked(&map(TWO, USERS), &map(THREE, USERS));
    let shards: Vec<&str> = questions.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(shards, ["s0", "s1"]);
    assert_eq!(
        questions[0].1,
        "SELECT EXISTS (SELECT 1 FROM \"users\" WHERE true)"
    );
}

#[test]
fn a_range_split_asks_only_about_the_moving_keys() {
    let questions = asked(&map(THREE, EVENTS), &map(THREE, EVENTS_SPLIT));
    assert_eq!(
        questions,
        [(
            "s1".to_owned(),
            "SELECT EXISTS (SELECT 1 FROM \"events\" WHERE \"created_at\" >= '2026-07-01'::date)"
                .to_owned()
        )]
    );
}

#[test]
fn text_ranges_compare_bytes_and_quote_their_bounds() {
    let before = "
  accounts:
    strategy: range
    key: handle
    key_type: text
    ranges:
      - {shard: s0, to: 'm'}
      - {shard: s1, from: 'm'}
";
    let after = "
  accounts:
    strategy: range
    key: handle
    key_type: text
    ranges:
      - {shard: s0, to: \"o'k\"}
      - {shard: s1, from: \"o'k\"}
";
    let questions = asked(&map(TWO, before), &map(TWO, after));
    assert_eq!(
        questions,
        [(
            "s1".to_owned(),
            "SELECT EXISTS (SELECT 1 FROM \"accounts\" WHERE \"handle\" COLLATE \"C\" >= 'm' \
             AND \"handle\" COLLATE \"C\" < 'o''k')"
                .to_owned()
        )]
    );
}

#[test]
fn directory_entries_ask_their_old_shard_about_their_keys_only() {
    let before = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s1}, fallback: s0}
";
    let after = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s1, 2: s0, 3: s1}, fallback: s0}
";
    let questions = asked(&map(TWO, before), &map(TWO, after));
    let sql = |keys: &str| {
        format!("SELECT EXISTS (SELECT 1 FROM \"documents\" WHERE \"tenant_id\" IN ({keys}))")
    };
    assert_eq!(
        questions,
        [
            ("s0".to_owned(), sql("'1'::bigint, '3'::bigint")),
            ("s1".to_owned(), sql("'2'::bigint")),
        ]
    );
}

#[test]
fn a_changed_fallback_asks_every_shard_about_the_whole_table() {
    let before = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0}, fallback: s0}
";
    let after = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0}, fallback: s1}
";
    let questions = asked(&map(TWO, before), &map(TWO, after));
    let shards: Vec<&str> = questions.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(shards, ["s0", "s1"]);
}

#[test]
fn a_table_joining_the_map_asks_the_default_shard() {
    let questions = asked(&map(TWO, "  {}"), &map(TWO, USERS));
    assert_eq!(
        questions,
        [(
            "s0".to_owned(),
            "SELECT EXISTS (SELECT 1 FROM \"users\" WHERE true)".to_owned()
        )]
    );
}

#[test]
fn a_sharded_table_leaving_the_map_asks_every_other_shard() {
    let questions = asked(&map(TWO, USERS), &map(TWO, "  {}"));
    let shards: Vec<&str> = questions.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(shards, ["s1"]);
}

#[test]
fn a_reference_table_asks_for_the_copy_new_shards_need() {
    let countries = "\n  countries: {strategy: reference}\n";
    let questions = asked(&map(TWO, countries), &map(THREE, countries));
    assert_eq!(questions.len(), 1);
    assert_eq!(questions[0].0, "s0");
    // Leaving the map: the default shard has every row already.
    assert!(asked(&map(TWO, countries), &map(TWO, "  {}")).is_empty());
}

#[test]
fn a_new_default_shard_asks_the_old_one_for_unlisted_tables_with_rows() {
    let to_s1 = TWO.to_owned() + "default_shard: s1\ntables:\n" + USERS;
    let to_s1 = parse_shard_map(&to_s1, std::path::Path::new("map.yaml")).unwrap();
    let questions = asked(&map(TWO, USERS), &to_s1);
    let [(shard, sql)] = &questions[..] else {
        panic!("{questions:?}")
    };
    assert_eq!(shard, "s0");
    assert!(sql.contains("c.relname NOT IN ('users')"), "{sql}");
    assert!(sql.contains("query_to_xml"), "{sql}");
}

/// A shard nobody answers for cannot rule rows out: the edit counts as moving stored rows.
#[tokio::test]
async fn a_shard_that_cannot_be_asked_counts_as_holding_rows() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let shards = format!(
        "
shards:
  - {{name: s0, primary: 'postgres://u@127.0.0.1:{port}/d'}}
  - {{name: s1, primary: 'postgres://u@127.0.0.1:{port}/e'}}
"
    );
    let (old, new) = (map(&shards, "  {}"), map(&shards, USERS));
    let probes = probes(&old, &new, &diff(&old, &new));
    let timeout = std::time::Duration::from_secs(2);
    let stored = stored_rows(&old, &probes, timeout).await;
    let [rows] = &stored[..] else {
        panic!("{stored:?}")
    };
    assert_eq!((rows.shard.as_str(), rows.table.as_str()), ("s0", "users"));
    let why = rows.unknown.as_deref().expect("not asked, so unknown");
    assert!(rows.to_string().contains("cannot tell"), "{rows} ({why})");
}
