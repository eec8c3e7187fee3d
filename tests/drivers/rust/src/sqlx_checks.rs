//! sqlx: prepared statements cached per connection (`query`), unprepared ones
//! (`persistent(false)`, `raw_sql`, `Executor::execute(&str)`), binary results, pools,
//! transactions and raw COPY. sqlx has no query cancel, so there is no `cancel` line.
//! Ids 8_000_000–8_999_999 of matrix_items belong to this suite.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::{TryStreamExt, future::try_join_all};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Row};

use crate::report::{Env, Failure, Outcome, Reporter, check_eq, clean_range, describe_sqlx, eventually, expect_code, sqlx_code};

const LO: i64 = 8_000_000;
const HI: i64 = 8_999_999;
const T: Duration = Duration::from_secs(30);

pub async fn run(env: &Env) {
    let r = Reporter { driver: "sqlx", version: env!("SQLX_VERSION") };
    r.check("connect", T, connect_check(env)).await;
    if let Err(Failure(msg)) = clean_range(env, LO, HI).await {
        println!("FAIL sqlx {} | setup | {msg}", r.version);
    }
    r.check("key_read_write", T, key_read_write(env)).await;
    r.check("types_roundtrip", T, types_roundtrip(env)).await;
    r.check("transaction_commit", T, transaction_commit(env)).await;
    r.check("transaction_rollback", T, transaction_rollback(env)).await;
    r.check("transaction_error", T, transaction_error(env)).await;
    r.check("prepared_reuse", Duration::from_secs(60), prepared_reuse(env)).await;
    r.check("unprepared", Duration::from_secs(60), unprepared(env)).await;
    r.check("raw_sql", T, raw_sql(env)).await;
    r.check("cross_shard_read", T, cross_shard_read(env)).await;
    r.check("copy", T, copy(env)).await;
    r.check("copy_to_by_key", T, copy_to_by_key(env)).await;
    r.check("copy_unmapped_table", T, copy_unmapped(env)).await;
    r.check("refused_error", T, refused_error(env)).await;
    r.check("multi_shard_update", T, multi_shard_update(env)).await;
}

async fn connect(env: &Env) -> Result<PgConnection, Failure> {
    Ok(PgConnection::connect(&env.url()).await?)
}

async fn pool(env: &Env, size: u32) -> Result<PgPool, Failure> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&env.url())
        .await?)
}

fn code_is<T>(result: Result<T, sqlx::Error>, code: &str, what: &str) -> Outcome {
    expect_code(result, code, what, sqlx_code, describe_sqlx)
}

async fn connect_check(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut c).await?;
    check_eq(one, 1, "SELECT 1")
}

async fn key_read_write(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 1;
    sqlx::query("INSERT INTO matrix_items (id, t) VALUES ($1, $2)").bind(id).bind("first").execute(&mut c).await?;
    let get = "SELECT t FROM matrix_items WHERE id = $1";
    let t: String = sqlx::query_scalar(get).bind(id).fetch_one(&mut c).await?;
    check_eq(t.as_str(), "first", "after INSERT")?;
    let n = sqlx::query("UPDATE matrix_items SET t = $2 WHERE id = $1").bind(id).bind("second").execute(&mut c).await?;
    check_eq(n.rows_affected(), 1, "UPDATE count")?;
    let t: String = sqlx::query_scalar(get).bind(id).fetch_one(&mut c).await?;
    check_eq(t.as_str(), "second", "after UPDATE")?;
    let n = sqlx::query("DELETE FROM matrix_items WHERE id = $1").bind(id).execute(&mut c).await?;
    check_eq(n.rows_affected(), 1, "DELETE count")?;
    let left: Option<String> = sqlx::query_scalar(get).bind(id).fetch_optional(&mut c).await?;
    check_eq(left, None, "after DELETE")
}

