//! Prepared statements after DDL changed their result type, through a pool whose backends
//! clients share: the old statement fails as PostgreSQL fails it (0A000), and the same text
//! prepared again (Parse, or SQL-level PREPARE after DEALLOCATE) sees the new columns.
//!
//! Tables `pl_reshape`, `opr_sqlprep`, `opr_protoprep`; statement `opr_p`. One backend per
//! shard, so a client always lands on the backend that has its statements.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestProxy, cluster, config, sqlstate};

/// A proxy with one backend and table `name (a int)` holding one row, and a client through it.
async fn one_backend_with_table(name: &str) -> (TestProxy, Client) {
    let mut config = config(cluster());
    config.pool.size = 1; // One backend: the client always lands on the one that has it.
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (a int); \
             INSERT INTO {name} VALUES (1)"
        ))
        .await
        .unwrap();
    (proxy, client)
}

/// After DDL changes a prepared statement's result type, PostgreSQL fails the old statement
/// ("cached plan must not change result type") but prepares the same text afresh. Backends
/// are shared, so the proxy must not answer the new Parse with the stale server-side
/// statement: once one backend reported the change, new Parses get a new backend name.
#[tokio::test]
async fn a_statement_prepared_again_after_its_result_type_changed_sees_the_new_columns() {
    let mut config = config(cluster());
    config.pool.size = 1;
    let proxy = TestProxy::start(config).await;
    let a = proxy.connect().await;
    a.batch_execute(
        "DROP TABLE IF EXISTS pl_reshape; CREATE TABLE pl_reshape (id int); \
         INSERT INTO pl_reshape VALUES (1)",
    )
    .await
    .unwrap();
    let sql = "SELECT * FROM pl_reshape";
    let old = a.prepare(sql).await.unwrap();
    assert_eq!(a.query_one(&old, &[]).await.unwrap().len(), 1);
    a.batch_execute("ALTER TABLE pl_reshape ADD COLUMN extra text")
        .await
        .unwrap();
    let error = a.query_one(&old, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "as PostgreSQL: {error}");
    let new = a.prepare(sql).await.unwrap();
    assert_eq!(new.columns().len(), 2);
    assert_eq!(a.query_one(&new, &[]).await.unwrap().len(), 2);
    let b = proxy.connect().await;
    let rows = b.query(sql, &[]).await.unwrap();
    assert_eq!(
        rows[0].len(),
        2,
        "another client preparing the text sees two columns"
    );
}

/// README: "When DDL changes a statement's result type … preparing the same text again gets a
/// fresh server-side statement on every backend". SQL-level PREPARE shares backend-wide names
/// too: after DEALLOCATE, a PREPARE of the same text gets a fresh statement, and EXECUTE sees
/// the new column.
#[tokio::test]
async fn a_sql_prepare_made_again_after_ddl_sees_the_new_columns() {
    let (_proxy, client) = one_backend_with_table("opr_sqlprep").await;
    client
        .simple_query("PREPARE opr_p AS SELECT * FROM opr_sqlprep")
        .await
        .unwrap();
    client.simple_query("EXECUTE opr_p").await.unwrap();
    client
        .simple_query("ALTER TABLE opr_sqlprep ADD COLUMN b int DEFAULT 2")
        .await
        .unwrap();
    let error = client.simple_query("EXECUTE opr_p").await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "as on PostgreSQL: {error}");
    client.simple_query("DEALLOCATE opr_p").await.unwrap();
    client
        .simple_query("PREPARE opr_p AS SELECT * FROM opr_sqlprep")
        .await
        .unwrap();
    let rows = client.simple_query("EXECUTE opr_p").await;
    let _ = client
        .batch_execute("DROP TABLE IF EXISTS opr_sqlprep")
        .await;
    let rows = rows.expect("a statement prepared again after the DDL runs");
    let columns = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.len()),
        _ => None,
    });
    assert_eq!(columns, Some(2));
}

/// The protocol-level counterpart: a Parse of the same text after the old statement failed
/// sees the new column.
#[tokio::test]
async fn a_protocol_prepare_made_again_after_ddl_sees_the_new_columns() {
    let (_proxy, client) = one_backend_with_table("opr_protoprep").await;
    let statement = client.prepare("SELECT * FROM opr_protoprep").await.unwrap();
    client.query(&statement, &[]).await.unwrap();
    client
        .batch_execute("ALTER TABLE opr_protoprep ADD COLUMN b int DEFAULT 2")
        .await
        .unwrap();
    let error = client.query(&statement, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    let again = client.prepare("SELECT * FROM opr_protoprep").await.unwrap();
    let rows = client.query(&again, &[]).await;
    let _ = client
        .batch_execute("DROP TABLE IF EXISTS opr_protoprep")
        .await;
    assert_eq!(rows.unwrap()[0].len(), 2);
}
