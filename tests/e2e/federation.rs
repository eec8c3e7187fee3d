//! The federation database (PostgreSQL over every shard through postgres_fdw) that answers
//! the cross-shard reads the merge cannot compute: through both protocols and COPY TO,
//! rebuilt after DDL through the proxy, refused by name inside a transaction block that wrote,
//! and, when it cannot be built, failing only the reads that need it, with an error naming
//! it.
//!
//! Tables `fe_*` (their own map entries), so the federation each test builds is its own.

use crate::harness::{TestProxy, cluster, connect_direct, sqlstate, wait_for_replicas};
use crate::support::{config_with_extra_tables, text_rows};

/// A proxy whose map adds `{t}_items` hashed on `id`, created with rows 1..=40 (`grp` is
/// `id % 4`).
async fn proxy(t: &str) -> (TestProxy, tokio_postgres::Client) {
    let yaml = format!("{t}_items: {{strategy: hash, key: id, key_type: bigint}}");
    let proxy = TestProxy::start(config_with_extra_tables(&yaml)).await;
    let client = proxy.connect().await;
    let rows: Vec<String> = (1..=40).map(|i| format!("({i}, {})", i % 4)).collect();
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t}_items; \
             CREATE TABLE {t}_items (id bigint PRIMARY KEY, grp int NOT NULL); \
             INSERT INTO {t}_items (id, grp) VALUES {}",
            rows.join(", ")
        ))
        .await
        .unwrap();
    (proxy, client)
}

/// Reads only PostgreSQL computes answer through the extended protocol with parameters and
/// binary results, and through COPY TO, and inside a READ COMMITTED transaction block until
/// it writes; after that they are refused by name (the federation cannot see the
/// transaction's rows).
#[tokio::test]
async fn federated_reads_take_parameters_binary_results_and_copy_out() {
    let (_proxy, client) = proxy("fe1").await;
    let sql = "SELECT grp, count(DISTINCT id % 3) FROM fe1_items WHERE id > $1 GROUP BY grp \
               ORDER BY grp";
    let rows = client.query(sql, &[&20i64]).await.unwrap();
    let got: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    let windowed =
        "SELECT id, (sum(id) OVER (ORDER BY id))::int8 FROM fe1_items WHERE id <= 3 ORDER BY id";
    let rows = client.query(windowed, &[]).await.unwrap();
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, 1), (2, 3), (3, 6)]);
    let copy = "COPY (SELECT grp, string_agg(id::text, ',' ORDER BY id) FROM fe1_items \
                WHERE id <= 8 GROUP BY grp ORDER BY grp) TO STDOUT (FORMAT csv)";
    let text = copy_out_text(&client, copy).await;
    assert_eq!(text, "0,\"4,8\"\n1,\"1,5\"\n2,\"2,6\"\n3,\"3,7\"\n");

    // In a READ COMMITTED transaction that has not written, the federation answers as the
    // transaction would; after a write (or at REPEATABLE READ, or with SET LOCAL) it is
    // refused by name: it could not see the transaction's own rows.
    async fn count_in(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
        let distinct = "SELECT count(DISTINCT grp) FROM fe1_items";
        Ok(client.query_one(distinct, &[]).await?.get(0))
    }
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(count_in(&client).await.unwrap(), 4);
    let write = "UPDATE fe1_items SET grp = grp WHERE id = 1";
    client.batch_execute(write).await.unwrap();
    let error = count_in(&client).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("federation database"), "{message}");
    client.batch_execute("ROLLBACK").await.unwrap();
    for begin in [
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN; SET LOCAL work_mem = '8MB'",
    ] {
        client.batch_execute(begin).await.unwrap();
        let error = count_in(&client).await.unwrap_err();
        assert_eq!(sqlstate(&error), "0A000", "{begin}");
        client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// A column added through the proxy is in the federation's next read (the session that ran
/// the DDL rebuilds it when it goes idle).
#[tokio::test]
async fn the_federation_follows_ddl_through_the_proxy() {
    let (_proxy, client) = proxy("fe2").await;
    let read = "SELECT count(DISTINCT grp) FROM fe2_items";
    assert_eq!(
        text_rows(&client, read).await.unwrap().0,
        [[Some("4".into())]]
    );
    client
        .batch_execute("ALTER TABLE fe2_items ADD COLUMN tag text DEFAULT 't'")
        .await
        .unwrap();
    let read = "SELECT count(DISTINCT tag), string_agg(DISTINCT tag, ',') FROM fe2_items";
    let (rows, _) = text_rows(&client, read).await.unwrap();
    assert_eq!(rows, [[Some("1".into()), Some("t".into())]]);
}

/// A federation that cannot be built (here postgres_fdw cannot be installed in it) fails
/// the reads that need it with 08006 naming it; merged and single-shard reads go on, and
/// once the cause is gone the next read builds it.
#[tokio::test]
async fn a_federation_that_cannot_be_built_fails_only_its_reads() {
    let yaml = "fe3_items: {strategy: hash, key: id, key_type: bigint}";
    let config = config_with_extra_tables(yaml);
    let map = &config.databases[0].shard_map;
    let name = shardgate::control::federation::Federation::uri(map).database;
    let default = connect_direct(&cluster().primaries[0]).await;
    default
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await
        .unwrap();
    default
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let mut uri = cluster().primaries[0].clone();
    uri.truncate(uri.rfind('/').unwrap());
    let federation = connect_direct(&format!("{uri}/{name}")).await;
    // An object in the way of CREATE EXTENSION postgres_fdw.
    let blocker = "CREATE SCHEMA shardgate_fdw; \
                   CREATE FUNCTION shardgate_fdw.postgres_fdw_handler() RETURNS int \
                   LANGUAGE sql AS 'SELECT 1'";
    federation.batch_execute(blocker).await.unwrap();
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS fe3_items; \
             CREATE TABLE fe3_items (id bigint PRIMARY KEY, grp int NOT NULL); \
             INSERT INTO fe3_items (id, grp) VALUES (1, 1), (2, 2), (3, 1)",
        )
        .await
        .unwrap();
    let federated = "SELECT count(DISTINCT grp) FROM fe3_items";
    let error = client.simple_query(federated).await.unwrap_err();
    assert_eq!(sqlstate(&error), "08006");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains(&name), "{message}");
    let merged = "SELECT count(*) FROM fe3_items";
    assert_eq!(
        text_rows(&client, merged).await.unwrap().0,
        [[Some("3".into())]]
    );
    let keyed = "SELECT grp FROM fe3_items WHERE id = 2";
    assert_eq!(
        text_rows(&client, keyed).await.unwrap().0,
        [[Some("2".into())]]
    );
    federation
        .batch_execute("DROP SCHEMA shardgate_fdw CASCADE")
        .await
        .unwrap();
    let (rows, _) = text_rows(&client, federated).await.unwrap();
    assert_eq!(rows, [[Some("2".into())]]);
}

