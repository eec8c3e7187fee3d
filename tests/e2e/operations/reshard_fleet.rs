//! RESHARD with several proxies of one fleet in front of the same shards: the others follow the
//! move step by step (fence, switch, new map) through the fleet's tables, so their clients
//! see no error and no wrong answer; a proxy that cannot serve the new map stops the move
//! before anything moves; a proxy that stopped renewing its lease holds the move only until
//! its lease runs out.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use super::reshard::{
    Load, ONE_AT_A_TIME, assert_moved_by_streaming, fleet_proxy, fleet_proxy_leased, fresh_shards,
    ids_going, map_yaml, placement, reshard_the_held_edit,
};
use super::{console, eventually, field, rows};
use crate::harness::connect_direct;

const FIRST_ROWS: i64 = 300;

/// The fleet's proxies as `SHOW FLEET` on `console` lists them.
async fn fleet_rows(console: &tokio_postgres::Client) -> Vec<Vec<(String, String)>> {
    rows(console, "SHOW FLEET").await
}

#[tokio::test]
async fn a_second_proxy_follows_reshard_and_its_clients_see_no_error() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let shards = fresh_shards().await;
    let fleet = format!("two-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    let two = map_yaml(&shards, &["s0", "s1"]);
    std::fs::write(&path_a, &two).unwrap();
    std::fs::write(&path_b, &two).unwrap();
    let a = fleet_proxy(&fleet, &path_a).await;
    let b = fleet_proxy(&fleet, &path_b).await;
    let client = b.connect().await;
    for id in 1..=FIRST_ROWS {
        let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'first')";
        client.execute(sql, &[&id]).await.unwrap();
    }
    let console_a = console(&a).await;
    eventually("both proxies are in the fleet", async || {
        let listed = fleet_rows(&console_a).await;
        listed
            .iter()
            .filter(|row| field(row, "live") == "true")
            .count()
            == 2
    })
    .await;

    let next_id = Arc::new(AtomicI64::new(FIRST_ROWS + 1));
    let load = Load::start(&b, &next_id).await;
    // Only A's file gains the shard: B cannot serve the new map, so nothing moves.
    let three = map_yaml(&shards, &["s0", "s1", "s2"]);
    std::fs::write(&path_a, &three).unwrap();
    console_a.simple_query("RELOAD").await.unwrap();
    let refused = console_a.simple_query("RESHARD").await.unwrap_err();
    let message = refused
        .as_db_error()
        .expect("an error from the proxy")
        .message();
    assert!(
        message.contains("cannot serve the map RESHARD moves to"),
        "{message}"
    );
    let on_s2 = placement(&shards).await;
    assert!(
        on_s2.iter().all(|(shard, _)| shard != "s2"),
        "nothing moved"
    );

    // B's file gains it too (B holds the edit as well); A moves the rows, B follows.
    std::fs::write(&path_b, &three).unwrap();
    let console_b = console(&b).await;
    console_b.simple_query("RELOAD").await.unwrap();
    reshard_the_held_edit(&console_a).await;
    assert_moved_by_streaming(&console_a, &shards).await;
    load.finish(&b, &shards, &path_b).await;

    // B serves the new map: its edit is no longer held, and a key that moved is written on
    // the new shard through it.
    eventually("B took the new map", async || {
        rows(&console_b, "SHOW PLAN").await.is_empty()
    })
    .await;
    let moved = ids_going(&path_b, true, 1_000_000, 1)[0];
    let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'after')";
    b.connect().await.execute(sql, &[&moved]).await.unwrap();
    let on_new = connect_direct(&shards[2].1).await;
    let count = "SELECT count(*) FROM reshard_items WHERE id = $1";
    let found: i64 = on_new.query_one(count, &[&moved]).await.unwrap().get(0);
    assert_eq!(found, 1, "B wrote the moved key on the new shard");
    let listed = fleet_rows(&console_a).await;
    let b_row = (listed.iter())
        .find(|row| field(row, "this") == "false")
        .expect("B is listed");
    assert_eq!(field(b_row, "step"), "switched", "{listed:?}");

    // Then s1 leaves the ring, both files edited, with the load through B again.
    let delete = "DELETE FROM reshard_items WHERE id = $1";
    assert_eq!(
        b.connect().await.execute(delete, &[&moved]).await.unwrap(),
        1
    );
    let load = Load::start(&b, &next_id).await;
    let without_s1 = map_yaml(&shards, &["s0", "s2"]);
    std::fs::write(&path_b, &without_s1).unwrap();
    console_b.simple_query("RELOAD").await.unwrap();
    std::fs::write(&path_a, &without_s1).unwrap();
    console_a.simple_query("RELOAD").await.unwrap();
    reshard_the_held_edit(&console_a).await;
    assert_moved_by_streaming(&console_a, &shards).await;
    load.finish(&b, &shards, &path_b).await;
    let left_on_s1 = placement(&shards).await;
    assert!(
        left_on_s1.iter().all(|(shard, _)| shard != "s1"),
        "the removed shard gave every row away"
    );
}

