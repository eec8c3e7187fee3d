//! `COPY … FROM STDIN` into sharded and reference tables through the proxy: each row lands on
//! its key's shard (checked on each shard directly), in text, CSV and binary, with and
//! without a column list; all or nothing (a bad row in the middle, a NULL key, a client
//! that leaves mid-COPY leave nothing anywhere); errors name the client's line.
//!
//! Each test has tables of its own (see [`tables`]).

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use shardgate::config::ShardId;
use shardgate::router::Router;

use tokio::io::AsyncWriteExt;

use crate::harness::{TestProxy, cluster, connect_direct, sqlstate};
use crate::raw::{raw_login, read_message};
use crate::support::{config_with_extra_tables, open_transactions};

/// The map entries of test `t`'s tables: `{t}_items` hashed on `id`, `{t}_events` by
/// ranges of `at`, `{t}_docs` by a directory on `tenant`, `{t}_ref` a reference table.
fn tables(t: &str) -> String {
    format!(
        "{t}_items: {{strategy: hash, key: id, key_type: bigint}}\n\
         {t}_events: {{strategy: range, key: at, key_type: integer, ranges: [{{shard: s0, to: 100}}, {{shard: s1, from: 100}}]}}\n\
         {t}_docs: {{strategy: directory, key: tenant, key_type: integer, entries: {{1: s1, 2: s0}}, fallback: hash}}\n\
         {t}_ref: {{strategy: reference}}"
    )
}

/// A proxy over the demo map and test `t`'s tables, created empty (trust authentication,
/// so raw-protocol clients log in too).
async fn proxy(t: &str) -> TestProxy {
    let mut config = config_with_extra_tables(&tables(t));
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t}_items, {t}_events, {t}_docs, {t}_ref; \
             CREATE TABLE {t}_items (id bigint PRIMARY KEY, note text, \
               doubled bigint GENERATED ALWAYS AS (id * 2) STORED); \
             CREATE TABLE {t}_events (at int NOT NULL, what text); \
             CREATE TABLE {t}_docs (tenant int NOT NULL, body text); \
             CREATE TABLE {t}_ref (code text PRIMARY KEY, name text)"
        ))
        .await
        .unwrap();
    proxy
}

/// Sends `data` as one COPY through `client`; the row count or the error.
async fn copy(client: &Client, sql: &str, data: &[u8]) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    for chunk in data.chunks(7_000) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// `SELECT count(*)` of `table` on each shard directly, with `filter`.
async fn per_shard(table: &str, filter: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let sql = format!("SELECT count(*) FROM {table} WHERE {filter}");
        counts.push(direct.query_one(&sql, &[]).await.unwrap().get(0));
    }
    counts
}

/// Rows of `{t}_items` stored on a shard other than their key's, by the library's router.
async fn misplaced(t: &str) -> usize {
    let config = config_with_extra_tables(&tables(t));
    let router = Router::new(&config.databases[0].shard_map);
    let table = format!("{t}_items");
    let mut wrong = 0;
    for (index, uri) in cluster().primaries.iter().enumerate() {
        let direct = connect_direct(uri).await;
        let sql = format!("SELECT id FROM {table}");
        for row in direct.query(&sql, &[]).await.unwrap() {
            let id: i64 = row.get(0);
            let shard = router.shard_of_key(&table, &id.to_string()).unwrap();
            wrong += usize::from(shard != ShardId(index as u32));
        }
    }
    wrong
}

