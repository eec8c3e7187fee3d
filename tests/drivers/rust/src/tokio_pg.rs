//! tokio-postgres: extended protocol with binary results for everything, explicit prepared
//! statements, pipelining (concurrent futures on one client), COPY and cancel tokens.
//! Ids 7_000_000–7_999_999 of matrix_items belong to this suite.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::{SinkExt, TryStreamExt, future::try_join_all};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::report::{
    Env, Failure, Outcome, Reporter, check_eq, clean_range, describe_tokio, eventually, expect_code, tokio_code,
};

const LO: i64 = 7_000_000;
const HI: i64 = 7_999_999;
const T: Duration = Duration::from_secs(30);

pub async fn run(env: &Env) {
    let r = Reporter { driver: "tokio-postgres", version: env!("TOKIO_POSTGRES_VERSION") };
    r.check("connect", T, connect_check(env)).await;
    if let Err(Failure(msg)) = clean_range(env, LO, HI).await {
        println!("FAIL tokio-postgres {} | setup | {msg}", r.version);
    }
    r.check("key_read_write", T, key_read_write(env)).await;
    r.check("types_roundtrip", T, types_roundtrip(env)).await;
    r.check("transaction_commit", T, transaction_commit(env)).await;
    r.check("transaction_rollback", T, transaction_rollback(env)).await;
    r.check("transaction_error", T, transaction_error(env)).await;
    r.check("prepared_reuse", Duration::from_secs(60), prepared_reuse(env)).await;
    r.check("simple_query", T, simple_query(env)).await;
    r.check("pipelining", T, pipelining(env)).await;
    r.check("cross_shard_read", T, cross_shard_read(env)).await;
    r.check("cross_shard_many_rows", T, cross_shard_many_rows(env)).await;
    r.check("large_value", T, large_value(env)).await;
    r.check("copy", T, copy(env)).await;
    r.check("copy_to_by_key", T, copy_to_by_key(env)).await;
    r.check("copy_unmapped_table", T, copy_unmapped(env)).await;
    r.check("cancel", Duration::from_secs(20), cancel(env)).await;
    r.check("cancel_cross_shard", Duration::from_secs(20), cancel_cross_shard(env)).await;
    r.check("refused_error", T, refused_error(env)).await;
    r.check("multi_shard_update", T, multi_shard_update(env)).await;
    r.check("prepare_error_recovery", T, prepare_error_recovery(env)).await;
}

