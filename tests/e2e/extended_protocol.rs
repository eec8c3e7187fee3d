//! The extended query protocol as drivers send it, message by message (`raw::Script`):
//! cross-shard portals with Flush and Describe between Bind and Execute, two portals bound at
//! once, portals suspended by a row limit and resumed, JDBC's one-batch reference write,
//! postgres.js's Parse/Describe/Flush before Sync, and pgjdbc's BEGIN sent in one batch with
//! the transaction's first statement.
//!
//! Tables `rv_fd1` to `rv_fd11` (hash on id, rows 1..=20), one per test; `countries` row 'jd';
//! the first user from 90_301 on shard s1 (read only).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{TestProxy, cluster, connect_direct, wait_for_replicas};
use crate::raw::{Script, exchange, exchange_verbose, raw_login, read_message};
use crate::routing::shard_of_user;
use crate::support::{config_with_extra_tables, insert_ids};

/// A trust-auth proxy with table `name` (hash on id, rows 1..=20), a raw login to it, and a
/// cross-shard read of 10 of its rows.
async fn raw_setup(name: &str) -> (TestProxy, TcpStream, String) {
    raw_setup_with(name, |_| {}).await
}

/// [`raw_setup`] with `adjust` applied to the proxy's config.
async fn raw_setup_with(
    name: &str,
    adjust: impl FnOnce(&mut shardgate::config::Config),
) -> (TestProxy, TcpStream, String) {
    let mut config = config_with_extra_tables(&format!(
        "{name}: {{strategy: hash, key: id, key_type: bigint}}"
    ));
    adjust(&mut config);
    config.auth_method = shardgate::config::ClientAuthMethod::Trust;
    config.users[0].secret = shardgate::config::UserSecret::None;
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    client
        .simple_query(&format!("DROP TABLE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .simple_query(&format!("CREATE TABLE {name} (id bigint PRIMARY KEY)"))
        .await
        .unwrap();
    insert_ids(&client, name, 1..=20).await;
    wait_for_replicas(cluster()).await;
    let stream = raw_login(&proxy).await;
    let sql = format!("SELECT id FROM {name} WHERE id BETWEEN 1 AND 10 ORDER BY id");
    (proxy, stream, sql)
}

/// Parse, Bind, Flush, Describe(portal), Execute, Sync: the Flush answers the held portal's
/// BindComplete, and the Describe that follows still gets its RowDescription.
#[tokio::test]
async fn describe_portal_after_flush_gets_its_row_description() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd1").await;
    let script = Script::new().parse("", &sql).bind("", "").flush();
    let script = script.describe_portal("").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
}

/// Bind of a cross-shard portal, then Describe of its statement, then Execute of the portal:
/// the portal runs when the Describe comes (as a server starts it at its Bind) and its rows
/// are held for the Execute, which gets them all, in order.
#[tokio::test]
async fn describe_statement_between_bind_and_execute_of_a_cross_shard_portal() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd2").await;
    let script = Script::new().parse("rv_s1", &sql).bind("rv_p1", "rv_s1");
    let script = script
        .describe_statement("rv_s1")
        .execute("rv_p1", 0)
        .sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "t", "T", "D×10", "C", "Z"]);
}

/// Two named cross-shard portals bound before either is executed (a pipeline): each Execute
/// gets its own portal's rows.
#[tokio::test]
async fn two_cross_shard_portals_bound_at_once_are_each_answered() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd3").await;
    let script = Script::new().parse("rv_s2", &sql);
    let script = script.bind("rv_pa", "rv_s2").bind("rv_pb", "rv_s2");
    let script = script
        .execute("rv_pa", 4)
        .execute("rv_pb", 0)
        .execute("rv_pa", 0);
    let replies = exchange_verbose(&mut stream, &script.sync()).await;
    let mut expected: Vec<String> = ["1", "2", "2"].map(String::from).to_vec();
    let ids = |range: std::ops::RangeInclusive<i32>| range.map(|i| format!("D:{i}"));
    expected.extend(ids(1..=4).chain(["s".into()]));
    expected.extend(ids(1..=10).chain(["C:SELECT 10".into()]));
    expected.extend(ids(5..=10).chain(["C:SELECT 6".into(), "Z".into()]));
    assert_eq!(replies, expected);
}

