//! Readiness and breakers: `/ready` names a primary it cannot reach while `/health` stays up,
//! and a dead primary fails its shard fast (08006) until it is back.
//!
//! Table `br_items` in a cluster of the test's own.

use std::time::Duration;

use shardgate::config::{BackendUri, ReadsFrom, Shard, ShardId};

use super::{eventually, http_get, ops_proxy};
use crate::harness::{TestProxy, sqlstate};

#[tokio::test]
async fn ready_names_an_unreachable_primary() {
    let (proxy, _dir, _) = ops_proxy(|config| {
        config.databases[0].shard_map.shards.push(Shard {
            id: ShardId(2),
            name: "s_gone".into(),
            primary: BackendUri::parse("postgres://app:app@127.0.0.1:1/app").unwrap(),
            replicas: vec![],
            reads: ReadsFrom::Primary,
            consistency: shardgate::config::Consistency::Causal,
            causal_wait: shardgate::config::DEFAULT_CAUSAL_WAIT,
        });
    })
    .await;
    // Once every primary was checked: s_gone's check fails, s0's and s1's pass.
    eventually("/ready names only the unreachable primary", async || {
        let (status, body) = http_get(&proxy, "/ready").await;
        status == 503 && body.contains("s_gone") && !body.contains("s0")
    })
    .await;
    let (status, body) = http_get(&proxy, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("app/s_gone primary"), "{body}");
    assert!(!body.contains("s0"), "{body}");
    assert_eq!(
        http_get(&proxy, "/health").await.0,
        200,
        "alive all the same"
    );
}

/// A dead primary's breaker opens: once a connect attempt failed and the health check cannot
/// reach it either, its clients get 08006 at once (not after the checkout timeout), the other
/// shard keeps serving, and the shard serves again soon after its primary is back.
#[tokio::test]
async fn a_dead_primary_fails_fast_and_comes_back() {
    use shardgate::local_cluster::StopMode;
    let mut own =
        crate::harness::own_cluster(2, 0, shardgate::local_cluster::BackendAuth::ScramSha256);
    let mut config = crate::harness::config_with_tables(
        &own.info,
        "{br_items: {strategy: hash, key: id, key_type: bigint}}",
    );
    config.pool.checkout_timeout = Duration::from_secs(5);
    let proxy = TestProxy::start(config.clone()).await;
    let client = proxy.connect().await;
    client
        .simple_query("CREATE TABLE br_items (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let router = shardgate::router::Router::new(&config.databases[0].shard_map);
    let shard_of = |id: i64| {
        let sql = format!("SELECT * FROM br_items WHERE id = {id}");
        match router.route(&router.plan(&sql), &shardgate::router::Params::none(), None) {
            Ok(shardgate::router::Route::Shard(ShardId(i))) => i,
            other => panic!("{other:?}"),
        }
    };
    let on_s0 = (1..).find(|&id| shard_of(id) == 0).unwrap();
    let on_s1 = (1..).find(|&id| shard_of(id) == 1).unwrap();
    let insert =
        |id: i64| format!("INSERT INTO br_items (id) VALUES ({id}) ON CONFLICT DO NOTHING");
    // A clean stop: what this test is about is the breaker, not crash recovery (see
    // faults.rs for kill -9).
    own.cluster.shards_mut()[1]
        .primary
        .stop_with(StopMode::Fast)
        .unwrap();
    // The first statement pays for finding out (up to the checkout timeout).
    let error = client.simple_query(&insert(on_s1)).await.unwrap_err();
    assert_eq!(sqlstate(&error), "08006", "{error}");
    tokio::time::sleep(Duration::from_millis(600)).await; // a health check or two
    for _ in 0..3 {
        let began = std::time::Instant::now();
        let error = client.simple_query(&insert(on_s1)).await.unwrap_err();
        assert_eq!(sqlstate(&error), "08006", "{error}");
        assert!(
            began.elapsed() < Duration::from_millis(2500),
            "failed fast, not after the 5 s checkout timeout: {:?}",
            began.elapsed()
        );
    }
    client.simple_query(&insert(on_s0)).await.unwrap();
    own.cluster.shards_mut()[1].primary.start().unwrap();
    eventually(
        "the shard serves again once its primary is back",
        async || client.simple_query(&insert(on_s1)).await.is_ok(),
    )
    .await;
}
