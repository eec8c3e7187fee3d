//! Regression tests from the review of cross-shard reads, replicas and transactions spanning
//! shards. Each `probe_*` test reproduces one finding against real PostgreSQL and passes now
//! that it is fixed, or refused with a clear error where support is not there yet; `fine_*`
//! tests are checks that held from the start. Tables are `rv_*`, user ids are >= 90_000.

use std::collections::BTreeMap;
use std::time::Duration;

use shardgate::config::raw::RawTable;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{
    TestProxy, cluster, config_with_map, connect_direct, demo_map_with_replicas, oracle,
    sharded_config, sqlstate, wait_for_replicas,
};
use crate::raw::{Script, exchange, raw_login, read_message};
use crate::routing::two_users_on_different_shards;

/// A proxy with the demo map (replicas included) plus `yaml` tables.
async fn proxy_with(yaml: &str) -> TestProxy {
    let cluster = cluster();
    let mut map = demo_map_with_replicas(cluster);
    let extra: BTreeMap<String, RawTable> = serde_yaml::from_str(yaml).unwrap();
    map.tables.extend(extra);
    TestProxy::start(config_with_map(cluster, &map)).await
}

/// Rows and tag of a simple query, as text; `Err` is "SQLSTATE: message".
async fn text_rows(client: &Client, sql: &str) -> Result<(Vec<Vec<Option<String>>>, u64), String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })?;
    let mut rows = Vec::new();
    let mut count = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    Ok((rows, count))
}

/// `rv_*` table `name` (hash on id) with the same 60 rows through the proxy and in the oracle.
async fn load_items(proxy: &Client, plain: &Client, name: &str) {
    let ddl = format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id bigint PRIMARY KEY, qty int NOT NULL, \
         region text NOT NULL, amount numeric NOT NULL)"
    );
    let regions = ["north", "south", "east", "west"];
    let values: Vec<String> = (1..=60)
        .map(|i: i64| {
            format!(
                "({i}, {}, '{}', {}.{})",
                i % 13,
                regions[(i % 4) as usize],
                i % 7,
                i % 10
            )
        })
        .collect();
    let insert = format!(
        "INSERT INTO {name} (id, qty, region, amount) VALUES {}",
        values.join(", ")
    );
    for client in [proxy, plain] {
        for statement in ddl.split("; ") {
            client.simple_query(statement).await.unwrap();
        }
        client.simple_query(&insert).await.unwrap();
    }
}

/// Compares `sql` through the proxy and on the oracle; `ordered`: row order matters.
async fn differs(proxy: &Client, plain: &Client, sql: &str, ordered: bool) -> Option<String> {
    let (mut got, mut want) = (text_rows(proxy, sql).await, text_rows(plain, sql).await);
    if !ordered {
        for (rows, _) in [&mut got, &mut want].into_iter().flatten() {
            rows.sort();
        }
    }
    (got != want).then(|| format!("{sql}\n   proxy:  {got:?}\n   oracle: {want:?}"))
}

async fn planner_setup(table: &str) -> (TestProxy, Client, Client) {
    let proxy = proxy_with(&format!(
        "{table}: {{strategy: hash, key: id, key_type: bigint}}"
    ))
    .await;
    let through = proxy.connect().await;
    let plain = connect_direct(&oracle().primaries[0]).await;
    load_items(&through, &plain, table).await;
    wait_for_replicas(cluster()).await;
    (proxy, through, plain)
}

async fn assert_same(proxy: &Client, plain: &Client, queries: &[(&str, bool)]) {
    let mut failures = Vec::new();
    for (sql, ordered) in queries {
        if let Some(difference) = differs(proxy, plain, sql, *ordered).await {
            failures.push(difference);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Scatter planner: silently wrong answers.

/// GROUP BY NAME where NAME is both an input column and a select-list alias: PostgreSQL groups
/// by the input column; the planner (`Items::group_target`) takes the alias whenever the
/// alias's expression does not read a column of that name, so it merges per-shard groups by
/// the alias's value instead.
#[tokio::test]
async fn probe_group_by_name_that_is_both_input_column_and_alias() {
    let (_proxy, through, _plain) = planner_setup("rv_gba").await;
    // Whether an input column of that name exists is not in the text: refused, not guessed.
    for sql in [
        "SELECT 'all' AS region, count(*) FROM rv_gba GROUP BY region",
        "SELECT region, upper(region) AS qty, count(*) FROM rv_gba GROUP BY region, qty",
    ] {
        let error = through.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&error), "0A000", "{sql}");
    }
}

/// ORDER BY NAME where NAME is the output name PostgreSQL gives a cast (`qty::text` is called
/// "qty"): PostgreSQL sorts by that output column (text order); the planner only knows output
/// names of aliases and bare columns (`items::column_name`), so it sorts by the input column
/// (integer order) while each shard streams rows in text order.
#[tokio::test]
async fn probe_order_by_output_name_of_a_cast() {
    let (_proxy, through, plain) = planner_setup("rv_obc").await;
    assert_same(
        &through,
        &plain,
        &[("SELECT qty::text, id FROM rv_obc ORDER BY qty, id", true)],
    )
    .await;
}

/// An aggregate of outer columns inside a scalar subquery is an aggregate of the outer query
/// (one row in PostgreSQL); the planner does not look into subqueries for aggregates
/// (`grouped::aggregates_anywhere`), passes the rows through, and returns one row per shard.
#[tokio::test]
async fn probe_outer_aggregate_inside_a_subquery() {
    let (_proxy, through, _plain) = planner_setup("rv_oas").await;
    let sql = "SELECT (SELECT max(o.qty)) FROM rv_oas o";
    let error = through.simple_query(sql).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "refused, not one row per shard");
}