/// The ordinary Parse/Bind/Describe/Execute/Sync of a cross-shard read is answered in full,
/// with or without a Flush between Describe and Execute.
#[tokio::test]
async fn a_cross_shard_read_is_answered_in_full_with_or_without_flush() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd4").await;
    let read = || {
        Script::new()
            .parse("", &sql)
            .bind("", "")
            .describe_portal("")
    };
    let tags = exchange(&mut stream, &read().execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
    // Flush after Describe, before Execute.
    let tags = exchange(&mut stream, &read().flush().execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "T", "D×10", "C", "Z"]);
}

/// An Execute with a row limit on a cross-shard portal (asyncpg's fetchrow and fetchval send
/// one) gets that many rows and PortalSuspended, as from one server; a limit above the row
/// count gets them all and CommandComplete.
#[tokio::test]
async fn an_execute_with_a_row_limit_gets_its_rows_and_portal_suspended() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd8").await;
    let script = Script::new()
        .parse("", &sql)
        .bind("", "")
        .describe_portal("");
    let tags = exchange(&mut stream, &script.execute("", 3).sync()).await;
    assert_eq!(tags, ["1", "2", "T", "D×3", "s", "Z"]);
    let script = Script::new().parse("", &sql).bind("", "");
    let tags = exchange(&mut stream, &script.execute("", 50).sync()).await;
    assert_eq!(tags, ["1", "2", "D×10", "C", "Z"]);
}

/// A suspended cross-shard portal resumes where it stopped, as on one server: each Execute
/// gets the next rows in order and PortalSuspended, the last its rows and `SELECT n` of
/// that Execute alone; a Describe of it answers its columns, a Close forgets it. Inside a
/// transaction block it lives across Syncs (pgjdbc's fetch size) until the block ends.
#[tokio::test]
async fn a_suspended_cross_shard_portal_resumes_where_it_stopped() {
    let (_proxy, mut stream, sql) = raw_setup("rv_fd9").await;
    let ids = |range: std::ops::RangeInclusive<i32>| range.map(|i| format!("D:{i}"));
    let script = Script::new().parse("rv_s9", &sql).bind("rv_p9", "rv_s9");
    let script = script.execute("rv_p9", 4).execute("rv_p9", 4);
    let script = script.describe_portal("rv_p9").execute("rv_p9", 4).sync();
    let mut expected = vec!["1".to_string(), "2".into()];
    expected.extend(ids(1..=4).chain(["s".into()]).chain(ids(5..=8)));
    expected.extend(["s".into(), "T".into()]);
    expected.extend(ids(9..=10).chain(["C:SELECT 2".into(), "Z".into()]));
    assert_eq!(exchange_verbose(&mut stream, &script).await, expected);
    // Outside a transaction, the Sync ended the portal.
    let again = Script::new().execute("rv_p9", 4).sync();
    assert_eq!(
        exchange_verbose(&mut stream, &again).await,
        ["E:34000", "Z"]
    );

    let begin = exchange_verbose(&mut stream, &Script::new().query("BEGIN")).await;
    assert_eq!(begin, ["C:BEGIN", "Z"]);
    let script = Script::new()
        .bind("rv_p9", "rv_s9")
        .execute("rv_p9", 6)
        .sync();
    let mut expected = vec!["2".to_string()];
    expected.extend(ids(1..=6).chain(["s".into(), "Z".into()]));
    assert_eq!(exchange_verbose(&mut stream, &script).await, expected);
    let script = Script::new().execute("rv_p9", 4).sync();
    let mut expected: Vec<String> = ids(7..=10).collect();
    expected.extend(["s".into(), "Z".into()]);
    assert_eq!(exchange_verbose(&mut stream, &script).await, expected);
    let script = Script::new().execute("rv_p9", 0).sync();
    assert_eq!(
        exchange_verbose(&mut stream, &script).await,
        ["C:SELECT 0", "Z"]
    );
    let script = Script::new().bind("rv_p9", "rv_s9").execute("rv_p9", 9);
    let script = script.close_portal("rv_p9").sync();
    let replies = exchange_verbose(&mut stream, &script).await;
    assert_eq!(replies[..2], ["2", "D:1"]);
    assert_eq!(replies[10..], ["s", "3", "Z"]);
    let replies = exchange_verbose(&mut stream, &Script::new().execute("rv_p9", 1).sync()).await;
    assert_eq!(replies, ["E:34000", "Z"], "closed: no such portal");
    let end = exchange_verbose(&mut stream, &Script::new().query("ROLLBACK")).await;
    assert_eq!(end, ["C:ROLLBACK", "Z"]);
}

