//! Which statements the fence holds back in each state, and that a drain waits for exactly the
//! tickets taken before it.

use super::*;
use crate::moves::tests::{THREE, TWO, map};

const USERS: &str = "
  users: {strategy: hash, key: user_id, key_type: bigint}
  orders: {colocated_with: users, key: user_id}
";

struct Maps {
    old: Router,
    moving: Arc<Moving>,
}

fn adding_a_shard() -> Maps {
    Maps {
        old: Router::new(&map(TWO, USERS)),
        moving: Arc::new(Moving::new(
            &map(THREE, USERS),
            vec!["orders".into(), "users".into()],
        )),
    }
}

/// A key the third shard takes, and one that stays.
fn keys(maps: &Maps) -> (i64, i64) {
    let name = |router: &Router, key: i64| {
        let shard = router.shard_of_key("users", &key.to_string()).unwrap();
        router.map().shard(shard).name.clone()
    };
    let moves = (1..)
        .find(|k| name(&maps.moving.router, *k) == "s2")
        .unwrap();
    let stays = (1..)
        .find(|k| name(&maps.moving.router, *k) == name(&maps.old, *k))
        .unwrap();
    (moves, stays)
}

fn verdict(fence: &Fence, maps: &Maps, sql: &str, epoch: u64) -> Verdict {
    let (route, plan) = maps.old.route_simple_planned(sql, None);
    let route = route.unwrap();
    fence.verdict(&Routed {
        sql,
        params: None,
        hint: None,
        plan: &plan,
        route: &route,
        router: &maps.old,
        epoch,
        writes: plan.may_write(),
    })
}

fn insert(key: i64) -> String {
    format!("INSERT INTO users (user_id, name) VALUES ({key}, 'x')")
}

fn select(key: i64) -> String {
    format!("SELECT name FROM users WHERE user_id = {key}")
}

#[test]
fn nothing_is_held_back_while_no_move_runs() {
    let (maps, fence) = (adding_a_shard(), Fence::default());
    let (moves, _) = keys(&maps);
    assert_eq!(verdict(&fence, &maps, &insert(moves), 1), Verdict::Clear);
}

#[test]
fn while_rows_copy_only_writes_to_moving_keys_wait() {
    let (maps, fence) = (adding_a_shard(), Fence::default());
    let (moves, stays) = keys(&maps);
    fence.set(FenceState::Writes(maps.moving.clone()));
    assert_eq!(verdict(&fence, &maps, &insert(moves), 1), Verdict::Blocked);
    let co_located = format!("UPDATE orders SET total = 1 WHERE user_id = {moves}");
    assert_eq!(verdict(&fence, &maps, &co_located, 1), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, &insert(stays), 1), Verdict::Clear);
    assert_eq!(verdict(&fence, &maps, &select(moves), 1), Verdict::Clear);
    // A write without a key runs on every shard, and the new map has one more.
    let everywhere = "UPDATE users SET name = 'y'";
    assert_eq!(verdict(&fence, &maps, everywhere, 1), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, "SELECT 1", 1), Verdict::Clear);
}

#[test]
fn while_the_move_commits_every_statement_on_map_tables_waits() {
    let (maps, fence) = (adding_a_shard(), Fence::default());
    let (_, stays) = keys(&maps);
    fence.set(FenceState::Switching(maps.moving.clone()));
    assert_eq!(verdict(&fence, &maps, &select(stays), 1), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, "SELECT 1", 1), Verdict::Clear);
    let unmapped = "SELECT * FROM audit_log";
    assert_eq!(verdict(&fence, &maps, unmapped, 1), Verdict::Clear);
}

#[test]
fn after_the_switch_only_sessions_on_older_epochs_are_held_back_from_moved_keys() {
    let (maps, fence) = (adding_a_shard(), Fence::default());
    let (moves, stays) = keys(&maps);
    let moving = maps.moving.clone();
    fence.set(FenceState::Switched { epoch: 5, moving });
    assert_eq!(verdict(&fence, &maps, &select(moves), 4), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, &insert(moves), 4), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, &select(stays), 4), Verdict::Clear);
    assert_eq!(verdict(&fence, &maps, &select(moves), 5), Verdict::Clear);
    fence.set(FenceState::Down);
    assert_eq!(verdict(&fence, &maps, &insert(moves), 4), Verdict::Clear);
}

