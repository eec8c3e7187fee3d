//! RESHARD moves the rows a held edit places elsewhere while a writer and a reader run through
//! the proxy: a third shard joins a hash ring, then one of the three leaves it. No client sees
//! an error, every acknowledged row ends up exactly once on the shard the new map names, and
//! no read ever counts a row twice or misses one. While rows copy, writes to the keys that
//! move run and are streamed to their new shard (logical replication); a table without a
//! replica identity copies behind the fence instead, where only writes to the keys that move
//! wait (a transaction writing one is refused with 40001). A target that fails aborts the
//! move with nothing changed. The tests share one table, one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use shardgate::router::Router;

use super::{console, eventually, field, ops_proxy, rows};
use crate::harness::{TestProxy, cluster, connect_direct};
use crate::limits::SOON;
use crate::raw::{Script, exchange_verbose, raw_login};

/// The tests of this file share `reshard_items` and the third shard's database; every test
/// that runs RESHARD takes it (a move's prepared transactions are visible to the others).
pub(super) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TABLE_SQL: &str = "CREATE TABLE reshard_items (id bigint PRIMARY KEY, note text)";
const FIRST_ROWS: i64 = 400;

/// The URI of a database `name` on the server of the cluster's shard 0.
pub(super) fn extra_database(name: &str) -> String {
    let uri = &cluster().primaries[0];
    let (server, _) = uri.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Every shard (by name) with an empty `reshard_items`: the cluster's two and a third
/// database on shard 0's server.
pub(super) async fn fresh_shards() -> Vec<(String, String)> {
    let admin = connect_direct(&cluster().primaries[0]).await;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'reshard_s2'",
            &[],
        )
        .await
        .unwrap();
    if exists.is_none() {
        admin
            .batch_execute("CREATE DATABASE reshard_s2")
            .await
            .unwrap();
    }
    let shards = vec![
        ("s0".to_owned(), cluster().primaries[0].clone()),
        ("s1".to_owned(), cluster().primaries[1].clone()),
        ("s2".to_owned(), extra_database("reshard_s2")),
    ];
    for (_, uri) in &shards {
        let direct = connect_direct(uri).await;
        // A failed run may have left a move's transactions prepared (they hold the table).
        let left = "SELECT gid FROM pg_prepared_xacts \
                    WHERE database = current_database() AND starts_with(gid, 'shardgate_reshard_')";
        for row in direct.query(left, &[]).await.unwrap() {
            let gid: String = row.get(0);
            let end = format!("ROLLBACK PREPARED '{gid}'");
            direct.batch_execute(&end).await.unwrap();
        }
        let sql = format!("DROP TABLE IF EXISTS reshard_items; {TABLE_SQL}");
        direct.batch_execute(&sql).await.unwrap();
    }
    shards
}

/// A map of `reshard_items` hashed on `id` over `names`.
pub(super) fn map_yaml(shards: &[(String, String)], names: &[&str]) -> String {
    let mut yaml = String::from("shards:\n");
    for (name, uri) in shards.iter().filter(|(n, _)| names.contains(&n.as_str())) {
        yaml += &format!("  - name: {name}\n    primary: {uri}\n");
    }
    yaml += "default_shard: s0\ntables:\n  reshard_items:\n    strategy: hash\n    key: id\n    key_type: bigint\n";
    yaml
}

/// Where every row of `reshard_items` is, by shard name.
pub(super) async fn placement(shards: &[(String, String)]) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for (name, uri) in shards {
        let direct = connect_direct(uri).await;
        for row in direct
            .query("SELECT id FROM reshard_items", &[])
            .await
            .unwrap()
        {
            found.push((name.clone(), row.get(0)));
        }
    }
    found
}

/// Every acknowledged id is stored once, on the shard the map in file `path` names.
pub(super) async fn assert_placed(
    shards: &[(String, String)],
    path: &std::path::Path,
    acknowledged: i64,
) {
    let ids: Vec<i64> = (1..=acknowledged).collect();
    assert_placed_ids(shards, path, &ids).await;
}

/// Every id of `expected` is stored once, on the shard the map in file `path` names.
async fn assert_placed_ids(shards: &[(String, String)], path: &std::path::Path, expected: &[i64]) {
    let map = shardgate::config::load_shard_map(path).unwrap();
    let router = Router::new(&map);
    let mut found = placement(shards).await;
    found.sort_by_key(|(_, id)| *id);
    let ids: Vec<i64> = found.iter().map(|(_, id)| *id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "no row is stored twice");
    for id in expected {
        assert!(
            ids.binary_search(id).is_ok(),
            "acknowledged row {id} is stored"
        );
    }
    for (shard, id) in &found {
        let owner = router
            .shard_of_key("reshard_items", &id.to_string())
            .unwrap();
        assert_eq!(
            &map.shard(owner).name,
            shard,
            "row {id} is where the map puts it"
        );
    }
}

