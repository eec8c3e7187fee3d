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
use crate::harness::{connect_direct, sqlstate};

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

/// Fresh shards, a fleet named after `prefix`, a map file of `reshard_items` hashed over s0
/// and s1, and a proxy of that fleet on it holding a lease of `lease`.
struct OneProxy {
    shards: Vec<(String, String)>,
    fleet: String,
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    proxy: crate::harness::TestProxy,
}

async fn one_proxy(prefix: &str, lease: Duration) -> OneProxy {
    let shards = fresh_shards().await;
    let fleet = format!("{prefix}-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();
    let proxy = fleet_proxy_leased(&fleet, &path, lease).await;
    OneProxy {
        shards,
        fleet,
        dir,
        path,
        proxy,
    }
}

#[tokio::test]
async fn a_proxy_that_stopped_renewing_holds_the_move_only_until_its_lease_runs_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let OneProxy {
        shards,
        fleet,
        dir: _dir,
        path,
        proxy,
    } = one_proxy("gone", Duration::from_secs(10)).await;
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
    let reshard = {
        let console = super::console(&proxy).await;
        tokio::spawn(async move { console.simple_query("RESHARD").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = rows(&console, "SHOW RESHARD").await;
    assert_eq!(
        field(&status[0], "phase"),
        "announce",
        "it waits: {status:?}"
    );
    reshard.await.unwrap().expect("RESHARD moves the rows");
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
    let OneProxy {
        shards,
        fleet,
        dir: _dir,
        path: _,
        proxy,
    } = one_proxy("lapse", Duration::from_secs(2)).await;
    let client = proxy.connect().await;
    let count = "SELECT count(*) FROM reshard_items";
    assert_eq!(
        client.query_one(count, &[]).await.unwrap().get::<_, i64>(0),
        0
    );
    // A transaction under way when the lease lapses.
    let across = proxy.connect().await;
    across
        .batch_execute("BEGIN; INSERT INTO reshard_items (id, note) VALUES (7, 'across')")
        .await
        .unwrap();

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

    // Another proxy may have moved rows while the lease was out: the transaction that was
    // under way cannot commit, and nothing of it lands.
    let commit = across.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&commit), "40001", "{commit}");
    across.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        client.query_one(count, &[]).await.unwrap().get::<_, i64>(0),
        0
    );
    let after = "INSERT INTO reshard_items (id, note) VALUES (7, 'after')";
    assert_eq!(
        across.execute(after, &[]).await.unwrap(),
        1,
        "the next one runs"
    );
}