#[test]
fn a_proxy_whose_lease_lapsed_holds_back_every_statement_on_map_tables_whatever_the_state() {
    let (maps, fence) = (adding_a_shard(), Fence::default());
    let (moves, stays) = keys(&maps);
    let mut changes = fence.subscribe();
    assert_eq!(fence.lapses(), 0);
    fence.lapse(true);
    fence.lapse(true);
    assert_eq!(
        fence.lapses(),
        1,
        "a lapse counts once, however often it is told"
    );
    assert!(fence.is_moving(), "a statement may wait for the renewal");
    assert!(
        changes.has_changed().unwrap(),
        "waiting statements look again"
    );
    assert_eq!(verdict(&fence, &maps, &select(stays), 1), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, &insert(moves), 9), Verdict::Blocked);
    assert_eq!(verdict(&fence, &maps, "SELECT 1", 1), Verdict::Clear);
    assert_eq!(
        verdict(&fence, &maps, "SELECT * FROM audit_log", 1),
        Verdict::Clear
    );
    // A move's state set meanwhile holds on once the lease is renewed.
    fence.set(FenceState::Writes(maps.moving.clone()));
    assert_eq!(verdict(&fence, &maps, &select(stays), 1), Verdict::Blocked);
    changes.mark_unchanged();
    fence.lapse(false);
    assert!(
        changes.has_changed().unwrap(),
        "waiting statements look again"
    );
    assert_eq!(verdict(&fence, &maps, &select(stays), 1), Verdict::Clear);
    assert_eq!(verdict(&fence, &maps, &insert(moves), 1), Verdict::Blocked);
    fence.set(FenceState::Down);
    assert!(!fence.is_moving());
    assert_eq!(verdict(&fence, &maps, &insert(moves), 1), Verdict::Clear);
}

#[tokio::test]
async fn a_drain_waits_for_sessions_marked_before_it_and_only_those() {
    let fence = Arc::new(Fence::default());
    let (first, second) = (fence.register(), fence.register());
    let short = Duration::from_millis(30);
    fence.enter(&first);
    assert_eq!(
        fence.drain(short).await,
        Err(1),
        "a session marked before is out"
    );
    first.leave();
    fence.enter(&second);
    assert_eq!(fence.drain(short).await, Err(1), "marked before this drain");
    // A drain after one that ran out still waits for what that one waited for.
    assert_eq!(
        fence.drain(short).await,
        Err(1),
        "marked before the drain before"
    );
    let during = {
        let fence = fence.clone();
        tokio::spawn(async move { fence.drain(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    fence.enter(&first);
    assert!(
        !during.is_finished(),
        "it waits for the session marked before"
    );
    second.leave();
    assert_eq!(
        during.await.unwrap(),
        Ok(()),
        "not for one marked after it started"
    );
    drop(first);
    assert_eq!(
        fence.drain(short).await,
        Ok(()),
        "a session that ended is out of it"
    );
}

const DOCUMENTS: &str = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0}, fallback: hash}
  users: {strategy: hash, key: user_id, key_type: bigint}
";
const DOCUMENTS_MOVED: &str = "
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s1}, fallback: hash}
  users: {strategy: hash, key: user_id, key_type: bigint}
";

/// Tenant 1's entry moves from s0 to s1: the same two shards before and after.
fn moving_a_tenant() -> Maps {
    Maps {
        old: Router::new(&map(TWO, DOCUMENTS)),
        moving: Arc::new(Moving::new(
            &map(TWO, DOCUMENTS_MOVED),
            vec!["documents".into()],
        )),
    }
}

#[test]
fn writes_that_name_a_moving_table_wait_unless_one_unmoved_shard_takes_them() {
    let (maps, fence) = (moving_a_tenant(), Fence::default());
    fence.set(FenceState::Writes(maps.moving.clone()));
    let blocked = [
        // No key: every shard, the same two in both maps, and rows of tenant 1 among them.
        "UPDATE documents SET title = 'x'",
        "DELETE FROM documents WHERE tenant_id IN (1, 2)",
        "UPDATE documents SET title = 'x' WHERE tenant_id = 1",
        // A hint names a shard, not where the rows are.
        "/* shard: s0 */ INSERT INTO documents (tenant_id, doc_id) VALUES (1, 1)",
        "TRUNCATE documents",
    ];
    for sql in blocked {
        assert_eq!(verdict(&fence, &maps, sql, 1), Verdict::Blocked, "{sql}");
    }
    let stays = (2..)
        .find(|tenant: &i64| {
            let on = |router: &Router| {
                let shard = router
                    .shard_of_key("documents", &tenant.to_string())
                    .unwrap();
                router.map().shard(shard).name.clone()
            };
            on(&maps.old) == on(&maps.moving.router)
        })
        .unwrap();
    let clear = [
        format!("UPDATE documents SET title = 'x' WHERE tenant_id = {stays}"),
        "UPDATE users SET name = 'x'".into(),
        "INSERT INTO audit_log VALUES (1)".into(),
    ];
    for sql in &clear {
        assert_eq!(verdict(&fence, &maps, sql, 1), Verdict::Clear, "{sql}");
    }
}