/// Asserts that an edit of `reshard_items` is held, and applies it with RESHARD.
pub(super) async fn reshard_the_held_edit(console: &tokio_postgres::Client) {
    let plan = rows(console, "SHOW PLAN").await;
    let held = |row: &Vec<(String, String)>| field(row, "plan").contains("reshard_items");
    assert!(plan.iter().any(held), "the edit is held: {plan:?}");
    (console.simple_query("RESHARD").await).expect("RESHARD moves the rows");
}

/// Runs one RESHARD from `from` to `to` with a writer and a reader going through the proxy.
async fn move_under_load(
    proxy: &crate::harness::TestProxy,
    path: &std::path::Path,
    shards: &[(String, String)],
    to: &str,
    next_id: &Arc<AtomicI64>,
) {
    let load = Load::start(proxy, next_id).await;
    std::fs::write(path, to).unwrap();
    let console = console(proxy).await;
    console.simple_query("RELOAD").await.unwrap();
    reshard_the_held_edit(&console).await;
    assert_moved_by_streaming(&console, shards).await;
    load.finish(proxy, shards, path).await;
    let plan = rows(&console, "SHOW PLAN").await;
    assert!(plan.is_empty(), "nothing is held any more: {plan:?}");
}

/// The last RESHARD is done, streamed, and left no slot or publication behind.
pub(super) async fn assert_moved_by_streaming(
    console: &tokio_postgres::Client,
    shards: &[(String, String)],
) {
    let status = rows(console, "SHOW RESHARD").await;
    assert!(!status.is_empty());
    for row in &status {
        assert!(field(row, "state").starts_with("done"), "{row:?}");
    }
    for row in &status {
        assert_eq!(field(row, "method"), "logical replication", "{row:?}");
        assert!(field(row, "fence_ms").parse::<u64>().is_ok(), "{row:?}");
    }
    assert_no_stream_left(shards).await;
    let copied: i64 = (status.iter())
        .map(|row| field(row, "rows_copied").parse::<i64>().unwrap())
        .sum();
    assert!(copied > 0, "rows were copied: {status:?}");
}

/// A writer (inserts of new ids, updates of earlier ones) and a reader (every row, and one
/// row by key) going through one proxy, that fail on any error or wrong answer.
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicI64>,
    writer: tokio::task::JoinHandle<Vec<i64>>,
    reader: tokio::task::JoinHandle<i64>,
}

impl Load {
    /// Starts writing ids from `next_id` on, and reading, through `proxy`.
    pub(super) async fn start(proxy: &TestProxy, next_id: &Arc<AtomicI64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicI64::new(next_id.load(Ordering::SeqCst) - 1));
        let writer = {
            let (client, stop, next, acked) = (
                proxy.connect().await,
                stop.clone(),
                next_id.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                let mut updated = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let id = next.fetch_add(1, Ordering::SeqCst);
                    let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'w')";
                    client
                        .execute(sql, &[&id])
                        .await
                        .expect("a write during the move");
                    acked.store(id, Ordering::SeqCst);
                    // Every third write also updates an earlier row (streamed when it moves).
                    if id % 3 == 0 {
                        let earlier = id / 3;
                        let sql = "UPDATE reshard_items SET note = 'updated' WHERE id = $1";
                        let rows = client.execute(sql, &[&earlier]).await;
                        assert_eq!(rows.expect("an update during the move"), 1);
                        updated.push(earlier);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                updated
            })
        };
        let reader = {
            let (client, stop, next, acked) = (
                proxy.connect().await,
                stop.clone(),
                next_id.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(Ordering::SeqCst) {
                    let before = acked.load(Ordering::SeqCst);
                    let all = "SELECT id FROM reshard_items ORDER BY id";
                    let ids: Vec<i64> = (client.query(all, &[]).await)
                        .expect("a read during the move")
                        .iter()
                        .map(|row| row.get(0))
                        .collect();
                    let after = next.load(Ordering::SeqCst);
                    assert!(
                        ids.windows(2).all(|w| w[0] < w[1]),
                        "a read saw a row twice"
                    );
                    let seen = ids.iter().take_while(|id| **id <= before).count() as i64;
                    assert_eq!(seen, before, "a read missed acknowledged rows");
                    assert!(ids.last().is_none_or(|last| *last < after));
                    let id = 1 + reads % before.max(1);
                    let one = "SELECT count(*) FROM reshard_items WHERE id = $1";
                    let found: i64 = client.query_one(one, &[&id]).await.unwrap().get(0);
                    assert_eq!(found, 1, "the read of row {id} finds it once");
                    reads += 1;
                }
                reads
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        Load {
            stop,
            acknowledged,
            writer,
            reader,
        }
    }

    /// Stops the load a moment after the move, and checks through `proxy` and on the shards
    /// that every acknowledged write is kept, where the map in `path` places it.
    pub(super) async fn finish(
        self,
        proxy: &TestProxy,
        shards: &[(String, String)],
        path: &std::path::Path,
    ) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.store(true, Ordering::SeqCst);
        let updated = self.writer.await.expect("the writer saw no error");
        assert!(!updated.is_empty());
        let client = proxy.connect().await;
        let notes = "SELECT count(*) FROM reshard_items WHERE id = ANY($1) AND note = 'updated'";
        let found: i64 = client.query_one(notes, &[&updated]).await.unwrap().get(0);
        let mut distinct = updated.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            found,
            distinct.len() as i64,
            "every acknowledged update is kept"
        );
        let reads = self.reader.await.expect("the reader saw no wrong answer");
        assert!(reads > 0);
        assert_placed(shards, path, self.acknowledged.load(Ordering::SeqCst)).await;
    }
}

