//! The differential test's queries: every kind of cross-shard read the proxy merges, the
//! writes that span shards, and the constructs it must refuse.

/// Whether row order is part of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// ORDER BY fixes the order (its keys are unique).
    Fixed,
    /// Compared as multisets.
    Any,
}

/// One comparison.
pub enum Check {
    /// Same answer in text and binary.
    Same { sql: &'static str, order: Order },
    /// Same binary answer with these parameters (int8).
    WithParams {
        sql: &'static str,
        order: Order,
        params: Vec<i64>,
    },
    /// Same answer through the simple protocol (writes on several shards are simple-protocol
    /// only for now).
    Text { sql: &'static str },
    /// Refused by the proxy with 0A000 (the oracle runs it).
    Refused { sql: &'static str },
}

impl Check {
    pub fn sql(&self) -> &'static str {
        match self {
            Check::Same { sql, .. }
            | Check::WithParams { sql, .. }
            | Check::Text { sql }
            | Check::Refused { sql } => sql,
        }
    }
}

use Order::{Any, Fixed};

fn same(sql: &'static str, order: Order) -> Check {
    Check::Same { sql, order }
}

/// Reads, each answered from every shard and merged.
pub fn reads() -> Vec<Check> {
    // Text output of dates and times follows the client's settings; the merge must not.
    let mut checks = vec![
        same("SET TimeZone = 'Asia/Kolkata'", Any),
        same("SET DateStyle = 'SQL, DMY'", Any),
    ];
    checks.extend(PASS_THROUGH.iter().map(|s| same(s, Any)));
    checks.extend(ORDERED.iter().map(|s| same(s, Fixed)));
    checks.extend(UNORDERED_AGGREGATES.iter().map(|s| same(s, Any)));
    checks.push(Check::WithParams {
        sql: "SELECT id FROM fo_orders WHERE qty > $1 ORDER BY id LIMIT $2",
        order: Fixed,
        params: vec![10, 12],
    });
    checks.push(Check::WithParams {
        sql: "SELECT id, qty FROM fo_orders ORDER BY qty DESC, id LIMIT $1 OFFSET $2",
        order: Fixed,
        params: vec![5, 40],
    });
    checks.push(Check::WithParams {
        sql: "SELECT region, count(*) FROM fo_orders WHERE amount > $1 GROUP BY region \
              HAVING count(*) > $2 ORDER BY 1",
        order: Fixed,
        params: vec![10, 150],
    });
    checks.extend(REFUSED.iter().map(|sql| Check::Refused { sql }));
    checks
}

/// Writes without the shard key (on every shard) and by key.
pub fn writes() -> Vec<Check> {
    vec![
        Check::Text {
            sql: "UPDATE fo_orders SET note = 'upd' WHERE qty = 7",
        },
        Check::Text {
            sql: "DELETE FROM fo_orders WHERE qty = 9 RETURNING id, customer_id",
        },
        same(
            "UPDATE fo_orders SET amount = amount + 1 WHERE customer_id = 5",
            Any,
        ),
        same(
            "SELECT count(*), sum(amount) FROM fo_orders WHERE note = 'upd'",
            Any,
        ),
    ]
}

const PASS_THROUGH: &[&str] = &[
    "SELECT id, customer_id, amount FROM fo_orders",
    "SELECT * FROM fo_orders WHERE qty > 5",
    "SELECT id FROM fo_orders WHERE region = 'north'",
    "SELECT id, note FROM fo_orders WHERE note IS NULL",
    "SELECT o.id, c.name FROM fo_orders o JOIN fo_customers c ON o.customer_id = c.customer_id",
    "SELECT o.id, r.label FROM fo_orders o JOIN fo_regions r ON o.region = r.region WHERE o.qty = 3",
    "SELECT id, customer_id FROM fo_orders WHERE customer_id IN (1, 2, 3, 4, 5)",
    "SELECT DISTINCT region FROM fo_orders",
    "SELECT DISTINCT qty % 4 AS bucket FROM fo_orders",
    "SELECT id FROM fo_orders WHERE id < 0",
];

const ORDERED: &[&str] = &[
    "SELECT id, amount FROM fo_orders ORDER BY id",
    "SELECT id, amount FROM fo_orders ORDER BY amount DESC, id",
    "SELECT id, created FROM fo_orders ORDER BY created, id",
    "SELECT id, ts FROM fo_orders ORDER BY ts DESC, id",
    "SELECT id, note FROM fo_orders ORDER BY note NULLS FIRST, id",
    "SELECT id, note FROM fo_orders ORDER BY note DESC NULLS LAST, id DESC",
    "SELECT id, price FROM fo_orders ORDER BY price, id",
    "SELECT id, shipped FROM fo_orders ORDER BY shipped DESC, id",
    "SELECT id, token FROM fo_orders ORDER BY token",
    "SELECT id, small FROM fo_orders ORDER BY small, qty DESC, id",
    "SELECT id FROM fo_orders ORDER BY customer_id DESC, id",
    "SELECT id, amount * 2 AS doubled FROM fo_orders ORDER BY doubled, id",
    "SELECT id, qty FROM fo_orders ORDER BY 2 DESC, 1",
    "SELECT id FROM fo_orders ORDER BY qty * price, id",
    "SELECT * FROM fo_orders ORDER BY id",
    "SELECT id FROM fo_orders ORDER BY id LIMIT 10",
    "SELECT id FROM fo_orders ORDER BY id LIMIT 10 OFFSET 25",
    "SELECT id, amount FROM fo_orders ORDER BY amount DESC, id LIMIT 5",
    "SELECT id FROM fo_orders ORDER BY id OFFSET 990",
    "SELECT id FROM fo_orders ORDER BY id LIMIT 0",
    "SELECT id FROM fo_orders ORDER BY id FETCH FIRST 3 ROWS ONLY",
    "SELECT id FROM fo_orders ORDER BY id LIMIT ALL OFFSET 995",
    "SELECT o.id, c.name FROM fo_orders o JOIN fo_customers c ON o.customer_id = c.customer_id \
     ORDER BY c.name, o.id LIMIT 20",
    "SELECT count(*) FROM fo_orders",
    "SELECT count(note) FROM fo_orders",
    "SELECT sum(qty) FROM fo_orders",
    "SELECT sum(amount) FROM fo_orders",
    "SELECT sum(customer_id) FROM fo_orders",
    "SELECT sum(small), sum(price) FROM fo_orders",
    "SELECT min(amount), max(amount) FROM fo_orders",
    "SELECT min(created), max(ts), max(price) FROM fo_orders",
    "SELECT min(note), max(note) FROM fo_orders",
    "SELECT avg(qty) FROM fo_orders",
    "SELECT avg(amount), avg(small) FROM fo_orders",
    "SELECT avg(price) FROM fo_orders",
    "SELECT bool_and(shipped), bool_or(shipped), every(qty >= 0) FROM fo_orders",
    "SELECT count(*) FROM fo_orders WHERE qty > 1000",
    "SELECT sum(qty), avg(qty), max(qty), bool_or(shipped) FROM fo_orders WHERE qty > 1000",
    "SELECT count(*) AS n, sum(amount) AS total FROM fo_orders WHERE region = 'south'",
    "SELECT region, count(*) FROM fo_orders GROUP BY region ORDER BY region",
    "SELECT region, sum(amount), avg(amount) FROM fo_orders GROUP BY region ORDER BY 1",
    "SELECT qty, count(*) FROM fo_orders GROUP BY qty ORDER BY count(*) DESC, qty",
    "SELECT region, shipped, count(*) FROM fo_orders GROUP BY region, shipped ORDER BY region, shipped",
    "SELECT region, count(*) FROM fo_orders GROUP BY region HAVING count(*) > 199 ORDER BY region",
    "SELECT region, sum(amount) FROM fo_orders GROUP BY region \
     HAVING sum(amount) > 1000 AND min(qty) < 3 ORDER BY region",
    "SELECT region FROM fo_orders GROUP BY region ORDER BY region",
    "SELECT created, max(amount) FROM fo_orders GROUP BY created ORDER BY created LIMIT 5",
    "SELECT region, count(*) FROM fo_orders GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 2",
    "SELECT note, count(*) FROM fo_orders GROUP BY note ORDER BY note NULLS FIRST",
    "SELECT customer_id, count(*) FROM fo_orders GROUP BY customer_id ORDER BY customer_id LIMIT 7",
    "SELECT customer_id, count(DISTINCT region) FROM fo_orders GROUP BY customer_id ORDER BY 1",
    "SELECT region, min(note), max(note) FROM fo_orders GROUP BY region ORDER BY 1",
    "SELECT c.tier, count(*), sum(o.amount) FROM fo_orders o \
     JOIN fo_customers c ON c.customer_id = o.customer_id GROUP BY c.tier ORDER BY 1",
    "SELECT r.label, count(*) FROM fo_orders o JOIN fo_regions r ON r.region = o.region \
     GROUP BY r.label ORDER BY 1",
    "SELECT region, avg(price), avg(qty) FROM fo_orders GROUP BY region ORDER BY region",
    "SELECT upper(region) AS r, count(*) FROM fo_orders GROUP BY upper(region) ORDER BY r",
    "SELECT DISTINCT region, shipped FROM fo_orders ORDER BY region, shipped",
    "SELECT DISTINCT qty FROM fo_orders ORDER BY qty LIMIT 3",
    "SELECT DISTINCT amount FROM fo_orders ORDER BY amount DESC LIMIT 5",
    "SELECT count(*) FROM fo_orders GROUP BY region ORDER BY 1",
    "SELECT sum(amount) FROM fo_orders GROUP BY region HAVING max(qty) = 12 ORDER BY 1",
    "SELECT avg(amount), count(*) FROM fo_orders WHERE customer_id IN (1, 2, 3, 40, 50)",
    "SELECT region, count(*) FROM fo_orders GROUP BY region ORDER BY count(*) DESC, region \
     LIMIT 1 OFFSET 1",
    "SELECT DISTINCT note FROM fo_orders ORDER BY note NULLS FIRST LIMIT 5",
    "SELECT sum(amount / 3), avg(amount / 7) FROM fo_orders",
    "SELECT region, sum(amount / 3) FROM fo_orders GROUP BY region ORDER BY region",
    "SELECT id FROM fo_orders WHERE qty > 100 ORDER BY id",
    "SELECT price, count(*) FROM fo_orders GROUP BY price ORDER BY price DESC LIMIT 3",
    "SELECT created, count(*) FROM fo_orders GROUP BY created ORDER BY count(*) DESC, created \
     LIMIT 3",
    "SELECT id, ts, created FROM fo_orders ORDER BY ts, id LIMIT 30",
    "SELECT min(ts), max(created) FROM fo_orders",
    "SELECT shipped, min(ts) FROM fo_orders GROUP BY shipped ORDER BY shipped",
];

const UNORDERED_AGGREGATES: &[&str] = &[
    "SELECT region, count(*) FROM fo_orders GROUP BY region",
    "SELECT shipped, sum(qty), min(created) FROM fo_orders GROUP BY shipped",
];

const REFUSED: &[&str] = &[
    "SELECT id, row_number() OVER (ORDER BY id) FROM fo_orders",
    "SELECT count(DISTINCT region) FROM fo_orders",
    "SELECT string_agg(region, ',') FROM fo_orders",
    "SELECT o.id FROM fo_orders o JOIN fo_customers c ON o.qty = c.tier",
    "SELECT id FROM fo_orders UNION SELECT customer_id FROM fo_customers",
    "SELECT id FROM fo_orders WHERE qty = (SELECT max(qty) FROM fo_orders)",
    "SELECT count(*) + 1 FROM fo_orders",
    "SELECT max(amount) - min(amount) FROM fo_orders",
    "SELECT array_agg(id) FROM fo_orders",
    "SELECT avg(price::float4) FROM fo_orders",
    "SELECT DISTINCT ON (region) region, id FROM fo_orders ORDER BY region, id",
    "SELECT region, count(*) FROM fo_orders GROUP BY ROLLUP (region)",
    "WITH t AS (SELECT id FROM fo_orders) SELECT count(*) FROM t",
    "SELECT id FROM fo_orders ORDER BY id FOR UPDATE",
];