async fn types_roundtrip(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 10;
    let num: Decimal = "12345678901234.56789".parse().map_err(|e| format!("{e}"))?;
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).ok_or("date")?;
    let ts: DateTime<Utc> = "2024-02-29T12:34:56.789123Z".parse().map_err(|e| format!("{e}"))?;
    let u = uuid::Uuid::parse_str("6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f").map_err(|e| format!("{e}"))?;
    let j = serde_json::json!({"a": 1, "b": [true, null, "x"]});
    let arr: Vec<i32> = vec![1, -2, 3];
    let b: Vec<u8> = vec![0, 1, 2, 92, 255];
    let t = "héllo 'quoted' \\ ☺";
    sqlx::query(
        "INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id).bind(i32::MAX).bind(9_007_199_254_740_993i64).bind(num).bind(std::f64::consts::PI).bind(t)
    .bind(&b).bind(true).bind(d).bind(ts).bind(u).bind(&j).bind(&arr).bind(None::<String>)
    .execute(&mut c)
    .await?;
    let row: PgRow = sqlx::query("SELECT i, big, num, f, t, b, flag, d, ts, u, j, arr, note FROM matrix_items WHERE id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await?;
    check_eq(row.try_get::<i32, _>("i")?, i32::MAX, "int")?;
    check_eq(row.try_get::<i64, _>("big")?, 9_007_199_254_740_993, "bigint")?;
    check_eq(row.try_get::<Decimal, _>("num")?, num, "numeric")?;
    check_eq(row.try_get::<f64, _>("f")?, std::f64::consts::PI, "float8")?;
    check_eq(row.try_get::<String, _>("t")?.as_str(), t, "text")?;
    check_eq(row.try_get::<Vec<u8>, _>("b")?, b, "bytea")?;
    check_eq(row.try_get::<bool, _>("flag")?, true, "bool")?;
    check_eq(row.try_get::<NaiveDate, _>("d")?, d, "date")?;
    check_eq(row.try_get::<DateTime<Utc>, _>("ts")?, ts, "timestamptz")?;
    check_eq(row.try_get::<uuid::Uuid, _>("u")?, u, "uuid")?;
    check_eq(row.try_get::<serde_json::Value, _>("j")?, j, "jsonb")?;
    check_eq(row.try_get::<Vec<i32>, _>("arr")?, arr, "int[]")?;
    check_eq(row.try_get::<Option<String>, _>("note")?, None, "NULL")?;
    sqlx::query("INSERT INTO matrix_items (id, i, num, arr) VALUES ($1, $2, $3, $4)")
        .bind(id + 1).bind(None::<i32>).bind(None::<Decimal>).bind(None::<Vec<i32>>)
        .execute(&mut c)
        .await?;
    let row: PgRow = sqlx::query("SELECT i, num, arr FROM matrix_items WHERE id = $1").bind(id + 1).fetch_one(&mut c).await?;
    check_eq(row.try_get::<Option<i32>, _>("i")?, None, "NULL int")?;
    check_eq(row.try_get::<Option<Decimal>, _>("num")?, None, "NULL numeric")?;
    check_eq(row.try_get::<Option<Vec<i32>>, _>("arr")?, None, "NULL int[]")
}

async fn transaction_commit(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 20;
    let mut tx = c.begin().await?;
    sqlx::query("INSERT INTO matrix_items (id, note) VALUES ($1, 'tx')").bind(id).execute(&mut *tx).await?;
    sqlx::query("UPDATE matrix_items SET note = 'tx-updated' WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    let note: String = sqlx::query_scalar("SELECT note FROM matrix_items WHERE id = $1").bind(id).fetch_one(&mut c).await?;
    check_eq(note.as_str(), "tx-updated", "committed row")
}

async fn transaction_rollback(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 21;
    let mut tx = c.begin().await?;
    sqlx::query("INSERT INTO matrix_items (id, note) VALUES ($1, 'rolled back')").bind(id).execute(&mut *tx).await?;
    let inside: Vec<PgRow> = sqlx::query("SELECT 1 FROM matrix_items WHERE id = $1").bind(id).fetch_all(&mut *tx).await?;
    check_eq(inside.len(), 1, "row inside")?;
    tx.rollback().await?;
    let after: Vec<PgRow> = sqlx::query("SELECT 1 FROM matrix_items WHERE id = $1").bind(id).fetch_all(&mut c).await?;
    check_eq(after.len(), 0, "rows after ROLLBACK")
}

async fn transaction_error(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 22;
    let mut tx = c.begin().await?;
    sqlx::query("INSERT INTO matrix_items (id, note) VALUES ($1, 'doomed')").bind(id).execute(&mut *tx).await?;
    code_is(sqlx::query("SELECT 1 / $1::int").bind(0i32).fetch_one(&mut *tx).await, "22012", "division by zero")?;
    code_is(
        sqlx::query("SELECT note FROM matrix_items WHERE id = $1").bind(id).fetch_all(&mut *tx).await,
        "25P02",
        "statement after the error",
    )?;
    tx.rollback().await?;
    let after: Vec<PgRow> = sqlx::query("SELECT 1 FROM matrix_items WHERE id = $1").bind(id).fetch_all(&mut c).await?;
    check_eq(after.len(), 0, "rows after ROLLBACK")
}

/// A pool of 10 (more than the proxy's 3 per server), 10 tasks × 6 transactions with the same
/// cached prepared statements.
async fn prepared_reuse(env: &Env) -> Outcome {
    let base = LO + 1000;
    let p = pool(env, 10).await?;
    let workers = (0..10i64).map(|w| {
        let p = p.clone();
        async move {
            // Each task keeps its own pooled connection, so 10 are open at once.
            let mut conn = p.acquire().await?;
            for k in 0..6i64 {
                let id = base + w * 100 + k;
                let mut tx = conn.begin().await?;
                sqlx::query("INSERT INTO matrix_items (id, i, note) VALUES ($1, $2, 'prepared')")
                    .bind(id).bind(w as i32).execute(&mut *tx).await?;
                let i: i32 = sqlx::query_scalar("SELECT i FROM matrix_items WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                check_eq(i, w as i32, "select inside the transaction")?;
                tx.commit().await?;
            }
            Ok::<_, Failure>(())
        }
    });
    try_join_all(workers).await?;
    if p.size() < 8 {
        return Err(format!("only {} connections were opened", p.size()).into());
    }
    let count = "SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2";
    eventually(
        || async { Ok::<i64, Failure>(sqlx::query_scalar(count).bind(base).bind(base + 999).fetch_one(&p).await?) },
        60,
        "rows written by the 60 transactions",
    )
    .await
}

/// `persistent(false)`: unnamed statements, parsed again for each execution.
async fn unprepared(env: &Env) -> Outcome {
    let base = LO + 2300;
    let p = pool(env, 8).await?;
    let workers = (0..8i64).map(|w| {
        let p = p.clone();
        async move {
            let mut conn = p.acquire().await?;
            for k in 0..7i64 {
                let mut tx = conn.begin().await?;
                sqlx::query("INSERT INTO matrix_items (id, i) VALUES ($1, $2)")
                    .bind(base + w * 10 + k).bind(k as i32).persistent(false).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Ok::<_, Failure>(())
        }
    });
    try_join_all(workers).await?;
    let count = "SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2";
    eventually(
        || async {
            Ok::<i64, Failure>(sqlx::query_scalar(count).bind(base).bind(base + 99).persistent(false).fetch_one(&p).await?)
        },
        56,
        "rows written without prepared statements",
    )
    .await
}

/// The simple query protocol: raw_sql with several statements, and Executor::execute(&str).
async fn raw_sql(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 2200;
    let done = sqlx::raw_sql(&format!(
        "INSERT INTO matrix_items (id, t) VALUES ({id}, 'simple'); UPDATE matrix_items SET i = 5 WHERE id = {id}"
    ))
    .execute(&mut c)
    .await?;
    check_eq(done.rows_affected(), 2, "rows affected by the two statements")?;
    let rows: Vec<PgRow> = sqlx::raw_sql(&format!("SELECT t, i FROM matrix_items WHERE id = {id}"))
        .fetch_all(&mut c)
        .await?;
    check_eq(rows.len(), 1, "rows")?;
    check_eq(rows[0].try_get::<String, _>("t")?.as_str(), "simple", "t")?;
    let n = c.execute(format!("DELETE FROM matrix_items WHERE id = {id}").as_str()).await?;
    check_eq(n.rows_affected(), 1, "Executor::execute(&str)")
}

async fn cross_shard_read(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let base = LO + 5000;
    let rows: Vec<(i64, i32)> = (0..40).map(|k| (base + k, ((k * 7) % 40) as i32)).collect();
    for (id, i) in &rows {
        sqlx::query("INSERT INTO matrix_items (id, i, t) VALUES ($1, $2, $3)")
            .bind(id).bind(i).bind(format!("row {id}")).execute(&mut c).await?;
    }
    let (lo, hi) = (base, base + 999);
    let top: Vec<(i64, i32)> =
        sqlx::query_as("SELECT id, i FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY i DESC, id LIMIT 5")
            .bind(lo).bind(hi).fetch_all(&mut c).await?;
    let mut want = rows.clone();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(5);
    check_eq(top, want, "ORDER BY i DESC LIMIT 5")?;
    let agg: (i64, i64, i64, i64, Decimal) = sqlx::query_as(
        "SELECT count(*), sum(i), min(id), max(id), avg(i) FROM matrix_items WHERE id BETWEEN $1 AND $2",
    )
    .bind(lo).bind(hi).fetch_one(&mut c).await?;
    let sum: i64 = rows.iter().map(|r| r.1 as i64).sum();
    check_eq(agg, (40, sum, base, base + 39, Decimal::from(sum) / Decimal::from(40)), "count/sum/min/max/avg")
}

async fn copy_out_text(c: &mut PgConnection, sql: &str) -> Result<String, Failure> {
    let chunks: Vec<bytes::Bytes> = c.copy_out_raw(sql).await?.try_collect().await?;
    Ok(chunks.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
}

async fn copy_in_lines(c: &mut PgConnection, sql: &str, lines: &[String]) -> Result<u64, Failure> {
    let mut copy = c.copy_in_raw(sql).await?;
    for chunk in lines.chunks(50) {
        copy.send(chunk.concat().into_bytes()).await?;
    }
    Ok(copy.finish().await?)
}

async fn copy(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let base = LO + 7000;
    let lines: Vec<String> = (0..100).map(|k| format!("{}\t{k}\tcopied {k}\n", base + k)).collect();
    check_eq(copy_in_lines(&mut c, "COPY matrix_items (id, i, t) FROM STDIN", &lines).await?, 100, "COPY count")?;
    let out = copy_out_text(&mut c, &format!("COPY (SELECT id, i, t FROM matrix_items WHERE id = {}) TO STDOUT", base + 1)).await?;
    check_eq(out, lines[1].clone(), "COPY TO STDOUT")
}

async fn copy_to_by_key(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let id = LO + 7500;
    sqlx::query("INSERT INTO matrix_items (id, i, t) VALUES ($1, 7, 'x')").bind(id).execute(&mut c).await?;
    let out = copy_out_text(&mut c, &format!("COPY (SELECT id, i, t FROM matrix_items WHERE id = {id}) TO STDOUT")).await?;
    check_eq(out, format!("{id}\t7\tx\n"), "COPY TO STDOUT")
}

async fn copy_unmapped(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    c.execute("DROP TABLE IF EXISTS drivers_copy_sqlx; CREATE TABLE drivers_copy_sqlx (id bigint PRIMARY KEY, t text)").await?;
    let lines: Vec<String> = (0..1000).map(|k| format!("{k}\tline {k}\n")).collect();
    check_eq(copy_in_lines(&mut c, "COPY drivers_copy_sqlx (id, t) FROM STDIN", &lines).await?, 1000, "COPY count")?;
    let out = copy_out_text(&mut c, "COPY (SELECT id, t FROM drivers_copy_sqlx ORDER BY id) TO STDOUT").await?;
    check_eq(out, lines.concat(), "COPY TO STDOUT")?;
    c.execute("DROP TABLE drivers_copy_sqlx").await?;
    Ok(())
}

/// Writes to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`.
async fn refused_error(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    code_is(sqlx::query("UPDATE matrix_guarded SET note = $1").bind("x").execute(&mut c).await, "0A000", "prepared UPDATE without a key")?;
    code_is(c.execute("UPDATE matrix_guarded SET note = 'x'").await, "0A000", "simple UPDATE without a key")?;
    let three: i32 = sqlx::query_scalar("SELECT 3").fetch_one(&mut c).await?;
    check_eq(three, 3, "query after the refusals")
}

/// `$from, $from+1, …` for the ids: the text of an `IN (…)` list of parameters.
fn placeholders(ids: &[i64], from: usize) -> String {
    (0..ids.len()).map(|k| format!("${}", from + k)).collect::<Vec<_>>().join(", ")
}

/// The notes of the rows `id IN (ids)`, by id (a prepared cross-shard read).
async fn notes<'c, E: Executor<'c, Database = sqlx::Postgres>>(e: E, ids: &[i64]) -> Result<Vec<String>, Failure> {
    let sql = format!("SELECT note FROM matrix_items WHERE id IN ({}) ORDER BY id", placeholders(ids, 1));
    let mut q = sqlx::query_scalar::<sqlx::Postgres, String>(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(e).await?)
}

/// UPDATE and DELETE … WHERE id IN ($2, …) over 8 ids (on both shards of the demo's ring), as
/// cached prepared statements: the proxy runs them on every shard that holds rows (two-phase
/// commit) and sums the counts; inside a transaction the UPDATE joins it and is undone by its
/// rollback.
async fn multi_shard_update(env: &Env) -> Outcome {
    let mut c = connect(env).await?;
    let ids: Vec<i64> = (0..8).map(|k| LO + 8001 + k).collect();
    let n = ids.len() as u64;
    let update = format!("UPDATE matrix_items SET note = $1 WHERE id IN ({})", placeholders(&ids, 2));
    for id in &ids {
        sqlx::query("INSERT INTO matrix_items (id, t) VALUES ($1, 'multi')").bind(id).execute(&mut c).await?;
    }
    let mut q = sqlx::query(&update).bind("first");
    for id in &ids {
        q = q.bind(*id);
    }
    check_eq(q.execute(&mut c).await?.rows_affected(), n, "UPDATE … WHERE id IN (…) count")?;
    let mut tx = c.begin().await?;
    let mut q = sqlx::query(&update).bind("second");
    for id in &ids {
        q = q.bind(*id);
    }
    check_eq(q.execute(&mut *tx).await?.rows_affected(), n, "UPDATE count inside the transaction")?;
    check_eq(notes(&mut *tx, &ids).await?, vec!["second".to_owned(); ids.len()], "notes inside the transaction")?;
    tx.rollback().await?;
    check_eq(notes(&mut c, &ids).await?, vec!["first".to_owned(); ids.len()], "notes after ROLLBACK")?;
    let delete = format!("DELETE FROM matrix_items WHERE id IN ({})", placeholders(&ids, 1));
    let mut q = sqlx::query(&delete);
    for id in &ids {
        q = q.bind(*id);
    }
    check_eq(q.execute(&mut c).await?.rows_affected(), n, "DELETE … WHERE id IN (…) count")?;
    check_eq(notes(&mut c, &ids).await?, Vec::<String>::new(), "rows after the DELETE")
}
