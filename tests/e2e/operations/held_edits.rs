//! A shard-map edit that would move rows the shards hold is held: the map in force keeps
//! serving, RELOAD says why in a warning, and SHOW MAP, SHOW PLAN and a metric show it. An
//! edit that moves keys without rows applies at once; once the rows are moved, the next
//! RELOAD applies the edit; RELOAD FORCE applies a held edit as it is.

use futures::StreamExt;
use shardgate::config::raw::{RawRange, RawScalar};
use tokio_postgres::AsyncMessage;

use super::{console, console_conn, field, http_get, ops_proxy, rows, sample};
use crate::harness::{TestProxy, cluster, connect_direct, demo_map, demo_map_with_tenants};
use crate::limits::SOON;
use crate::routing::routed_shard;

/// A tenant with a document: its entry moving is held.
const STORED_TENANT: i64 = 41_001;
/// A tenant without documents: its entry moving applies.
const EMPTY_TENANT: i64 = 41_002;

/// The shard index the demo map's hash fallback gives `tenant`.
fn hashed(tenant: i64) -> usize {
    routed_shard(&format!(
        "SELECT 1 FROM documents WHERE tenant_id = {tenant}"
    ))
}

/// A console connection whose notices (`RELOAD`'s warning) arrive on the returned channel.
async fn console_with_notices(
    proxy: &TestProxy,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let conn = console_conn(proxy);
    let (client, mut connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (notices, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let hint = notice.hint().unwrap_or_default();
                let _ = notices.send(format!(
                    "{}: {}\n{hint}",
                    notice.severity(),
                    notice.message()
                ));
            }
        }
    });
    (client, received)
}

