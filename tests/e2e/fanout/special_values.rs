//! Cross-shard reads over special values: NULLs, NaN, infinities, the extremes of each integer
//! type, -0, empty strings, non-ASCII text and shards with no matching row. Every read is
//! answered exactly as the oracle answers it, or refused with 0A000.
//!
//! Table `rv_sp` (hash on id, 10 rows through the proxy and in the oracle).

use tokio_postgres::Client;

use super::differs;
use crate::harness::{cluster, connect_direct, oracle, wait_for_replicas};
use crate::support::proxy_with;

/// `rv_sp` with the same rows through the proxy and in the oracle.
async fn load_specials(proxy: &Client, plain: &Client) {
    let ddl = [
        "DROP TABLE IF EXISTS rv_sp",
        "CREATE TABLE rv_sp (id bigint PRIMARY KEY, g int, i2 smallint, i4 int, i8 bigint, \
         n numeric, f8 float8, f4 real, t text, b bool, d date, iv interval)",
    ];
    let rows = [
        "(1, 1, 32767, 2147483647, 9223372036854775807, 'NaN', 'NaN', 'NaN', 'a', true, 'infinity', '1 day')",
        "(2, 1, 32767, 2147483647, 9223372036854775807, 1.5, 'Infinity', 1.5, 'b', false, '2020-01-01', '24 hours')",
        "(3, 1, -32768, -2147483648, -9223372036854775808, 'Infinity', '-Infinity', '-Infinity', NULL, NULL, '-infinity', '1 mon')",
        "(4, 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "(5, 2, 1, 1, 1, 0.000000000000000000001, -0.0, -0, 'B', true, '2021-06-01', '30 days')",
        "(6, 2, 2, 2, 2, 123456789012345678901234567890.123456789, 1e308, 3.4e38, 'é', false, '1999-12-31', '-1 day')",
        "(7, 3, 3, 3, 9223372036854775807, -1.00, 1e308, 3.4e38, 'a', true, '2000-01-01', '1 year')",
        "(8, 3, 4, 4, 4, 1.0, 0.1, 0.1, '', true, '2000-01-02', '0')",
        "(9, NULL, 5, 5, 5, 2.50, 0.2, 0.2, 'z', NULL, NULL, NULL)",
        "(10, NULL, 6, 6, 6, 3, 0.3, 0.3, 'Z', false, '2000-01-03', '2 days')",
    ];
    for client in [proxy, plain] {
        for statement in ddl {
            client.simple_query(statement).await.unwrap();
        }
        client
            .simple_query(&format!(
                "INSERT INTO rv_sp (id, g, i2, i4, i8, n, f8, f4, t, b, d, iv) VALUES {}",
                rows.join(", ")
            ))
            .await
            .unwrap();
    }
}