/// Transactions that were writing a moving table when the fence went up and commit after it,
/// outside the fleet's fences: a proxy whose lease lapsed while the server was still running
/// its `COMMIT` (a slow synchronous standby), or a direct connection, one of them through
/// two-phase commit. The move waits for them, and their rows move with the rest instead of
/// staying where the new map does not look.
#[tokio::test]
async fn transactions_writing_a_moving_table_when_the_fence_went_up_are_waited_for_and_move() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let OneProxy {
        shards,
        fleet: _,
        dir,
        path,
        proxy,
    } = one_proxy("writer", Duration::from_secs(10)).await;
    let client = proxy.connect().await;
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'first')";
    for id in 1..=50_i64 {
        client.execute(insert, &[&id]).await.unwrap();
    }
    let three_path = dir.path().join("three.yaml");
    std::fs::write(&three_path, map_yaml(&shards, &["s0", "s1", "s2"])).unwrap();
    let committed = key_moving_from_s0_to_s2(&path, &three_path, 50);
    let prepared = key_moving_from_s0_to_s2(&path, &three_path, committed);

    // Both hold the table's write lock (no transaction id yet: the slots need not wait).
    let lock = "BEGIN; LOCK TABLE reshard_items IN ROW EXCLUSIVE MODE";
    let (plain, two_phase) = (
        connect_direct(&shards[0].1).await,
        connect_direct(&shards[0].1).await,
    );
    plain.batch_execute(lock).await.unwrap();
    two_phase.batch_execute(lock).await.unwrap();

    std::fs::copy(&three_path, &path).unwrap();
    let console = console(&proxy).await;
    console.simple_query("RELOAD").await.unwrap();
    let reshard = {
        let console = super::console(&proxy).await;
        tokio::spawn(async move { console.simple_query("RESHARD").await.map(|_| ()) })
    };
    eventually("the move reaches the fence", async || {
        let status = rows(&console, "SHOW RESHARD").await;
        status
            .first()
            .is_some_and(|row| field(row, "phase") == "fence")
    })
    .await;
    let waits = async |why: &str| {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!reshard.is_finished(), "the move waits for {why}");
    };
    waits("both writers").await;

    let late = "INSERT INTO reshard_items (id, note) VALUES ($1, 'late')";
    plain.execute(late, &[&committed]).await.unwrap();
    plain.batch_execute("COMMIT").await.unwrap();
    two_phase.execute(late, &[&prepared]).await.unwrap();
    let gid = format!("writer-{}", std::process::id());
    let prepare = format!("PREPARE TRANSACTION '{gid}'");
    two_phase.batch_execute(&prepare).await.unwrap();
    waits("the prepared one").await;
    let commit = format!("COMMIT PREPARED '{gid}'");
    two_phase.batch_execute(&commit).await.unwrap();

    reshard.await.unwrap().expect("RESHARD moves the rows");
    assert_moved_by_streaming(&console, &shards).await;
    for key in [committed, prepared] {
        let read = "SELECT note FROM reshard_items WHERE id = $1";
        let found = client.query(read, &[&key]).await.unwrap();
        assert_eq!(found.len(), 1, "row {key} is where the new map looks");
        assert_eq!(found[0].get::<_, String>(0), "late");
        let left = "SELECT count(*) FROM reshard_items WHERE id = $1";
        let on_s0 = plain.query_one(left, &[&key]).await.unwrap();
        assert_eq!(on_s0.get::<_, i64>(0), 0, "and not on its old shard");
    }
}

#[tokio::test]
async fn a_move_whose_coordinator_is_gone_before_it_decided_is_abandoned_by_the_others() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let OneProxy {
        shards,
        fleet,
        dir: _dir,
        path,
        proxy,
    } = one_proxy("ghost", Duration::from_secs(10)).await;
    let client = proxy.connect().await;
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'x')";
    for id in 1..=50_i64 {
        client.execute(insert, &[&id]).await.unwrap();
    }

    // A coordinator that fenced the fleet and then stopped renewing its lease.
    let on_s0 = connect_direct(&shards[0].1).await;
    let database = ghost_coordinator(&on_s0, &fleet).await;
    let three = map_yaml(&shards, &["s0", "s1", "s2"]);
    let tables = vec!["reshard_items".to_owned()];
    let moving = "INSERT INTO shardgate.fleet_moves \
         (fleet, database, stamp, coordinator, step, tables, map) \
         VALUES ($1, $2, '1', 'ghost', 'fence', $3, $4)";
    on_s0
        .execute(moving, &[&fleet, &database, &tables, &three])
        .await
        .unwrap();

    let step = "SELECT step FROM shardgate.fleet_moves WHERE fleet = $1";
    eventually("the proxy abandons the ghost's move", async || {
        let row = on_s0.query_one(step, &[&fleet]).await.unwrap();
        row.get::<_, String>(0) == "abandoned"
    })
    .await;
    // Nothing holds its writes any more, and the next RESHARD may run.
    let written = tokio::time::timeout(Duration::from_secs(2), client.execute(insert, &[&51_i64]));
    assert_eq!(written.await.expect("no wait").unwrap(), 1);
    std::fs::write(&path, &three).unwrap();
    let console = console(&proxy).await;
    console.simple_query("RELOAD").await.unwrap();
    reshard_the_held_edit(&console).await;
    assert_moved_by_streaming(&console, &shards).await;
}

