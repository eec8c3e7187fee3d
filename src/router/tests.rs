//! SQL → Route, table-driven, against a map with every strategy.

use std::path::Path;

use super::*;
use crate::config::{KeyValue, parse_shard_map};

const MAP: &str = "
shards:
  - {name: s0, primary: 'postgres://u@h:5433/d'}
  - {name: s1, primary: 'postgres://u@h:5434/d'}
  - {name: s2, primary: 'postgres://u@h:5435/d'}
default_shard: s0
tables:
  users: {strategy: hash, key: user_id, key_type: bigint}
  orders: {colocated_with: users, key: user_id}
  accounts: {strategy: hash, key: id, key_type: integer, multi_shard_writes: refuse}
  events:
    strategy: range
    key: created_at
    key_type: timestamp
    ranges:
      - {shard: s0, to: '2026-01-01'}
      - {shard: s1, from: '2026-01-01', to: '2026-07-01'}
      - {shard: s2, from: '2026-07-01'}
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s1, 2: s2}, fallback: error}
  countries: {strategy: reference}
";

pub(super) fn router() -> Router {
    Router::new(&parse_shard_map(MAP, Path::new("map.yaml")).expect("test map is valid"))
}

fn route(router: &Router, sql: &str) -> Result<Route, RouteError> {
    router.route(&router.plan(sql), &Params::none(), None)
}

/// The shard of a users key by the router's own placement.
fn user_shard(router: &Router, key: i64) -> ShardId {
    let placer = router.placer("users");
    placer.shard_for(&KeyValue::Integer(key)).unwrap()
}

fn shard(i: u32) -> Route {
    Route::Shard(ShardId(i))
}

fn all() -> Vec<ShardId> {
    (0..3).map(ShardId).collect()
}