/// Every built-in aggregate must be known to the planner by name, or a cross-shard read
/// calling it passes through unmerged (one row per shard).
#[tokio::test]
async fn fine_every_builtin_aggregate_is_known() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/router/scatter/aggregate.rs"
    ))
    .unwrap();
    let plain = connect_direct(&oracle().primaries[0]).await;
    let rows = plain
        .query(
            "SELECT DISTINCT proname::text FROM pg_proc WHERE prokind = 'a' \
             AND pronamespace = 'pg_catalog'::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let missing: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| !source.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "aggregates the planner does not know: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Transactions spanning shards.

/// How many of `ids` exist in `users`, counted on every primary directly.
async fn stored(ids: &[i64]) -> i64 {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT count(*) FROM users WHERE user_id IN ({})",
        list.join(", ")
    );
    let mut total = 0;
    for uri in &cluster().primaries {
        let client = connect_direct(uri).await;
        total += client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0);
    }
    total
}

async fn reset_users(client: &Client, ids: &[i64], insert: bool) {
    for id in ids {
        client
            .simple_query(&format!("DELETE FROM users WHERE user_id = {id}"))
            .await
            .unwrap();
        if insert {
            client
                .simple_query(&format!(
                    "INSERT INTO users (user_id, name) VALUES ({id}, 'rv')"
                ))
                .await
                .unwrap();
        }
    }
}

/// The single text value of a one-row simple query.
async fn one_value(client: &Client, sql: &str) -> Option<String> {
    let (rows, _) = text_rows(client, sql).await.unwrap();
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0][0].clone()
}

/// `SET LOCAL` (and `SET TRANSACTION`) inside a transaction run only on the backend in use;
/// a shard the transaction reaches later joins with the bare BEGIN (`join_current_transaction`,
/// scatter `prelude`), so its statements run without the setting (RLS tenant ids, search_path,
/// isolation level…).
#[tokio::test]
async fn probe_set_local_is_lost_on_the_next_shard_of_the_transaction() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_101);
    reset_users(&client, &[a, b], true).await;
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    client
        .simple_query("SET LOCAL rv.tag = 'tenant-7'")
        .await
        .unwrap();
    let mut seen = Vec::new();
    for id in [a, b] {
        let sql = format!(
            "SELECT coalesce(current_setting('rv.tag', true), '<unset>') || '/' \
             || current_setting('transaction_isolation') FROM users WHERE user_id = {id}"
        );
        seen.push(one_value(&client, &sql).await);
    }
    client.simple_query("ROLLBACK").await.unwrap();
    let want = Some("tenant-7/repeatable read".to_owned());
    assert_eq!(
        seen,
        vec![want.clone(), want],
        "settings of the transaction on both shards"
    );
}

/// A session-level `SET` inside a transaction is staged until COMMIT, and the staged value is
/// not replayed on a shard that joins the transaction later: the second shard runs with the old
/// value inside the same transaction.
#[tokio::test]
async fn probe_set_inside_a_transaction_is_lost_on_the_next_shard() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_111);
    reset_users(&client, &[a, b], true).await;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("SET rv.tag2 = 'in-tx'").await.unwrap();
    // The shard the transaction started on (the SET's) sees it; a statement needing the
    // other shard is refused (a session SET cannot follow the transaction there yet), never
    // run without the setting.
    let mut refused = 0;
    for id in [a, b] {
        let sql =
            format!("SELECT current_setting('rv.tag2', true) FROM users WHERE user_id = {id}");
        match text_rows(&client, &sql).await {
            Ok((rows, _)) => assert_eq!(rows, vec![vec![Some("in-tx".to_owned())]]),
            Err(error) => {
                assert!(
                    error.starts_with("0A000") || error.starts_with("25P02"),
                    "{error}"
                );
                refused += usize::from(error.starts_with("0A000"));
            }
        }
    }
    assert_eq!(refused, 1, "the statement on the other shard is refused");
    client.simple_query("ROLLBACK").await.unwrap();
}

/// `COMMIT AND CHAIN` is not recognised as the end of the transaction
/// (`local::classify` accepts only COMMIT [WORK|TRANSACTION]), so it commits only the backend
/// in use; the parked shards stay in the old transaction and the ROLLBACK of the chained
/// transaction rolls back writes the client was told were committed.
#[tokio::test]
async fn probe_commit_and_chain_leaves_other_shards_uncommitted() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_121);
    reset_users(&client, &[a, b], false).await;
    client.simple_query("BEGIN").await.unwrap();
    for id in [a, b] {
        client
            .simple_query(&format!(
                "INSERT INTO users (user_id, name) VALUES ({id}, 'chain')"
            ))
            .await
            .unwrap();
    }
    // Not supported across shards yet: refused, and the refusal aborts the transaction.
    let error = client.simple_query("COMMIT AND CHAIN").await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
    client.simple_query("ROLLBACK").await.unwrap();
    let after_rollback = stored(&[a, b]).await;
    reset_users(&client, &[a, b], false).await;
    assert_eq!(after_rollback, 0, "nothing half-committed");
}

/// A statement that fails because the next shard's backend cannot be had (pool exhausted,
/// 53300) leaves the proxy with no backend in use: the client is told the transaction is
/// still fine (status 'T', not 'E'), and a COMMIT then commits the parked shard, although
/// PostgreSQL would have aborted the transaction at the error.
#[tokio::test]
async fn probe_failed_shard_switch_then_commit_commits_the_rest() {
    let cluster = cluster();
    let mut config = sharded_config(cluster);
    config.pool.size = 1;
    config.pool.checkout_timeout = Duration::from_millis(700);
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_131);
    let setup = proxy.connect().await;
    reset_users(&setup, &[a, b], false).await;
    drop(setup);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = proxy.connect().await;
    // Another client holds shard(b)'s only backend in a transaction.
    let blocker = proxy.connect().await;
    blocker.simple_query("BEGIN").await.unwrap();
    blocker
        .simple_query(&format!("SELECT 1 FROM users WHERE user_id = {b}"))
        .await
        .unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'half')"
        ))
        .await
        .unwrap();
    let error = client
        .simple_query(&format!(
            "INSERT INTO users (user_id, name) VALUES ({b}, 'half')"
        ))
        .await
        .unwrap_err();
    let code = sqlstate(&error);
    blocker.simple_query("ROLLBACK").await.unwrap();
    // PostgreSQL: the transaction is aborted; COMMIT answers ROLLBACK and nothing stays.
    let commit = client.simple_query("COMMIT").await;
    let kept = stored(&[a, b]).await;
    let cleanup = proxy.connect().await;
    reset_users(&cleanup, &[a, b], false).await;
    assert_eq!(code, "53300");
    assert!(commit.is_ok(), "{commit:?}");
    assert_eq!(
        kept, 0,
        "nothing of a transaction that failed may be committed"
    );
}

