//! sqlx through the proxy: its per-connection statement cache (named statements), unprepared
//! queries, transactions and errors, with more sqlx connections than backends.

use futures::future::join_all;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Row};

use crate::harness::{TestProxy, cluster, config};

async fn pool(proxy: &TestProxy, size: u32) -> sqlx::PgPool {
    let url = format!("postgres://app:app@127.0.0.1:{}/app", proxy.port());
    PgPoolOptions::new()
        .max_connections(size)
        .connect(&url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_and_unprepared_queries_across_few_backends() {
    let mut cfg = config(cluster());
    cfg.pool.size = 2;
    let proxy = TestProxy::start(cfg).await;
    let pool = pool(&proxy, 10).await;
    let tasks = (0..20i64).map(|task| {
        let pool = pool.clone();
        async move {
            for i in 0..25i64 {
                let row = sqlx::query("SELECT $1::int8 + $2::int8 AS sum, $3::text AS label, $4::bytea AS bytes, $5::bool AS flag")
                    .bind(task)
                    .bind(i)
                    .bind(format!("t{task}"))
                    .bind(vec![task as u8, i as u8])
                    .bind(i % 2 == 0)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(row.get::<i64, _>("sum"), task + i);
                assert_eq!(row.get::<String, _>("label"), format!("t{task}"));
                assert_eq!(row.get::<Vec<u8>, _>("bytes"), vec![task as u8, i as u8]);
                assert_eq!(row.get::<bool, _>("flag"), i % 2 == 0);
                let unprepared: i64 = sqlx::query_scalar("SELECT $1::int8 * 3")
                    .bind(i)
                    .persistent(false)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(unprepared, i * 3);
            }
        }
    });
    join_all(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_errors() {
    let proxy = TestProxy::shared().await;
    let url = format!("postgres://app:app@127.0.0.1:{}/app", proxy.port());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS sqlx_t; CREATE TABLE sqlx_t (id int8 PRIMARY KEY, note text)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO sqlx_t VALUES ($1, $2)")
        .bind(1i64)
        .bind("kept")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO sqlx_t VALUES ($1, $2)")
        .bind(2i64)
        .bind("dropped")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let err = sqlx::query("INSERT INTO sqlx_t VALUES ($1, NULL)")
        .bind(1i64)
        .execute(&mut conn)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("23505"));
    let notes: Vec<String> = sqlx::query_scalar("SELECT note FROM sqlx_t ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(notes, vec!["kept".to_owned()]);
}