#[tokio::test]
async fn a_proxy_that_stopped_renewing_holds_the_move_only_until_its_lease_runs_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let shards = fresh_shards().await;
    let fleet = format!("gone-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();
    let proxy = fleet_proxy(&fleet, &path).await;
    let client = proxy.connect().await;
    for id in 1..=FIRST_ROWS {
        let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'first')";
        client.execute(sql, &[&id]).await.unwrap();
    }
    let console = console(&proxy).await;
    eventually("the proxy is in the fleet", async || {
        !fleet_rows(&console).await.is_empty()
    })
    .await;
    // A proxy that renewed its lease a moment ago and then went silent.
    let on_s0 = connect_direct(&shards[0].1).await;
    let silent = "INSERT INTO shardgate.fleet_proxies (fleet, database, proxy, lease_until) \
         SELECT fleet, database, 'silent', now() + interval '3 seconds' \
         FROM shardgate.fleet_proxies WHERE fleet = $1";
    assert_eq!(on_s0.execute(silent, &[&fleet]).await.unwrap(), 1);

    std::fs::write(&path, map_yaml(&shards, &["s0", "s1", "s2"])).unwrap();
    console.simple_query("RELOAD").await.unwrap();
    let started = Instant::now();
    reshard_the_held_edit(&console).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the move waited for the silent proxy's lease: {took:?}"
    );
    assert_moved_by_streaming(&console, &shards).await;
    let listed = fleet_rows(&console).await;
    let silent = (listed.iter())
        .find(|row| field(row, "proxy") == "silent")
        .expect("listed");
    assert_eq!(field(silent, "live"), "false", "{listed:?}");
    let moved = placement(&shards).await;
    assert!(moved.iter().any(|(shard, _)| shard == "s2"), "rows moved");
}

#[tokio::test]
async fn a_proxy_that_cannot_renew_its_lease_holds_statements_on_sharded_tables_until_it_does() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let shards = fresh_shards().await;
    let fleet = format!("lapse-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();
    let proxy = fleet_proxy_leased(&fleet, &path, Duration::from_secs(2)).await;
    let client = proxy.connect().await;
    let count = "SELECT count(*) FROM reshard_items";
    assert_eq!(
        client.query_one(count, &[]).await.unwrap().get::<_, i64>(0),
        0
    );

    // A transaction on the fleet's table holds this proxy's row: its renewals wait, time out,
    // and its lease lapses.
    let mut on_s0 = connect_direct(&shards[0].1).await;
    let holder = on_s0.transaction().await.unwrap();
    let hold = "SELECT 1 FROM shardgate.fleet_proxies WHERE fleet = $1 FOR UPDATE";
    assert_eq!(holder.execute(hold, &[&fleet]).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = {
        let conn = proxy.connect().await;
        tokio::spawn(async move {
            conn.query_one(count, &[])
                .await
                .map(|row| row.get::<_, i64>(0))
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "a read of a sharded table waits");
    let plain: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(plain, 1, "a statement on no table runs");

    holder.rollback().await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    let answered = answered.expect("the read goes on once the lease is renewed");
    assert_eq!(answered.unwrap().unwrap(), 0);
}
