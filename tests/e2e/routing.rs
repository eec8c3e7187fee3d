//! Routing end to end: rows written through the proxy land on the shard the map gives them,
//! checked by connecting to each shard directly, for every strategy, for literals and for
//! parameters in text and binary format; refusals carry their SQLSTATE.

use std::time::{Duration, SystemTime};

use crate::harness::{
    ClusterInfo, TestProxy, cluster, connect_direct, sharded_config, sqlstate, text,
};
use shardgate::config::{BackendUri, ShardId};
use shardgate::router::{Params, Route, Router};

/// Shards of `cluster` (by index) holding a row that `sql` (one count) finds.
pub async fn shards_holding(cluster: &ClusterInfo, sql: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (index, uri) in cluster.primaries.iter().enumerate() {
        let client = connect_direct(uri).await;
        let count: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if count > 0 {
            found.push(index);
        }
    }
    found
}

/// The shard the demo map gives a literal statement, by the library's own router.
pub(crate) fn routed_shard(sql: &str) -> usize {
    let config = sharded_config(cluster());
    let router = Router::new(&config.databases[0].shard_map);
    match router.route(&router.plan(sql), &Params::none(), None) {
        Ok(Route::Shard(ShardId(i))) => i as usize,
        other => panic!("{sql}: {other:?}"),
    }
}

#[tokio::test]
async fn hash_keys_land_on_one_shard_whichever_way_they_are_written() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let ids: Vec<i64> = (10_000..10_040).collect();
    for id in &ids {
        client
            .simple_query(&format!("DELETE FROM users WHERE user_id = {id}"))
            .await
            .unwrap();
    }
    for id in &ids[..20] {
        let sql = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'literal')");
        client.simple_query(&sql).await.unwrap();
    }
    let insert = client
        .prepare("INSERT INTO users (user_id, name) VALUES ($1, 'binary')")
        .await
        .unwrap();
    for id in &ids[20..] {
        client.execute(&insert, &[id]).await.unwrap();
    }
    let by_int4 = client
        .prepare("SELECT name FROM users WHERE user_id = $1::int4")
        .await
        .unwrap();
    let mut per_shard = [0usize; 2];
    for id in &ids {
        let rows = client.query(&by_int4, &[&(*id as i32)]).await.unwrap();
        assert_eq!(
            rows.len(),
            1,
            "user {id} is found through the proxy by an int4 key"
        );
        let holders = shards_holding(
            cluster,
            &format!("SELECT count(*) FROM users WHERE user_id = {id}"),
        )
        .await;
        let expected = routed_shard(&format!("SELECT * FROM users WHERE user_id = {id}"));
        assert_eq!(
            holders,
            vec![expected],
            "user {id} lives on exactly its shard"
        );
        per_shard[expected] += 1;
    }
    assert!(
        per_shard.iter().all(|n| *n > 5),
        "keys spread over both shards: {per_shard:?}"
    );
}

#[tokio::test]
async fn range_and_directory_tables_follow_their_maps() {
    let cluster = cluster();
    let config = sharded_config(cluster); // creates the tables first
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct
            .execute("DELETE FROM events WHERE kind LIKE 'routing-%'", &[])
            .await
            .unwrap();
    }
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let insert = "INSERT INTO events (created_at, kind) VALUES ($1, 'routing-binary')";
    let cases = [
        ("2025-06-30 12:00:00", 1_751_284_800, 0),
        ("2026-01-01 00:00:00", 1_767_225_600, 1),
        ("2027-03-01 00:00:00", 1_803_859_200, 1),
    ];
    for (at, unix, shard) in cases {
        let literal =
            format!("INSERT INTO events (created_at, kind) VALUES ('{at}', 'routing-literal')");
        client.simple_query(&literal).await.unwrap();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
        client.execute(insert, &[&time]).await.unwrap();
        let count = format!(
            "SELECT count(*) FROM events WHERE created_at = '{at}' AND kind LIKE 'routing-%'"
        );
        let holders = shards_holding(cluster, &count).await;
        assert_eq!(holders, vec![shard], "events at {at}");
        let found: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
        assert_eq!(
            found, 2,
            "both events at {at} are read back through the proxy"
        );
    }
    for (tenant, shard) in [(1, 0), (2, 1)] {
        client
            .execute(
                "INSERT INTO documents (tenant_id, doc_id, title) VALUES ($1, 77, 't') ON CONFLICT DO NOTHING",
                &[&tenant],
            )
            .await
            .unwrap();
        let count =
            format!("SELECT count(*) FROM documents WHERE tenant_id = {tenant} AND doc_id = 77");
        assert_eq!(
            shards_holding(cluster, &count).await,
            vec![shard],
            "tenant {tenant}"
        );
    }
}