#[tokio::test]
async fn text_rows_land_on_their_keys_shards_and_count_once() {
    let proxy = proxy("cp1").await;
    let client = proxy.connect().await;
    let data: String = (1..=2_000)
        .map(|i| format!("{i}\tnote {i}\\twith tab\n"))
        .collect();
    let rows = copy(
        &client,
        "COPY cp1_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(rows, 2_000);
    let counts = per_shard("cp1_items", "true").await;
    assert_eq!(
        counts.iter().sum::<i64>(),
        2_000,
        "every row once: {counts:?}"
    );
    assert!(
        counts.iter().all(|&n| n > 0),
        "both shards took rows: {counts:?}"
    );
    assert_eq!(misplaced("cp1").await, 0);
    let note: String = client
        .query_one("SELECT note FROM cp1_items WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "note 7\twith tab");
}

#[tokio::test]
async fn csv_with_a_header_quotes_and_no_column_list_reads_the_catalog() {
    let proxy = proxy("cp2").await;
    let client = proxy.connect().await;
    // No column list: id, note (the generated column is not copied).
    let data = "id,note\n\"1\",\"a, b\"\n2,\"two\nlines\"\n\"100\",\"quote \"\" inside\"\n";
    let sql = "COPY cp2_items FROM STDIN (FORMAT csv, HEADER)";
    assert_eq!(copy(&client, sql, data.as_bytes()).await.unwrap(), 3);
    let rows = client
        .query("SELECT id, note, doubled FROM cp2_items ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (1, "a, b".to_owned(), 2),
            (2, "two\nlines".to_owned(), 4),
            (100, "quote \" inside".to_owned(), 200)
        ]
    );
    assert_eq!(misplaced("cp2").await, 0);
}

#[tokio::test]
async fn binary_copy_from_a_driver_places_every_row() {
    let proxy = proxy("cp3").await;
    let client = proxy.connect().await;
    let sink = client
        .copy_in("COPY cp3_items (id, note) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT]);
    futures::pin_mut!(writer);
    for id in 1..=500i64 {
        let note = format!("binary {id}");
        writer.as_mut().write(&[&id, &note]).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 500);
    assert_eq!(
        per_shard("cp3_items", "true").await.iter().sum::<i64>(),
        500
    );
    assert_eq!(misplaced("cp3").await, 0);
}

#[tokio::test]
async fn range_directory_and_reference_tables_take_copies_where_they_belong() {
    let proxy = proxy("cp4").await;
    let client = proxy.connect().await;
    let events = "5\tearly\n150\tlate\n99\tedge\n100\tfrom\n";
    assert_eq!(
        copy(&client, "COPY cp4_events FROM STDIN", events.as_bytes())
            .await
            .unwrap(),
        4
    );
    assert_eq!(per_shard("cp4_events", "true").await, [2, 2]);
    assert_eq!(per_shard("cp4_events", "at < 100").await, [2, 0]);
    let docs = "1,one\n2,two\n1,uno\n";
    let sql = "COPY cp4_docs FROM STDIN WITH (FORMAT csv)";
    assert_eq!(copy(&client, sql, docs.as_bytes()).await.unwrap(), 3);
    assert_eq!(per_shard("cp4_docs", "tenant = 1").await, [0, 2]);
    assert_eq!(per_shard("cp4_docs", "tenant = 2").await, [1, 0]);
    let countries = "fr\tFrance\njp\tJapan\n";
    let rows = copy(&client, "COPY cp4_ref FROM STDIN", countries.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        rows, 2,
        "one server's count, though every shard took both rows"
    );
    assert_eq!(per_shard("cp4_ref", "true").await, [2, 2]);
}

#[tokio::test]
async fn a_bad_row_in_the_middle_leaves_nothing_anywhere_and_names_the_clients_line() {
    let proxy = proxy("cp5").await;
    let client = proxy.connect().await;
    let mut data: String = (1..=100_000).map(|i| format!("{i}\tok\n")).collect();
    // Line 60,001 repeats id 17: a primary-key violation on 17's shard only.
    let at = data.match_indices('\n').nth(59_999).unwrap().0 + 1;
    data.insert_str(at, "17\tagain\n");
    let error = copy(
        &client,
        "COPY cp5_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&error), "23505", "{error:?}");
    let db = error.as_db_error().unwrap();
    let context = db.where_().unwrap_or_default();
    assert!(
        context.contains("line 60001"),
        "the client's line: {context}"
    );
    assert_eq!(per_shard("cp5_items", "true").await, [0, 0]);
    // A NULL key, and a row without the key's field: nothing either.
    // (With the columns the other way round, a row missing its second field misses the key.)
    let cases = [
        ("id, note", "1\tx\n\\N\ty\n", "23502"),
        ("note, id", "x\t1\ny\n", "22P04"),
    ];
    for (columns, data, code) in cases {
        let sql = format!("COPY cp5_items ({columns}) FROM STDIN");
        let error = copy(&client, &sql, data.as_bytes()).await.unwrap_err();
        assert_eq!(sqlstate(&error), code, "{data:?}: {error:?}");
    }
    // The session goes on.
    assert_eq!(
        copy(&client, "COPY cp5_items (id) FROM STDIN", b"3\n")
            .await
            .unwrap(),
        1
    );
    // No key among the columns: refused before any data (on a connection of its own: the
    // driver sends Sync right after Execute, so a COPY refused at Execute is answered twice,
    // as PostgreSQL would answer it).
    let other = proxy.connect().await;
    let error = copy(&other, "COPY cp5_items (note) FROM STDIN", b"x\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
    let stored = per_shard("cp5_items", "true").await;
    assert_eq!(
        stored.iter().sum::<i64>(),
        1,
        "only the row copied after the failures"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_copy_or_failing_it_leaves_nothing() {
    let proxy = proxy("cp6").await;
    let client = proxy.connect().await;
    let mut sink = Box::pin(
        client
            .copy_in::<_, Bytes>("COPY cp6_items (id, note) FROM STDIN")
            .await
            .unwrap(),
    );
    let rows: String = (1..=1_000).map(|i| format!("{i}\tgone\n")).collect();
    sink.send(Bytes::from(rows.clone())).await.unwrap();
    drop(sink); // Dropping the sink unfinished sends CopyFail.
    let after = client.simple_query("SELECT 1").await;
    assert!(
        after.is_ok(),
        "the session goes on after a CopyFail: {after:?}"
    );
    assert_eq!(per_shard("cp6_items", "true").await, [0, 0]);
    // A client whose connection closes in the middle of its data.
    let mut stream = raw_login(&proxy).await;
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("COPY cp6_items (id, note) FROM STDIN", &mut out)
        .unwrap();
    stream.write_all(&out).await.unwrap();
    let (tag, _) = read_message(&mut stream).await.unwrap();
    assert_eq!(tag, b'G', "CopyInResponse");
    let mut data = bytes::BytesMut::new();
    postgres_protocol::message::frontend::CopyData::new(rows.as_bytes())
        .unwrap()
        .write(&mut data);
    stream.write_all(&data).await.unwrap();
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(per_shard("cp6_items", "true").await, [0, 0]);
    assert_eq!(
        open_transactions("cp6_items").await,
        [],
        "no backend left inside the COPY's transaction"
    );
}

#[tokio::test]
async fn a_copy_inside_a_transaction_commits_or_rolls_back_with_it() {
    let proxy = proxy("cp7").await;
    let client = proxy.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    let data: String = (1..=100).map(|i| format!("{i}\tin tx\n")).collect();
    copy(
        &client,
        "COPY cp7_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap();
    let seen: i64 = client
        .query_one("SELECT count(*) FROM cp7_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 100, "the transaction reads its own copied rows");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(per_shard("cp7_items", "true").await, [0, 0]);
    client.batch_execute("BEGIN").await.unwrap();
    copy(
        &client,
        "COPY cp7_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        per_shard("cp7_items", "true").await.iter().sum::<i64>(),
        100
    );
}

/// COPY TO STDOUT of a sharded table, and of a query over several shards in order, is one
/// stream: one header, every row once, in order when the query orders, in text, CSV and
/// binary, through both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_over_several_shards_is_one_stream() {
    use futures::TryStreamExt;
    use tokio_postgres::binary_copy::BinaryCopyOutStream;
    let proxy = proxy("cp8").await;
    let client = proxy.connect().await;
    let data: String = (1..=300).map(|i| format!("{i}\tn\\t{i}\n")).collect();
    copy(
        &client,
        "COPY cp8_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap();
    // Simple protocol (psql), whole table: every row once, in some order.
    let out = proxy
        .psql(&["-c", "COPY cp8_items (id, note) TO STDOUT"], None)
        .await;
    let (out, errors) = crate::harness::text(&out);
    assert!(errors.is_empty(), "{errors}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_by_key(|line| line.split('\t').next().unwrap().parse::<i64>().unwrap());
    let expected: Vec<String> = (1..=300).map(|i| format!("{i}\tn\\t{i}")).collect();
    assert_eq!(lines, expected);
    // Extended protocol (tokio-postgres), ordered CSV with one header.
    let sql = "COPY (SELECT id, note FROM cp8_items WHERE id <= 5 ORDER BY id DESC) \
               TO STDOUT (FORMAT csv, HEADER)";
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let csv: String = chunks.iter().map(|c| String::from_utf8_lossy(c)).collect();
    let rows: String = (1..=5).rev().map(|i| format!("{i},n\t{i}\n")).collect();
    assert_eq!(csv, format!("id,note\n{rows}"));
    // Binary, decoded by the driver.
    let sql = "COPY (SELECT id, note FROM cp8_items ORDER BY id) TO STDOUT (FORMAT binary)";
    let stream = client.copy_out(sql).await.unwrap();
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT]);
    let rows: Vec<_> = rows.try_collect().await.unwrap();
    assert_eq!(rows.len(), 300);
    let first: (i64, String) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(first, (1, "n\t1".to_owned()));
    assert_eq!(rows[299].get::<i64>(0), 300);
}

/// What COPY of a sharded table writes is byte for byte what the shards' own COPY writes
/// (sorted, as the shards' rows interleave): CSV quoting, FORCE_QUOTE of some or all
/// columns, a lone `\.`, NULLs, and an unknown FORCE_QUOTE column refused in PostgreSQL's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_csv_writes_what_postgresql_writes() {
    let proxy = proxy("cp10").await;
    let client = proxy.connect().await;
    let notes = [
        "\\.",
        "a,b",
        "say \"hi\"",
        "",
        "two\nlines",
        "plain",
        "\\.x",
    ];
    for (id, note) in (1i64..).zip(notes) {
        let sql = "INSERT INTO cp10_items (id, note) VALUES ($1, $2)";
        client.execute(sql, &[&id, &note]).await.unwrap();
    }
    client
        .execute("INSERT INTO cp10_items (id, note) VALUES (99, NULL)", &[])
        .await
        .unwrap();
    for options in [
        "FORMAT csv",
        "FORMAT csv, FORCE_QUOTE *",
        "FORMAT csv, FORCE_QUOTE (note), NULL 'x'",
        "FORMAT csv, QUOTE '''', ESCAPE '\\'",
    ] {
        for columns in ["(note)", "(id, note)"] {
            let sql = format!("COPY cp10_items {columns} TO STDOUT ({options})");
            let proxied = sorted_copy(&client, &sql).await.unwrap();
            let mut direct = Vec::new();
            for uri in &cluster().primaries {
                direct.extend(sorted_copy(&connect_direct(uri).await, &sql).await.unwrap());
            }
            direct.sort();
            assert_eq!(proxied, direct, "{sql}");
        }
    }
    let unknown = "COPY cp10_items (id) TO STDOUT (FORMAT csv, FORCE_QUOTE (note))";
    let error = sorted_copy(&client, unknown).await.unwrap_err();
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42P10");
    assert_eq!(
        db.message(),
        "FORCE_QUOTE column \"note\" not referenced by COPY"
    );
}

/// The CopyData payloads of `sql`'s COPY TO STDOUT through `client`, sorted.
async fn sorted_copy(client: &Client, sql: &str) -> Result<Vec<Vec<u8>>, tokio_postgres::Error> {
    use futures::TryStreamExt;
    let stream = client.copy_out(sql).await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    let mut lines: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    lines.sort();
    Ok(lines)
}

/// A shard that cannot start the COPY (its copy of the table is missing) fails it with that
/// shard's error, and the shards that had started keep nothing.
#[tokio::test]
async fn a_shard_refusing_to_start_the_copy_fails_it_everywhere() {
    let proxy = proxy("cp9").await;
    let client = proxy.connect().await;
    let last = cluster().primaries.last().unwrap();
    connect_direct(last)
        .await
        .batch_execute("DROP TABLE cp9_items")
        .await
        .unwrap();
    let data: String = (1..=50).map(|i| format!("{i}\tx\n")).collect();
    let error = copy(
        &client,
        "COPY cp9_items (id, note) FROM STDIN",
        data.as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01", "{error:?}");
    let first = cluster().primaries.first().unwrap();
    let direct = connect_direct(first).await;
    let kept: i64 = direct
        .query_one("SELECT count(*) FROM cp9_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0);
    // (tokio-postgres sends Sync right after Execute: a COPY refused before it started is
    // answered twice, as by PostgreSQL, so the driver's connection is done; a new one works.)
    let again = proxy.connect().await;
    assert!(again.simple_query("SELECT 1").await.is_ok());
}
