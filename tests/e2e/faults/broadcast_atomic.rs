//! Statements on several primaries (a split multi-row INSERT, a reference-table write, DDL)
//! commit atomically with `transactions.atomic` (the default): a COMMIT refused by one shard
//! commits nothing on any shard and the error says so, a coordinator lost during its COMMIT is
//! `08007` and recovery makes the other shards agree with it, and a success leaves no prepared
//! transaction behind. With `atomic: false` the legs commit one by one, as before.

use std::time::Duration;

use shardgate::local_cluster::BackendAuth;

use super::atomic::{prepared_on, until_recovered};
use super::{ProxyPanics, at_commit_trigger, code_of, ids_on, stored_ids};
use crate::harness::{DATABASE, TestProxy, config_with_tables, connect_direct, own_cluster};

/// Tables of this test: split INSERTs, reference writes (refused on s1; slow on s0), DDL.
const TABLES: &str = "{fb_items: {strategy: hash, key: id, key_type: bigint}, \
    fb_countries: {strategy: reference}, fb_cities: {strategy: reference}, \
    fb_later: {strategy: hash, key: id, key_type: bigint}}";

/// On s1, every CREATE TABLE records a row that fails that transaction's COMMIT (or PREPARE).
const REFUSE_DDL: &str = "CREATE TABLE fb_ddl_log (id bigint, note text);
CREATE FUNCTION fb_refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO fb_ddl_log (id, note) VALUES (0, 'refuse'); END $$;
CREATE EVENT TRIGGER fb_refuse_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION fb_refuse_ddl();";

/// Asserts `error` is the server's refusal at commit and says that no shard committed.
fn assert_nothing_committed(error: &tokio_postgres::Error) {
    assert_eq!(code_of(error), "23514", "{error:?}");
    let detail = error.as_db_error().and_then(|e| e.detail()).unwrap_or("");
    assert!(
        detail.contains("nothing was committed on any shard"),
        "{detail}"
    );
}