/// The rows a suspended portal keeps are bounded by `limits.max_merge_bytes`: the client
/// gets the rows held within it, and an Execute past them is refused by name (0A000)
/// rather than answered short.
#[tokio::test]
async fn a_suspended_portal_past_its_held_rows_is_refused_by_name() {
    let (_proxy, mut stream, sql) = raw_setup_with("rv_fd10", |config| {
        config.limits.max_merge_bytes = 30;
    })
    .await;
    let script = Script::new().parse("", &sql).bind("", "").execute("", 2);
    let script = script.execute("", 2).execute("", 0).sync();
    let replies = exchange_verbose(&mut stream, &script).await;
    // Rows are held while the held bytes are within 30 (12 bytes a row): 3, 4 and 5; the
    // sixth finds the budget spent.
    let expected = [
        "1", "2", "D:1", "D:2", "s", "D:3", "D:4", "s", "E:0A000", "Z",
    ];
    assert_eq!(replies, expected);
}

/// psycopg 3's named cursor: DECLARE with a parameter through the extended protocol, a
/// Describe of the cursor as a portal, then each FETCH as an unnamed Parse, Bind, Describe of
/// the portal and Execute; the rows come in the merged order, and CLOSE ends the cursor.
#[tokio::test]
async fn a_cursor_declared_and_fetched_through_the_extended_protocol() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd11").await;
    let begin = exchange_verbose(&mut stream, &Script::new().query("BEGIN")).await;
    assert_eq!(begin, ["C:BEGIN", "Z"]);
    let declare = "DECLARE \"pc\" CURSOR FOR SELECT id FROM rv_fd11 WHERE id > $1 ORDER BY id";
    let script = Script::new().parse_typed("", declare, &[20]);
    let script = script
        .bind_text("", "", &[Some("14")])
        .execute("", 0)
        .sync();
    let replies = exchange_verbose(&mut stream, &script).await;
    assert_eq!(replies, ["1", "2", "C:DECLARE CURSOR", "Z"]);
    let described =
        exchange_verbose(&mut stream, &Script::new().describe_portal("pc").sync()).await;
    assert_eq!(described, ["T", "Z"]);
    let fetch = |sql: &str| {
        let script = Script::new().parse("", sql).bind("", "");
        script.describe_portal("").execute("", 0).sync()
    };
    let replies = exchange_verbose(&mut stream, &fetch("FETCH FORWARD 4 FROM \"pc\"")).await;
    assert_eq!(
        replies,
        [
            "1",
            "2",
            "T",
            "D:15",
            "D:16",
            "D:17",
            "D:18",
            "C:FETCH 4",
            "Z"
        ]
    );
    let replies = exchange_verbose(&mut stream, &fetch("FETCH FORWARD 4 FROM pc")).await;
    assert_eq!(replies, ["1", "2", "T", "D:19", "D:20", "C:FETCH 2", "Z"]);
    let replies = exchange_verbose(&mut stream, &fetch("CLOSE pc")).await;
    assert_eq!(replies, ["1", "2", "n", "C:CLOSE CURSOR", "Z"]);
    let replies = exchange_verbose(&mut stream, &fetch("FETCH 1 FROM pc")).await;
    assert!(replies.contains(&"E:34000".to_string()), "{replies:?}");
    let end = exchange_verbose(&mut stream, &Script::new().query("ROLLBACK")).await;
    assert_eq!(end, ["C:ROLLBACK", "Z"]);
}

