//! Live shard-map edits: clients keep writing through several reloads (one of them invalid)
//! and lose nothing; an invalid map is rejected and the old one keeps serving.

use std::time::Duration;

use crate::harness::{TestProxy, cluster, connect_direct, demo_map_with_tenants, sharded_config};
use crate::routing::routed_shard;

const WRITERS: i64 = 4;
const ROWS_PER_WRITER: i64 = 120;
const FIRST_ID: i64 = 40_000;
/// Tenants no other test uses, without documents until this test writes one.
const TENANT: i64 = 40_003;
const OTHER_TENANT: i64 = 40_004;

async fn wait_for_epoch(proxy: &TestProxy, epoch: u64) {
    for _ in 0..100 {
        if proxy.proxy.epoch() >= epoch {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("epoch {epoch} never came (at {})", proxy.proxy.epoch());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_edits_under_load_lose_no_write_and_drop_no_client() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.yaml");
    std::fs::write(&path, demo_map_with_tenants(&[])).unwrap();
    let mut config = sharded_config(cluster);
    config.databases[0].shard_map_path = path.clone();
    let proxy = TestProxy::start(config).await;
    let last = FIRST_ID + WRITERS * ROWS_PER_WRITER;
    for uri in &cluster.primaries {
        let sql = format!("DELETE FROM users WHERE user_id >= {FIRST_ID} AND user_id < {last}");
        connect_direct(uri).await.execute(&sql, &[]).await.unwrap();
        let sql = format!("DELETE FROM documents WHERE tenant_id IN ({TENANT}, {OTHER_TENANT})");
        connect_direct(uri).await.execute(&sql, &[]).await.unwrap();
    }
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = proxy.connect().await;
        writers.push(tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO users (user_id, name) VALUES ($1, 'reload')")
                .await
                .unwrap();
            for i in 0..ROWS_PER_WRITER {
                let id = FIRST_ID + writer * ROWS_PER_WRITER + i;
                if i % 2 == 0 {
                    client.execute(&insert, &[&id]).await.unwrap();
                } else {
                    let sql = format!("INSERT INTO users (user_id, name) VALUES ({id}, 'reload')");
                    client.batch_execute(&sql).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // A valid edit, picked up from the file.
    // The tenant (no rows yet: the edit is not held) moves to the shard its hash fallback
    // does not give it.
    let hashed = routed_shard(&format!(
        "SELECT 1 FROM documents WHERE tenant_id = {TENANT}"
    ));
    let moved_to = 1 - hashed;
    let moved_name = format!("s{moved_to}");
    std::fs::write(&path, demo_map_with_tenants(&[(TENANT, &moved_name)])).unwrap();
    wait_for_epoch(&proxy, 2).await;
    // An invalid edit: rejected, the old map keeps serving.
    std::fs::write(
        &path,
        demo_map_with_tenants(&[(TENANT, &moved_name), (OTHER_TENANT, "nowhere")]),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        proxy.proxy.epoch(),
        2,
        "an invalid map never becomes an epoch"
    );
    let error = proxy.proxy.reload().await.unwrap_err();
    assert!(
        error.problems.contains("no shard is named \"nowhere\""),
        "{error}"
    );
    // Valid again.
    std::fs::write(
        &path,
        demo_map_with_tenants(&[(TENANT, &moved_name), (OTHER_TENANT, "s0")]),
    )
    .unwrap();
    assert_eq!(proxy.proxy.reload().await.unwrap().epoch, 3);
    for writer in writers {
        writer.await.expect("no writer saw an error");
    }
    let mut total = 0i64;
    for uri in &cluster.primaries {
        let sql =
            format!("SELECT count(*) FROM users WHERE user_id >= {FIRST_ID} AND user_id < {last}");
        total += connect_direct(uri)
            .await
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    assert_eq!(
        total,
        WRITERS * ROWS_PER_WRITER,
        "every acknowledged row, once"
    );
    // The new entry routes: the tenant lives where the edit put it.
    let client = proxy.connect().await;
    client
        .batch_execute(&format!("INSERT INTO documents (tenant_id, doc_id, title) VALUES ({TENANT}, 1, 'x') ON CONFLICT DO NOTHING"))
        .await
        .unwrap();
    let moved: i64 = connect_direct(&cluster.primaries[moved_to])
        .await
        .query_one(
            &format!("SELECT count(*) FROM documents WHERE tenant_id = {TENANT}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, 1);
}
