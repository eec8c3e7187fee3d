//! The differential test's schema and rows: orders sharded by customer, customers co-located
//! with them, regions copied to every shard. Values are chosen so every aggregate is exact
//! (float8 prices are multiples of 0.25), and every type the merge compares appears.

use std::collections::BTreeMap;

use shardgate::config::raw::RawTable;
use tokio_postgres::Client;

/// Rows of `fo_orders`.
pub const ORDERS: i64 = 1000;
const CUSTOMERS: i64 = 97;

/// The shard-map entries of the test's tables.
pub fn tables() -> BTreeMap<String, RawTable> {
    let yaml = "
fo_orders: {strategy: hash, key: customer_id, key_type: bigint}
fo_customers: {colocated_with: fo_orders, key: customer_id}
fo_regions: {strategy: reference}
";
    serde_yaml::from_str(yaml).expect("test tables parse")
}

const SCHEMA: &str = "
DROP TABLE IF EXISTS fo_orders, fo_customers, fo_regions;
CREATE TABLE fo_orders (
    id bigint NOT NULL,
    customer_id bigint NOT NULL,
    region text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    qty integer NOT NULL,
    small smallint NOT NULL,
    price float8 NOT NULL,
    shipped boolean NOT NULL,
    created date NOT NULL,
    ts timestamptz NOT NULL,
    note text,
    token uuid NOT NULL
);
CREATE TABLE fo_customers (customer_id bigint PRIMARY KEY, name text NOT NULL, tier int NOT NULL);
CREATE TABLE fo_regions (region text PRIMARY KEY, label text NOT NULL);
";

/// Creates the tables and loads the same rows through the proxy and into the oracle.
pub async fn load(proxy: &Client, plain: &Client) {
    for client in [proxy, plain] {
        for statement in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
            client.simple_query(statement).await.expect("schema");
        }
        for insert in inserts() {
            client.simple_query(&insert).await.expect("rows");
        }
    }
}

/// Multi-row INSERTs (split by shard through the proxy).
fn inserts() -> Vec<String> {
    let mut out = Vec::new();
    let order_rows: Vec<String> = (1..=ORDERS).map(order_row).collect();
    for chunk in order_rows.chunks(100) {
        out.push(format!(
            "INSERT INTO fo_orders ({ORDER_COLUMNS}) VALUES {}",
            chunk.join(", ")
        ));
    }
    let customers: Vec<String> = (1..=CUSTOMERS)
        .map(|c| format!("({c}, 'c{:03}', {})", c, c % 3))
        .collect();
    out.push(format!(
        "INSERT INTO fo_customers (customer_id, name, tier) VALUES {}",
        customers.join(", ")
    ));
    out.push(
        "INSERT INTO fo_regions VALUES ('north', 'N'), ('south', 'S'), ('east', 'E'), \
         ('west', 'W'), ('central', 'C')"
            .into(),
    );
    out
}

const ORDER_COLUMNS: &str =
    "id, customer_id, region, amount, qty, small, price, shipped, created, ts, note, token";

fn order_row(i: i64) -> String {
    let regions = ["north", "south", "east", "west", "central"];
    let cents = (i * 37) % 10_000;
    let note = match i % 7 {
        0 => "NULL".to_owned(),
        _ => format!("'n{:03}'", i % 50),
    };
    format!(
        "({i}, {customer}, '{region}', {amount}, {qty}, {small}, {price}, {shipped}, \
         DATE '2026-01-01' + {day}, TIMESTAMPTZ '2026-01-01 00:00:00+00' + interval '{secs} s', \
         {note}, '{token}')",
        customer = (i * 7) % CUSTOMERS + 1,
        region = regions[(i % 5) as usize],
        amount = format_args!("{}.{:02}", cents / 100 - 20, cents % 100),
        qty = i % 13,
        small = i % 5 - 2,
        price = (i % 40) as f64 * 0.25,
        shipped = i % 3 == 0,
        day = i % 60,
        secs = i * 3571,
        token = format_args!(
            "{:08x}-0000-4000-8000-{:012x}",
            (i * 2_654_435_761) % 0xffff_ffff,
            i
        ),
    )
}