/// Waits (bounded) until recovery made the table of decisions on every primary, so the
/// test's first statements do not race its `CREATE TABLE IF NOT EXISTS`.
async fn until_decisions_tables(primaries: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for uri in primaries {
        let client = connect_direct(uri).await;
        let sql = "SELECT to_regclass('shardgate.commit_decisions') IS NOT NULL";
        while !client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            assert!(std::time::Instant::now() < deadline, "no table on {uri}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `table` exists on each of `primaries`.
async fn exists_on(primaries: &[String], table: &str) -> Vec<bool> {
    let mut found = Vec::new();
    for uri in primaries {
        let sql = format!("SELECT to_regclass('{table}') IS NOT NULL");
        let row = connect_direct(uri).await.query_one(&sql, &[]).await;
        found.push(row.unwrap().get(0));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_on_several_primaries_commit_everywhere_or_nowhere() {
    let panics = ProxyPanics::watch();
    let own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let primaries = &own.info.primaries;
    let mut config = config_with_tables(&own.info, TABLES);
    config.transactions.recovery_interval = Duration::from_millis(200);
    config.transactions.recover_after = Duration::from_millis(500);
    let proxy = TestProxy::start(config.clone()).await;
    until_decisions_tables(primaries).await;
    let client = proxy.connect().await;
    for table in ["fb_items", "fb_countries", "fb_cities"] {
        let sql = format!("CREATE TABLE {table} (id bigint PRIMARY KEY, note text)");
        client.batch_execute(&sql).await.unwrap();
    }
    let (s0, s1) = (
        connect_direct(&primaries[0]).await,
        connect_direct(&primaries[1]).await,
    );
    for shard in [&s0, &s1] {
        let trigger = at_commit_trigger("fb_items", 2);
        shard.batch_execute(&trigger).await.unwrap();
    }
    let countries = at_commit_trigger("fb_countries", 2);
    s1.batch_execute(&countries).await.unwrap();
    s0.batch_execute(&at_commit_trigger("fb_cities", 2))
        .await
        .unwrap();
    let (on_s0, on_s1) = (
        ids_on(&config, "fb_items", 0, 3),
        ids_on(&config, "fb_items", 1, 3),
    );
    let counters = || proxy.proxy.counters(DATABASE).unwrap();

    // 1. A split INSERT over both shards commits in two phases and leaves nothing prepared.
    let before = counters().atomic_commits;
    let sql = format!(
        "INSERT INTO fb_items (id, note) VALUES ({}, 'ok'), ({}, 'ok'), ({}, 'ok')",
        on_s0[0], on_s1[0], on_s0[1]
    );
    assert_eq!(client.execute(&sql, &[]).await.unwrap(), 3);
    assert_eq!(counters().atomic_commits, before + 1, "{:?}", counters());
    for uri in primaries {
        assert_eq!(prepared_on(uri).await, 0, "prepared left on {uri}");
    }
    let on_first = stored_ids(&primaries[..1], "fb_items").await;
    let on_second = stored_ids(&primaries[1..], "fb_items").await;
    assert_eq!(on_first, [on_s0[0], on_s0[1]].into_iter().collect());
    assert_eq!(on_second, [on_s1[0]].into_iter().collect());

    // 2. Refused at commit on s1, then on s0 (one is the coordinator, whose COMMIT fails; the
    //    other a prepared leg, whose PREPARE fails): nothing is committed on either shard.
    for (ok, refused) in [(on_s0[2], on_s1[1]), (on_s1[2], on_s0[2])] {
        let sql =
            format!("INSERT INTO fb_items (id, note) VALUES ({ok}, 'ok'), ({refused}, 'refuse')");
        let error = client.batch_execute(&sql).await.unwrap_err();
        assert_nothing_committed(&error);
    }
    let all = stored_ids(primaries, "fb_items").await;
    assert_eq!(all, [on_s0[0], on_s0[1], on_s1[0]].into_iter().collect());

    // 3. A reference-table write refused by s1 alone is not kept on s0.
    let sql = "INSERT INTO fb_countries (id, note) VALUES (1, 'refuse')";
    let error = client.batch_execute(sql).await.unwrap_err();
    assert_nothing_committed(&error);
    assert!(stored_ids(primaries, "fb_countries").await.is_empty());

    // 4. DDL whose COMMIT s1 refuses creates the table nowhere.
    s1.batch_execute(REFUSE_DDL).await.unwrap();
    s1.batch_execute(&at_commit_trigger("fb_ddl_log", 2))
        .await
        .unwrap();
    let sql = "CREATE TABLE fb_later (id bigint PRIMARY KEY)";
    let error = client.batch_execute(sql).await.unwrap_err();
    assert_nothing_committed(&error);
    assert_eq!(exists_on(primaries, "fb_later").await, [false, false]);
    s1.batch_execute("DROP EVENT TRIGGER fb_refuse_ddl")
        .await
        .unwrap();

    // 5. The coordinator (s0) is lost inside its COMMIT: 08007, and recovery rolls back the
    //    prepared leg on s1, as s0's part did.
    let lost = proxy.connect().await;
    let sql = "INSERT INTO fb_cities (id, note) VALUES (1, 'slow')";
    let committing = tokio::spawn(async move { lost.batch_execute(sql).await });
    tokio::time::sleep(Duration::from_millis(700)).await; // s1 prepared, s0 in pg_sleep
    assert_eq!(prepared_on(&primaries[1]).await, 1, "s1 is prepared");
    s0.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'COMMIT' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    let error = committing.await.unwrap().unwrap_err();
    assert_eq!(code_of(&error), "08007", "{error:?}");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("shard s0"), "{message}");
    until_recovered(primaries).await;
    assert!(stored_ids(primaries, "fb_cities").await.is_empty());

    // 6. With atomic commit off, the legs commit one by one: s0 keeps the row s1 refused,
    //    and the error says so.
    config.transactions.atomic = false;
    let one_by_one = TestProxy::start(config).await;
    let client = one_by_one.connect().await;
    let sql = "INSERT INTO fb_countries (id, note) VALUES (2, 'refuse')";
    let error = client.batch_execute(sql).await.unwrap_err();
    let detail = error.as_db_error().and_then(|e| e.detail()).unwrap_or("");
    assert!(
        detail.contains("Already committed on shards: [s0]."),
        "{detail}"
    );
    assert_eq!(
        stored_ids(&primaries[..1], "fb_countries").await,
        [2].into_iter().collect()
    );
    for uri in primaries {
        assert_eq!(prepared_on(uri).await, 0, "prepared left on {uri}");
    }
    panics.assert_none();
}