#[tokio::test]
async fn refused_statements_carry_their_sqlstate() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let client = proxy.connect().await;
    let cases = [
        ("SELECT user_id FROM users FOR UPDATE", "0A000"),
        ("INSERT INTO users (name) VALUES ('x')", "0A000"),
        ("SELECT * FROM users WHERE user_id = 'abc'", "22P02"),
        ("/* shard: nowhere */ SELECT 1", "42704"),
    ];
    for (sql, code) in cases {
        let error = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&error), code, "{sql}: {error}");
        let message = error.as_db_error().unwrap().message();
        assert!(message.starts_with("shardgate: "), "{sql}: {message}");
    }
    let error = client
        .query("SELECT name FROM users WHERE name = $1 FOR SHARE", &[&"x"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    client
        .simple_query("SELECT 1")
        .await
        .expect("the session goes on");
}

#[tokio::test]
async fn a_transaction_starts_on_the_shard_of_its_first_statement() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let mut client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(20_001);
    for id in [a, b] {
        client
            .execute("DELETE FROM users WHERE user_id = $1", &[&id])
            .await
            .unwrap();
    }
    let count = format!("SELECT count(*) FROM users WHERE user_id IN ({a}, {b})");
    // A transaction whose first statement comes after BEGIN runs where that statement belongs.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO users (user_id, name) VALUES ($1, 'tx')", &[&b])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expected = routed_shard(&format!("SELECT 1 FROM users WHERE user_id = {b}"));
    assert_eq!(shards_holding(cluster, &count).await, vec![expected]);
    // BEGIN; COMMIT with nothing in between never needs a backend.
    client.batch_execute("BEGIN; COMMIT").await.unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn hints_pick_the_shard() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let port = |i: usize| i32::from(BackendUri::parse(&cluster.primaries[i]).unwrap().port);
    for (sql, shard) in [
        ("/* shard: s0 */ SELECT inet_server_port()", 0),
        ("/* shard: s1 */ SELECT inet_server_port()", 1),
    ] {
        let row = client.query_one(sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, Option<i32>>(0), Some(port(shard)), "{sql}");
    }
    client
        .batch_execute("SET shardgate.shard = 's1'")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(port(1)));
    client.batch_execute("RESET shardgate.shard").await.unwrap();
    let (a, _) = two_users_on_different_shards(20_001);
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL shardgate.shard_key = '{a}'"))
        .await
        .unwrap();
    // A key hint stands for the key of the sharded table the statement names.
    let row = tx
        .query_one("SELECT inet_server_port(), count(*) FROM users", &[])
        .await
        .unwrap();
    let expected = routed_shard(&format!("SELECT 1 FROM users WHERE user_id = {a}"));
    assert_eq!(row.get::<_, Option<i32>>(0), Some(port(expected)));
    tx.commit().await.unwrap();
    let error = client
        .batch_execute("SET shardgate.bogus = 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42704");
}

#[tokio::test]
async fn psql_sees_the_same_rows_as_the_shard() {
    let proxy = TestProxy::start(sharded_config(cluster())).await;
    let script = "DELETE FROM users WHERE user_id = 31337;\n\
                  INSERT INTO users (user_id, name) VALUES (31337, 'psql');\n\
                  SELECT name FROM users WHERE user_id = 31337;\n";
    let output = proxy.psql(&["-A", "-t"], Some(script)).await;
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.lines().any(|l| l == "psql"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
}

/// The demo map's shard (by index) of user `id`, by the router the proxy uses.
pub fn shard_of_user(id: i64) -> usize {
    routed_shard(&format!("SELECT 1 FROM users WHERE user_id = {id}"))
}

/// Two user ids from `first` on that the demo map places on different shards.
pub fn two_users_on_different_shards(first: i64) -> (i64, i64) {
    let second = (first + 1..first + 100)
        .find(|id| shard_of_user(*id) != shard_of_user(first))
        .unwrap();
    (first, second)
}

#[tokio::test]
async fn ddl_and_reference_writes_run_on_every_shard_or_none() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    client
        .batch_execute("CREATE INDEX IF NOT EXISTS users_by_name_routing ON users (name)")
        .await
        .unwrap();
    let index = "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_by_name_routing'";
    assert_eq!(shards_holding(cluster, index).await, vec![0, 1]);
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct
            .execute("DELETE FROM countries WHERE code LIKE 'r_%'", &[])
            .await
            .unwrap();
    }
    let inserted = client
        .simple_query(
            "INSERT INTO countries (code, name) VALUES ('r_fr', 'France'), ('r_jp', 'Japan')",
        )
        .await
        .unwrap();
    let tag = inserted.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(
        tag,
        Some(2),
        "one server's answer, although each shard took both rows"
    );
    let both = "SELECT count(*) FROM countries WHERE code IN ('r_fr', 'r_jp')";
    assert_eq!(shards_holding(cluster, both).await, vec![0, 1]);
    // A failure on one shard leaves every shard as it was.
    connect_direct(&cluster.primaries[1])
        .await
        .execute(
            "INSERT INTO countries (code, name) VALUES ('r_xx', 'only on s1')",
            &[],
        )
        .await
        .unwrap();
    let error = client
        .simple_query("INSERT INTO countries (code, name) VALUES ('r_xx', 'clash')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "23505", "{error}");
    let detail = error
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("on shard s1") && detail.contains("nothing was committed"),
        "{detail}"
    );
    let clash = "SELECT count(*) FROM countries WHERE code = 'r_xx' AND name = 'clash'";
    assert!(shards_holding(cluster, clash).await.is_empty());
}