#[tokio::test]
async fn reshard_adds_a_shard_then_removes_one_while_clients_write_and_read() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let shards = fresh_shards().await;
    let (proxy, _dir, path) = ops_proxy(|_| {}).await;
    let two = map_yaml(&shards, &["s0", "s1"]);
    std::fs::write(&path, &two).unwrap();
    let console = console(&proxy).await;
    console.simple_query("RELOAD FORCE").await.unwrap();
    let client = proxy.connect().await;
    for id in 1..=FIRST_ROWS {
        let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'first')";
        client.execute(sql, &[&id]).await.unwrap();
    }
    let next_id = Arc::new(AtomicI64::new(FIRST_ROWS + 1));

    let three = map_yaml(&shards, &["s0", "s1", "s2"]);
    move_under_load(&proxy, &path, &shards, &three, &next_id).await;
    let on_new: usize = (placement(&shards).await.iter())
        .filter(|(shard, _)| shard == "s2")
        .count();
    assert!(on_new > 0, "the new shard took its keys");

    let without_s1 = map_yaml(&shards, &["s0", "s2"]);
    move_under_load(&proxy, &path, &shards, &without_s1, &next_id).await;
    let on_removed: usize = (placement(&shards).await.iter())
        .filter(|(shard, _)| shard == "s1")
        .count();
    assert_eq!(on_removed, 0, "the removed shard gave every row away");
}

/// A proxy on the two-shard map with rows 1..=`rows`, the shards, and the three-shard map.
async fn two_shards_with_rows(
    rows: i64,
) -> (
    TestProxy,
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<(String, String)>,
    String,
) {
    let shards = fresh_shards().await;
    // Trust: raw logins (pipelines written by hand) need no password exchange.
    let trust = |config: &mut shardgate::config::Config| {
        config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    };
    let (proxy, dir, path) = ops_proxy(trust).await;
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();
    console(&proxy)
        .await
        .simple_query("RELOAD FORCE")
        .await
        .unwrap();
    let client = proxy.connect().await;
    for id in 1..=rows {
        let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'first')";
        client.execute(sql, &[&id]).await.unwrap();
    }
    let three = map_yaml(&shards, &["s0", "s1", "s2"]);
    (proxy, dir, path, shards, three)
}

/// Ids from `from` on that the three-shard map gives the new shard (`true`) or leaves in place.
pub(super) fn ids_going(path: &std::path::Path, to_new: bool, from: i64, n: usize) -> Vec<i64> {
    let router = Router::new(&shardgate::config::load_shard_map(path).unwrap());
    let goes_to_new = |id: &i64| {
        let shard = router
            .shard_of_key("reshard_items", &id.to_string())
            .unwrap();
        router.map().shard(shard).name == "s2"
    };
    (from..)
        .filter(|id| goes_to_new(id) == to_new)
        .take(n)
        .collect()
}

/// Holds the third shard's `reshard_items` so that the copy into it waits (SHARE mode lets
/// nothing write it): the fence stays up until the returned transaction ends.
async fn hold_target(shards: &[(String, String)]) -> tokio_postgres::Client {
    let direct = connect_direct(&shards[2].1).await;
    direct
        .batch_execute("BEGIN; LOCK TABLE reshard_items IN SHARE MODE")
        .await
        .unwrap();
    direct
}

/// Starts RESHARD in its own console session and waits until it copies.
async fn reshard_copying(proxy: &TestProxy) -> tokio::task::JoinHandle<Result<(), String>> {
    let console_client = console(proxy).await;
    let moving = tokio::spawn(async move {
        let done = console_client.simple_query("RESHARD").await;
        done.map(|_| ()).map_err(|e| {
            e.as_db_error()
                .map_or(e.to_string(), |db| db.message().to_owned())
        })
    });
    let watcher = console(proxy).await;
    eventually("RESHARD copies", async || {
        let status = rows(&watcher, "SHOW RESHARD").await;
        status.iter().any(|row| field(row, "phase") == "copy")
    })
    .await;
    moving
}

/// No replication slot or publication of a move is left on `shards`.
pub(super) async fn assert_no_stream_left(shards: &[(String, String)]) {
    for (name, uri) in shards {
        let direct = connect_direct(uri).await;
        let sql = "SELECT (SELECT count(*) FROM pg_replication_slots \
                   WHERE starts_with(slot_name, 'shardgate_reshard_')) \
                   + (SELECT count(*) FROM pg_publication WHERE starts_with(pubname, 'shardgate_reshard_'))";
        let left: i64 = direct.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(left, 0, "no slot or publication is left on {name}");
    }
}