async fn documents_on(shard: usize, tenant: i64) -> i64 {
    let sql = format!("SELECT count(*) FROM documents WHERE tenant_id = {tenant}");
    let direct = connect_direct(&cluster().primaries[shard]).await;
    direct.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn an_edit_moving_stored_rows_is_held_until_they_are_moved() {
    let (proxy, _dir, path) = ops_proxy(|_| {}).await;
    for uri in &cluster().primaries {
        let sql =
            format!("DELETE FROM documents WHERE tenant_id IN ({STORED_TENANT}, {EMPTY_TENANT})");
        connect_direct(uri).await.execute(&sql, &[]).await.unwrap();
    }
    let client = proxy.connect().await;
    let insert = "INSERT INTO documents (tenant_id, doc_id, title) VALUES ($1, 1, 'held')";
    client
        .execute(insert, &[&(STORED_TENANT as i32)])
        .await
        .unwrap();
    let home = hashed(STORED_TENANT);
    assert_eq!(documents_on(home, STORED_TENANT).await, 1);
    let away = |tenant| format!("s{}", 1 - hashed(tenant));

    // Keys move but no stored row does: applied.
    let empty_moved = [(EMPTY_TENANT, away(EMPTY_TENANT))];
    let entries: Vec<(i64, &str)> = empty_moved.iter().map(|(t, s)| (*t, s.as_str())).collect();
    std::fs::write(&path, demo_map_with_tenants(&entries)).unwrap();
    let reloaded = proxy.proxy.reload().await.unwrap();
    assert!(reloaded.held.is_empty(), "{reloaded:?}");
    assert_eq!(reloaded.epoch, 2);

    // The stored tenant's entry moves it: held, with a warning that names the rows.
    let stored_away = away(STORED_TENANT);
    let both = [entries[0], (STORED_TENANT, stored_away.as_str())];
    std::fs::write(&path, demo_map_with_tenants(&both)).unwrap();
    let (admin, mut notices) = console_with_notices(&proxy).await;
    admin.simple_query("RELOAD").await.unwrap();
    let warning = tokio::time::timeout(SOON, notices.recv())
        .await
        .expect("RELOAD warns about the held edit")
        .unwrap();
    let rows_named = format!("documents (keys {STORED_TENANT} whose entry changed) on s{home}");
    assert!(warning.starts_with("WARNING: "), "{warning}");
    assert!(warning.contains(&rows_named), "{warning}");
    assert!(warning.contains("RELOAD FORCE"), "{warning}");
    assert_eq!(proxy.proxy.epoch(), 2, "a held edit is not an epoch");
    let title: String = (client.query_one(
        "SELECT title FROM documents WHERE tenant_id = $1",
        &[&(STORED_TENANT as i32)],
    ))
    .await
    .expect("the map in force still finds the row")
    .get(0);
    assert_eq!(title, "held");

    // Shown: SHOW MAP per table, SHOW PLAN line by line, and the metrics.
    let map = rows(&admin, "SHOW MAP").await;
    let table = |name: &str| map.iter().find(|r| field(r, "table") == name).unwrap();
    assert_eq!(
        field(table("documents"), "held_edit"),
        "moves stored rows (SHOW PLAN)"
    );
    assert_eq!(field(table("users"), "held_edit"), "NULL");
    let plan = rows(&admin, "SHOW PLAN").await;
    let lines: Vec<&str> = plan.iter().map(|r| field(r, "plan")).collect();
    assert!(lines[0].starts_with("held since "), "{lines:?}");
    assert!(
        lines.contains(&format!("  {rows_named}").as_str()),
        "{lines:?}"
    );
    let metrics = http_get(&proxy, "/metrics").await.1;
    let held = sample(&metrics, "shardgate_shard_map_edit_held", &[]);
    assert_eq!(held, 1.0, "{metrics}");
    let reloads = sample(
        &metrics,
        "shardgate_shard_map_reloads_total",
        &[("result", "held")],
    );
    // RELOAD, and the file watcher when it saw the write first: each holds the edit.
    assert!((1.0..=2.0).contains(&reloads), "{metrics}");

    // The operator moves the row; the next RELOAD applies the edit and the row is found
    // where the new map puts it.
    let target = 1 - home;
    let copy = format!("INSERT INTO documents VALUES ({STORED_TENANT}, 1, 'held')");
    (connect_direct(&cluster().primaries[target]).await)
        .execute(&copy, &[])
        .await
        .unwrap();
    let remove = format!("DELETE FROM documents WHERE tenant_id = {STORED_TENANT}");
    (connect_direct(&cluster().primaries[home]).await)
        .execute(&remove, &[])
        .await
        .unwrap();
    admin.simple_query("RELOAD").await.unwrap();
    assert_eq!(proxy.proxy.epoch(), 3);
    assert!(rows(&admin, "SHOW PLAN").await.is_empty());
    let metrics = http_get(&proxy, "/metrics").await.1;
    assert_eq!(sample(&metrics, "shardgate_shard_map_edit_held", &[]), 0.0);
    let found = client
        .query(
            "SELECT title FROM documents WHERE tenant_id = $1",
            &[&(STORED_TENANT as i32)],
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "the moved row, once");
    assert!(
        notices.try_recv().is_err(),
        "no warning for an applied edit"
    );
}

/// The demo map (as YAML) with events split at `split` (a `YYYY-01-01` date): keys from there
/// on move to s0.
fn events_moved_from(split: &str) -> String {
    let mut map = demo_map(cluster());
    let text = |t: &str| Some(RawScalar::Text(t.to_owned()));
    map.tables.get_mut("events").unwrap().ranges = Some(vec![
        RawRange {
            shard: "s0".into(),
            from: None,
            to: text("2026-01-01"),
        },
        RawRange {
            shard: "s1".into(),
            from: text("2026-01-01"),
            to: text(split),
        },
        RawRange {
            shard: "s0".into(),
            from: text(split),
            to: None,
        },
    ]);
    serde_yaml::to_string(&map).unwrap()
}

#[tokio::test]
async fn a_range_edit_is_held_only_for_the_keys_it_moves_and_force_applies_it() {
    let (proxy, _dir, path) = ops_proxy(|_| {}).await;
    let clean = "DELETE FROM events WHERE created_at >= '2097-01-01'";
    for uri in &cluster().primaries {
        connect_direct(uri).await.execute(clean, &[]).await.unwrap();
    }
    let client = proxy.connect().await;
    client
        .batch_execute("INSERT INTO events VALUES ('2098-03-01 10:00', 'far', NULL)")
        .await
        .unwrap();
    let far = "SELECT count(*) FROM events WHERE created_at = '2098-03-01 10:00'";

    // From 2099 on nothing is stored: the split applies.
    std::fs::write(&path, events_moved_from("2099-01-01")).unwrap();
    let reloaded = proxy.proxy.reload().await.unwrap();
    assert!(reloaded.held.is_empty(), "{reloaded:?}");
    assert_eq!(reloaded.epoch, 2);

    // From 2098 on, the 2098 event on s1 would move: held.
    std::fs::write(&path, events_moved_from("2098-01-01")).unwrap();
    let reloaded = proxy.proxy.reload().await.unwrap();
    assert_eq!(reloaded.epoch, 2);
    let [edit] = &reloaded.held[..] else {
        panic!("one held edit: {reloaded:?}")
    };
    let stored: Vec<String> = edit.stored.iter().map(ToString::to_string).collect();
    assert_eq!(
        stored,
        ["events (keys 2098-01-01 00:00:00..2099-01-01 00:00:00 moving to s0) on s1"]
    );
    let count: i64 = client.query_one(far, &[]).await.unwrap().get(0);
    assert_eq!(count, 1, "the map in force still reads it");

    // RELOAD FORCE applies it as it is: the row stays on s1, where the new map no longer
    // looks (what the operator asked for, and what the warning says it does).
    let admin = console(&proxy).await;
    admin.simple_query("RELOAD FORCE").await.unwrap();
    assert_eq!(proxy.proxy.epoch(), 3);
    assert!(rows(&admin, "SHOW PLAN").await.is_empty());
    let count: i64 = client.query_one(far, &[]).await.unwrap().get(0);
    assert_eq!(count, 0, "the forced map reads s0 for 2098");
    (connect_direct(&cluster().primaries[1]).await)
        .execute(clean, &[])
        .await
        .unwrap();
}

/// A tenant and a year only the RESHARD test writes.
const MOVED_TENANT: i64 = 41_201;
const MOVED_YEAR: &str = "2096";

#[tokio::test]
async fn reshard_moves_a_tenant_and_a_range_of_times_held_by_one_edit() {
    let _serial = super::reshard::ONE_AT_A_TIME.lock().await;
    let (proxy, _dir, path) = ops_proxy(|_| {}).await; // Creates the demo tables first.
    let events = format!("created_at >= '{MOVED_YEAR}-01-01' AND created_at < '2097-01-01'");
    for uri in &cluster().primaries {
        let direct = connect_direct(uri).await;
        let clean = format!(
            "DELETE FROM documents WHERE tenant_id = {MOVED_TENANT}; DELETE FROM events WHERE {events}"
        );
        direct.batch_execute(&clean).await.unwrap();
    }
    let client = proxy.connect().await;
    for doc in 1..=20 {
        let sql = format!("INSERT INTO documents VALUES ({MOVED_TENANT}, {doc}, 'moving')");
        client.batch_execute(&sql).await.unwrap();
    }
    for day in 1..=10 {
        let sql =
            format!("INSERT INTO events VALUES ('{MOVED_YEAR}-02-{day:02} 10:00', 'moving', NULL)");
        client.batch_execute(&sql).await.unwrap();
    }
    let home = hashed(MOVED_TENANT);
    let events_on = async |shard: usize| -> i64 {
        let sql = format!("SELECT count(*) FROM events WHERE {events}");
        let direct = connect_direct(&cluster().primaries[shard]).await;
        direct.query_one(&sql, &[]).await.unwrap().get(0)
    };
    assert_eq!(
        (documents_on(home, MOVED_TENANT).await, events_on(1).await),
        (20, 10)
    );

    // One edit: the tenant gets an entry on the other shard, and the year moves to s0.
    let mut map = demo_map(cluster());
    let documents = map.tables.get_mut("documents").unwrap();
    let entries = documents.entries.get_or_insert_with(Default::default);
    entries.insert(RawScalar::Integer(MOVED_TENANT), format!("s{}", 1 - home));
    let text = |t: &str| Some(RawScalar::Text(t.to_owned()));
    let range = |shard: &str, from: Option<RawScalar>, to: Option<RawScalar>| RawRange {
        shard: shard.into(),
        from,
        to,
    };
    let year = format!("{MOVED_YEAR}-01-01");
    map.tables.get_mut("events").unwrap().ranges = Some(vec![
        range("s0", None, text("2026-01-01")),
        range("s1", text("2026-01-01"), text(&year)),
        range("s0", text(&year), text("2097-01-01")),
        range("s1", text("2097-01-01"), None),
    ]);
    std::fs::write(&path, serde_yaml::to_string(&map).unwrap()).unwrap();
    let admin = console(&proxy).await;
    admin.simple_query("RELOAD").await.unwrap();
    assert!(!rows(&admin, "SHOW PLAN").await.is_empty(), "held");
    admin
        .simple_query("RESHARD")
        .await
        .expect("RESHARD moves them");

    let status = rows(&admin, "SHOW RESHARD").await;
    let copied = |table: &str| -> Vec<(String, String, String)> {
        (status.iter())
            .filter(|row| field(row, "table") == table)
            .map(|row| {
                let f = |name| field(row, name).to_owned();
                (f("source"), f("target"), f("rows_copied"))
            })
            .collect()
    };
    let away = format!("s{}", 1 - home);
    assert_eq!(
        copied("documents"),
        [(format!("s{home}"), away, "20".into())]
    );
    assert_eq!(copied("events"), [("s1".into(), "s0".into(), "10".into())]);
    assert_eq!(documents_on(1 - home, MOVED_TENANT).await, 20);
    assert_eq!(documents_on(home, MOVED_TENANT).await, 0);
    assert_eq!((events_on(0).await, events_on(1).await), (10, 0));
    let read = format!("SELECT count(*) FROM documents WHERE tenant_id = {MOVED_TENANT}");
    let through: i64 = client.query_one(&read, &[]).await.unwrap().get(0);
    assert_eq!(
        through, 20,
        "the proxy reads the moved rows where they are now"
    );
    for uri in &cluster().primaries {
        let clean = format!("DELETE FROM events WHERE {events}");
        connect_direct(uri)
            .await
            .batch_execute(&clean)
            .await
            .unwrap();
    }
}