#[tokio::test]
async fn a_multi_row_insert_is_split_by_shard() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let ids: Vec<i64> = (30_000..30_010).collect();
    let list = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct
            .execute(&format!("DELETE FROM users WHERE user_id IN ({list})"), &[])
            .await
            .unwrap();
    }
    let values = ids
        .iter()
        .map(|id| format!("({id}, 'split')"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO users (user_id, name) VALUES {values} RETURNING user_id");
    let messages = client.simple_query(&sql).await.unwrap();
    let mut returned = Vec::new();
    let mut tag = None;
    for message in messages {
        match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                returned.push(row.get(0).unwrap().parse::<i64>().unwrap())
            }
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => tag = Some(n),
            _ => {}
        }
    }
    returned.sort();
    assert_eq!(returned, ids, "every RETURNING row");
    assert_eq!(tag, Some(10));
    for id in &ids {
        let holders = shards_holding(
            cluster,
            &format!("SELECT count(*) FROM users WHERE user_id = {id}"),
        )
        .await;
        assert_eq!(
            holders,
            vec![routed_shard(&format!(
                "SELECT 1 FROM users WHERE user_id = {id}"
            ))]
        );
    }
}

#[tokio::test]
async fn a_refused_statement_aborts_its_transaction_as_postgres_would() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(20_501);
    client
        .batch_execute(&format!("DELETE FROM users WHERE user_id = {a}"))
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO users (user_id, name) VALUES ({a}, 'aborted')"
        ))
        .await
        .unwrap();
    // A statement the proxy refuses aborts the transaction, as a failing one would.
    let error = client
        .batch_execute(&format!("INSERT INTO users (name) VALUES ('{b}')"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000");
    let error = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(
        sqlstate(&error),
        "25P02",
        "the transaction is aborted: {error}"
    );
    let messages = client.simple_query("COMMIT").await.unwrap();
    let tag = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(_) => Some(()),
        _ => None,
    });
    assert!(tag.is_some());
    let count = format!("SELECT count(*) FROM users WHERE user_id = {a}");
    assert!(
        shards_holding(cluster, &count).await.is_empty(),
        "COMMIT of an aborted transaction rolled back"
    );
    client
        .batch_execute("SELECT 1")
        .await
        .expect("the session goes on");
}

#[tokio::test]
async fn a_refused_bind_aborts_its_transaction_too() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let mut client = proxy.connect().await;
    let (a, b) = two_users_on_different_shards(20_901);
    client
        .execute("DELETE FROM users WHERE user_id = $1", &[&a])
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO users (user_id, name) VALUES ($1, 'x')", &[&a])
        .await
        .unwrap();
    let error = tx
        .execute("INSERT INTO users (name) VALUES ($1)", &[&b.to_string()])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000");
    let _ = tx.commit().await; // PostgreSQL answers ROLLBACK for an aborted transaction
    let count = format!("SELECT count(*) FROM users WHERE user_id = {a}");
    assert!(
        shards_holding(cluster, &count).await.is_empty(),
        "nothing was committed"
    );
}