/// A connected client; its connection task ends when the client is dropped.
async fn connect(env: &Env) -> Result<Client, Failure> {
    let (client, conn) = tokio_postgres::connect(&env.conninfo(), NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn code_is(result: Result<impl Sized, tokio_postgres::Error>, code: &str, what: &str) -> Outcome {
    expect_code(result, code, what, tokio_code, describe_tokio)
}

async fn connect_check(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let one: i32 = c.query_one("SELECT 1", &[]).await?.get(0);
    check_eq(one, 1, "SELECT 1")
}

async fn key_read_write(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 1;
    c.execute("INSERT INTO matrix_items (id, t) VALUES ($1, $2)", &[&id, &"first"]).await?;
    let get = c.prepare("SELECT t FROM matrix_items WHERE id = $1").await?;
    let t: String = c.query_one(&get, &[&id]).await?.get(0);
    check_eq(t.as_str(), "first", "after INSERT")?;
    let n = c.execute("UPDATE matrix_items SET t = $2 WHERE id = $1", &[&id, &"second"]).await?;
    check_eq(n, 1, "UPDATE count")?;
    let t: String = c.query_one(&get, &[&id]).await?.get(0);
    check_eq(t.as_str(), "second", "after UPDATE")?;
    let n = c.execute("DELETE FROM matrix_items WHERE id = $1", &[&id]).await?;
    check_eq(n, 1, "DELETE count")?;
    check_eq(c.query(&get, &[&id]).await?.len(), 0, "rows after DELETE")
}

const INSERT_ALL: &str = "INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
const SELECT_ALL: &str =
    "SELECT i, big, num, f, t, b, flag, d, ts, u, j, arr, note FROM matrix_items WHERE id = $1";

/// Every parameter and every result in binary (tokio-postgres' only format).
async fn types_roundtrip(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 10;
    let num: Decimal = "12345678901234.56789".parse().map_err(|e| format!("{e}"))?;
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).ok_or("date")?;
    let ts: DateTime<Utc> = "2024-02-29T12:34:56.789123Z".parse().map_err(|e| format!("{e}"))?;
    let u = uuid::Uuid::parse_str("6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f").map_err(|e| format!("{e}"))?;
    let j = serde_json::json!({"a": 1, "b": [true, null, "x"]});
    let arr: Vec<i32> = vec![1, -2, 3];
    let b: Vec<u8> = vec![0, 1, 2, 92, 255];
    let t = "héllo 'quoted' \\ ☺";
    let none: Option<String> = None;
    c.execute(
        INSERT_ALL,
        &[&id, &i32::MAX, &9_007_199_254_740_993i64, &num, &std::f64::consts::PI, &t, &b, &true, &d, &ts, &u, &j, &arr, &none],
    )
    .await?;
    let row = c.query_one(SELECT_ALL, &[&id]).await?;
    check_eq(row.get::<_, i32>("i"), i32::MAX, "int")?;
    check_eq(row.get::<_, i64>("big"), 9_007_199_254_740_993, "bigint")?;
    check_eq(row.get::<_, Decimal>("num"), num, "numeric")?;
    check_eq(row.get::<_, f64>("f"), std::f64::consts::PI, "float8")?;
    check_eq(row.get::<_, String>("t").as_str(), t, "text")?;
    check_eq(row.get::<_, Vec<u8>>("b"), b, "bytea")?;
    check_eq(row.get::<_, bool>("flag"), true, "bool")?;
    check_eq(row.get::<_, NaiveDate>("d"), d, "date")?;
    check_eq(row.get::<_, DateTime<Utc>>("ts"), ts, "timestamptz")?;
    check_eq(row.get::<_, uuid::Uuid>("u"), u, "uuid")?;
    check_eq(row.get::<_, serde_json::Value>("j"), j, "jsonb")?;
    check_eq(row.get::<_, Vec<i32>>("arr"), arr, "int[]")?;
    check_eq(row.get::<_, Option<String>>("note"), None, "NULL")?;
    // All NULL, every column typed by the server.
    let nulls: [Option<i32>; 1] = [None];
    c.execute(
        "INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr) \
         VALUES ($1, $2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        &[&(id + 1), &nulls[0]],
    )
    .await?;
    let row = c.query_one(SELECT_ALL, &[&(id + 1)]).await?;
    check_eq(row.get::<_, Option<i32>>("i"), None, "NULL int")?;
    check_eq(row.get::<_, Option<Decimal>>("num"), None, "NULL numeric")?;
    check_eq(row.get::<_, Option<Vec<i32>>>("arr"), None, "NULL int[]")
}

async fn transaction_commit(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 20;
    let tx = c.transaction().await?;
    tx.execute("INSERT INTO matrix_items (id, note) VALUES ($1, 'tx')", &[&id]).await?;
    tx.execute("UPDATE matrix_items SET note = 'tx-updated' WHERE id = $1", &[&id]).await?;
    tx.commit().await?;
    let note: String = c.query_one("SELECT note FROM matrix_items WHERE id = $1", &[&id]).await?.get(0);
    check_eq(note.as_str(), "tx-updated", "committed row")
}

async fn transaction_rollback(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 21;
    let tx = c.transaction().await?;
    tx.execute("INSERT INTO matrix_items (id, note) VALUES ($1, 'rolled back')", &[&id]).await?;
    check_eq(tx.query("SELECT 1 FROM matrix_items WHERE id = $1", &[&id]).await?.len(), 1, "row inside")?;
    tx.rollback().await?;
    check_eq(c.query("SELECT 1 FROM matrix_items WHERE id = $1", &[&id]).await?.len(), 0, "rows after ROLLBACK")
}

async fn transaction_error(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 22;
    let tx = c.transaction().await?;
    tx.execute("INSERT INTO matrix_items (id, note) VALUES ($1, 'doomed')", &[&id]).await?;
    code_is(tx.query_one("SELECT 1 / $1::int", &[&0i32]).await, "22012", "division by zero")?;
    code_is(tx.query("SELECT note FROM matrix_items WHERE id = $1", &[&id]).await, "25P02", "statement after the error")?;
    tx.rollback().await?;
    check_eq(c.query("SELECT 1 FROM matrix_items WHERE id = $1", &[&id]).await?.len(), 0, "rows after ROLLBACK")
}

/// 10 clients (more than the pool of 3 per server) each prepare two statements once, then use
/// them in 6 transactions: the statements run on backends that never saw the client's Parse.
async fn prepared_reuse(env: &Env) -> Outcome {
    let base = LO + 1000;
    let workers = (0..10i64).map(|w| async move {
        let mut c = connect(env).await?;
        let insert = c.prepare("INSERT INTO matrix_items (id, i, note) VALUES ($1, $2, 'prepared')").await?;
        let select = c.prepare("SELECT i FROM matrix_items WHERE id = $1").await?;
        for k in 0..6i64 {
            let id = base + w * 100 + k;
            let tx = c.transaction().await?;
            tx.execute(&insert, &[&id, &(w as i32)]).await?;
            let i: i32 = tx.query_one(&select, &[&id]).await?.get(0);
            check_eq(i, w as i32, "select inside the transaction")?;
            tx.commit().await?;
        }
        Ok::<_, Failure>(())
    });
    try_join_all(workers).await?;
    let c = connect(env).await?;
    let count = c.prepare("SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2").await?;
    eventually(
        || async { Ok::<i64, Failure>(c.query_one(&count, &[&base, &(base + 999)]).await?.get(0)) },
        60,
        "rows written by the 60 transactions",
    )
    .await
}

/// The simple query protocol: batch_execute and simple_query, several statements at once.
async fn simple_query(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 2200;
    c.batch_execute(&format!(
        "INSERT INTO matrix_items (id, t) VALUES ({id}, 'simple'); UPDATE matrix_items SET i = 5 WHERE id = {id}"
    ))
    .await?;
    let msgs = c
        .simple_query(&format!("SELECT t, i FROM matrix_items WHERE id = {id}; SELECT 2 AS two"))
        .await?;
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|k| r.get(k).unwrap_or("NULL").to_owned()).collect()),
            _ => None,
        })
        .collect();
    check_eq(rows, vec![vec!["simple".to_owned(), "5".to_owned()], vec!["2".to_owned()]], "rows")
}

