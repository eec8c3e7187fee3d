//! INSERTs without a column list into sharded tables: the proxy reads the table's columns
//! from the catalog to find the key among the values, through both protocols, split by shard
//! when the rows belong to several; after DDL through the proxy it reads them again.
//!
//! Table `rv_nc` (ids 1–99, its own); users 94_001 … 94_0xx.

use crate::harness::cluster;
use crate::routing::shards_holding;
use crate::routing::two_users_on_different_shards;
use crate::support::{one_value, proxy_with};

#[tokio::test]
async fn an_insert_without_columns_finds_its_key_in_the_catalog_order() {
    let proxy = proxy_with("rv_nc: {strategy: hash, key: id, key_type: bigint}").await;
    let client = proxy.connect().await;
    // The key is not the first column: only the catalog says where it is.
    client
        .batch_execute(
            "DROP TABLE IF EXISTS rv_nc; CREATE TABLE rv_nc (note text, id bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
    let (a, b) = two_users_on_different_shards(94_001);
    let inserted = client
        .execute(
            &format!("INSERT INTO rv_nc VALUES ('simple', {a}), ('simple', {b})"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    let sql = "INSERT INTO rv_nc VALUES ($1, $2)";
    let (c, d) = two_users_on_different_shards(94_051);
    for id in [c, d] {
        client.execute(sql, &[&"bound", &id]).await.unwrap();
    }
    for id in [a, b, c, d] {
        let on = shards_holding(
            cluster(),
            &format!("SELECT count(*) FROM rv_nc WHERE id = {id}"),
        )
        .await;
        assert_eq!(on.len(), 1, "row {id} is on one shard");
        let read = one_value(
            &client,
            &format!("SELECT count(*) FROM rv_nc WHERE id = {id}"),
        )
        .await;
        assert_eq!(
            read.as_deref(),
            Some("1"),
            "row {id} is where its key routes"
        );
    }
    // A column added through the proxy is seen at once.
    client
        .batch_execute("ALTER TABLE rv_nc ADD COLUMN extra int")
        .await
        .unwrap();
    let (e, _) = two_users_on_different_shards(94_081);
    client
        .batch_execute(&format!("INSERT INTO rv_nc VALUES ('wide', {e}, 7)"))
        .await
        .unwrap();
    let extra = one_value(&client, &format!("SELECT extra FROM rv_nc WHERE id = {e}")).await;
    assert_eq!(extra.as_deref(), Some("7"));
}