#[tokio::test]
async fn a_table_without_replica_identity_copies_while_writes_to_its_moving_keys_wait() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(200).await;
    for (_, uri) in &shards {
        let direct = connect_direct(uri).await;
        let sql = "ALTER TABLE reshard_items REPLICA IDENTITY NOTHING";
        direct.batch_execute(sql).await.unwrap();
    }
    std::fs::write(&path, &three).unwrap();
    let stored_moving = ids_going(&path, true, 1, 1)[0];
    let staying = ids_going(&path, false, 10_000, 1)[0];
    let moving = ids_going(&path, true, 10_000, 3);
    let held = hold_target(&shards).await;
    console(&proxy).await.simple_query("RELOAD").await.unwrap();
    let reshard = reshard_copying(&proxy).await;

    let client = proxy.connect().await;
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'during')";
    let staying_write = tokio::time::timeout(SOON, client.execute(insert, &[&staying])).await;
    staying_write
        .expect("a write to a key that stays does not wait")
        .unwrap();
    let read = "SELECT count(*) FROM reshard_items WHERE id = $1";
    let found: i64 = client
        .query_one(read, &[&stored_moving])
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1, "a moving row reads from where it was");

    let in_transaction = proxy.connect().await;
    in_transaction.batch_execute("BEGIN").await.unwrap();
    let refused = in_transaction
        .execute(insert, &[&moving[0]])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
        "{refused}"
    );
    in_transaction.batch_execute("ROLLBACK").await.unwrap();

    let waiting = {
        let client = proxy.connect().await;
        let id = moving[1];
        tokio::spawn(async move { client.execute(insert, &[&id]).await })
    };
    // A pipelined Parse/Bind/Execute/Sync whose key is a literal waits too.
    let pipelined = {
        let mut stream = raw_login(&proxy).await;
        let sql = format!(
            "INSERT INTO reshard_items (id, note) VALUES ({}, 'p')",
            moving[2]
        );
        let script = Script::new()
            .parse("", &sql)
            .bind("", "")
            .execute("", 0)
            .sync();
        tokio::spawn(async move { exchange_verbose(&mut stream, &script).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a write to a moving key waits at the fence"
    );
    assert!(!pipelined.is_finished(), "so does a pipelined one");
    assert!(!reshard.is_finished());

    held.batch_execute("COMMIT").await.unwrap();
    reshard
        .await
        .unwrap()
        .expect("RESHARD finishes once the target is free");
    let written = tokio::time::timeout(SOON, waiting)
        .await
        .expect("the waiting write ran");
    assert_eq!(written.unwrap().unwrap(), 1);
    let replies = tokio::time::timeout(SOON, pipelined)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replies, ["1", "2", "C:INSERT 0 1", "Z"]);
    let status = rows(&console(&proxy).await, "SHOW RESHARD").await;
    let method = field(&status[0], "method");
    assert!(
        method.contains("fenced copy") && method.contains("replica identity"),
        "{method}"
    );
    let on_new = connect_direct(&shards[2].1).await;
    for id in &moving[1..] {
        let there: i64 = on_new.query_one(read, &[id]).await.unwrap().get(0);
        assert_eq!(there, 1, "the write that waited ran on the new shard");
    }
    assert_placed(&shards, &path, 200).await;
}

/// Gives `reshard_items` a replica identity without its shard key: a unique `code` on every
/// shard, filled for the rows there.
async fn identity_without_the_key(shards: &[(String, String)]) {
    for (_, uri) in shards {
        let sql = "ALTER TABLE reshard_items ADD COLUMN code text; \
                   UPDATE reshard_items SET code = 'c' || id; \
                   ALTER TABLE reshard_items ALTER COLUMN code SET NOT NULL; \
                   CREATE UNIQUE INDEX reshard_items_code ON reshard_items (code); \
                   ALTER TABLE reshard_items REPLICA IDENTITY USING INDEX reshard_items_code";
        connect_direct(uri).await.batch_execute(sql).await.unwrap();
    }
}

