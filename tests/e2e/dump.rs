//! pg_dump and pg_restore through the proxy: a sharded database dumped through one proxy and
//! restored through another into empty shards ends up row for row where it was, on every
//! shard, in plain format (psql) and custom format (pg_restore, in one transaction).

use std::path::Path;
use std::process::Command;

use shardgate::local_cluster::{BackendAuth, PgBinaries};

use crate::harness::{
    ClusterInfo, DATABASE, TestProxy, config_for_map, connect_direct, demo_map, own_cluster,
    run_with_stdin, text,
};

/// Every table of the test database: the demo's map tables and an unmapped one.
const TABLES: [&str; 6] = [
    "users",
    "orders",
    "events",
    "documents",
    "countries",
    "notes",
];

/// The demo tables, a type a sharded table uses, and an unmapped table with a sequence.
const SCHEMA: &str = "CREATE TYPE tier AS ENUM ('free', 'pro');
ALTER TABLE users ADD COLUMN tier tier NOT NULL DEFAULT 'free';
CREATE TABLE notes (id serial PRIMARY KEY, body text);";

/// Rows for every table: users through COPY, the rest through INSERT.
fn rows_sql() -> String {
    let mut sql = String::from("COPY users (user_id, name, country, tier) FROM STDIN;\n");
    for id in 1..=3000 {
        let tier = if id % 3 == 0 { "pro" } else { "free" };
        let country = if id % 7 == 0 { "\\N" } else { "FR" };
        sql.push_str(&format!("{id}\tuser {id}\t{country}\t{tier}\n"));
    }
    sql.push_str("\\.\n");
    for id in 1..=400 {
        sql.push_str(&format!(
            "INSERT INTO orders (order_id, user_id, amount) VALUES ({id}, {}, {id}.25);\n",
            id * 7
        ));
    }
    for (year, month, day) in event_days() {
        sql.push_str(&format!(
            "INSERT INTO events VALUES ('{year}-{month:02}-{day:02} 10:00', 'k{month}', '{{\"d\": {day}}}');\n"
        ));
    }
    for tenant in 1..=12 {
        for doc in 1..=5 {
            sql.push_str(&format!(
                "INSERT INTO documents VALUES ({tenant}, {doc}, 'doc {tenant}-{doc}');\n"
            ));
        }
    }
    sql.push_str(
        "INSERT INTO countries VALUES ('FR', 'France'), ('JP', 'Japan'), ('BR', 'Brazil');\n",
    );
    sql.push_str("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 25) g;\n");
    sql
}

/// Days in 2025 and 2026, so events lie on both sides of the range boundary.
fn event_days() -> impl Iterator<Item = (u32, u32, u32)> {
    (2025..=2026).flat_map(|y| (1..=12).flat_map(move |m| (1..=5).map(move |d| (y, m, d))))
}

/// A proxy over `cluster` with the demo map, creating nothing on the shards.
async fn proxy_on(cluster: &ClusterInfo) -> TestProxy {
    TestProxy::start(config_for_map(cluster, &demo_map(cluster))).await
}

/// Runs psql through `proxy` on `stdin`, stopping at the first error; panics on failure.
async fn psql_script(proxy: &TestProxy, what: &str, stdin: &str) {
    let output = proxy
        .psql(&["-q", "-v", "ON_ERROR_STOP=1"], Some(stdin))
        .await;
    assert!(output.status.success(), "{what}: {:?}", text(&output));
}

/// A client tool (pg_dump, pg_restore) pointed at `proxy`.
fn tool(program: Option<std::path::PathBuf>, proxy: &TestProxy) -> Command {
    let mut command = proxy.tool(program.expect("PostgreSQL client tools are installed"));
    command.arg("--no-owner");
    command
}

async fn run(command: Command, what: &str) {
    let output = run_with_stdin(command, None).await;
    assert!(output.status.success(), "{what}: {:?}", text(&output));
}

/// Each table's rows on each shard, read directly, in a stable order.
async fn contents(cluster: &ClusterInfo) -> Vec<(String, usize, Vec<String>)> {
    let mut all = Vec::new();
    for (shard, uri) in cluster.primaries.iter().enumerate() {
        let client = connect_direct(uri).await;
        for table in TABLES {
            let exists = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await
                .unwrap()
                .get::<_, bool>(0);
            let sql = format!("SELECT t::text FROM {table} t ORDER BY 1");
            let rows = match exists {
                true => (client.query(&sql, &[]).await.unwrap().iter())
                    .map(|r| r.get::<_, String>(0))
                    .collect(),
                false => Vec::new(),
            };
            all.push((table.to_owned(), shard, rows));
        }
    }
    all
}

/// The unmapped table's sequence, on the default shard.
async fn sequence_position(cluster: &ClusterInfo) -> i64 {
    let client = connect_direct(&cluster.primaries[0]).await;
    let sql = "SELECT last_value FROM notes_id_seq";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Drops everything the dump restores, through the proxy (map tables on every shard).
const DROP_ALL: &str = "DROP TABLE users, orders, events, documents, countries;
DROP TABLE notes;
DROP TYPE tier;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_through_the_proxy_restores_every_row_on_its_shard() {
    let binaries = PgBinaries::find().expect("PostgreSQL binaries");
    let source = own_cluster(2, 0, BackendAuth::ScramSha256);
    let from = proxy_on(&source.info).await;
    let demo_sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("shard-maps/demo.sql");
    let demo_schema = std::fs::read_to_string(demo_sql).unwrap();
    psql_script(&from, "schema", &format!("{demo_schema}\n{SCHEMA}")).await;
    psql_script(&from, "rows", &rows_sql()).await;
    let want = contents(&source.info).await;
    let users_placed = want
        .iter()
        .filter(|(t, _, rows)| t == "users" && !rows.is_empty());
    assert_eq!(users_placed.count(), 2, "users lie on both shards");

    let dir = tempfile::tempdir().unwrap();
    let (plain, custom) = (dir.path().join("plain.sql"), dir.path().join("custom.dump"));
    for (format, file) in [("p", &plain), ("c", &custom)] {
        let mut dump = tool(binaries.pg_dump.clone(), &from);
        dump.args(["-F", format, "--exclude-schema=shardgate", "-f"])
            .arg(file)
            .arg(DATABASE);
        run(dump, "pg_dump").await;
    }
    let script = std::fs::read_to_string(&plain).unwrap();
    assert!(
        !script.contains("shardgate."),
        "the proxy's own schema is left out"
    );
    let copied_users = script
        .split("COPY public.users ")
        .nth(1)
        .and_then(|rest| rest.split("\n\\.\n").next())
        .map(|block| block.lines().count() - 1);
    assert_eq!(copied_users, Some(3000), "every user once in the dump");

    let target = own_cluster(2, 0, BackendAuth::ScramSha256);
    let into = proxy_on(&target.info).await;
    psql_script(&into, "restoring the plain dump", &script).await;
    assert_eq!(contents(&target.info).await, want, "after psql");
    assert_eq!(sequence_position(&target.info).await, 25);

    psql_script(&into, "dropping", DROP_ALL).await;
    assert!(
        contents(&target.info)
            .await
            .iter()
            .all(|(_, _, r)| r.is_empty())
    );
    let mut restore = tool(binaries.pg_restore.clone(), &into);
    restore
        .args(["--single-transaction", "-d", DATABASE])
        .arg(&custom);
    run(restore, "pg_restore").await;
    assert_eq!(contents(&target.info).await, want, "after pg_restore");
    assert_eq!(sequence_position(&target.info).await, 25);
}