/// JDBC's shape for a reference-table write: unnamed Parse, Bind with text parameters,
/// Describe of the portal, Execute and Sync in one batch. It runs on every shard and answers
/// as one server would: ParseComplete, BindComplete, NoData, CommandComplete, ReadyForQuery.
#[tokio::test]
async fn an_unnamed_reference_write_in_one_batch_runs_on_every_shard() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd5").await;
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let sql = "DELETE FROM countries WHERE code = 'jd'";
        direct.batch_execute(sql).await.unwrap();
    }
    let sql = "INSERT INTO countries (code, name) VALUES ($1, $2)";
    let script = Script::new().parse_typed("", sql, &[25, 25]);
    let script = script.bind_text("", "", &[Some("jd"), Some("Jdbcland")]);
    let script = script.describe_portal("").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "2", "n", "C", "Z"]);
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let sql = "SELECT count(*) FROM countries WHERE code = 'jd' AND name = 'Jdbcland'";
        let count: i64 = direct.query_one(sql, &[]).await.unwrap().get(0);
        assert_eq!(count, 1, "on {uri}");
    }
}

/// postgres.js prepares with Parse, Describe and Flush, and sends Sync only after the
/// answers. A Parse that fails is answered at the Flush and leaves the session in step: the
/// Sync is answered once and the next statement in full.
#[tokio::test]
async fn a_failed_parse_answered_at_flush_leaves_the_session_in_step() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd6").await;
    let bad = "SELECT * FROM rv_no_such_table WHERE x = $1";
    let script = Script::new()
        .parse("pj1", bad)
        .describe_statement("pj1")
        .flush();
    stream.write_all(script.bytes()).await.unwrap();
    // ParseComplete may come first (a read's Parse waits for the replica it runs on).
    let mut seen = Vec::new();
    while seen.last() != Some(&b'E') && seen.len() < 3 {
        seen.push(read_message(&mut stream).await.unwrap().0);
    }
    assert_eq!(
        seen.last(),
        Some(&b'E'),
        "the statement's error comes at the Flush: {seen:?}"
    );
    stream
        .write_all(Script::new().sync().bytes())
        .await
        .unwrap();
    let mut after = Vec::new();
    while let Ok(Some((tag, _))) = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        read_message(&mut stream),
    )
    .await
    {
        after.push(tag as char);
    }
    assert_eq!(after, ['Z'], "the Sync is answered once");
    let script = Script::new()
        .parse("pj2", "SELECT 1 AS one")
        .describe_statement("pj2");
    let script = script.bind("", "pj2").execute("", 0).sync();
    let tags = exchange(&mut stream, &script).await;
    assert_eq!(tags, ["1", "t", "T", "2", "D×1", "C", "Z"]);
}

/// pgjdbc sends BEGIN through the extended protocol, in one batch with the transaction's
/// first statement: the proxy defers it as it defers a simple BEGIN, so the transaction
/// starts on that statement's shard, whichever it is.
#[tokio::test]
async fn an_extended_protocol_begin_starts_where_the_first_statement_runs() {
    let (_proxy, mut stream, _) = raw_setup("rv_fd7").await;
    let user = (90_301..).find(|&id| shard_of_user(id) == 1).unwrap();
    let sql = format!("SELECT count(*) FROM users WHERE user_id = {user}");
    let script = Script::new().parse("", "BEGIN").bind("", "").execute("", 0);
    let script = script.parse("", &sql).bind("", "").describe_portal("");
    let tags = exchange(&mut stream, &script.execute("", 0).sync()).await;
    assert_eq!(tags, ["1", "2", "C", "1", "2", "T", "D×1", "C", "Z"]);
    let commit = Script::new().query("COMMIT");
    assert_eq!(exchange(&mut stream, &commit).await, ["C", "Z"]);
}