/// Statements on indexes name no table: an index of a map table (on every shard) is renamed,
/// commented, rebuilt and dropped on every shard, one of an unmapped table on the default
/// shard only, by the catalog's word on whose index it is.
#[tokio::test]
async fn statements_on_indexes_run_where_their_tables_are() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let client = proxy.connect().await;
    let count = |name: &str| format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'");
    client
        .batch_execute(
            "DROP INDEX IF EXISTS rt_ix_a; DROP INDEX IF EXISTS rt_ix_b; \
             DROP TABLE IF EXISTS rt_ix_local; CREATE TABLE rt_ix_local (id int); \
             CREATE INDEX rt_ix_local_id ON rt_ix_local (id)",
        )
        .await
        .unwrap();
    client
        .batch_execute("CREATE INDEX rt_ix_a ON users (name)")
        .await
        .unwrap();
    client
        .batch_execute("ALTER INDEX rt_ix_a RENAME TO rt_ix_b")
        .await
        .unwrap();
    assert_eq!(shards_holding(cluster, &count("rt_ix_b")).await, vec![0, 1]);
    assert_eq!(
        shards_holding(cluster, &count("rt_ix_a")).await,
        Vec::<usize>::new()
    );
    client
        .batch_execute("COMMENT ON INDEX rt_ix_b IS 'by name'; REINDEX INDEX rt_ix_b")
        .await
        .unwrap();
    let commented = "SELECT count(*) FROM pg_class \
                     WHERE relname = 'rt_ix_b' AND obj_description(oid, 'pg_class') = 'by name'";
    assert_eq!(shards_holding(cluster, commented).await, vec![0, 1]);
    client
        .batch_execute("DROP INDEX CONCURRENTLY rt_ix_b")
        .await
        .unwrap();
    assert_eq!(
        shards_holding(cluster, &count("rt_ix_b")).await,
        Vec::<usize>::new()
    );
    // An index of a table only the default shard has: dropped there, not refused elsewhere.
    client
        .batch_execute("DROP INDEX rt_ix_local_id")
        .await
        .unwrap();
    assert_eq!(
        shards_holding(cluster, &count("rt_ix_local_id")).await,
        Vec::<usize>::new()
    );
    // An index nobody has: PostgreSQL's own error, from one server.
    let error = client
        .batch_execute("DROP INDEX rt_ix_none")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42704", "{error}");
    client
        .batch_execute("DROP TABLE rt_ix_local")
        .await
        .unwrap();
}

/// Statements for several primaries through the extended protocol (what JDBC, sqlx and
/// migration tools send): DDL and reference-table writes with parameters run on every shard,
/// a multi-row INSERT splits by shard with each shard's parameters, RETURNING gives every
/// shard's rows, inside transactions too. User ids 420_000–420_099.
#[tokio::test]
async fn extended_protocol_statements_run_on_several_primaries() {
    let cluster = cluster();
    let proxy = TestProxy::start(sharded_config(cluster)).await;
    let mut client = proxy.connect().await;
    let everywhere = |sql: &str| {
        let sql = sql.to_owned();
        async move { shards_holding(cluster, &sql).await == vec![0, 1] }
    };
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct
            .batch_execute("DROP INDEX IF EXISTS rt_ext_idx")
            .await
            .unwrap();
    }
    client
        .execute("CREATE INDEX rt_ext_idx ON users (country)", &[])
        .await
        .unwrap();
    let exists = "SELECT count(*) FROM pg_class WHERE relname = 'rt_ext_idx'";
    assert!(everywhere(exists).await, "the index is on every shard");
    let error = client
        .execute("CREATE INDEX rt_ext_idx ON users (name)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P07", "{error}");

    client
        .execute("DELETE FROM countries WHERE code = $1", &[&"zx"])
        .await
        .unwrap();
    let inserted = client
        .execute(
            "INSERT INTO countries (code, name) VALUES ($1, $2)",
            &[&"zx", &"Zedland"],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1, "copies: one shard's count, as from one server");
    let copied = "SELECT count(*) FROM countries WHERE code = 'zx' AND name = 'Zedland'";
    assert!(everywhere(copied).await);
    let returned = client
        .query(
            "UPDATE countries SET name = $1 WHERE code = 'zx' RETURNING code, name",
            &[&"Zed"],
        )
        .await
        .unwrap();
    assert_eq!(
        returned.len(),
        1,
        "copies: one shard's rows, as from one server"
    );
    assert_eq!(returned[0].get::<_, String>(1), "Zed");

    let (a, b) = super::routing::two_users_on_different_shards(420_000);
    for id in [a, b] {
        let delete = format!("DELETE FROM users WHERE user_id = {id}");
        client.batch_execute(&delete).await.unwrap();
    }
    let split = format!("INSERT INTO users (user_id, name) VALUES ({a}, 'a'), ({b}, 'b')");
    assert_eq!(client.execute(&split, &[]).await.unwrap(), 2);
    let both = format!("SELECT count(*) FROM users WHERE user_id IN ({a}, {b})");
    assert!(everywhere(&both).await, "one row on each shard");
    // With parameters (ORM bulk inserts, pgjdbc's rewritten batches): each shard gets its
    // rows with only their parameters; RETURNING gives every row.
    let (c, d) = super::routing::two_users_on_different_shards(420_050);
    for id in [c, d] {
        let delete = format!("DELETE FROM users WHERE user_id = {id}");
        client.batch_execute(&delete).await.unwrap();
    }
    let returned = client
        .query(
            "INSERT INTO users (user_id, name) VALUES ($1, $3), ($2, upper($3)) \
             RETURNING user_id, name",
            &[&c, &d, &"cd"],
        )
        .await
        .unwrap();
    let mut got: Vec<(i64, String)> = returned.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort();
    let mut want = vec![(c, "cd".to_owned()), (d, "CD".to_owned())];
    want.sort();
    assert_eq!(got, want);
    let both = format!("SELECT count(*) FROM users WHERE user_id IN ({c}, {d})");
    assert!(everywhere(&both).await, "one row on each shard");
    let updated = client
        .query(
            "UPDATE users SET name = $1 WHERE user_id IN ($2, $3) RETURNING user_id",
            &[&"both", &c, &d],
        )
        .await
        .unwrap();
    assert_eq!(updated.len(), 2);

    // Inside a transaction they join it on every shard, and roll back with it.
    let tx = client.transaction().await.unwrap();
    let comment = "COMMENT ON TABLE countries IS 'extended'";
    tx.execute(comment, &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let commented = "SELECT count(*) FROM pg_description WHERE description = 'extended'";
    assert!(shards_holding(cluster, commented).await.is_empty());
    // `DROP INDEX` names no map table, so it would run on the default shard only.
    for uri in &cluster.primaries {
        let direct = connect_direct(uri).await;
        direct.batch_execute("DROP INDEX rt_ext_idx").await.unwrap();
    }
}