/// 200 queries in flight on one connection (tokio-postgres pipelines concurrent futures).
async fn pipelining(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 2000;
    c.execute("INSERT INTO matrix_items (id, i) VALUES ($1, 41)", &[&id]).await?;
    let by_key = c.prepare("SELECT i + $2 FROM matrix_items WHERE id = $1").await?;
    let plain = c.prepare("SELECT $1::int").await?;
    let futures = (0..200i32).map(|k| {
        let (c, by_key, plain) = (&c, &by_key, &plain);
        async move {
            let row = if k % 2 == 1 {
                c.query_one(plain, &[&k]).await?
            } else {
                c.query_one(by_key, &[&id, &k]).await?
            };
            Ok::<i32, tokio_postgres::Error>(row.get(0))
        }
    });
    let got = try_join_all(futures).await?;
    let want: Vec<i32> = (0..200).map(|k| if k % 2 == 1 { k } else { 41 + k }).collect();
    check_eq(got, want, "pipelined answers")
}

async fn cross_shard_read(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let base = LO + 5000;
    let insert = c.prepare("INSERT INTO matrix_items (id, i, t) VALUES ($1, $2, $3)").await?;
    let rows: Vec<(i64, i32)> = (0..40).map(|k| (base + k, ((k * 7) % 40) as i32)).collect();
    for (id, i) in &rows {
        c.execute(&insert, &[id, i, &format!("row {id}")]).await?;
    }
    let (lo, hi) = (base, base + 999);
    let top: Vec<(i64, i32)> = c
        .query("SELECT id, i FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY i DESC, id LIMIT 5", &[&lo, &hi])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut want = rows.clone();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(5);
    check_eq(top, want, "ORDER BY i DESC LIMIT 5")?;
    let agg = c
        .query_one(
            "SELECT count(*), sum(i), min(id), max(id), avg(i) FROM matrix_items WHERE id BETWEEN $1 AND $2",
            &[&lo, &hi],
        )
        .await?;
    let sum: i64 = rows.iter().map(|r| r.1 as i64).sum();
    let got = (agg.get::<_, i64>(0), agg.get::<_, i64>(1), agg.get::<_, i64>(2), agg.get::<_, i64>(3));
    check_eq(got, (40, sum, base, base + 39), "count/sum/min/max")?;
    check_eq(agg.get::<_, Decimal>(4), Decimal::from(sum) / Decimal::from(40), "avg")
}

