//! tokio-postgres through the proxy: extended protocol, binary results, pipelining, COPY,
//! transactions and cancel.

use std::time::{Duration, SystemTime};

use futures::{SinkExt, future::join_all};

use crate::harness::{TestProxy, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_of_common_types_round_trip_in_binary() {
    let proxy = TestProxy::shared().await;
    let client = proxy.connect().await;
    let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let row = client
        .query_one(
            "SELECT $1::bool, $2::int2, $3::int4, $4::int8, $5::float4, $6::float8, $7::text, $8::bytea, \
             $9::timestamptz, $10::int4[], $11::text",
            &[&true, &7i16, &-42i32, &(1i64 << 40), &1.5f32, &-2.25f64, &"héllo", &vec![0u8, 255, 7], &now, &vec![1i32, 2, 3], &None::<String>],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), 7);
    assert_eq!(row.get::<_, i32>(2), -42);
    assert_eq!(row.get::<_, i64>(3), 1 << 40);
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(row.get::<_, f64>(5), -2.25);
    assert_eq!(row.get::<_, &str>(6), "héllo");
    assert_eq!(row.get::<_, Vec<u8>>(7), vec![0, 255, 7]);
    assert_eq!(row.get::<_, SystemTime>(8), now);
    assert_eq!(row.get::<_, Vec<i32>>(9), vec![1, 2, 3]);
    assert_eq!(row.get::<_, Option<String>>(10), None);
    let numeric: String = client
        .query_one("SELECT (12345678901234567890.125::numeric * 2)::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(numeric, "24691357802469135780.250");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let proxy = TestProxy::shared().await;
    let mut client = proxy.connect().await;
    client
        .batch_execute("DROP TABLE IF EXISTS rd_tx; CREATE TABLE rd_tx (id int PRIMARY KEY)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO rd_tx VALUES (1)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO rd_tx VALUES (2)", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let err = tx
        .execute("INSERT INTO rd_tx VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let err = tx.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    drop(tx);
    let ids: Vec<i32> = client
        .query("SELECT id FROM rd_tx ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_share_one_connection() {
    let proxy = TestProxy::shared().await;
    let client = proxy.connect().await;
    let statement = client.prepare("SELECT $1::int4 * 2").await.unwrap();
    // tokio-postgres pipelines concurrent queries on one connection.
    let queries = (0..200).map(|i| {
        let client = &client;
        let statement = &statement;
        async move {
            client
                .query_one(statement, &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    let results = join_all(queries).await;
    assert_eq!(results, (0..200).map(|i| i * 2).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_over_the_extended_protocol() {
    let proxy = TestProxy::shared().await;
    let client = proxy.connect().await;
    client
        .batch_execute("DROP TABLE IF EXISTS rd_copy; CREATE TABLE rd_copy (a int, b text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY rd_copy FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let stream = client
        .copy_out("COPY (SELECT a FROM rd_copy WHERE a < 3 ORDER BY a) TO STDOUT")
        .await
        .unwrap();
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out, b"0\n1\n2\n");
    let count: i64 = client
        .query_one("SELECT count(*) FROM rd_copy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_backend_running_the_query() {
    let proxy = TestProxy::shared().await;
    let client = proxy.connect().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014");
    assert!(started.elapsed() < Duration::from_secs(10));
    canceller.await.unwrap();
    // The session and its next backend are fine afterwards.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