/// While the copy is held, a transaction writes moving keys (inserts, updates, a delete) and
/// an autocommit insert runs: nothing waits, and after the move every change is on the new
/// shard as it was acknowledged.
async fn writes_during_the_copy_land_on_the_new_shard(key_in_identity: bool) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(200).await;
    if !key_in_identity {
        identity_without_the_key(&shards).await;
    }
    std::fs::write(&path, &three).unwrap();
    let stored = ids_going(&path, true, 1, 3);
    let fresh = ids_going(&path, true, 10_000, 2);
    let held = hold_target(&shards).await;
    console(&proxy).await.simple_query("RELOAD").await.unwrap();
    let reshard = reshard_copying(&proxy).await;

    let client = proxy.connect().await;
    let writes = async {
        let insert = async |id: i64, note: &str| {
            let sql = match key_in_identity {
                true => "INSERT INTO reshard_items (id, note) VALUES ($1, $2)",
                false => {
                    "INSERT INTO reshard_items (id, note, code) VALUES ($1, $2, 'c' || $1::bigint::text)"
                }
            };
            client.execute(sql, &[&id, &note]).await.unwrap();
        };
        client.batch_execute("BEGIN").await.unwrap();
        insert(fresh[0], "inserted").await;
        let update = "UPDATE reshard_items SET note = $2 WHERE id = $1";
        client
            .execute(update, &[&stored[0], &"updated once"])
            .await
            .unwrap();
        client
            .execute(update, &[&stored[0], &"updated twice"])
            .await
            .unwrap();
        client
            .execute(update, &[&fresh[0], &"inserted, updated"])
            .await
            .unwrap();
        let delete = "DELETE FROM reshard_items WHERE id = $1";
        client.execute(delete, &[&stored[1]]).await.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
        insert(fresh[1], "autocommit").await;
    };
    tokio::time::timeout(SOON, writes)
        .await
        .expect("writes to moving keys do not wait while rows copy");
    assert!(!reshard.is_finished(), "the copy is still held");
    // One large transaction on a source: a catch-up round far larger than one read.
    let bulk = bulk_insert_on_s0(&shards, key_in_identity).await;

    held.batch_execute("COMMIT").await.unwrap();
    reshard
        .await
        .unwrap()
        .expect("RESHARD finishes once the target is free");
    let status = rows(&console(&proxy).await, "SHOW RESHARD").await;
    assert_eq!(
        field(&status[0], "method"),
        "logical replication",
        "{status:?}"
    );
    let on_new = connect_direct(&shards[2].1).await;
    let note = "SELECT note FROM reshard_items WHERE id = $1";
    for (id, expected) in [
        (stored[0], "updated twice"),
        (fresh[0], "inserted, updated"),
        (fresh[1], "autocommit"),
        (stored[2], "first"),
    ] {
        let found: Vec<String> = (on_new.query(note, &[&id]).await.unwrap().iter())
            .map(|row| row.get(0))
            .collect();
        assert_eq!(found, [expected], "row {id} on the new shard");
    }
    let deleted = "SELECT count(*) FROM reshard_items WHERE id = $1";
    for (name, uri) in &shards {
        let direct = connect_direct(uri).await;
        let left: i64 = direct
            .query_one(deleted, &[&stored[1]])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            left, 0,
            "the row deleted during the copy is nowhere ({name})"
        );
    }
    assert_no_stream_left(&shards).await;
    let mut all: Vec<i64> = (1..=200).filter(|id| *id != stored[1]).collect();
    all.extend(bulk);
    assert_placed_ids(&shards, &path, &all).await;
}

/// Inserts, straight into s0, 20,000 rows whose keys the two-shard map places on s0 (with a
/// `code` when the table has one): what the stream reads in one go. Their ids.
async fn bulk_insert_on_s0(shards: &[(String, String)], key_in_identity: bool) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.yaml");
    std::fs::write(&two, map_yaml(shards, &["s0", "s1"])).unwrap();
    let old = Router::new(&shardgate::config::load_shard_map(&two).unwrap());
    let ids: Vec<i64> = (100_000_i64..)
        .filter(|id| {
            let shard = old.shard_of_key("reshard_items", &id.to_string()).unwrap();
            old.map().shard(shard).name == "s0"
        })
        .take(20_000)
        .collect();
    let sql = match key_in_identity {
        true => "INSERT INTO reshard_items (id, note) SELECT unnest($1::bigint[]), 'bulk'",
        false => {
            "INSERT INTO reshard_items (id, note, code) \
             SELECT id, 'bulk', 'c' || id FROM unnest($1::bigint[]) AS id"
        }
    };
    let direct = connect_direct(&shards[0].1).await;
    direct.execute(sql, &[&ids]).await.unwrap();
    ids
}

#[tokio::test]
async fn writes_to_moving_keys_during_the_copy_are_streamed_to_the_new_shard() {
    writes_during_the_copy_land_on_the_new_shard(true).await;
}

#[tokio::test]
async fn changes_are_streamed_when_the_replica_identity_lacks_the_shard_key() {
    writes_during_the_copy_land_on_the_new_shard(false).await;
}