/// `FOR UPDATE NOWAIT` failing (55P03 lock_not_available) inside a transaction spanning shards
/// keeps its 55P03: only the lock timeout the proxy sets becomes 40P01 (`spanning::deadlock_report`).
#[tokio::test]
async fn a_nowait_failure_in_a_spanning_transaction_keeps_55p03() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let (a, b) = two_users_on_different_shards(90_141);
    let setup = proxy.connect().await;
    reset_users(&setup, &[a, b], true).await;
    let holder = proxy.connect().await;
    holder.simple_query("BEGIN").await.unwrap();
    holder
        .simple_query(&format!(
            "SELECT 1 FROM users WHERE user_id = {a} FOR UPDATE"
        ))
        .await
        .unwrap();
    let client = proxy.connect().await;
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query(&format!("SELECT 1 FROM users WHERE user_id = {b}"))
        .await
        .unwrap();
    let error = client
        .simple_query(&format!(
            "SELECT 1 FROM users WHERE user_id = {a} FOR UPDATE NOWAIT"
        ))
        .await
        .unwrap_err();
    client.simple_query("ROLLBACK").await.unwrap();
    holder.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(sqlstate(&error), "55P03", "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// Extended protocol around a held cross-shard portal (raw messages).

/// A trust-auth proxy with table `name` (hash on id, rows 1..=20), a raw login to it, and a
/// cross-shard read of 10 of its rows.
async fn raw_setup(name: &str) -> (TestProxy, TcpStream, String) {
    let cluster = cluster();
    let mut map = demo_map_with_replicas(cluster);
    let extra: BTreeMap<String, RawTable> = serde_yaml::from_str(&format!(
        "{name}: {{strategy: hash, key: id, key_type: bigint}}"
    ))
    .unwrap();
    map.tables.extend(extra);
    let mut config = config_with_map(cluster, &map);
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .simple_query(&format!("DROP TABLE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .simple_query(&format!("CREATE TABLE {name} (id bigint PRIMARY KEY)"))
        .await
        .unwrap();
    let values: Vec<String> = (1..=20).map(|i| format!("({i})")).collect();
    client
        .simple_query(&format!(
            "INSERT INTO {name} (id) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    wait_for_replicas(cluster).await;
    let stream = raw_login(&proxy).await;
    let sql = format!("SELECT id FROM {name} WHERE id BETWEEN 1 AND 10 ORDER BY id");
    (proxy, stream, sql)
}

/// Parse, Bind, Flush, Describe(portal), Execute, Sync: the Flush answers the held portal's
/// BindComplete (`answered`), and the Describe that follows is swallowed without its
/// RowDescription (`portal.rs`: `description: pending.describe && !pending.answered`).
#[tokio::test]
async fn probe_describe_portal_after_flush_gets_no_row_description() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd1").await;
    let script = Script::new().parse("", &sql).bind("", "").flush();
    let script = script.describe_portal("").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
}

/// Bind of a cross-shard portal, then Describe of its statement, then Execute of the portal:
/// the Describe settles and drops the held portal (`on_scatter_portal_message`, the `_` arm),
/// so the Execute goes to a backend that never saw the portal.
#[tokio::test]
async fn probe_describe_statement_between_bind_and_execute_loses_the_portal() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd2").await;
    let script = Script::new().parse("rv_s1", &sql).bind("rv_p1", "rv_s1");
    let script = script
        .describe_statement("rv_s1")
        .execute("rv_p1", 0)
        .sync();
    let tags = exchange(&mut stream, &script).await;
    // Not supported yet: a clear refusal of the Execute, never a backend's "no such portal".
    assert_eq!(tags[..4], ["1", "2", "t", "T"]);
    assert!(tags[4].contains("C0A000"), "{tags:?}");
    assert_eq!(tags.last().map(String::as_str), Some("Z"));
}

/// Two named cross-shard portals bound before either is executed: binding the second drops
/// the first (only one `scatter_portal` is held), whose Execute then fails.
#[tokio::test]
async fn probe_two_cross_shard_portals_in_one_batch() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd3").await;
    let script = Script::new().parse("rv_s2", &sql);
    let script = script.bind("rv_pa", "rv_s2").bind("rv_pb", "rv_s2");
    let script = script.execute("rv_pa", 0).execute("rv_pb", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    // Not supported yet: the first portal's Execute is refused clearly (0A000).
    assert_eq!(tags[..3], ["1", "2", "2"]);
    assert!(tags[3].contains("C0A000"), "{tags:?}");
    assert_eq!(tags.last().map(String::as_str), Some("Z"));
}

/// Control: the ordinary Parse/Bind/Describe/Execute/Sync of a cross-shard read.
#[tokio::test]
async fn fine_plain_extended_cross_shard_read() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd4").await;
    let read = || {
        Script::new()
            .parse("", &sql)
            .bind("", "")
            .describe_portal("")
    };
    let tags = exchange(&mut stream, &read().execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
    // Flush after Describe, before Execute.
    let tags = exchange(&mut stream, &read().flush().execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
}

// ---------------------------------------------------------------------------------------------
// Replicas and read-your-writes.

/// The demo map's shard of user `id`.
fn shard_of_user(id: i64) -> usize {
    use shardgate::config::ShardId;
    use shardgate::router::{Params, Route, Router};
    let config = sharded_config(cluster());
    let router = Router::new(&config.databases[0].shard_map);
    let sql = format!("SELECT 1 FROM users WHERE user_id = {id}");
    match router.route(&router.plan(&sql), &Params::none(), None) {
        Ok(Route::Shard(ShardId(i))) => i as usize,
        other => panic!("{sql}: {other:?}"),
    }
}

/// A proxy reading from replicas whose health checks tolerate a loaded machine.
async fn replica_proxy() -> TestProxy {
    let cluster = cluster();
    let mut config = config_with_map(cluster, &demo_map_with_replicas(cluster));
    config.replicas.check_interval = Duration::from_secs(1);
    TestProxy::start(config).await
}

/// `rv_rename(id, name)`: a SQL function that updates `users`, on every primary.
async fn create_writing_function(name: &str) {
    for uri in &cluster().primaries {
        connect_direct(uri)
            .await
            .simple_query(&format!(
                "CREATE OR REPLACE FUNCTION {name}(id bigint, n text) RETURNS bigint \
                 LANGUAGE sql AS $$ UPDATE users SET name = n WHERE user_id = id RETURNING user_id $$"
            ))
            .await
            .unwrap();
    }
}

/// A write done by a function called from a SELECT (`SELECT rv_rename(…)`, `SELECT nextval(…)`)
/// is a read to `Router::may_write`, so the session's later reads of that shard still go to a
/// replica that has not replayed it: the session does not read its own write.
#[tokio::test]
async fn probe_write_through_a_function_is_not_read_back() {
    let proxy = replica_proxy().await;
    create_writing_function("rv_rename").await;
    // A user on the default shard, where statements naming no map table run.
    let user = (90_201..).find(|&id| shard_of_user(id) == 0).unwrap();
    reset_users(&proxy.connect().await, &[user], true).await;
    wait_for_replicas(cluster()).await;
    // A session that has not written yet.
    let client = proxy.connect().await;
    let replica = connect_direct(&cluster().replicas[0][0]).await;
    replica
        .simple_query("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let outcome = async {
        let renamed = one_value(&client, &format!("SELECT rv_rename({user}, 'after')")).await;
        let name = one_value(
            &client,
            &format!("SELECT name FROM users WHERE user_id = {user}"),
        )
        .await;
        (renamed, name)
    }
    .await;
    replica
        .simple_query("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        (Some(user.to_string()), Some("after".to_owned())),
        "the session reads the row it just updated"
    );
}

/// Before this change a single-shard SELECT ran on the primary; now a SELECT that calls a
/// writing function with the shard key in WHERE is sent to a replica and fails there
/// (25006 read-only transaction).
#[tokio::test]
async fn probe_select_calling_a_writing_function_fails_on_a_replica() {
    let proxy = replica_proxy().await;
    create_writing_function("rv_rename2").await;
    let client = proxy.connect().await;
    let user = 90_211;
    reset_users(&client, &[user], true).await;
    wait_for_replicas(cluster()).await;
    let reader = proxy.connect().await;
    let outcome = text_rows(
        &reader,
        &format!("SELECT rv_rename2(user_id, 'x') FROM users WHERE user_id = {user}"),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// Which statements `Router::may_write` takes for reads (those go to replicas, and writes done
/// by them are not tracked for read-your-writes).
#[test]
fn probe_statements_that_write_but_count_as_reads() {
    use shardgate::router::Router;
    let config = crate::harness::demo_config_for_unit();
    let router = Router::new(&config);
    let writes = [
        "SELECT nextval('users_seq')",
        "SELECT rv_rename(user_id, 'x') FROM users WHERE user_id = 1",
        "CALL rv_proc(1)",
        "WITH u AS (UPDATE users SET name = 'x' WHERE user_id = 1 RETURNING *) SELECT * FROM u",
        "EXPLAIN ANALYZE DELETE FROM users WHERE user_id = 1",
        "SELECT * INTO rv_copy FROM users WHERE user_id = 1",
        "SELECT * FROM users WHERE user_id = 1 FOR NO KEY UPDATE",
        "SELECT * FROM users WHERE user_id = 1 FOR KEY SHARE",
        "COPY users FROM STDIN",
        "SELECT lo_create(0)",
        "SELECT pg_advisory_xact_lock(1)",
    ];
    let missed: Vec<&str> = writes
        .iter()
        .copied()
        .filter(|sql| !router.may_write(sql, true))
        .collect();
    assert!(missed.is_empty(), "taken for reads: {missed:#?}");
}

/// Control: a session advisory lock taken by a single-shard SELECT (`pg_try_advisory_lock(…)
/// … WHERE key = …`) pins, so it runs on the primary, not a replica.
#[tokio::test]
async fn fine_advisory_lock_in_a_keyed_select_runs_on_the_primary() {
    let proxy = replica_proxy().await;
    let user = (90_221..).find(|&id| shard_of_user(id) == 0).unwrap();
    reset_users(&proxy.connect().await, &[user], true).await;
    wait_for_replicas(cluster()).await;
    let client = proxy.connect().await;
    let got = one_value(
        &client,
        &format!("SELECT pg_try_advisory_lock(user_id) FROM users WHERE user_id = {user}"),
    )
    .await;
    let other = connect_direct(&cluster().primaries[0]).await;
    let also: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&user])
        .await
        .unwrap()
        .get(0);
    if also {
        other
            .simple_query(&format!("SELECT pg_advisory_unlock({user})"))
            .await
            .unwrap();
    }
    // And a write of the pinned session afterwards.
    let write = text_rows(
        &client,
        &format!("UPDATE users SET name = 'locked' WHERE user_id = {user}"),
    )
    .await;
    assert_eq!(got.as_deref(), Some("t"));
    assert!(write.is_ok(), "{write:?}");
    assert!(
        !also,
        "the lock the session holds must exclude other sessions on the primary"
    );
}

// ---------------------------------------------------------------------------------------------
// Backends handed back dirty.

/// Backends of every primary of the test cluster that are idle in a transaction after a
/// statement containing `marker` (other tests' transactions run at the same time).
async fn open_transactions(marker: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (shard, uri) in cluster().primaries.iter().enumerate() {
        let client = connect_direct(uri).await;
        let rows = client
            .query(
                "SELECT state || ': ' || query FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                 AND backend_type = 'client backend' AND state LIKE 'idle in transaction%' \
                 AND position($1 in query) > 0",
                &[&marker],
            )
            .await
            .unwrap();
        found.extend(rows.iter().map(|r| (shard, r.get::<_, String>(0))));
    }
    found
}

/// In a transaction, a cross-shard `SELECT *` with hidden columns first counts its columns on
/// the first shard (`request::column_count`), running the joining backend's BEGIN there. When
/// the statement then fails (here: an unknown ORDER BY column), `keep_unrun` gives the joined
/// backends back to the pool as if they were untouched: the first one is inside an aborted
/// transaction, and the next client that gets it fails with 25P02.
#[tokio::test]
async fn probe_failed_star_read_in_a_transaction_returns_a_backend_in_a_transaction() {
    let mut config = sharded_config(cluster());
    config.pool.size = 1;
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_301);
    reset_users(&proxy.connect().await, &[a, b], true).await;
    let client = proxy.connect().await;
    client.simple_query("BEGIN").await.unwrap();
    let error = client
        .simple_query(&format!(
            "SELECT * FROM users WHERE user_id IN ({a}, {b}) ORDER BY rv_no_such_column"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42703");
    client.simple_query("ROLLBACK").await.unwrap();
    let leaked = open_transactions("rv_no_such_column").await;
    // Another client (pool size 1: it gets the same backends).
    let other = tokio_postgres::connect(&proxy.conn_str(), tokio_postgres::NoTls).await;
    let other = other.map(|(client, connection)| {
        tokio::spawn(connection);
        client
    });
    let mut reads = Vec::new();
    if let Ok(other) = &other {
        for id in [a, b] {
            reads.push(
                text_rows(
                    other,
                    &format!("SELECT name FROM users WHERE user_id = {id}"),
                )
                .await,
            );
        }
    }
    assert!(
        leaked.is_empty(),
        "backends left in a transaction: {leaked:?}"
    );
    assert!(
        other.is_ok(),
        "the next client cannot even log in: {:?}",
        other.err()
    );
    assert!(reads.iter().all(Result::is_ok), "{reads:?}");
}

// ---------------------------------------------------------------------------------------------
// Differential reads over special values (NULLs, NaN, infinities, extremes, empty shards).

async fn load_specials(proxy: &Client, plain: &Client) {
    let ddl = [
        "DROP TABLE IF EXISTS rv_sp",
        "CREATE TABLE rv_sp (id bigint PRIMARY KEY, g int, i2 smallint, i4 int, i8 bigint, \
         n numeric, f8 float8, f4 real, t text, b bool, d date, iv interval)",
    ];
    let rows = [
        "(1, 1, 32767, 2147483647, 9223372036854775807, 'NaN', 'NaN', 'NaN', 'a', true, 'infinity', '1 day')",
        "(2, 1, 32767, 2147483647, 9223372036854775807, 1.5, 'Infinity', 1.5, 'b', false, '2020-01-01', '24 hours')",
        "(3, 1, -32768, -2147483648, -9223372036854775808, 'Infinity', '-Infinity', '-Infinity', NULL, NULL, '-infinity', '1 mon')",
        "(4, 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "(5, 2, 1, 1, 1, 0.000000000000000000001, -0.0, -0, 'B', true, '2021-06-01', '30 days')",
        "(6, 2, 2, 2, 2, 123456789012345678901234567890.123456789, 1e308, 3.4e38, 'é', false, '1999-12-31', '-1 day')",
        "(7, 3, 3, 3, 9223372036854775807, -1.00, 1e308, 3.4e38, 'a', true, '2000-01-01', '1 year')",
        "(8, 3, 4, 4, 4, 1.0, 0.1, 0.1, '', true, '2000-01-02', '0')",
        "(9, NULL, 5, 5, 5, 2.50, 0.2, 0.2, 'z', NULL, NULL, NULL)",
        "(10, NULL, 6, 6, 6, 3, 0.3, 0.3, 'Z', false, '2000-01-03', '2 days')",
    ];
    for client in [proxy, plain] {
        for statement in ddl {
            client.simple_query(statement).await.unwrap();
        }
        client
            .simple_query(&format!(
                "INSERT INTO rv_sp (id, g, i2, i4, i8, n, f8, f4, t, b, d, iv) VALUES {}",
                rows.join(", ")
            ))
            .await
            .unwrap();
    }
}

/// Every read here is either answered exactly as one PostgreSQL answers it, or refused (0A000).
#[tokio::test]
async fn fine_special_values_differential() {
    let proxy = proxy_with("rv_sp: {strategy: hash, key: id, key_type: bigint}").await;
    let through = proxy.connect().await;
    let plain = connect_direct(&oracle().primaries[0]).await;
    load_specials(&through, &plain).await;
    wait_for_replicas(cluster()).await;
    let reader = proxy.connect().await;
    let queries: &[(&str, bool)] = &[
        (
            "SELECT sum(i2), sum(i4), avg(i2), avg(i4) FROM rv_sp",
            false,
        ),
        ("SELECT sum(n), avg(n), min(n), max(n) FROM rv_sp", false),
        (
            "SELECT sum(f8), min(f8), max(f8) FROM rv_sp WHERE id <> 6 AND id <> 7",
            false,
        ),
        ("SELECT min(f4), max(f4) FROM rv_sp", false),
        (
            "SELECT g, count(*), count(t), min(t), max(t) FROM rv_sp GROUP BY g ORDER BY g",
            true,
        ),
        (
            "SELECT g, sum(n) FROM rv_sp GROUP BY g ORDER BY 2 NULLS FIRST, 1",
            true,
        ),
        (
            "SELECT g, avg(n) FROM rv_sp GROUP BY g ORDER BY avg(n) DESC, g",
            true,
        ),
        (
            "SELECT g, bool_and(b), bool_or(b) FROM rv_sp GROUP BY g ORDER BY g NULLS FIRST",
            true,
        ),
        ("SELECT id, n FROM rv_sp ORDER BY n, id", true),
        ("SELECT id, n FROM rv_sp ORDER BY n DESC, id", true),
        ("SELECT id, f8 FROM rv_sp ORDER BY f8, id", true),
        (
            "SELECT id, f4 FROM rv_sp ORDER BY f4 DESC NULLS LAST, id",
            true,
        ),
        ("SELECT id, t FROM rv_sp ORDER BY t, id", true),
        ("SELECT id, d FROM rv_sp ORDER BY d, id", true),
        ("SELECT id, iv FROM rv_sp ORDER BY iv, id", true),
        ("SELECT DISTINCT iv FROM rv_sp", false),
        ("SELECT DISTINCT f8 FROM rv_sp", false),
        ("SELECT DISTINCT n FROM rv_sp", false),
        ("SELECT iv, count(*) FROM rv_sp GROUP BY iv", false),
        ("SELECT f4, count(*) FROM rv_sp GROUP BY f4", false),
        ("SELECT min(iv), max(iv), min(d), max(d) FROM rv_sp", false),
        (
            "SELECT g, count(*) FROM rv_sp GROUP BY g HAVING count(*) > 2.5",
            false,
        ),
        (
            "SELECT g, sum(i8) FROM rv_sp WHERE id IN (5, 6, 8, 9, 10) GROUP BY g",
            false,
        ),
        ("SELECT sum(i8) FROM rv_sp", false),
        ("SELECT avg(i8) FROM rv_sp WHERE id IN (1, 2, 7)", false),
        (
            "SELECT g, max(n) FROM rv_sp GROUP BY g HAVING max(n) > 1",
            false,
        ),
        (
            "SELECT g, avg(f8) FROM rv_sp WHERE id > 7 GROUP BY g",
            false,
        ),
        (
            "SELECT count(*), sum(n), avg(i4), max(t), bool_and(b) FROM rv_sp WHERE id > 100",
            false,
        ),
        (
            "SELECT g FROM rv_sp GROUP BY g HAVING sum(i4) IS NULL",
            false,
        ),
        ("SELECT id FROM rv_sp ORDER BY id LIMIT 0", true),
        ("SELECT id FROM rv_sp ORDER BY id OFFSET 100", true),
        ("SELECT id FROM rv_sp ORDER BY id LIMIT 3 OFFSET 8", true),
        (
            "SELECT DISTINCT g FROM rv_sp ORDER BY g NULLS FIRST LIMIT 2",
            true,
        ),
        (
            "SELECT g, count(*) FROM rv_sp GROUP BY g ORDER BY g LIMIT 2 OFFSET 1",
            true,
        ),
        (
            "SELECT t, count(*) FROM rv_sp GROUP BY t HAVING t = 'a'",
            false,
        ),
        ("SELECT sum(f4) FROM rv_sp WHERE id IN (2, 8, 9, 10)", false),
        (
            "SELECT avg(d - DATE '2000-01-01') FROM rv_sp WHERE id IN (7, 8, 10)",
            false,
        ),
        ("SELECT count(*) FROM rv_sp HAVING count(*) > 100", false),
        ("SELECT 1 AS one, count(*) FROM rv_sp", false),
        ("SELECT g, 'x', count(*) FROM rv_sp GROUP BY g", false),
        ("SELECT count(DISTINCT g) FROM rv_sp GROUP BY id", false),
        ("SELECT max(n) FROM rv_sp WHERE n < 'Infinity'", false),
    ];
    let mut failures = Vec::new();
    for (sql, ordered) in queries {
        if let Some(difference) = differs(&reader, &plain, sql, *ordered).await {
            if !difference.contains("0A000") {
                failures.push(difference);
            } else {
                eprintln!("refused: {sql}");
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A replica whose WAL receiver has stopped (network cut, primary_conninfo broken) replays
/// everything it received, so `pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()` and the
/// health check (`control::health::CHECK_SQL`) reports lag 0: it stays in reads however far
/// behind its primary it falls, and sessions that did not write read arbitrarily old rows
/// (README: "replays more than replicas.max_lag behind" takes it out).
#[tokio::test]
async fn probe_replica_cut_off_from_its_primary_keeps_serving_stale_reads() {
    let own = crate::harness::own_cluster(2, 1, shardgate::local_cluster::BackendAuth::ScramSha256);
    let info = own.info.clone();
    let tables = "{rv_lag: {strategy: hash, key: id, key_type: bigint}}";
    let mut config = crate::harness::config_with_tables(&info, tables);
    config.replicas.max_lag = Duration::from_secs(1);
    config.replicas.check_interval = Duration::from_millis(500);
    let proxy = TestProxy::start(config).await;
    let writer = proxy.connect().await;
    writer
        .simple_query("CREATE TABLE rv_lag (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=10).map(|i| format!("({i})")).collect();
    writer
        .simple_query(&format!(
            "INSERT INTO rv_lag (id) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    wait_for_replicas(&info).await;
    // Cut s0's replica off from its primary.
    let admin = connect_direct(&own.cluster.shards()[0].replicas[0].superuser_uri()).await;
    admin
        .simple_query("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .unwrap();
    admin.simple_query("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let values: Vec<String> = (11..=40).map(|i| format!("({i})")).collect();
    writer
        .simple_query(&format!(
            "INSERT INTO rv_lag (id) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    // Well past max_lag and several checks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reader = proxy.connect().await;
    let (rows, _) = text_rows(&reader, "SELECT count(*) FROM rv_lag")
        .await
        .unwrap();
    let state = admin
        .query_one(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
             (SELECT count(*) FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .unwrap();
    let (receive, replay, receivers): (Option<String>, Option<String>, i64) =
        (state.get(0), state.get(1), state.get(2));
    assert_eq!(
        rows[0][0].as_deref(),
        Some("40"),
        "rows written 5 s ago (max_lag 1 s) are read; replica receive {receive:?} replay \
         {replay:?}, wal receivers {receivers}"
    );
}

/// A COMMIT failing on the shard in use (a deferred constraint; its COMMIT is the client's
/// own, run after the parked shards committed) keeps the server's SQLSTATE and names the
/// shards that committed, as the README promises.
#[tokio::test]
async fn a_commit_failing_on_the_last_shard_names_the_committed_ones() {
    let proxy = proxy_with("rv_def: {strategy: hash, key: id, key_type: bigint}").await;
    let client = proxy.connect().await;
    client
        .simple_query("DROP TABLE IF EXISTS rv_def")
        .await
        .unwrap();
    client
        .simple_query(
            "CREATE TABLE rv_def (id bigint NOT NULL, code int NOT NULL, \
             UNIQUE (id, code) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .unwrap();
    // Two ids on different shards, by the users table's placement (same hash ring).
    let (a, b) = two_users_on_different_shards(90_401);
    client.simple_query("BEGIN").await.unwrap();
    for sql in [
        format!("INSERT INTO rv_def (id, code) VALUES ({a}, 1)"),
        format!("INSERT INTO rv_def (id, code) VALUES ({b}, 1)"),
        format!("INSERT INTO rv_def (id, code) VALUES ({b}, 1)"),
    ] {
        client.simple_query(&sql).await.unwrap();
    }
    let error = client.simple_query("COMMIT").await.unwrap_err();
    let db = error.as_db_error().unwrap();
    let count = one_value(
        &client,
        &format!("SELECT count(*) FROM rv_def WHERE id = {a}"),
    )
    .await;
    assert_eq!(db.code().code(), "23505");
    assert_eq!(count.as_deref(), Some("1"), "shard of {a} committed");
    let told = format!("{} {:?}", db.message(), db.detail());
    assert!(
        told.contains("committed"),
        "the error names the shards that committed: {told}"
    );
}

/// A client that disconnects in the middle of a transaction spanning shards leaves no backend
/// in a transaction and no row behind.
#[tokio::test]
async fn fine_client_leaving_a_spanning_transaction() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let (a, b) = two_users_on_different_shards(90_411);
    reset_users(&proxy.connect().await, &[a, b], false).await;
    {
        let client = proxy.connect().await;
        client.simple_query("BEGIN").await.unwrap();
        for id in [a, b] {
            client
                .simple_query(&format!(
                    "INSERT INTO users (user_id, name) VALUES ({id}, 'gone')"
                ))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = open_transactions("'gone'").await;
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(stored(&[a, b]).await, 0);
}

/// COMMIT and ROLLBACK sent through the extended protocol (as pgjdbc and tokio-postgres
/// `execute("COMMIT")` do) end every shard of the transaction.
#[tokio::test]
async fn fine_extended_protocol_commit_and_rollback_span_shards() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_421);
    reset_users(&client, &[a, b], false).await;
    let insert = "INSERT INTO users (user_id, name) VALUES ($1, 'ext')";
    for (end, want) in [("ROLLBACK", 0), ("COMMIT", 2)] {
        client.execute("BEGIN", &[]).await.unwrap();
        client.execute(insert, &[&a]).await.unwrap();
        client.execute(insert, &[&b]).await.unwrap();
        client.execute(end, &[]).await.unwrap();
        assert_eq!(stored(&[a, b]).await, want, "{end}");
    }
    reset_users(&client, &[a, b], false).await;
}

/// Multi-statement simple queries naming two shards: refused or all applied, never half.
#[tokio::test]
async fn fine_multi_statement_query_over_two_shards() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(90_431);
    for sql in [
        format!(
            "BEGIN; INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             INSERT INTO users (user_id, name) VALUES ({b}, 'm'); COMMIT"
        ),
        format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             INSERT INTO users (user_id, name) VALUES ({b}, 'm')"
        ),
        format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'm'); \
             SELECT count(*) FROM users WHERE user_id IN ({a}, {b})"
        ),
    ] {
        reset_users(&client, &[a, b], false).await;
        let outcome = client.simple_query(&sql).await;
        let kept = stored(&[a, b]).await;
        match outcome {
            Ok(_) => assert_eq!(kept, if sql.contains("SELECT") { 1 } else { 2 }, "{sql}"),
            Err(e) => assert_eq!((sqlstate(&e), kept), ("0A000".to_owned(), 0), "{sql}: {e}"),
        }
    }
    reset_users(&client, &[a, b], false).await;
}

/// LIMIT/OFFSET/HAVING parameters declared int4/int2/numeric and sent in binary.
#[tokio::test]
async fn fine_typed_binary_parameters_in_limit_offset_having() {
    use tokio_postgres::types::{ToSql, Type};
    let (_proxy, through, plain) = planner_setup("rv_tp").await;
    type Case = (&'static str, Vec<Type>, Vec<Box<dyn ToSql + Sync>>);
    let cases: Vec<Case> = vec![
        (
            "SELECT id FROM rv_tp ORDER BY id LIMIT $1 OFFSET $2",
            vec![Type::INT4, Type::INT2],
            vec![Box::new(7i32), Box::new(3i16)],
        ),
        (
            "SELECT region, count(*) FROM rv_tp GROUP BY region HAVING count(*) > $1 ORDER BY 1 LIMIT $2",
            vec![Type::INT4, Type::INT4],
            vec![Box::new(14i32), Box::new(2i32)],
        ),
        (
            "SELECT qty, sum(amount) FROM rv_tp GROUP BY qty HAVING sum(amount) >= $1 ORDER BY 1",
            vec![Type::INT8],
            vec![Box::new(20i64)],
        ),
        (
            "SELECT id FROM rv_tp ORDER BY id DESC LIMIT $1",
            vec![Type::INT8],
            vec![Box::new(None::<i64>)],
        ),
    ];
    let mut failures = Vec::new();
    for (sql, types, params) in &cases {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut answers = Vec::new();
        for client in [&through, &plain] {
            let answer = match client.prepare_typed(sql, types).await {
                Ok(statement) => client
                    .query(&statement, &params)
                    .await
                    .map(|rows| rows.iter().map(|r| format!("{r:?}").len()).count())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            answers.push(answer);
        }
        if answers[0] != answers[1] {
            failures.push(format!("{sql}: {answers:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A client whose default isolation is SERIALIZABLE (a common setting, also via ALTER ROLE …
/// SET) can no longer read outside transactions: replica reads fail with "cannot use
/// serializable mode in a hot standby", single-shard and cross-shard alike. The proxy replays
/// the setting on the replica instead of reading from the primary for such a session.
#[tokio::test]
async fn probe_serializable_session_cannot_read_from_replicas() {
    let proxy = replica_proxy().await;
    let (a, b) = two_users_on_different_shards(90_501);
    reset_users(&proxy.connect().await, &[a, b], true).await;
    wait_for_replicas(cluster()).await;
    let client = proxy.connect().await;
    client
        .simple_query("SET default_transaction_isolation = 'serializable'")
        .await
        .unwrap();
    let single = text_rows(
        &client,
        &format!("SELECT name FROM users WHERE user_id = {a}"),
    )
    .await;
    let merged = text_rows(
        &client,
        &format!("SELECT count(*) FROM users WHERE user_id IN ({a}, {b})"),
    )
    .await;
    assert!(
        single.is_ok() && merged.is_ok(),
        "single: {single:?}\nmerged: {merged:?}"
    );
}

/// The status the client is shown after that failed shard switch: PostgreSQL says 'E'
/// (failed transaction) after an error inside a transaction; the proxy says 'T', and the
/// next statement on the first shard runs on a fresh backend outside the transaction's own
/// (it does not see the row the transaction inserted there).
#[tokio::test]
async fn probe_failed_shard_switch_reports_a_healthy_transaction() {
    let mut config = sharded_config(cluster());
    config.pool.size = 2;
    config.pool.checkout_timeout = Duration::from_millis(700);
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let (a, b) = two_users_on_different_shards(90_511);
    reset_users(&proxy.connect().await, &[a, b], false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = raw_login(&proxy).await;
    // Both of shard(b)'s backends held by other clients' transactions.
    let mut blockers = Vec::new();
    for _ in 0..2 {
        let blocker = proxy.connect().await;
        blocker.simple_query("BEGIN").await.unwrap();
        blocker
            .simple_query(&format!("SELECT 1 FROM users WHERE user_id = {b}"))
            .await
            .unwrap();
        blockers.push(blocker);
    }
    let mut statuses = Vec::new();
    for sql in [
        "BEGIN".to_owned(),
        format!("INSERT INTO users (user_id, name) VALUES ({a}, 'st')"),
        format!("INSERT INTO users (user_id, name) VALUES ({b}, 'st')"),
        format!("SELECT count(*) FROM users WHERE user_id = {a}"),
        "ROLLBACK".to_owned(),
    ] {
        stream
            .write_all(&crate::raw::query_message(&sql))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some((tag, body)) = read_message(&mut stream).await {
            match tag {
                b'E' => seen.push(format!("E{}", crate::raw::sqlstate_of(&body))),
                b'D' => seen.push(format!("D{}", String::from_utf8_lossy(&body[6..]))),
                b'Z' => {
                    seen.push(format!("Z{}", body[0] as char));
                    break;
                }
                _ => {}
            }
        }
        statuses.push(seen.join(" "));
    }
    for blocker in &blockers {
        blocker.simple_query("ROLLBACK").await.unwrap();
    }
    reset_users(&proxy.connect().await, &[a, b], false).await;
    assert_eq!(
        statuses,
        ["ZT", "ZT", "E53300 ZE", "E25P02 ZE", "ZI"],
        "statuses after each statement"
    );
}

/// JDBC's shape for a reference-table write: unnamed Parse, Bind with text parameters,
/// Describe of the portal, Execute and Sync in one batch. It runs on every shard and answers
/// as one server would: ParseComplete, BindComplete, NoData, CommandComplete, ReadyForQuery.
#[tokio::test]
async fn fine_unnamed_extended_reference_write_in_one_batch() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd5").await;
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let sql = "DELETE FROM countries WHERE code = 'jd'";
        direct.batch_execute(sql).await.unwrap();
    }
    let sql = "INSERT INTO countries (code, name) VALUES ($1, $2)";
    let script = Script::new().parse_typed("", sql, &[25, 25]);
    let script = script.bind_text("", "", &[Some("jd"), Some("Jdbcland")]);
    let script = script.describe_portal("").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "n", "C", "Z"]);
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let sql = "SELECT count(*) FROM countries WHERE code = 'jd' AND name = 'Jdbcland'";
        let count: i64 = direct.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(count, 1, "on {uri}");
    }
}

/// postgres.js prepares with Parse, Describe and Flush, and sends Sync only after the
/// answers. A Parse that fails must leave the session in step: the next statement is answered
/// in full.
#[tokio::test]
async fn probe_a_failed_parse_answered_at_flush_leaves_the_session_in_step() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd6").await;
    let bad = "SELECT * FROM rv_no_such_table WHERE x = $1";
    let script = Script::new()
        .parse("pj1", bad)
        .describe_statement("pj1")
        .flush();
    stream.write_all(script.bytes()).await.unwrap();
    // ParseComplete may come first (a read's Parse waits for the replica it runs on).
    let mut seen = Vec::new();
    while seen.last() != Some(&b'E') && seen.len() < 3 {
        seen.push(read_message(&mut stream).await.unwrap().0);
    }
    assert_eq!(
        seen.last(),
        Some(&b'E'),
        "the statement's error comes at the Flush: {seen:?}"
    );
    stream
        .write_all(Script::new().sync().bytes())
        .await
        .unwrap();
    let mut after = Vec::new();
    while let Ok(Some((tag, _))) = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        read_message(&mut stream),
    )
    .await
    {
        after.push(tag as char);
    }
    assert_eq!(after, ['Z'], "the Sync is answered once");
    let script = Script::new()
        .parse("pj2", "SELECT 1 AS one")
        .describe_statement("pj2");
    let script = script.bind("", "pj2").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "t", "T", "2", "D×1", "C", "Z"]);
}

/// pgjdbc sends BEGIN through the extended protocol, in one batch with the transaction's
/// first statement: the proxy defers it as it defers a simple BEGIN, so the transaction
/// starts on that statement's shard, whichever it is.
#[tokio::test]
async fn fine_an_extended_protocol_begin_starts_where_the_first_statement_runs() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd7").await;
    let user = (90_301..).find(|&id| shard_of_user(id) == 1).unwrap();
    let sql = format!("SELECT count(*) FROM users WHERE user_id = {user}");
    let script = Script::new().parse("", "BEGIN").bind("", "").execute("", 0);
    let script = script.parse("", &sql).bind("", "").describe_portal("");
    let tags = exchange(&mut stream, &script.execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "C", "1", "2", "T", "D×1", "C", "Z"]);
    let commit = Script::new().query("COMMIT");
    assert_eq!(exchange(&mut stream, &commit).await, ["C", "Z"]);
}