/// `TRUNCATE`, `VACUUM` and `DROP TABLE` of a map table and a table only the default shard has
/// at once (as `pgbench -i` truncates and vacuums its four tables): every shard runs them on
/// the tables it has, through both protocols.
#[tokio::test]
async fn statements_on_map_tables_and_default_shard_tables_at_once_run_on_what_each_shard_has() {
    let cluster = cluster();
    let config = crate::support::config_with_extra_tables(
        "mix_sharded: {strategy: hash, key: id, key_type: bigint}",
    );
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS mix_sharded, mix_local; \
             CREATE TABLE mix_sharded (id bigint PRIMARY KEY); \
             CREATE TABLE mix_local (id bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
    let local = "SELECT count(*) FROM pg_tables WHERE tablename = 'mix_local'";
    assert_eq!(
        shards_holding(cluster, local).await,
        vec![0],
        "unmapped: default shard"
    );
    let ids: Vec<String> = (1..=20).map(|id| format!("({id})")).collect();
    let fill = format!(
        "INSERT INTO mix_sharded VALUES {ids}; INSERT INTO mix_local VALUES {ids}",
        ids = ids.join(", ")
    );
    let rows = "SELECT count(*) FROM mix_sharded WHERE true UNION ALL \
                SELECT count(*) FROM mix_local";
    for truncate in [
        "TRUNCATE mix_local, mix_sharded RESTART IDENTITY",
        "TRUNCATE TABLE mix_sharded, mix_local",
    ] {
        for statement in fill.split("; ") {
            client.batch_execute(statement).await.unwrap();
        }
        assert_eq!(
            shards_holding(cluster, "SELECT count(*) FROM mix_sharded").await,
            vec![0, 1]
        );
        // The first through the simple protocol, the second through the extended one.
        if truncate.starts_with("TRUNCATE mix_local") {
            client.batch_execute(truncate).await.unwrap();
        } else {
            client.execute(truncate, &[]).await.unwrap();
        }
        let left: Vec<_> = (client.query(rows, &[]).await.unwrap().iter())
            .map(|row| row.get::<_, i64>(0))
            .collect();
        assert_eq!(left, vec![0, 0], "{truncate}");
    }
    client
        .batch_execute("VACUUM ANALYZE mix_local, mix_sharded")
        .await
        .unwrap();
    let analyzed = "SELECT count(*) FROM pg_stat_user_tables \
                    WHERE relname = 'mix_sharded' AND last_vacuum IS NOT NULL";
    assert_eq!(shards_holding(cluster, analyzed).await, vec![0, 1]);
    client
        .batch_execute("DROP TABLE mix_sharded, mix_local")
        .await
        .unwrap();
    let any = "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mix\\_%'";
    assert!(shards_holding(cluster, any).await.is_empty());
}