/// A map of `reshard_items` over the ring `ring`, with every shard of `shards` declared.
fn ring_yaml(shards: &[(String, String)], ring: &[&str]) -> String {
    let mut yaml = String::from("shards:\n");
    for (name, uri) in shards {
        yaml += &format!("  - name: {name}\n    primary: {uri}\n");
    }
    yaml += &format!(
        "default_shard: s0\ntables:\n  reshard_items:\n    strategy: hash\n    key: id\n    key_type: bigint\n    shards: [{}]\n",
        ring.join(", ")
    );
    yaml
}

/// A key the ring of s0, s1 and s2 places on s2 and the ring of s0 and s1 on s0.
fn key_moving_from_s0_to_s2(two: &std::path::Path, three: &std::path::Path, after: i64) -> i64 {
    let name = |path: &std::path::Path, id: i64| {
        let router =
            shardgate::router::Router::new(&shardgate::config::load_shard_map(path).unwrap());
        let shard = router
            .shard_of_key("reshard_items", &id.to_string())
            .unwrap();
        router.map().shard(shard).name.clone()
    };
    (after + 1..)
        .find(|id| name(two, *id) == "s0" && name(three, *id) == "s2")
        .unwrap()
}

/// A coordinator named `ghost` whose lease ran out a while ago, in `fleet` on `on_s0`; the
/// fleet's database name.
async fn ghost_coordinator(on_s0: &tokio_postgres::Client, fleet: &str) -> String {
    let registered = "SELECT database FROM shardgate.fleet_proxies WHERE fleet = $1";
    eventually("the proxy renewed its lease", async || {
        let rows = on_s0.query(registered, &[&fleet]).await;
        rows.is_ok_and(|rows| !rows.is_empty())
    })
    .await;
    let database: String = on_s0.query_one(registered, &[&fleet]).await.unwrap().get(0);
    let ghost = "INSERT INTO shardgate.fleet_proxies (fleet, database, proxy, lease_until) \
         VALUES ($1, $2, 'ghost', now() - interval '10 seconds')";
    on_s0.execute(ghost, &[&fleet, &database]).await.unwrap();
    database
}

/// Fresh shards, a fleet named after `prefix`, a map file of the ring s0, s1 (every shard
/// declared), the text of the ring s0, s1, s2, and a key that moves from s0 to s2 between them.
struct Rings {
    shards: Vec<(String, String)>,
    fleet: String,
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    three: String,
    key: i64,
}