#[tokio::test]
async fn a_table_the_new_shard_lacks_is_created_from_a_sources_catalog() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(100).await;
    let on_s2 = connect_direct(&shards[2].1).await;
    on_s2
        .batch_execute("DROP TABLE reshard_items")
        .await
        .unwrap();
    for (_, uri) in &shards[..2] {
        let sql = "ALTER TABLE reshard_items ADD CONSTRAINT note_short CHECK (length(note) < 20); \
                   CREATE INDEX reshard_items_note ON reshard_items (note); \
                   ALTER TABLE reshard_items ADD COLUMN counted serial";
        connect_direct(uri).await.batch_execute(sql).await.unwrap();
    }
    std::fs::write(&path, &three).unwrap();
    let admin = console(&proxy).await;
    admin.simple_query("RELOAD").await.unwrap();

    // A default drawn from a sequence would count on its own on the new shard: refused.
    let refused = admin.simple_query("RESHARD").await.unwrap_err();
    let refused = refused.as_db_error().unwrap().message().to_owned();
    assert!(refused.contains("sequence"), "{refused}");
    let exists = "SELECT to_regclass('reshard_items') IS NOT NULL";
    let created: bool = on_s2.query_one(exists, &[]).await.unwrap().get(0);
    assert!(!created, "a move that failed created nothing");

    for (_, uri) in &shards[..2] {
        let sql = "ALTER TABLE reshard_items DROP COLUMN counted";
        connect_direct(uri).await.batch_execute(sql).await.unwrap();
    }
    reshard_the_held_edit(&admin).await;
    let created: bool = on_s2.query_one(exists, &[]).await.unwrap().get(0);
    assert!(created, "the new shard has the table");
    let definition = "SELECT \
        (SELECT count(*) FROM pg_constraint WHERE conrelid = 'reshard_items'::regclass \
         AND (contype = 'p' OR conname = 'note_short')), \
        (SELECT count(*) FROM pg_indexes WHERE tablename = 'reshard_items' \
         AND indexname = 'reshard_items_note')";
    let row = on_s2.query_one(definition, &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (2, 1),
        "key, check and index"
    );
    assert_placed(&shards, &path, 100).await;

    let moving = ids_going(&path, true, 10_000, 1)[0];
    let long = "INSERT INTO reshard_items (id, note) VALUES ($1, repeat('x', 30))";
    let error = (proxy.connect().await)
        .execute(long, &[&moving])
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "the new shard checks what the others check"
    );
}

#[tokio::test]
async fn a_direct_write_while_the_fence_drains_moves_with_the_rest() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(200).await;
    std::fs::write(&path, &three).unwrap();
    // A transaction through the proxy that began before the fence: the fence waits for it.
    // (It only reads: a transaction that wrote would hold up the slots' creation instead.)
    let open = proxy.connect().await;
    let staying = ids_going(&path, false, 1, 1)[0];
    open.batch_execute("BEGIN").await.unwrap();
    let touch = "SELECT note FROM reshard_items WHERE id = $1";
    open.query(touch, &[&staying]).await.unwrap();
    console(&proxy).await.simple_query("RELOAD").await.unwrap();
    let console_client = console(&proxy).await;
    let reshard = tokio::spawn(async move { console_client.simple_query("RESHARD").await });
    let watcher = console(&proxy).await;
    eventually("the fence is up", async || {
        let status = rows(&watcher, "SHOW RESHARD").await;
        status.iter().any(|row| field(row, "phase") == "fence")
    })
    .await;
    // Meanwhile a direct write to a key that moves, on s1, past the proxy.
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.yaml");
    std::fs::write(&two, map_yaml(&shards, &["s0", "s1"])).unwrap();
    let old = Router::new(&shardgate::config::load_shard_map(&two).unwrap());
    let bypass = ids_going(&path, true, 20_000, 50)
        .into_iter()
        .find(|id| {
            let shard = old.shard_of_key("reshard_items", &id.to_string()).unwrap();
            old.map().shard(shard).name == "s1"
        })
        .unwrap();
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'direct')";
    (connect_direct(&shards[1].1).await)
        .execute(insert, &[&bypass])
        .await
        .unwrap();
    assert!(
        !reshard.is_finished(),
        "the fence waits for the open transaction"
    );
    open.batch_execute("COMMIT").await.unwrap();
    reshard.await.unwrap().expect("RESHARD moves the rows");
    let mut expected: Vec<i64> = (1..=200).collect();
    expected.push(bypass);
    assert_placed_ids(&shards, &path, &expected).await;
    assert_no_stream_left(&shards).await;
}

#[tokio::test]
async fn a_target_that_fails_aborts_the_move_and_the_old_map_stays() {
    let target = "datname = 'reshard_s2' AND wait_event_type = 'Lock'";
    a_failing_side_aborts_the_move(2, target, 1).await;
}

#[tokio::test]
async fn a_source_that_fails_mid_copy_aborts_the_move_and_the_old_map_stays() {
    let uri = &cluster().primaries[0];
    let database = uri.rsplit_once('/').unwrap().1.split('?').next().unwrap();
    let source = format!("datname = '{database}'");
    a_failing_side_aborts_the_move(0, &source, 2).await;
}