/// 2000 rows over both shards, streamed back in binary through the k-way merge (ORDER BY
/// DESC) and the pipelined inserts that wrote them.
async fn cross_shard_many_rows(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let base = LO + 10_000;
    let insert = c.prepare("INSERT INTO matrix_items (id, i, t) VALUES ($1, $2, $3)").await?;
    for chunk in (0..2000i64).collect::<Vec<_>>().chunks(200) {
        try_join_all(chunk.iter().map(|k| {
            let (c, insert) = (&c, &insert);
            async move { c.execute(insert, &[&(base + k), &((k % 97) as i32), &format!("row {k}")]).await }
        }))
        .await?;
    }
    let rows = c
        .query("SELECT id, i, t FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY id DESC", &[&base, &(base + 1999)])
        .await?;
    let got: Vec<(i64, i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let want: Vec<(i64, i32, String)> =
        (0..2000i64).rev().map(|k| (base + k, (k % 97) as i32, format!("row {k}"))).collect();
    check_eq(got.len(), want.len(), "row count")?;
    check_eq(got, want, "rows in ORDER BY id DESC")
}

/// An 8 MiB bytea and an 8 MiB text by key: big rows stream through in both directions.
async fn large_value(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 9000;
    let b: Vec<u8> = (0..8 * 1024 * 1024u32).map(|k| (k.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let t: String = "0123456789abcdef".repeat(512 * 1024);
    c.execute("INSERT INTO matrix_items (id, b, t) VALUES ($1, $2, $3)", &[&id, &b, &t]).await?;
    let row = c.query_one("SELECT b, t, length(b) FROM matrix_items WHERE id = $1", &[&id]).await?;
    check_eq(row.get::<_, i32>(2), b.len() as i32, "length(b) on the server")?;
    if row.get::<_, Vec<u8>>(0) != b {
        return Err("bytea read back differs".into());
    }
    check_eq(row.get::<_, String>(1) == t, true, "text read back equal")
}

async fn copy_out_text(c: &Client, sql: &str) -> Result<String, Failure> {
    let chunks: Vec<Bytes> = c.copy_out(sql).await?.try_collect().await?;
    Ok(chunks.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
}

async fn copy_in_lines(c: &Client, sql: &str, lines: &[String]) -> Result<u64, Failure> {
    let sink = c.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    for chunk in lines.chunks(50) {
        sink.send(Bytes::from(chunk.concat())).await?;
    }
    Ok(sink.finish().await?)
}

/// COPY FROM STDIN into the sharded table, then COPY (SELECT … by key) TO STDOUT.
async fn copy(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let base = LO + 7000;
    let lines: Vec<String> = (0..100).map(|k| format!("{}\t{k}\tcopied {k}\n", base + k)).collect();
    check_eq(copy_in_lines(&c, "COPY matrix_items (id, i, t) FROM STDIN", &lines).await?, 100, "COPY count")?;
    let out = copy_out_text(&c, &format!("COPY (SELECT id, i, t FROM matrix_items WHERE id = {}) TO STDOUT", base + 1)).await?;
    check_eq(out, lines[1].clone(), "COPY TO STDOUT")
}

async fn copy_to_by_key(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let id = LO + 7500;
    c.execute("INSERT INTO matrix_items (id, i, t) VALUES ($1, 7, 'x')", &[&id]).await?;
    let out = copy_out_text(&c, &format!("COPY (SELECT id, i, t FROM matrix_items WHERE id = {id}) TO STDOUT")).await?;
    check_eq(out, format!("{id}\t7\tx\n"), "COPY TO STDOUT")
}

async fn copy_unmapped(env: &Env) -> Outcome {
    let c = connect(env).await?;
    c.batch_execute("DROP TABLE IF EXISTS drivers_copy_tokio; CREATE TABLE drivers_copy_tokio (id bigint PRIMARY KEY, t text)")
        .await?;
    let lines: Vec<String> = (0..1000).map(|k| format!("{k}\tline {k}\n")).collect();
    check_eq(copy_in_lines(&c, "COPY drivers_copy_tokio (id, t) FROM STDIN", &lines).await?, 1000, "COPY count")?;
    let out = copy_out_text(&c, "COPY (SELECT id, t FROM drivers_copy_tokio ORDER BY id) TO STDOUT").await?;
    check_eq(out, lines.concat(), "COPY TO STDOUT")?;
    c.batch_execute("DROP TABLE drivers_copy_tokio").await?;
    Ok(())
}

async fn cancel(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let token = c.cancel_token();
    let sleeper = c.query("SELECT pg_sleep(10)", &[]);
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        token.cancel_query(NoTls).await?;
        Ok::<Instant, Failure>(started)
    };
    let (result, started) = tokio::join!(sleeper, canceller);
    let started = started?;
    code_is(result, "57014", "cancelled pg_sleep(10)")?;
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        return Err(format!("the cancel took {took:?}").into());
    }
    let two: i32 = c.query_one("SELECT 2", &[]).await?.get(0);
    check_eq(two, 2, "query after the cancel")
}

/// A CancelRequest for a cross-shard read cancels it on every shard (README).
async fn cancel_cross_shard(env: &Env) -> Outcome {
    let c = connect(env).await?;
    let token = c.cancel_token();
    // pg_sleep per row of the range: seconds on every shard.
    let slow = c.query(
        "SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2 AND pg_sleep(0.2) IS NOT NULL",
        &[&LO, &HI],
    );
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let started = Instant::now();
        token.cancel_query(NoTls).await?;
        Ok::<Instant, Failure>(started)
    };
    let (result, started) = tokio::join!(slow, canceller);
    let started = started?;
    code_is(result, "57014", "cancelled cross-shard read")?;
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        return Err(format!("the cancel took {took:?}").into());
    }
    let two: i32 = c.query_one("SELECT 2", &[]).await?.get(0);
    check_eq(two, 2, "query after the cancel")
}