/// Every read here is either answered exactly as one PostgreSQL answers it, or refused (0A000).
#[tokio::test]
async fn special_values_are_merged_as_postgres_answers_them_or_refused() {
    let proxy = proxy_with("rv_sp: {strategy: hash, key: id, key_type: bigint}").await;
    let through = proxy.connect().await;
    let plain = connect_direct(&oracle().primaries[0]).await;
    load_specials(&through, &plain).await;
    wait_for_replicas(cluster()).await;
    let reader = proxy.connect().await;
    let queries: &[(&str, bool)] = &[
        (
            "SELECT sum(i2), sum(i4), avg(i2), avg(i4) FROM rv_sp",
            false,
        ),
        ("SELECT sum(n), avg(n), min(n), max(n) FROM rv_sp", false),
        (
            "SELECT sum(f8), min(f8), max(f8) FROM rv_sp WHERE id <> 6 AND id <> 7",
            false,
        ),
        ("SELECT min(f4), max(f4) FROM rv_sp", false),
        (
            "SELECT g, count(*), count(t), min(t), max(t) FROM rv_sp GROUP BY g ORDER BY g",
            true,
        ),
        (
            "SELECT g, sum(n) FROM rv_sp GROUP BY g ORDER BY 2 NULLS FIRST, 1",
            true,
        ),
        (
            "SELECT g, avg(n) FROM rv_sp GROUP BY g ORDER BY avg(n) DESC, g",
            true,
        ),
        (
            "SELECT g, bool_and(b), bool_or(b) FROM rv_sp GROUP BY g ORDER BY g NULLS FIRST",
            true,
        ),
        ("SELECT id, n FROM rv_sp ORDER BY n, id", true),
        ("SELECT id, n FROM rv_sp ORDER BY n DESC, id", true),
        ("SELECT id, f8 FROM rv_sp ORDER BY f8, id", true),
        (
            "SELECT id, f4 FROM rv_sp ORDER BY f4 DESC NULLS LAST, id",
            true,
        ),
        ("SELECT id, t FROM rv_sp ORDER BY t, id", true),
        ("SELECT id, upper(t) FROM rv_sp ORDER BY upper(t), id", true),
        ("SELECT id, d FROM rv_sp ORDER BY d, id", true),
        ("SELECT id, iv FROM rv_sp ORDER BY iv, id", true),
        ("SELECT DISTINCT iv FROM rv_sp", false),
        ("SELECT DISTINCT f8 FROM rv_sp", false),
        ("SELECT DISTINCT n FROM rv_sp", false),
        ("SELECT iv, count(*) FROM rv_sp GROUP BY iv", false),
        ("SELECT f4, count(*) FROM rv_sp GROUP BY f4", false),
        ("SELECT min(iv), max(iv), min(d), max(d) FROM rv_sp", false),
        (
            "SELECT g, count(*) FROM rv_sp GROUP BY g HAVING count(*) > 2.5",
            false,
        ),
        (
            "SELECT g, sum(i8) FROM rv_sp WHERE id IN (5, 6, 8, 9, 10) GROUP BY g",
            false,
        ),
        ("SELECT sum(i8) FROM rv_sp", false),
        ("SELECT avg(i8) FROM rv_sp WHERE id IN (1, 2, 7)", false),
        (
            "SELECT g, max(n) FROM rv_sp GROUP BY g HAVING max(n) > 1",
            false,
        ),
        (
            "SELECT g, avg(f8) FROM rv_sp WHERE id > 7 GROUP BY g",
            false,
        ),
        (
            "SELECT count(*), sum(n), avg(i4), max(t), bool_and(b) FROM rv_sp WHERE id > 100",
            false,
        ),
        (
            "SELECT g FROM rv_sp GROUP BY g HAVING sum(i4) IS NULL",
            false,
        ),
        ("SELECT id FROM rv_sp ORDER BY id LIMIT 0", true),
        ("SELECT id FROM rv_sp ORDER BY id OFFSET 100", true),
        ("SELECT id FROM rv_sp ORDER BY id LIMIT 3 OFFSET 8", true),
        (
            "SELECT DISTINCT g FROM rv_sp ORDER BY g NULLS FIRST LIMIT 2",
            true,
        ),
        (
            "SELECT g, count(*) FROM rv_sp GROUP BY g ORDER BY g LIMIT 2 OFFSET 1",
            true,
        ),
        (
            "SELECT t, count(*) FROM rv_sp GROUP BY t HAVING t = 'a'",
            false,
        ),
        ("SELECT sum(f4) FROM rv_sp WHERE id IN (2, 8, 9, 10)", false),
        (
            "SELECT avg(d - DATE '2000-01-01') FROM rv_sp WHERE id IN (7, 8, 10)",
            false,
        ),
        ("SELECT count(*) FROM rv_sp HAVING count(*) > 100", false),
        ("SELECT 1 AS one, count(*) FROM rv_sp", false),
        ("SELECT g, 'x', count(*) FROM rv_sp GROUP BY g", false),
        ("SELECT count(DISTINCT g) FROM rv_sp GROUP BY id", false),
        ("SELECT max(n) FROM rv_sp WHERE n < 'Infinity'", false),
    ];
    let mut failures = Vec::new();
    for (sql, ordered) in queries {
        if let Some(difference) = differs(&reader, &plain, sql, *ordered).await {
            if !difference.contains("0A000") {
                failures.push(difference);
            } else {
                eprintln!("refused: {sql}");
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The servers use the locale a stock install takes on this machine (`C.UTF-8`): case mapping
/// knows Unicode, and text sorts by code point, across shards as on one server.
#[tokio::test]
async fn text_follows_the_locale_of_a_stock_server() {
    let proxy = proxy_with("rv_sp: {strategy: hash, key: id, key_type: bigint}").await;
    let client = proxy.connect().await;
    let row = client
        .query_one("SELECT upper('ë'), lower('Ë'), 'é' ~ '^[[:alpha:]]$'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "Ë");
    assert_eq!(row.get::<_, &str>(1), "ë");
    assert!(row.get::<_, bool>(2));
    let collation = client.query_one("SHOW lc_collate", &[]).await.unwrap();
    assert_eq!(collation.get::<_, &str>(0), "C.UTF-8");
}
