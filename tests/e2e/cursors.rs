//! SQL cursors and SQL-level PREPARE/EXECUTE over sharded tables, through the simple
//! protocol as psql and psycopg2's named cursors send them: a cursor whose query reads
//! several shards fetches the merged rows forward, in order, as one server would.
//!
//! Table `cur_items` (hash on id, rows 1..=20).

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestProxy, cluster, wait_for_replicas};
use crate::support::{config_with_extra_tables, insert_ids};

async fn setup(table: &str) -> (TestProxy, Client) {
    let config = config_with_extra_tables(&format!(
        "{table}: {{strategy: hash, key: id, key_type: bigint}}"
    ));
    let proxy = TestProxy::start(config).await;
    let client = proxy.connect().await;
    let create =
        format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigint PRIMARY KEY)");
    client.batch_execute(&create).await.unwrap();
    insert_ids(&client, table, 1..=20).await;
    wait_for_replicas(cluster()).await;
    (proxy, client)
}

/// The first column of each row and the command tag's count, of one simple query.
async fn run(client: &Client, sql: &str) -> (Vec<String>, u64) {
    let messages = client.simple_query(sql).await.unwrap();
    let mut rows = Vec::new();
    let mut count = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(row.get(0).unwrap_or("NULL").to_owned()),
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    (rows, count)
}

fn ids(range: std::ops::RangeInclusive<i32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

async fn sqlstate_of(client: &Client, sql: &str) -> String {
    let error = client.simple_query(sql).await.unwrap_err();
    error
        .code()
        .map(|c| c.code().to_owned())
        .unwrap_or_default()
}

/// A cursor over several shards fetches forward in the merged order, MOVE skips, FETCH ALL
/// takes the rest and an exhausted cursor fetches nothing; a backward FETCH is refused by
/// name (0A000); the cursor ends with its transaction.
#[tokio::test]
async fn a_cross_shard_cursor_fetches_forward_in_merged_order() {
    let (_proxy, client) = setup("cur_items").await;
    client.batch_execute("BEGIN").await.unwrap();
    let declare = "DECLARE c CURSOR FOR SELECT id FROM cur_items WHERE id > 2 ORDER BY id DESC";
    assert_eq!(run(&client, declare).await, (vec![], 0));
    assert_eq!(
        run(&client, "FETCH 3 FROM c").await,
        (ids(18..=20).into_iter().rev().collect(), 3)
    );
    assert_eq!(
        run(&client, "FETCH FORWARD 2 IN c").await,
        (vec!["17".into(), "16".into()], 2)
    );
    assert_eq!(run(&client, "MOVE 10 c").await, (vec![], 10));
    assert_eq!(
        run(&client, "FETCH ALL FROM c").await,
        (vec!["5".into(), "4".into(), "3".into()], 3)
    );
    assert_eq!(run(&client, "FETCH NEXT FROM c").await, (vec![], 0));
    let count = "DECLARE n CURSOR FOR SELECT count(*), max(id) FROM cur_items";
    client.batch_execute(count).await.unwrap();
    assert_eq!(
        run(&client, "FETCH ALL FROM n").await,
        (vec!["20".into()], 1)
    );
    assert_eq!(sqlstate_of(&client, "FETCH PRIOR FROM c").await, "0A000");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(sqlstate_of(&client, "FETCH 1 FROM c").await, "34000");
}

/// Outside a transaction block a cursor needs WITH HOLD, as on one server (25P01); a WITH
/// HOLD cursor over several shards outlives its statement and is closed by CLOSE. A cursor
/// whose query has the key runs on its shard.
#[tokio::test]
async fn hold_cursors_outlive_the_statement_and_key_cursors_run_on_their_shard() {
    let (_proxy, client) = setup("cur_hold").await;
    let declare = "DECLARE c CURSOR FOR SELECT id FROM cur_hold ORDER BY id";
    assert_eq!(sqlstate_of(&client, declare).await, "25P01");
    let held = "DECLARE h BINARY CURSOR WITH HOLD FOR SELECT id FROM cur_hold ORDER BY id";
    client.batch_execute(held).await.unwrap();
    let text = "DECLARE t CURSOR WITH HOLD FOR SELECT id FROM cur_hold ORDER BY id";
    client.batch_execute(text).await.unwrap();
    assert_eq!(run(&client, "FETCH 2 FROM t").await, (ids(1..=2), 2));
    client.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(run(&client, "FETCH 2 FROM t").await, (ids(3..=4), 2));
    let binary = client.simple_query("FETCH 1 FROM h").await.unwrap();
    let row = binary.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::as_bytes).map(<[u8]>::to_vec)),
        _ => None,
    });
    assert_eq!(
        row,
        Some(Some(1i64.to_be_bytes().to_vec())),
        "BINARY rows are binary"
    );
    assert_eq!(run(&client, "CLOSE t").await, (vec![], 0));
    client.batch_execute("CLOSE ALL").await.unwrap();
    assert_eq!(sqlstate_of(&client, "FETCH 1 FROM t").await, "34000");
    assert_eq!(sqlstate_of(&client, "FETCH 1 FROM h").await, "34000");
    client.batch_execute("BEGIN").await.unwrap();
    let keyed = "DECLARE k CURSOR FOR SELECT id FROM cur_hold WHERE id = 7";
    client.batch_execute(keyed).await.unwrap();
    assert_eq!(run(&client, "FETCH ALL FROM k").await, (ids(7..=7), 1));
    client.batch_execute("COMMIT").await.unwrap();
}

/// SQL-level EXECUTE of a prepared read over several shards is merged like the read itself,
/// its constant arguments in place of the parameters (cast to the declared types);
/// arguments that are expressions are refused by name (0A000).
#[tokio::test]
async fn sql_execute_of_a_cross_shard_read_is_merged() {
    let (_proxy, client) = setup("cur_exec").await;
    let prepare =
        "PREPARE after (bigint) AS SELECT id FROM cur_exec WHERE id > $1 ORDER BY id LIMIT 3";
    client.batch_execute(prepare).await.unwrap();
    assert_eq!(run(&client, "EXECUTE after(10)").await, (ids(11..=13), 3));
    assert_eq!(run(&client, "EXECUTE after (17)").await, (ids(18..=20), 3));
    let counting = "PREPARE upto AS SELECT count(*) FROM cur_exec WHERE id <= $1";
    client.batch_execute(counting).await.unwrap();
    assert_eq!(
        run(&client, "EXECUTE upto('5')").await,
        (vec!["5".into()], 1)
    );
    assert_eq!(
        run(&client, "EXECUTE upto(NULL)").await,
        (vec!["0".into()], 1)
    );
    assert_eq!(
        sqlstate_of(&client, "EXECUTE after(abs(-10))").await,
        "0A000"
    );
    let keyed = "PREPARE one (bigint) AS SELECT id FROM cur_exec WHERE id = $1";
    client.batch_execute(keyed).await.unwrap();
    assert_eq!(run(&client, "EXECUTE one(4)").await, (ids(4..=4), 1));
}