/// The federation databases of another map, marked long ago and unused, are dropped when a
/// proxy builds its own (those of a map marked recently stay, unused or not); a proxy whose
/// databases went while its reads paused builds them again at its next read.
#[tokio::test]
async fn stale_federation_databases_go_and_a_proxy_that_lost_its_own_builds_it_again() {
    let federated = |t: &str| format!("SELECT count(DISTINCT grp) FROM {t}_items");
    let (_old, old_client) = proxy("fe5").await;
    let answer = [[Some("4".to_owned())]];
    assert_eq!(
        text_rows(&old_client, &federated("fe5")).await.unwrap().0,
        answer
    );
    let (_recent, recent_client) = proxy("fe7").await;
    assert_eq!(
        text_rows(&recent_client, &federated("fe7"))
            .await
            .unwrap()
            .0,
        answer
    );
    let (old, recent) = (federation_names("fe5"), federation_names("fe7"));
    let default = connect_direct(&cluster().primaries[0]).await;
    let replica = connect_direct(&cluster().replicas[0][0]).await;
    let disconnect = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                      WHERE datname = ANY($1)";
    for name in &old {
        let aged = format!("COMMENT ON DATABASE \"{name}\" IS 'shardgate federation in use at 1'");
        default.batch_execute(&aged).await.unwrap();
    }
    for server in [&default, &replica] {
        for names in [&old, &recent] {
            server.query_one(disconnect, &[names]).await.unwrap();
        }
    }
    // Another map's proxy builds its federation, then drops the stale one.
    let (_new, new_client) = proxy("fe6").await;
    assert_eq!(
        text_rows(&new_client, &federated("fe6")).await.unwrap().0,
        answer
    );
    let exists = "SELECT count(*) FROM pg_database WHERE datname = ANY($1)";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while default
        .query_one(exists, &[&old])
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{old:?} were not dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let current: Vec<String> = federation_names("fe6");
    let found: i64 = default.query_one(exists, &[&current]).await.unwrap().get(0);
    assert_eq!(found, 2, "the new map's databases stay");
    let found: i64 = default.query_one(exists, &[&recent]).await.unwrap().get(0);
    assert_eq!(found, 2, "a map's databases marked recently stay");
    wait_for_replicas(cluster()).await;
    assert_eq!(
        text_rows(&old_client, &federated("fe5")).await.unwrap().0,
        answer
    );
    let found: i64 = default.query_one(exists, &[&old]).await.unwrap().get(0);
    assert_eq!(found, 2, "{old:?} built again");
}

/// The names of the federation databases (the primaries' copy and the replicas') of the map
/// [`proxy`] makes for `t`.
fn federation_names(t: &str) -> Vec<String> {
    let yaml = format!("{t}_items: {{strategy: hash, key: id, key_type: bigint}}");
    let config = config_with_extra_tables(&yaml);
    let copies =
        shardgate::control::federation::Federation::catalogs(&config.databases[0].shard_map);
    copies.into_iter().map(|(_, uri)| uri.database).collect()
}

/// The text of a COPY TO STDOUT through `client`.
async fn copy_out_text(client: &tokio_postgres::Client, sql: &str) -> String {
    use futures::TryStreamExt;
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    chunks.iter().map(|c| String::from_utf8_lossy(c)).collect()
}
