//! With `transactions.atomic: false`, a COMMIT of a transaction spanning two shards, torn by
//! the second shard: the client's error names the shard that committed and the one whose
//! outcome is unknown (or that rolled back), and the shards hold exactly what it says.

use std::time::Duration;

use shardgate::local_cluster::BackendAuth;

use super::two_shard_transaction;
use super::{ProxyPanics, at_commit_trigger, ids_on, kill_postmaster, restart, stored_ids};
use crate::harness::{TestProxy, config_with_tables, connect_direct, own_cluster};

/// The DETAIL of an error the client got (panics without one).
fn detail(error: &tokio_postgres::Error) -> (String, String, String) {
    let db = error.as_db_error().unwrap_or_else(|| panic!("{error}"));
    let detail = db.detail().unwrap_or_default().to_owned();
    let hint = db.hint().unwrap_or_default().to_owned();
    (db.code().code().to_owned(), detail, hint)
}

/// Asserts the client's error has SQLSTATE `code` and a DETAIL saying each of `says`;
/// returns its HINT.
fn assert_torn(error: &tokio_postgres::Error, code: &str, says: &[&str]) -> String {
    let (got, text, hint) = detail(error);
    assert_eq!(got, code, "{error:?}");
    for part in says {
        assert!(text.contains(part), "{part:?} is not in the DETAIL: {text}");
    }
    hint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_torn_by_a_dying_shard_names_the_shards() {
    let panics = ProxyPanics::watch();
    let mut own = own_cluster(2, 0, BackendAuth::ScramSha256);
    let mut config = config_with_tables(
        &own.info,
        "{ft_torn: {strategy: hash, key: id, key_type: bigint}}",
    );
    // Shard by shard, not atomic (`atomic.rs` tests the default).
    config.transactions.atomic = false;
    let proxy = TestProxy::start(config.clone()).await;
    let setup = proxy.connect().await;
    setup
        .batch_execute("CREATE TABLE ft_torn (id bigint PRIMARY KEY, note text)")
        .await
        .unwrap();
    let s1 = connect_direct(&own.info.primaries[1]).await;
    s1.batch_execute(&at_commit_trigger("ft_torn", 5))
        .await
        .unwrap();
    let (on_s0, on_s1) = (
        ids_on(&config, "ft_torn", 0, 4),
        ids_on(&config, "ft_torn", 1, 4),
    );

    // 1. s1 refuses the COMMIT (an ERROR): s0 committed, s1 rolled back, and the error says so.
    let client = proxy.connect().await;
    two_shard_transaction(&client, "ft_torn", [(on_s0[0], "ok"), (on_s1[0], "refuse")]).await;
    let error = client.batch_execute("COMMIT").await.unwrap_err();
    // The server's own error.
    let says = [
        "Already committed on shards: [s0].",
        "Rolled back on shards: [s1].",
    ];
    let hint = assert_torn(&error, "23514", &says);
    assert!(hint.contains("do not retry"), "{hint}");
    client
        .batch_execute("SELECT 1")
        .await
        .expect("the session goes on");

    // 2. s1's backend is terminated inside the COMMIT (a FATAL from the server): unknown.
    let terminated = proxy.connect().await;
    two_shard_transaction(
        &terminated,
        "ft_torn",
        [(on_s0[3], "ok"), (on_s1[3], "slow")],
    )
    .await;
    let committing = tokio::spawn(async move { terminated.batch_execute("COMMIT").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    s1.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'COMMIT' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    let error = committing.await.unwrap().unwrap_err();
    let says = [
        "Already committed on shards: [s0].",
        "Outcome unknown on shard s1",
    ];
    assert_torn(&error, "08007", &says);

    // 3. s1 dies inside the COMMIT of the backend in use (s0, parked, committed first), and
    //    4. another transaction has s1 parked when it dies, and commits afterwards.
    let in_commit = proxy.connect().await;
    two_shard_transaction(
        &in_commit,
        "ft_torn",
        [(on_s0[1], "ok"), (on_s1[1], "slow")],
    )
    .await;
    let parked = proxy.connect().await;
    two_shard_transaction(&parked, "ft_torn", [(on_s1[2], "ok"), (on_s0[2], "ok")]).await;
    let committing = tokio::spawn(async move { in_commit.batch_execute("COMMIT").await });
    tokio::time::sleep(Duration::from_millis(700)).await; // s0 committed, s1 in pg_sleep
    let primary = &mut own.cluster.shards_mut()[1].primary;
    tokio::task::block_in_place(|| kill_postmaster(primary));
    let error = committing.await.unwrap().unwrap_err();
    // Transaction resolution unknown.
    let says = [
        "Already committed on shards: [s0].",
        "Outcome unknown on shard s1",
    ];
    let hint = assert_torn(&error, "08007", &says);
    assert!(hint.contains("Check on shard s1"), "{hint}");
    tokio::time::sleep(Duration::from_millis(200)).await; // s1's backends notice the death
    let error = parked.batch_execute("COMMIT").await.unwrap_err();
    let says = [
        "Nothing was committed on any shard.",
        "Outcome unknown on shard s1",
        "Rolled back on shards: [s0].",
    ];
    assert_torn(&error, "08007", &says);

    // The shards hold what the errors said: s1 lost both its rows (its backends died before
    // committing), s0 kept the first transaction's row and rolled back the other.
    tokio::task::block_in_place(|| restart(primary));
    let stored = stored_ids(&own.info.primaries, "ft_torn").await;
    let expected = [on_s0[0], on_s0[1], on_s0[3]].into_iter().collect();
    assert_eq!(stored, expected, "only the rows s0 committed");
    panics.assert_none();
}