async fn rings(prefix: &str) -> Rings {
    let shards = fresh_shards().await;
    let fleet = format!("{prefix}-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let (path, three_path) = (dir.path().join("map.yaml"), dir.path().join("three.yaml"));
    let three = ring_yaml(&shards, &["s0", "s1", "s2"]);
    std::fs::write(&path, ring_yaml(&shards, &["s0", "s1"])).unwrap();
    std::fs::write(&three_path, &three).unwrap();
    let key = key_moving_from_s0_to_s2(&path, &three_path, 0);
    Rings {
        shards,
        fleet,
        dir,
        path,
        three,
        key,
    }
}

#[tokio::test]
async fn a_decided_move_whose_coordinator_is_gone_is_finished_by_another_proxy() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Rings {
        shards,
        fleet,
        dir: _dir,
        path,
        three,
        key,
    } = rings("finish").await;
    let proxy = fleet_proxy(&fleet, &path).await;
    let client = proxy.connect().await;
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'before')";
    client.execute(insert, &[&key]).await.unwrap();

    // The ghost decided its move: the key's row is prepared to leave s0 and to arrive on s2.
    let on_s0 = connect_direct(&shards[0].1).await;
    let database = ghost_coordinator(&on_s0, &fleet).await;
    let stamp = "42";
    let out = format!(
        "BEGIN; DELETE FROM reshard_items WHERE id = {key}; \
         PREPARE TRANSACTION 'shardgate_reshard_{stamp}_s0_out'"
    );
    on_s0.batch_execute(&out).await.unwrap();
    let into = format!(
        "BEGIN; INSERT INTO reshard_items (id, note) VALUES ({key}, 'moved'); \
         PREPARE TRANSACTION 'shardgate_reshard_{stamp}_s2_in'"
    );
    connect_direct(&shards[2].1)
        .await
        .batch_execute(&into)
        .await
        .unwrap();
    let tables = vec!["reshard_items".to_owned()];
    let decided = "INSERT INTO shardgate.fleet_moves \
         (fleet, database, stamp, coordinator, step, tables, map) \
         VALUES ($1, $2, $3, 'ghost', 'committing', $4, $5)";
    on_s0
        .execute(decided, &[&fleet, &database, &stamp, &tables, &three])
        .await
        .unwrap();

    let moved = "SELECT step, coordinator <> 'ghost' FROM shardgate.fleet_moves WHERE fleet = $1";
    eventually("the proxy finishes the ghost's move", async || {
        let row = on_s0.query_one(moved, &[&fleet]).await.unwrap();
        row.get::<_, String>(0) == "switched" && row.get::<_, bool>(1)
    })
    .await;
    let read = "SELECT note FROM reshard_items WHERE id = $1";
    let note: String = client.query_one(read, &[&key]).await.unwrap().get(0);
    assert_eq!(
        note, "moved",
        "the proxy reads the key on s2, under the new map"
    );
    assert_eq!(placement(&shards).await, vec![("s2".to_owned(), key)]);
    let recorded = "SELECT map FROM shardgate.maps_in_force WHERE fleet = $1";
    let map: String = on_s0.query_one(recorded, &[&fleet]).await.unwrap().get(0);
    assert_eq!(map, three, "the new map is recorded in force");
}

#[tokio::test]
async fn a_proxy_that_missed_a_whole_move_takes_its_map_when_it_is_back() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Rings {
        shards,
        fleet,
        dir: _dir,
        path,
        three,
        key,
    } = rings("missed").await;
    let proxy = fleet_proxy_leased(&fleet, &path, Duration::from_secs(2)).await;
    let console = console(&proxy).await;
    let route = format!("SHOW ROUTE SELECT * FROM reshard_items WHERE id = {key}");
    let shard_of_key = async || field(&rows(&console, &route).await[0], "route").to_owned();
    assert_eq!(shard_of_key().await, "route: shard s0");

    // The proxy cannot renew its lease (its row is held) while another proxy moves the key
    // and switches: the fleet's move row and the record of the map in force say so.
    let mut on_s0 = connect_direct(&shards[0].1).await;
    let database = ghost_coordinator(&on_s0, &fleet).await;
    let holder = on_s0.transaction().await.unwrap();
    let hold = "SELECT 1 FROM shardgate.fleet_proxies WHERE fleet = $1 AND proxy <> 'ghost' \
                FOR UPDATE";
    assert_eq!(holder.execute(hold, &[&fleet]).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let direct = connect_direct(&shards[0].1).await;
    let tables = vec!["reshard_items".to_owned()];
    let switched = "INSERT INTO shardgate.fleet_moves \
         (fleet, database, stamp, coordinator, step, tables, map) \
         VALUES ($1, $2, '43', 'ghost', 'switched', $3, $4)";
    (direct.execute(switched, &[&fleet, &database, &tables, &three]))
        .await
        .unwrap();
    let recorded = "UPDATE shardgate.maps_in_force SET map = $2, version = version + 1 \
                    WHERE fleet = $1";
    assert_eq!(
        direct.execute(recorded, &[&fleet, &three]).await.unwrap(),
        1
    );
    holder.rollback().await.unwrap();
    eventually(
        "the proxy serves the move's map once it is back",
        async || shard_of_key().await == "route: shard s2",
    )
    .await;
}