/// Holds the copy into the new shard, ends the move's connections to shard `shard` that
/// `which` selects in `pg_stat_activity` (at least `at_least` of them), and checks that the
/// move failed naming that shard with nothing moved, nothing prepared and no slot left, the
/// edit still held and the fence down.
async fn a_failing_side_aborts_the_move(shard: usize, which: &str, at_least: i64) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(200).await;
    let before = placement(&shards).await;
    std::fs::write(&path, &three).unwrap();
    let moving = ids_going(&path, true, 10_000, 1)[0];
    let held = hold_target(&shards).await;
    console(&proxy).await.simple_query("RELOAD").await.unwrap();
    let reshard = reshard_copying(&proxy).await;

    let waiting = "FROM pg_stat_activity WHERE application_name = 'shardgate reshard' \
                   AND datname = 'reshard_s2' AND wait_event_type = 'Lock'";
    let observer = connect_direct(&shards[2].1).await;
    eventually("the move waits for the target", async || {
        let sql = format!("SELECT count(*) {waiting}");
        observer
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE starts_with(application_name, 'shardgate reshard') AND {which}"
    );
    let killed = connect_direct(&shards[shard].1)
        .await
        .query(&terminate, &[])
        .await;
    assert!(
        killed.unwrap().len() as i64 >= at_least,
        "the move's connections to {}",
        shards[shard].0
    );
    held.batch_execute("COMMIT").await.unwrap();
    let failed = reshard.await.unwrap().expect_err("the move fails");
    assert!(
        failed.contains(&format!("shard {}", shards[shard].0)),
        "{failed}"
    );

    let console = console(&proxy).await;
    let status = rows(&console, "SHOW RESHARD").await;
    assert!(
        field(&status[0], "state").starts_with("failed"),
        "{status:?}"
    );
    assert!(
        !rows(&console, "SHOW PLAN").await.is_empty(),
        "the edit is still held"
    );
    let mut after = placement(&shards).await;
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "no row moved");
    for (_, uri) in &shards {
        let prepared: i64 = (connect_direct(uri).await)
            .query_one(
                "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'shardgate_reshard%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(prepared, 0, "no prepared transaction is left on {uri}");
    }
    assert_no_stream_left(&shards).await;
    // The fence is down: a write to a key the edit would move runs under the old map.
    let client = proxy.connect().await;
    let insert = "INSERT INTO reshard_items (id, note) VALUES ($1, 'after')";
    let written = tokio::time::timeout(SOON, client.execute(insert, &[&moving])).await;
    assert_eq!(written.expect("it does not wait").unwrap(), 1);
    let on_new: i64 = (connect_direct(&shards[2].1).await)
        .query_one("SELECT count(*) FROM reshard_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_new, 0, "the old map placed it");
}

/// A proxy of fleet `fleet` on the shard-map file `path` (as `shardgate run` loads it), with
/// the admin console.
pub(super) async fn fleet_proxy(fleet: &str, path: &std::path::Path) -> TestProxy {
    fleet_proxy_leased(fleet, path, Duration::from_secs(10)).await
}

/// As [`fleet_proxy`], with a lease of `lease` in the fleet.
pub(super) async fn fleet_proxy_leased(
    fleet: &str,
    path: &std::path::Path,
    lease: Duration,
) -> TestProxy {
    let mut config = crate::harness::sharded_config(cluster());
    config.databases[0].shard_map = shardgate::config::load_shard_map(path).unwrap();
    config.databases[0].shard_map_path = path.to_owned();
    config.fleet = Some(fleet.to_owned());
    config.fleet_lease = Some(lease);
    super::with_admin(&mut config);
    TestProxy::start(config).await
}

pub(super) async fn count_through(proxy: &TestProxy) -> i64 {
    let client = proxy.connect().await;
    let sql = "SELECT count(*) FROM reshard_items";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_proxy_started_on_an_edited_file_serves_the_recorded_map_and_holds_the_edit() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let shards = fresh_shards().await;
    let fleet = format!("records-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();

    // The first proxy records the two-shard map as it starts, and writes rows under it.
    let first = fleet_proxy(&fleet, &path).await;
    let client = first.connect().await;
    for id in 1..=100_i64 {
        let sql = "INSERT INTO reshard_items (id, note) VALUES ($1, 'recorded')";
        client.execute(sql, &[&id]).await.unwrap();
    }
    first.proxy.shutdown(Duration::from_secs(5)).await;

    // The file gains a shard while no proxy runs; the next proxy of the fleet holds the edit.
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1", "s2"])).unwrap();
    let second = fleet_proxy(&fleet, &path).await;
    assert_eq!(
        count_through(&second).await,
        100,
        "the recorded map reads every row"
    );
    let moving = ids_going(&path, true, 1, 1)[0];
    let one = "SELECT count(*) FROM reshard_items WHERE id = $1";
    let found: i64 = (second.connect().await)
        .query_one(one, &[&moving])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found, 1,
        "a key the edit would move is read where the rows are"
    );
    reshard_the_held_edit(&console(&second).await).await;
    assert_eq!(count_through(&second).await, 100);
    second.proxy.shutdown(Duration::from_secs(5)).await;

    // The move recorded the new map, without a password.
    let recorded = "SELECT map FROM shardgate.maps_in_force WHERE fleet = $1";
    let on_s0 = connect_direct(&shards[0].1).await;
    eventually("the move is recorded", async || {
        let row = on_s0.query_one(recorded, &[&fleet]).await.unwrap();
        row.get::<_, String>(0).contains("s2")
    })
    .await;
    let text: String = on_s0.query_one(recorded, &[&fleet]).await.unwrap().get(0);
    for (_, uri) in &shards {
        let endpoint = shardgate::config::BackendUri::parse(uri).unwrap();
        assert!(text.contains(&endpoint.to_string()), "{text}");
        if let Some(password) = &endpoint.password {
            let secret = format!(":{password}@");
            assert!(!text.contains(&secret), "no password is recorded: {text}");
        }
    }

    // The next proxy serves the file as it is.
    let third = fleet_proxy(&fleet, &path).await;
    let plan = rows(&console(&third).await, "SHOW PLAN").await;
    assert!(plan.is_empty(), "nothing is held: {plan:?}");
    assert_eq!(count_through(&third).await, 100);
    assert_placed(&shards, &path, 100).await;
    let on_s2 = "SELECT count(*) FROM reshard_items";
    let moved: i64 = (connect_direct(&shards[2].1).await)
        .query_one(on_s2, &[])
        .await
        .unwrap()
        .get(0);
    assert!(moved > 0, "rows moved to the new shard");
}

/// Prepares `sql` on `uri` under the move transaction name `gid`, as a proxy that stopped
/// between a move's PREPARE and COMMIT PREPARED leaves it.
async fn leave_prepared(uri: &str, gid: &str, sql: &str) {
    let direct = connect_direct(uri).await;
    let script = format!("BEGIN; {sql}; PREPARE TRANSACTION '{gid}'");
    direct.batch_execute(&script).await.unwrap();
}

/// The transactions [`leave_prepared`] left (stamps 7001 and 7002) still prepared.
async fn moves_prepared(shards: &[(String, String)]) -> i64 {
    let mut left = 0;
    for (_, uri) in shards {
        let sql = "SELECT count(*) FROM pg_prepared_xacts \
                   WHERE database = current_database() AND starts_with(gid, 'shardgate_reshard_700')";
        left += connect_direct(uri)
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    left
}

#[tokio::test]
async fn a_moves_prepared_leftovers_end_the_way_it_decided() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path, shards, three) = two_shards_with_rows(50).await;
    // A decided move (its decision recorded on the default shard) left its source side
    // prepared: the next proxy of the fleet commits it as it starts.
    let fleet = format!("leftovers-{}", std::process::id());
    std::fs::write(&path, map_yaml(&shards, &["s0", "s1"])).unwrap();
    // A move stopped while it streamed left its slot and publication: dropped at start.
    // (Created first: a slot waits for every running transaction, prepared ones included.)
    let on_s0 = connect_direct(&shards[0].1).await;
    for sql in [
        "CREATE PUBLICATION shardgate_reshard_7003_0",
        "SELECT pg_create_logical_replication_slot('shardgate_reshard_7003_0', 'pgoutput')",
    ] {
        on_s0.batch_execute(sql).await.unwrap();
    }
    let decided = "shardgate_reshard_7001_s0_out";
    let router = Router::new(&shardgate::config::load_shard_map(&path).unwrap());
    let on_s0 = (1..=50_i64)
        .find(|id| {
            let shard = router
                .shard_of_key("reshard_items", &id.to_string())
                .unwrap();
            router.map().shard(shard).name == "s0"
        })
        .unwrap();
    let delete = format!("DELETE FROM reshard_items WHERE id = {on_s0}");
    leave_prepared(&shards[0].1, decided, &delete).await;
    connect_direct(&shards[0].1)
        .await
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS shardgate; \
             CREATE TABLE IF NOT EXISTS shardgate.reshard_decisions (\
             stamp text PRIMARY KEY, decided_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO shardgate.reshard_decisions (stamp) VALUES ('7001') ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    // An undecided one left a target side prepared: the next RESHARD rolls it back.
    let undecided = "shardgate_reshard_7002_s2_in";
    let ghost = "INSERT INTO reshard_items (id, note) VALUES (999999, 'ghost')";
    leave_prepared(&shards[2].1, undecided, ghost).await;
    assert_eq!(moves_prepared(&shards).await, 2);

    let restarted = fleet_proxy(&fleet, &path).await;
    assert_no_stream_left(&shards).await;
    assert_eq!(
        count_through(&restarted).await,
        49,
        "the decided delete committed"
    );
    assert_eq!(
        moves_prepared(&shards).await,
        1,
        "the undecided one is left at start"
    );

    std::fs::write(&path, &three).unwrap();
    let admin = console(&restarted).await;
    admin.simple_query("RELOAD").await.unwrap();
    reshard_the_held_edit(&admin).await;
    assert_eq!(
        moves_prepared(&shards).await,
        0,
        "RESHARD ended what was left"
    );
    assert_eq!(
        count_through(&restarted).await,
        49,
        "the ghost row was rolled back"
    );
    drop(proxy);
}
