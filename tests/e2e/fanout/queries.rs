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
    checks.extend(FEDERATED.iter().map(|(sql, order)| same(sql, *order)));
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

/// Reads the merge cannot compute, answered by the federation database (PostgreSQL itself
/// over every shard): every construct the merge refuses, ordered or not.
const FEDERATED: &[(&str, Order)] = &[
    (
        "SELECT id, row_number() OVER (ORDER BY id) FROM fo_orders",
        Any,
    ),
    ("SELECT count(DISTINCT region) FROM fo_orders", Any),
    (
        "SELECT string_agg(region, ',' ORDER BY id) FROM fo_orders WHERE id < 30",
        Any,
    ),
    (
        "SELECT o.id FROM fo_orders o JOIN fo_customers c ON o.qty = c.tier",
        Any,
    ),
    (
        "SELECT id FROM fo_orders UNION SELECT customer_id FROM fo_customers",
        Any,
    ),
    (
        "SELECT id FROM fo_orders WHERE qty = (SELECT max(qty) FROM fo_orders)",
        Any,
    ),
    ("SELECT count(*) + 1 FROM fo_orders", Any),
    ("SELECT max(amount) - min(amount) FROM fo_orders", Any),
    (
        "SELECT array_agg(id ORDER BY id) FROM fo_orders WHERE qty = 3",
        Any,
    ),
    ("SELECT avg(price::float4) FROM fo_orders", Any),
    (
        "SELECT DISTINCT ON (region) region, id FROM fo_orders ORDER BY region, id",
        Fixed,
    ),
    (
        "SELECT region, count(*) FROM fo_orders GROUP BY ROLLUP (region)",
        Any,
    ),
    (
        "WITH t AS (SELECT id FROM fo_orders) SELECT count(*) FROM t",
        Any,
    ),
    // Subqueries.
    (
        "SELECT id FROM fo_orders WHERE customer_id IN (SELECT customer_id FROM fo_customers WHERE tier = 2) ORDER BY id",
        Fixed,
    ),
    (
        "SELECT c.name FROM fo_customers c WHERE EXISTS (SELECT 1 FROM fo_orders o WHERE o.customer_id = c.customer_id AND o.qty = 12) ORDER BY 1",
        Fixed,
    ),
    (
        "SELECT c.name FROM fo_customers c WHERE NOT EXISTS (SELECT 1 FROM fo_orders o WHERE o.customer_id = c.customer_id AND o.shipped) ORDER BY 1",
        Fixed,
    ),
    (
        "SELECT name, (SELECT count(*) FROM fo_orders o WHERE o.customer_id = c.customer_id) AS n FROM fo_customers c ORDER BY n DESC, name LIMIT 10",
        Fixed,
    ),
    (
        "SELECT id, amount FROM fo_orders o WHERE amount > (SELECT avg(amount) FROM fo_orders i WHERE i.region = o.region) ORDER BY id LIMIT 25",
        Fixed,
    ),
    (
        "SELECT region, n FROM (SELECT region, count(*) AS n FROM fo_orders GROUP BY region) s WHERE n > 100 ORDER BY region",
        Fixed,
    ),
    (
        "SELECT avg(n) FROM (SELECT customer_id, count(*) AS n FROM fo_orders GROUP BY customer_id) s",
        Any,
    ),
    (
        "SELECT id FROM fo_orders WHERE region IN (SELECT region FROM fo_regions WHERE label IN ('N', 'S')) AND qty = 1",
        Any,
    ),
    (
        "SELECT id FROM fo_orders WHERE qty > ALL (SELECT qty FROM fo_orders WHERE region = 'east' AND qty < 11) ORDER BY id",
        Fixed,
    ),
    (
        "SELECT id FROM fo_orders WHERE customer_id = ANY (SELECT customer_id FROM fo_customers WHERE name LIKE 'c00%') ORDER BY id",
        Fixed,
    ),
    (
        "SELECT count(*) FROM fo_orders WHERE id NOT IN (SELECT id FROM fo_orders WHERE qty < 6)",
        Any,
    ),
    // Common table expressions.
    (
        "WITH big AS (SELECT * FROM fo_orders WHERE amount > 50) SELECT region, count(*) FROM big GROUP BY region ORDER BY region",
        Fixed,
    ),
    (
        "WITH c AS (SELECT customer_id, sum(amount) AS total FROM fo_orders GROUP BY customer_id) SELECT customer_id, total FROM c ORDER BY total DESC, customer_id LIMIT 5",
        Fixed,
    ),
    (
        "WITH a AS (SELECT region, count(*) n FROM fo_orders GROUP BY 1), b AS (SELECT region, label FROM fo_regions) SELECT b.label, a.n FROM a JOIN b USING (region) ORDER BY 1",
        Fixed,
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT r.n, count(o.id) FROM r LEFT JOIN fo_orders o ON o.qty = r.n GROUP BY r.n ORDER BY r.n",
        Fixed,
    ),
    (
        "WITH x AS MATERIALIZED (SELECT customer_id FROM fo_orders WHERE qty = 0) SELECT count(DISTINCT customer_id) FROM x",
        Any,
    ),
    // Window functions.
    (
        "SELECT id, rank() OVER (ORDER BY qty DESC) FROM fo_orders",
        Any,
    ),
    (
        "SELECT id, dense_rank() OVER (PARTITION BY region ORDER BY amount) FROM fo_orders",
        Any,
    ),
    (
        "SELECT id, lag(amount) OVER (PARTITION BY customer_id ORDER BY id) FROM fo_orders",
        Any,
    ),
    (
        "SELECT id, sum(amount) OVER (PARTITION BY region ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM fo_orders",
        Any,
    ),
    (
        "SELECT region, id FROM (SELECT region, id, row_number() OVER (PARTITION BY region ORDER BY amount DESC, id) AS rn FROM fo_orders) t WHERE rn <= 2 ORDER BY region, id",
        Fixed,
    ),
    (
        "SELECT id, count(*) OVER () FROM fo_orders WHERE qty = 5",
        Any,
    ),
    ("SELECT id, ntile(4) OVER (ORDER BY ts) FROM fo_orders", Any),
    (
        "SELECT id, first_value(id) OVER w, last_value(id) OVER w FROM fo_orders WINDOW w AS (PARTITION BY region ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
        Any,
    ),
    // Set operations.
    (
        "SELECT region FROM fo_orders INTERSECT SELECT region FROM fo_regions",
        Any,
    ),
    (
        "SELECT region FROM fo_regions EXCEPT SELECT region FROM fo_orders WHERE qty > 11",
        Any,
    ),
    (
        "SELECT customer_id FROM fo_orders WHERE qty = 1 UNION ALL SELECT customer_id FROM fo_orders WHERE qty = 2",
        Any,
    ),
    (
        "SELECT qty FROM fo_orders EXCEPT ALL SELECT qty FROM fo_orders WHERE shipped",
        Any,
    ),
    (
        "(SELECT id FROM fo_orders ORDER BY id LIMIT 3) UNION (SELECT id FROM fo_orders ORDER BY id DESC LIMIT 3) ORDER BY 1",
        Fixed,
    ),
    // Aggregates the merge cannot combine.
    (
        "SELECT region, count(DISTINCT customer_id) FROM fo_orders GROUP BY region",
        Any,
    ),
    (
        "SELECT count(*) FILTER (WHERE shipped), count(*) FILTER (WHERE qty > 6) FROM fo_orders",
        Any,
    ),
    (
        "SELECT region, sum(amount) FILTER (WHERE shipped) FROM fo_orders GROUP BY region",
        Any,
    ),
    (
        "SELECT string_agg(DISTINCT region, '/' ORDER BY region) FROM fo_orders",
        Any,
    ),
    (
        "SELECT customer_id, array_agg(id ORDER BY id) FROM fo_orders WHERE customer_id < 5 GROUP BY customer_id",
        Any,
    ),
    (
        "SELECT json_agg(id ORDER BY id) FROM fo_orders WHERE qty = 12 AND small = 0",
        Any,
    ),
    (
        "SELECT jsonb_object_agg(region, label) FROM fo_regions",
        Any,
    ),
    ("SELECT stddev(qty), variance(qty) FROM fo_orders", Any),
    (
        "SELECT region, stddev_pop(amount), var_samp(amount) FROM fo_orders GROUP BY region",
        Any,
    ),
    (
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM fo_orders",
        Any,
    ),
    (
        "SELECT region, percentile_disc(0.9) WITHIN GROUP (ORDER BY amount) FROM fo_orders GROUP BY region",
        Any,
    ),
    (
        "SELECT mode() WITHIN GROUP (ORDER BY qty) FROM fo_orders",
        Any,
    ),
    ("SELECT bit_and(qty), bit_or(qty) FROM fo_orders", Any),
    // float8 sums depend on the order rows arrive in (as on one server scanning in
    // another order): rounded below that noise.
    (
        "SELECT round(corr(qty, small)::numeric, 10), regr_count(qty, small) FROM fo_orders",
        Any,
    ),
    ("SELECT sum(amount) / count(*) FROM fo_orders", Any),
    (
        "SELECT round(avg(amount), 1) AS a, max(qty) * 2 AS m FROM fo_orders",
        Any,
    ),
    (
        "SELECT region, sum(qty) * 100 / sum(sum(qty)) OVER () FROM fo_orders GROUP BY region",
        Any,
    ),
    // Grouping sets.
    (
        "SELECT region, shipped, count(*) FROM fo_orders GROUP BY CUBE (region, shipped)",
        Any,
    ),
    (
        "SELECT region, shipped, sum(qty) FROM fo_orders GROUP BY GROUPING SETS ((region), (shipped), ())",
        Any,
    ),
    (
        "SELECT region, grouping(region), count(*) FROM fo_orders GROUP BY ROLLUP (region) ORDER BY 1 NULLS LAST",
        Fixed,
    ),
    // DISTINCT ON and GROUP BY forms.
    (
        "SELECT DISTINCT ON (customer_id) customer_id, id, amount FROM fo_orders ORDER BY customer_id, amount DESC, id",
        Fixed,
    ),
    (
        "SELECT upper(region) AS r, count(*) FROM fo_orders GROUP BY r ORDER BY r",
        Fixed,
    ),
    (
        "SELECT qty % 3 AS m, count(*) FROM fo_orders GROUP BY m ORDER BY m",
        Fixed,
    ),
    // Joins the shards cannot do alone.
    (
        "SELECT r.label, count(o.id) FROM fo_regions r LEFT JOIN fo_orders o ON o.region = r.region AND o.qty = 12 GROUP BY r.label",
        Any,
    ),
    (
        "SELECT r.region, o.id FROM fo_orders o RIGHT JOIN fo_regions r ON r.region = o.region AND o.id = 7",
        Any,
    ),
    (
        "SELECT c.name, o.id FROM fo_customers c FULL JOIN fo_orders o ON o.customer_id = c.customer_id AND o.qty = 12 WHERE c.customer_id < 4",
        Any,
    ),
    (
        "SELECT a.id, b.id FROM fo_orders a JOIN fo_orders b ON a.qty = b.qty AND a.id < b.id WHERE a.id < 40 AND b.id < 40",
        Any,
    ),
    (
        "SELECT c.tier, count(*) FROM fo_orders o JOIN fo_customers c ON c.tier = o.qty GROUP BY c.tier",
        Any,
    ),
    (
        "SELECT c.name, t.id FROM fo_customers c, LATERAL (SELECT id FROM fo_orders o WHERE o.customer_id = c.customer_id ORDER BY amount DESC, id LIMIT 1) t WHERE c.customer_id <= 10",
        Any,
    ),
    (
        "SELECT c.customer_id, t.n FROM fo_customers c CROSS JOIN LATERAL (SELECT count(*) AS n FROM fo_orders o WHERE o.qty = c.tier) t",
        Any,
    ),
    // Other shapes.
    (
        "SELECT * FROM fo_orders WHERE id IN (SELECT max(id) FROM fo_orders GROUP BY region) ORDER BY id",
        Fixed,
    ),
    (
        "SELECT EXISTS (SELECT 1 FROM fo_orders WHERE amount > 79)",
        Any,
    ),
    (
        "SELECT (SELECT count(*) FROM fo_orders) - (SELECT count(*) FROM fo_customers)",
        Any,
    ),
    (
        "SELECT id FROM fo_orders ORDER BY amount * qty DESC, id LIMIT 4 OFFSET (SELECT count(*) FROM fo_regions)",
        Fixed,
    ),
    (
        "VALUES (1), (2) UNION SELECT count(*)::int FROM fo_orders",
        Any,
    ),
];

/// How many reads the federation answers.
pub fn federated_count() -> usize {
    FEDERATED.len()
}

/// Still refused: locking rows on several shards.
const REFUSED: &[&str] = &["SELECT id FROM fo_orders ORDER BY id FOR UPDATE"];