/// Writes to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`.
async fn refused_error(env: &Env) -> Outcome {
    let c = connect(env).await?;
    code_is(c.execute("UPDATE matrix_guarded SET note = $1", &[&"x"]).await, "0A000", "extended UPDATE without a key")?;
    code_is(c.batch_execute("UPDATE matrix_guarded SET note = 'x'").await, "0A000", "simple UPDATE without a key")?;
    let three: i32 = c.query_one("SELECT 3", &[]).await?.get(0);
    check_eq(three, 3, "query after the refusals")
}

/// `$from, $from+1, …` for the ids: the text of an `IN (…)` list of parameters.
fn placeholders(ids: &[i64], from: usize) -> String {
    (0..ids.len()).map(|k| format!("${}", from + k)).collect::<Vec<_>>().join(", ")
}

/// The parameters `first` (if any), then the ids.
fn params<'a>(first: Option<&'a (dyn ToSql + Sync)>, ids: &'a [i64]) -> Vec<&'a (dyn ToSql + Sync)> {
    first.into_iter().chain(ids.iter().map(|id| id as &(dyn ToSql + Sync))).collect()
}

/// UPDATE and DELETE … WHERE id IN ($2, …) over 8 ids (on both shards of the demo's ring): the
/// proxy runs them on every shard that holds rows (two-phase commit) and sums the counts; inside
/// a transaction the UPDATE joins it and is undone by its ROLLBACK.
async fn multi_shard_update(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let ids: Vec<i64> = (0..8).map(|k| LO + 8001 + k).collect();
    let n = ids.len() as u64;
    let update = format!("UPDATE matrix_items SET note = $1 WHERE id IN ({})", placeholders(&ids, 2));
    let select = format!("SELECT note FROM matrix_items WHERE id IN ({}) ORDER BY id", placeholders(&ids, 1));
    let (first, second) = ("first", "second");
    let id_params = params(None, &ids);
    for id in &ids {
        c.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'multi')", &[id]).await?;
    }
    check_eq(c.execute(&update, &params(Some(&first), &ids)).await?, n, "UPDATE … WHERE id IN (…) count")?;
    let tx = c.transaction().await?;
    check_eq(tx.execute(&update, &params(Some(&second), &ids)).await?, n, "UPDATE count inside the transaction")?;
    let inside: Vec<String> = tx.query(&select, &id_params).await?.iter().map(|r| r.get(0)).collect();
    check_eq(inside, vec!["second".to_owned(); ids.len()], "notes inside the transaction")?;
    tx.rollback().await?;
    let after: Vec<String> = c.query(&select, &id_params).await?.iter().map(|r| r.get(0)).collect();
    check_eq(after, vec!["first".to_owned(); ids.len()], "notes after ROLLBACK")?;
    let delete = format!("DELETE FROM matrix_items WHERE id IN ({})", placeholders(&ids, 1));
    check_eq(c.execute(&delete, &id_params).await?, n, "DELETE … WHERE id IN (…) count")?;
    check_eq(c.query(&select, &id_params).await?.len(), 0, "rows after the DELETE")
}

/// A statement that fails at Parse (Parse/Describe/Sync) leaves the connection in step.
async fn prepare_error_recovery(env: &Env) -> Outcome {
    let c = connect(env).await?;
    code_is(c.prepare("SELECT * FROM no_such_table_tokio WHERE x = $1").await, "42P01", "prepare on a missing table")?;
    let one: i32 = c.query_one("SELECT 1", &[]).await?.get(0);
    let two: i32 = c.query_one("SELECT $1::int", &[&2i32]).await?.get(0);
    check_eq((one, two), (1, 2), "the next statements")?;
    // The same over 20 fresh connections: a backend left in a bad state would show up here.
    for _ in 0..20 {
        let c = connect(env).await?;
        let _ = c.prepare("SELECT * FROM no_such_table_tokio").await;
    }
    let c = connect(env).await?;
    let n: i32 = c.query_one("SELECT 4", &[]).await?.get(0);
    check_eq(n, 4, "a fresh connection afterwards")
}