fn refused(result: Result<Route, RouteError>) -> String {
    match result {
        Err(RouteError::Unsupported(why)) => why.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn statements_without_map_tables() {
    let r = router();
    for sql in [
        "SELECT 1",
        "BEGIN",
        "SET x = 1",
        "SHOW TimeZone",
        "COMMIT",
        "SELECT now(); SELECT 2",
    ] {
        assert_eq!(route(&r, sql), Ok(Route::Anywhere), "{sql}");
    }
    for sql in [
        "SELECT * FROM plain",
        "INSERT INTO plain VALUES (1)",
        "UPDATE plain SET a = 1",
        "CREATE TABLE plain2 (a int)",
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind = 'r'",
        "SELECT (SELECT count(*) FROM plain)",
        "VACUUM plain",
    ] {
        assert_eq!(route(&r, sql), Ok(shard(0)), "{sql}");
    }
}

#[test]
fn hash_keys_from_where_clauses() {
    let r = router();
    let s42 = Route::Shard(user_shard(&r, 42));
    for sql in [
        "SELECT * FROM users WHERE user_id = 42",
        "SELECT * FROM users WHERE 42 = user_id AND name <> 'x'",
        "SELECT * FROM users u WHERE u.user_id = '42'",
        "SELECT * FROM public.users WHERE (user_id = 42::bigint)",
        "SELECT * FROM users WHERE user_id IN (42, 42)",
        "SELECT * FROM users WHERE user_id = ANY('{42}')",
        "SELECT * FROM users WHERE user_id = ANY(ARRAY[42])",
        "UPDATE users SET name = 'x' WHERE user_id = 42",
        "DELETE FROM users WHERE user_id = 42 RETURNING *",
        "INSERT INTO users (user_id, name) VALUES (42, 'a')",
        "INSERT INTO users (name, user_id) VALUES ('a', 42), ('b', 42) ON CONFLICT (user_id) DO UPDATE SET name = excluded.name",
        "INSERT INTO users (user_id, name) SELECT 42, 'a' WHERE NOT EXISTS (SELECT 1 FROM countries)",
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.user_id WHERE u.user_id = 42",
        "SELECT * FROM users JOIN orders USING (user_id) WHERE orders.user_id = 42",
        "SELECT * FROM users u, orders o WHERE u.user_id = o.user_id AND o.user_id = 42",
        "SELECT * FROM users u JOIN countries c ON c.code = u.country WHERE u.user_id = 42",
        "/* shard_key: 42 */ SELECT * FROM users",
        "EXPLAIN SELECT * FROM users WHERE user_id = 42",
    ] {
        assert_eq!(route(&r, sql), Ok(s42.clone()), "{sql}");
    }
}

#[test]
fn reads_that_need_several_shards_say_so() {
    let r = router();
    for sql in [
        "SELECT * FROM users",
        "SELECT * FROM users WHERE user_id = 1 OR name = 'x'",
        "SELECT * FROM users WHERE user_id > 5",
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.user_id AND o.user_id = 42",
        "SELECT * FROM users u JOIN orders o ON o.id = u.user_id WHERE u.user_id = 42",
        "SELECT * FROM users WHERE user_id = 42 UNION SELECT * FROM users WHERE user_id = 43",
        "SELECT * FROM plain WHERE id IN (SELECT user_id FROM users WHERE user_id = 42)",
        "SELECT * FROM users JOIN events ON true",
        "COPY users TO STDOUT",
    ] {
        assert!(
            matches!(route(&r, sql), Ok(Route::Scatter(_))),
            "{sql}: {:?}",
            route(&r, sql)
        );
    }
    let (a, b) = (1..100)
        .map(|k| (k, user_shard(&r, k)))
        .find_map(|(k, s)| (s != user_shard(&r, 1)).then_some((1, k)))
        .unwrap();
    let sql = format!("SELECT * FROM users WHERE user_id IN ({a}, {b})");
    let Ok(Route::Scatter(shards)) = route(&r, &sql) else {
        panic!("{sql}")
    };
    assert_eq!(shards.len(), 2);
}

#[test]
fn range_keys_and_predicates() {
    let r = router();
    let cases = [
        (
            "SELECT * FROM events WHERE created_at = '2025-05-05'",
            shard(0),
        ),
        (
            "SELECT * FROM events WHERE created_at = TIMESTAMP '2026-03-01 10:00'",
            shard(1),
        ),
        (
            "SELECT * FROM events WHERE created_at >= '2026-07-01'",
            shard(2),
        ),
        (
            "SELECT * FROM events WHERE created_at < '2026-01-01'",
            shard(0),
        ),
        (
            "SELECT * FROM events WHERE created_at BETWEEN '2026-02-01' AND '2026-03-01'",
            shard(1),
        ),
        (
            "SELECT * FROM events WHERE '2026-08-01' < created_at",
            shard(2),
        ),
        (
            "INSERT INTO events (created_at, body) VALUES ('2026-12-24 18:00:00', 'x')",
            shard(2),
        ),
        (
            "SELECT * FROM events WHERE created_at >= '2026-01-01' AND created_at < '2026-07-01'",
            shard(1),
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(route(&r, sql), Ok(want), "{sql}");
    }
    let spans =
        "SELECT * FROM events WHERE created_at > '2025-12-01' AND created_at < '2026-02-01'";
    assert_eq!(
        route(&r, spans),
        Ok(Route::Scatter(vec![ShardId(0), ShardId(1)]))
    );
}

#[test]
fn directory_entries_and_their_errors() {
    let r = router();
    assert_eq!(
        route(&r, "SELECT * FROM documents WHERE tenant_id = 2"),
        Ok(shard(2))
    );
    assert_eq!(
        route(&r, "INSERT INTO documents (tenant_id) VALUES (1)"),
        Ok(shard(1))
    );
    let err = route(&r, "SELECT * FROM documents WHERE tenant_id = 7").unwrap_err();
    assert!(matches!(err, RouteError::Placement { .. }), "{err:?}");
    assert!(
        err.to_string().contains("documents") && err.to_string().contains('7'),
        "{err}"
    );
    let bad = route(&r, "SELECT * FROM documents WHERE tenant_id = 'x'").unwrap_err();
    assert_eq!(bad.report().code, "22P02");
}

/// The kind of refusal of `sql` (the label it is counted by).
fn refused_kind(router: &Router, sql: &str) -> &'static str {
    match route(router, sql) {
        Err(RouteError::Unsupported(what)) => what.kind(),
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn write_refusals_are_told_apart_by_kind() {
    let r = router();
    for (sql, kind) in [
        ("UPDATE accounts SET name = 'x'", "write_without_key"),
        (
            "DELETE FROM accounts WHERE id IN (1, 2, 3, 4, 5, 6)",
            "write_to_several_shards",
        ),
        ("UPDATE accounts SET id = 7", "shard_key_change"),
        (
            "INSERT INTO users VALUES (42, 'a')",
            "insert_without_columns",
        ),
        (
            "INSERT INTO users (name) VALUES ('a')",
            "insert_without_key",
        ),
        (
            "INSERT INTO users (user_id) VALUES (random())",
            "insert_key_not_constant",
        ),
        (
            "INSERT INTO users (user_id) VALUES (NULL)",
            "null_key_in_insert",
        ),
        ("COPY users FROM '/tmp/users.txt'", "copy_into_sharded"),
        ("COPY countries FROM PROGRAM 'cat x'", "copy_into_reference"),
        (
            "SELECT * INTO users_copy FROM users WHERE user_id = 1",
            "unanalysed_statement",
        ),
    ] {
        assert_eq!(refused_kind(&r, sql), kind, "{sql}");
    }
}

#[test]
fn writes_are_strict() {
    let r = router();
    let why = refused(route(&r, "UPDATE accounts SET name = 'x'"));
    assert!(
        why.contains("accounts") && why.contains("multi_shard_writes"),
        "{why}"
    );
    let why = refused(route(&r, "UPDATE accounts SET id = 7"));
    assert!(why.contains("move rows between shards"), "{why}");
    let why = refused(route(&r, "INSERT INTO users VALUES (42, 'a')"));
    assert!(why.contains("column list"), "{why}");
    let why = refused(route(&r, "INSERT INTO users (name) VALUES ('a')"));
    assert!(why.contains("does not set the shard key user_id"), "{why}");
    let why = refused(route(&r, "INSERT INTO users (user_id) VALUES (random())"));
    assert!(why.contains("literal or a parameter"), "{why}");
    let why = refused(route(&r, "INSERT INTO users (user_id) VALUES (NULL)"));
    assert!(why.contains("NULL shard key"), "{why}");
    let why = refused(route(&r, "INSERT INTO plain SELECT * FROM users"));
    assert!(why.contains("users"), "{why}");
    let why = refused(route(
        &r,
        "WITH moved AS (UPDATE users SET name = 'x' WHERE user_id = 1 RETURNING *) SELECT * FROM moved",
    ));
    assert!(why.contains("data-modifying WITH"), "{why}");
    let why = refused(route(
        &r,
        "SELECT * INTO users_copy FROM users WHERE user_id = 1",
    ));
    assert!(why.contains("SELECT INTO"), "{why}");
    let cte = "WITH d AS (DELETE FROM plain RETURNING *) SELECT * FROM d";
    assert_eq!(route(&r, cte), Ok(shard(0)));
    let why = refused(route(&r, "COPY users FROM '/srv/users.txt'"));
    assert!(why.contains("FROM STDIN"), "{why}");
    assert_eq!(
        route(&r, "UPDATE users SET x = 1"),
        Ok(Route::Broadcast(all()))
    );
    let several = "DELETE FROM users WHERE user_id IN (1, 2, 3, 4, 5, 6)";
    assert!(matches!(route(&r, several), Ok(Route::Broadcast(_))));
    assert_eq!(
        route(&r, "DELETE FROM users WHERE user_id = NULL"),
        Ok(Route::Shard(r.placer("users").shards()[0]))
    );
}

#[test]
fn ddl_and_reference_writes_go_everywhere() {
    let r = router();
    for sql in [
        "CREATE TABLE users (user_id bigint primary key)",
        "ALTER TABLE orders ADD COLUMN x int",
        "CREATE INDEX ON events (created_at)",
        "DROP TABLE IF EXISTS countries",
        "TRUNCATE users",
        "INSERT INTO countries (code) VALUES ('fr')",
        "UPDATE countries SET name = 'x'",
        // What map tables' definitions use exists on every shard.
        "CREATE SCHEMA billing",
        "CREATE SCHEMA IF NOT EXISTS billing AUTHORIZATION app",
        "ALTER SCHEMA billing RENAME TO invoicing",
        "DROP SCHEMA billing CASCADE",
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "ALTER TYPE mood ADD VALUE 'happy'",
        "DROP TYPE IF EXISTS mood",
        "CREATE DOMAIN positive AS integer CHECK (VALUE > 0)",
        "DROP DOMAIN positive",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "DROP EXTENSION pgcrypto",
    ] {
        assert_eq!(route(&r, sql), Ok(Route::Replicate(all())), "{sql}");
    }
    // Sequences serve unmapped tables' defaults on the default shard.
    assert_eq!(route(&r, "CREATE SEQUENCE plain_id_seq"), Ok(shard(0)));
    assert_eq!(route(&r, "SELECT * FROM countries"), Ok(Route::Anywhere));
    assert_eq!(
        route(&r, "SELECT * FROM countries JOIN plain ON true"),
        Ok(shard(0))
    );
}

#[test]
fn parameters_route_at_bind_in_text_and_binary() {
    let r = router();
    let plan = r.plan("SELECT * FROM users WHERE user_id = $1");
    let want = Ok(Route::Shard(user_shard(&r, 42)));
    assert!(matches!(
        r.route(&plan, &Params::none(), None),
        Err(RouteError::MissingParameter(1))
    ));
    let cases: [(i16, u32, Vec<u8>); 4] = [
        (0, 0, b"42".to_vec()),
        (0, 20, b"42".to_vec()),
        (1, 23, 42i32.to_be_bytes().to_vec()),
        (1, 20, 42i64.to_be_bytes().to_vec()),
    ];
    for (format, oid, value) in cases {
        let mut rest = vec![0, 1];
        rest.extend(format.to_be_bytes());
        rest.extend([0, 1]);
        rest.extend((value.len() as i32).to_be_bytes());
        rest.extend(&value);
        let types = [oid];
        let params = Params::from_bind(&rest, &types).unwrap();
        assert_eq!(
            r.route(&plan, &params, None),
            want,
            "format {format} oid {oid}"
        );
    }
    let arguments = execute_arguments("(42, 'x')");
    assert_eq!(r.route(&plan, &Params::from_text(&arguments), None), want);
}

#[test]
fn insert_select_between_colocated_tables_runs_where_the_source_rows_are() {
    let r = router();
    let every = "INSERT INTO orders (user_id, id) SELECT user_id, 1 FROM users";
    assert_eq!(route(&r, every), Ok(Route::Broadcast(all())));
    let one = "INSERT INTO orders (id, user_id) SELECT o.id + 1, o.user_id FROM orders o \
               JOIN users u ON u.user_id = o.user_id WHERE u.user_id = 42";
    assert_eq!(route(&r, one), Ok(Route::Shard(user_shard(&r, 42))));
    for refused in [
        "INSERT INTO orders (user_id, id) SELECT 7, 1 FROM users",
        "INSERT INTO orders (user_id, id) SELECT user_id, count(*) FROM users GROUP BY user_id",
        "INSERT INTO orders (user_id, id) SELECT user_id, 1 FROM users LIMIT 5",
        "INSERT INTO orders (user_id, id) SELECT DISTINCT user_id, 1 FROM users",
        "INSERT INTO orders (user_id, id) SELECT id, 1 FROM accounts",
        "INSERT INTO orders (user_id, id) SELECT user_id, 1 FROM users WHERE name IN (SELECT name FROM users)",
    ] {
        assert_eq!(
            refused_kind(&r, refused),
            "insert_reads_sharded",
            "{refused}"
        );
    }
}

#[test]
fn write_subqueries_tied_to_the_row_by_the_key_run_per_shard() {
    let r = router();
    for sql in [
        "UPDATE users SET name = 'x' WHERE user_id IN (SELECT user_id FROM orders)",
        "DELETE FROM orders WHERE user_id NOT IN (SELECT user_id FROM users WHERE name = 'x')",
        "UPDATE users u SET name = 'v' WHERE EXISTS \
         (SELECT 1 FROM orders o WHERE o.user_id = u.user_id AND o.id > 100)",
        "UPDATE users SET name = (SELECT max(id)::text FROM orders o \
         WHERE o.user_id = users.user_id)",
    ] {
        assert_eq!(route(&r, sql), Ok(Route::Broadcast(all())), "{sql}");
    }
    let one = "UPDATE users SET name = 'x' WHERE user_id IN (SELECT user_id FROM orders) \
               AND user_id = 42";
    assert_eq!(route(&r, one), Ok(Route::Shard(user_shard(&r, 42))));
    for refused in [
        "UPDATE users SET name = 'x' WHERE user_id IN (SELECT max(user_id) FROM orders)",
        "UPDATE users SET name = 'x' WHERE name IN (SELECT name FROM users)",
        "UPDATE users SET name = 'x' WHERE user_id IN (SELECT user_id FROM orders LIMIT 1)",
        "UPDATE users SET name = 'x' WHERE user_id IN (SELECT id FROM accounts)",
        "UPDATE users SET name = 'x' WHERE EXISTS \
         (SELECT 1 FROM orders o WHERE o.user_id = user_id)",
        "UPDATE users u SET name = 'x' WHERE EXISTS \
         (SELECT 1 FROM users u WHERE u.user_id = u.user_id)",
        "UPDATE users SET name = 'x' WHERE user_id IN \
         (SELECT user_id FROM orders WHERE user_id IN (SELECT user_id FROM users))",
    ] {
        assert_eq!(
            refused_kind(&r, refused),
            "write_reads_in_subquery",
            "{refused}"
        );
    }
}

#[test]
fn maintenance_and_locks_of_map_tables_run_on_every_shard() {
    let r = router();
    for sql in [
        "ANALYZE users",
        "VACUUM users",
        "VACUUM (VERBOSE, ANALYZE) orders",
        "LOCK TABLE users IN ACCESS SHARE MODE",
        "LOCK TABLE countries, users",
        "CLUSTER users USING users_pkey",
        "REINDEX TABLE events",
    ] {
        assert!(matches!(route(&r, sql), Ok(Route::Replicate(_))), "{sql}");
    }
    assert_eq!(route(&r, "VACUUM plain"), Ok(shard(0)));
    assert_eq!(route(&r, "REINDEX TABLE plain"), Ok(shard(0)));
}

#[test]
fn hints_override_and_name_real_shards() {
    let r = router();
    assert_eq!(
        route(&r, "/* shard: s2 */ SELECT * FROM users"),
        Ok(shard(2))
    );
    let session = Hint::Shard("s1".into());
    let plan = r.plan("UPDATE users SET name = 'x'");
    assert_eq!(
        r.route(&plan, &Params::none(), Some(&session)),
        Ok(shard(1))
    );
    let key = Hint::ShardKey("2".into());
    let plan = r.plan("DELETE FROM documents");
    assert_eq!(r.route(&plan, &Params::none(), Some(&key)), Ok(shard(2)));
    let err = route(&r, "/* shard: nowhere */ SELECT 1").unwrap_err();
    assert_eq!(err.report().code, "42704");
}

#[test]
fn unparseable_text_is_routed_only_when_unambiguous() {
    let r = router();
    assert_eq!(route(&r, "DO $$ BEGIN PERFORM 1; END $$"), Ok(shard(0)));
    let plan = r.plan("DO $$ BEGIN UPDATE users SET name = 'x'; END $$");
    assert_eq!(
        r.route(&plan, &Params::none(), None),
        Ok(Route::CurrentShardOnly)
    );
    let key = Hint::ShardKey("42".into());
    let s42 = Route::Shard(user_shard(&r, 42));
    assert_eq!(r.route(&plan, &Params::none(), Some(&key)), Ok(s42));
}

#[test]
fn multi_statement_queries_over_different_shards_run_per_statement() {
    let r = router();
    let sql = "SELECT 1; SELECT * FROM users WHERE user_id = 42";
    assert_eq!(route(&r, sql), Ok(Route::Shard(user_shard(&r, 42))));
    let (a, b) = (1..100)
        .map(|k| (1, k))
        .find(|&(a, b)| user_shard(&r, a) != user_shard(&r, b))
        .unwrap();
    let sql =
        format!("DELETE FROM users WHERE user_id = {a}; DELETE FROM users WHERE user_id = {b}");
    assert_eq!(route(&r, &sql), Ok(Route::PerStatement));
}

#[test]
fn simple_queries_with_literals_route_as_their_parsed_text() {
    let r = router();
    for sql in [
        "SELECT * FROM users WHERE user_id = 42",
        "SELECT * FROM users u WHERE u.user_id = '42'",
        "SELECT * FROM users WHERE user_id IN (1, 2, 3)",
        "SELECT * FROM users WHERE user_id = -42",
        "INSERT INTO users (user_id, name) VALUES (42, 'a'), (43, 'b')",
        "UPDATE users SET name = 'x' WHERE user_id = 7",
        "UPDATE users SET name = 'x'",
        "SELECT * FROM events WHERE created_at = TIMESTAMP '2026-03-01 10:00'",
        "SELECT * FROM events WHERE created_at BETWEEN '2026-02-01' AND '2026-03-01'",
        "SELECT * FROM documents WHERE tenant_id = 7",
        "/* shard_key: 42 */ SELECT * FROM users WHERE name = 'x'",
        "SET search_path = 'x'",
        "SELECT 1",
    ] {
        assert_eq!(r.route_simple(sql, None), route(&r, sql), "{sql}");
    }
}

#[test]
fn a_second_use_of_a_sharded_table_is_never_narrowed_by_the_first() {
    let r = router();
    for sql in [
        "SELECT *, (SELECT count(*) FROM users) FROM users WHERE user_id = 5",
        "WITH x AS (SELECT * FROM users) SELECT * FROM users, x WHERE users.user_id = 5",
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.user_id AND u.user_id = 5 RIGHT JOIN orders o2 ON o2.user_id = o.user_id",
        "SELECT * FROM users u LEFT JOIN (orders o JOIN orders o2 ON o2.user_id = o.user_id AND o.user_id = 5) ON o.user_id = u.user_id",
    ] {
        assert!(
            matches!(route(&r, sql), Ok(Route::Scatter(_))),
            "{sql}: {:?}",
            route(&r, sql)
        );
    }
    for sql in [
        "UPDATE users SET name = (SELECT max(name) FROM users) WHERE user_id = 5",
        "DELETE FROM users WHERE user_id = 5 AND name IN (SELECT name FROM users WHERE user_id = 7)",
        "INSERT INTO users (user_id, name) SELECT 5, name FROM users WHERE user_id = 7",
        "INSERT INTO users (user_id, name) SELECT 5, name FROM plain",
        "CREATE TABLE plain2 AS SELECT * FROM users",
        "CREATE VIEW v AS SELECT * FROM users",
    ] {
        assert!(route(&r, sql).is_err(), "{sql}: {:?}", route(&r, sql));
    }
    let s5 = Route::Shard(user_shard(&r, 5));
    assert_eq!(
        route(&r, "SELECT * FROM users WHERE users.user_id = 5"),
        Ok(s5.clone())
    );
    assert_eq!(
        route(&r, "UPDATE users SET name = 'x' WHERE users.user_id = 5"),
        Ok(s5)
    );
}

#[test]
fn a_shard_key_hint_never_overrides_a_different_key_in_the_statement() {
    let r = router();
    let (a, b) = (1..100)
        .map(|k| (1, k))
        .find(|&(a, b)| user_shard(&r, a) != user_shard(&r, b))
        .unwrap();
    let hint = Hint::ShardKey(a.to_string());
    let plan = r.plan(&format!("INSERT INTO users (user_id) VALUES ({b})"));
    let refused = r.route(&plan, &Params::none(), Some(&hint)).unwrap_err();
    assert!(refused.to_string().contains("shard_key hint"), "{refused}");
    let plan = r.plan(&format!("INSERT INTO users (user_id) VALUES ({a})"));
    let same = r.route(&plan, &Params::none(), Some(&hint));
    assert_eq!(same, Ok(Route::Shard(user_shard(&r, a))));
}

#[test]
fn copy_of_a_query_runs_where_the_query_would() {
    let r = router();
    let by_key = "COPY (SELECT * FROM users WHERE user_id = 7) TO STDOUT";
    assert_eq!(route(&r, by_key), Ok(Route::Shard(user_shard(&r, 7))));
    let every = "COPY (SELECT * FROM users) TO STDOUT";
    assert!(matches!(route(&r, every), Ok(Route::Scatter(_))));
    let reference = "COPY (SELECT * FROM countries) TO STDOUT";
    assert!(matches!(
        route(&r, reference),
        Ok(Route::Anywhere | Route::Shard(_))
    ));
}

mod deep;

#[test]
fn copy_from_stdin_into_map_tables_splits_rows_and_reads_its_options() {
    use crate::wire::copy_rows::{CopyFormat, CsvOptions, ForceQuote};
    let r = router();
    assert_eq!(route(&r, "COPY users FROM STDIN"), Ok(Route::CopyIn(all())));
    assert_eq!(
        route(&r, "COPY countries FROM STDIN"),
        Ok(Route::CopyIn(all()))
    );
    assert_eq!(route(&r, "COPY plain FROM STDIN"), Ok(shard(0)));
    let copy = r.copy_in("COPY users (name, user_id) FROM STDIN").unwrap();
    assert_eq!(copy.columns, ["name", "user_id"]);
    assert_eq!(copy.format, CopyFormat::text());
    assert!(copy.sharding.is_some());
    let sql = "COPY users FROM STDIN (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA', \
               QUOTE '''', FORCE_NOT_NULL (user_id))";
    let CopyFormat::Csv(csv) = r.copy_in(sql).unwrap().format else {
        panic!("csv");
    };
    let expected = CsvOptions {
        delimiter: b';',
        quote: b'\'',
        escape: b'\'',
        null: b"NA".to_vec(),
        header: true,
        key_force_not_null: true,
        key_force_null: false,
        force_quote: ForceQuote::Needed,
    };
    assert_eq!(csv, expected);
    let legacy = r.copy_in("COPY users FROM STDIN WITH BINARY").unwrap();
    assert_eq!(legacy.format, CopyFormat::Binary);
    assert!(
        r.copy_in("COPY countries FROM STDIN")
            .unwrap()
            .sharding
            .is_none()
    );
}

#[test]
fn copy_to_stdout_reads_its_query() {
    use crate::wire::copy_rows::{CopyFormat, ForceQuote};
    let r = router();
    let out = r
        .copy_out("COPY users (user_id, name) TO STDOUT (FORMAT csv, HEADER)")
        .unwrap();
    assert_eq!(out.query, "SELECT user_id, name FROM users");
    assert!(out.header);
    let out = r
        .copy_out("/* c */ copy (SELECT 1 FROM users) TO STDOUT")
        .unwrap();
    assert_eq!(out.query, "SELECT 1 FROM users");
    assert!(!out.header);
    assert!(r.copy_out("SELECT 1").is_none());
    assert!(r.copy_out("COPY users FROM STDIN").is_none());
    let force = |sql| match r.copy_out(sql).map(|out| out.format) {
        Some(CopyFormat::Csv(csv)) => csv.force_quote,
        other => panic!("{other:?}"),
    };
    let name = ForceQuote::Columns(vec!["name".into()]);
    assert_eq!(
        force("COPY users TO STDOUT (FORMAT csv, FORCE_QUOTE (Name))"),
        name
    );
    assert_eq!(force("COPY users TO STDOUT CSV FORCE QUOTE name"), name);
    assert_eq!(
        force("COPY users TO STDOUT (FORMAT csv, FORCE_QUOTE *)"),
        ForceQuote::All
    );
    assert_eq!(
        force("COPY users TO STDOUT CSV HEADER FORCE QUOTE *"),
        ForceQuote::All
    );
}

#[test]
fn copy_options_the_parser_spells_differently_are_read_or_refused_never_sent_to_one_shard() {
    use crate::router::plan::copy::spelled_for_parser;
    let r = router();
    // pgbench -i's own statement.
    let pgbench = "copy users from stdin with (freeze on)";
    assert_eq!(route(&r, pgbench), Ok(Route::CopyIn(all())));
    let header = "COPY users FROM STDIN (FORMAT csv, HEADER 1)";
    assert!(matches!(
        r.copy_in(header).unwrap().format,
        crate::wire::copy_rows::CopyFormat::Csv(csv) if csv.header
    ));
    let matching = "COPY users FROM STDIN (FORMAT csv, HEADER MATCH)";
    assert_eq!(refused_kind(&r, matching), "copy_options_unread");
    assert_eq!(
        spelled_for_parser("COPY t FROM STDIN (FREEZE off, header ON)").as_deref(),
        Some("COPY t FROM STDIN (FREEZE FALSE, header TRUE)")
    );
    assert_eq!(spelled_for_parser("COPY t FROM STDIN (FREEZE)"), None);
}
