//! The `shardgate` binary: `check` on good and broken files (and `check --connect` against
//! real primaries), `route` and `plan` on temp maps (they connect nowhere, except
//! `plan --connect`), and the one-command `demo`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shardgate");

#[test]
fn check_accepts_the_reference_config() {
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/shardgate.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn check_accepts_the_compose_config() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/shardgate/shardgate.yaml"
    );
    let out = Command::new(BIN)
        .args(["check", "--config", config])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn check_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("map.yaml"),
        "shards:\n  - name: s0\n    primary: mysql://x@h/d\n  - name: s0\n    primary: postgres://u@h:0/d\ndefault_shard: nope\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("shardgate.yaml"),
        "users:\n  - name: app\n    password: app\npool:\n  size: 0\ndatabases:\n  - name: app\n    shard_map: map.yaml\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("shardgate.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "pool.size",
        "shards[0].primary",
        "shards[1].name",
        "shards[1].primary",
        "default_shard",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected} in:\n{stderr}"
        );
    }
}

#[test]
fn demo_serves_until_sigterm_and_cleans_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(BIN)
        .args([
            "demo",
            "--port",
            &port.to_string(),
            "--shards",
            "2",
            "--replicas",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut config_path = None;
    let started = Instant::now();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(path) = line.trim().strip_prefix("config:") {
            config_path = Some(std::path::PathBuf::from(path.trim()));
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "demo did not come up"
        );
    }
    let config_path = config_path.expect("the banner names the config");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let version: String = runtime.block_on(async {
        let conn = format!("postgres://app:app@127.0.0.1:{port}/app");
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .query_one("SELECT current_setting('server_version')", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(version.starts_with(|c: char| c.is_ascii_digit()));
    unsafe {
        libc::kill(demo.id() as i32, libc::SIGTERM);
    }
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(said.iter().any(|l| l.contains("stopping")), "{said:?}");
    let status = demo.wait().unwrap();
    assert!(status.success(), "demo exit status {status}");
    assert!(!config_path.exists(), "the demo directory is removed");
}

/// A map shaped like `shard-maps/demo.yaml`; its backends are never contacted.
const DEMO_MAP: &str = "
shards:
  - {name: s0, primary: 'postgres://app:app@127.0.0.1:1/app'}
  - {name: s1, primary: 'postgres://app:app@127.0.0.1:2/app'}
default_shard: s0
tables:
  users: {strategy: hash, key: user_id, key_type: bigint}
  orders: {colocated_with: users, key: user_id}
  events:
    strategy: range
    key: created_at
    key_type: timestamp
    ranges:
      - {shard: s0, to: '2026-01-01'}
      - {shard: s1, from: '2026-01-01'}
  documents: {strategy: directory, key: tenant_id, key_type: integer, entries: {1: s0, 2: s1}, fallback: hash}
  countries: {strategy: reference}
";

/// `DEMO_MAP` with a third shard on the users ring.
fn three_shard_map() -> String {
    DEMO_MAP.replace(
        "default_shard:",
        "  - {name: s2, primary: 'postgres://app:app@127.0.0.1:3/app'}\ndefault_shard:",
    )
}

/// Writes `shardgate.yaml` naming `map.yaml` (with `map`) into `dir`; returns the config path.
fn write_config(dir: &Path, map: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("map.yaml"), map).unwrap();
    let config = dir.join("shardgate.yaml");
    let text = "users:\n  - name: app\n    password: app\ndatabases:\n  - name: app\n    shard_map: map.yaml\n";
    std::fs::write(&config, text).unwrap();
    config
}

fn shardgate(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn route_names_the_shard_of_a_key_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO_MAP);
    let map = shardgate::config::parse_shard_map(DEMO_MAP, Path::new("map.yaml")).unwrap();
    let router = shardgate::router::Router::new(&map);
    let sql = "INSERT INTO users (user_id, name) VALUES ($1, 'x')";
    let values = [Some("42".to_owned())];
    let params = shardgate::router::Params::from_text(&values);
    let expected = match router.route(&router.plan(sql), &params, None) {
        Ok(shardgate::router::Route::Shard(id)) => map.shard(id).name.clone(),
        other => panic!("the library routes a keyed INSERT to one shard: {other:?}"),
    };
    let (code, stdout, stderr) = shardgate(&["route", sql, "--param", "42"], &config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("route: shard {expected}\n")),
        "{stdout}"
    );
    assert!(stdout.contains("write (INSERT) on users, key user_id (integer, hash ring of 2 shards): user_id = 42 ($1) -> shard"), "{stdout}");

    let sql = "SELECT * FROM events WHERE created_at = '2026-03-01'";
    let (code, stdout, _) = shardgate(&["route", sql, "--database", "app"], &config);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("route: shard s1\n"), "{stdout}");
}

#[test]
fn route_shows_keyless_updates_on_every_shard_unless_the_map_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO_MAP);
    let (code, stdout, stderr) = shardgate(&["route", "UPDATE users SET name = 'x'"], &config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("route: broadcast to s0, s1\n"),
        "{stdout}"
    );
    let guarded = DEMO_MAP.replace(
        "key: user_id, key_type: bigint",
        "key: user_id, key_type: bigint, multi_shard_writes: refuse",
    );
    assert_ne!(
        guarded, DEMO_MAP,
        "the demo map's users entry changed shape"
    );
    let config = write_config(dir.path(), &guarded);
    let (code, stdout, stderr) = shardgate(&["route", "UPDATE users SET name = 'x'"], &config);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("route: error 0A000: "), "{stdout}");
    assert!(stdout.contains("`multi_shard_writes: refuse`"), "{stdout}");
}

#[test]
fn route_says_which_cross_shard_reads_the_federation_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), DEMO_MAP);
    let merged = "SELECT count(*) FROM users";
    let (code, stdout, _) = shardgate(&["route", merged], &config);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("route: scatter to s0, s1\n"), "{stdout}");
    assert!(!stdout.contains("federated"), "{stdout}");
    let windowed = "SELECT user_id, rank() OVER (ORDER BY name) FROM users";
    let (code, stdout, _) = shardgate(&["route", windowed], &config);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with("route: federation database, PostgreSQL over s0, s1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("federated: the merge cannot compute it: "),
        "{stdout}"
    );
}

#[test]
fn plan_shows_the_share_of_keys_a_new_shard_takes() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&old, DEMO_MAP).unwrap();
    std::fs::write(&new, three_shard_map()).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--old"])
        .arg(&old)
        .arg("--new")
        .arg(&new)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let line = (stdout.lines())
        .find(|line| line.starts_with("orders, users (co-located, group users): "))
        .unwrap_or_else(|| panic!("no line for the users group in:\n{stdout}"));
    let share: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {line:?}"));
    assert!((20.0..=47.0).contains(&share), "{line}");
    assert!(
        line.contains("s0 -> s2") && !line.contains("-> s0") && !line.contains("-> s1"),
        "{line}"
    );
    assert!(stdout.contains("shard s2: added\n"), "{stdout}");
    assert!(
        stdout.contains("countries: reference table: copy it to s2\n"),
        "{stdout}"
    );

    let same = Command::new(BIN)
        .args(["plan", "--old"])
        .arg(&old)
        .arg("--new")
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).ends_with("nothing moves\n"));
}

#[test]
fn plan_refuses_an_invalid_new_map_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&old, DEMO_MAP).unwrap();
    std::fs::write(
        &new,
        DEMO_MAP.replace("{shard: s1, from:", "{shard: s7, from:"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--old"])
        .arg(&old)
        .arg("--new")
        .arg(&new)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("new.yaml: tables.events.ranges[1].shard: "),
        "{stderr}"
    );
    assert!(stderr.contains("s7"), "{stderr}");
}

/// `plan --connect` asks the old map's primaries (the shared cluster's) which of the moved
/// keys hold rows: an entry for a tenant with a document would be held, one for a tenant
/// without would apply.
#[test]
fn plan_connect_names_the_stored_rows_an_edit_would_move() {
    const STORED: i64 = 42_001;
    const EMPTY: i64 = 42_002;
    use crate::harness::demo_map_with_tenants as with_tenants;
    let cluster = crate::harness::cluster();
    // The stored tenant's document, on the shard the hash fallback gives it.
    let home = crate::routing::routed_shard(&format!(
        "SELECT 1 FROM documents WHERE tenant_id = {STORED}"
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for (i, uri) in cluster.primaries.iter().enumerate() {
            let mut sql = format!("DELETE FROM documents WHERE tenant_id IN ({STORED}, {EMPTY});");
            if i == home {
                sql += &format!("INSERT INTO documents VALUES ({STORED}, 1, 'plan')");
            }
            crate::harness::connect_direct(uri)
                .await
                .batch_execute(&sql)
                .await
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    std::fs::write(&old, with_tenants(&[])).unwrap();
    let plan = |new_text: String| {
        let new = dir.path().join("new.yaml");
        std::fs::write(&new, new_text).unwrap();
        let out = Command::new(BIN)
            .args(["plan", "--connect", "--old"])
            .arg(&old)
            .arg("--new")
            .arg(&new)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // An entry pointing the tenant away from its home moves its document.
    let held = plan(with_tenants(&[(STORED, &format!("s{}", 1 - home))]));
    assert!(
        held.contains("stored rows it would move (a proxy holds the edit):\n"),
        "{held}"
    );
    let line = format!("  documents (keys {STORED} whose entry changed) on s{home}\n");
    assert!(held.contains(&line), "{line:?} is not in:\n{held}");
    let applies = plan(with_tenants(&[(EMPTY, "s0")])) + &plan(with_tenants(&[(EMPTY, "s1")]));
    assert!(
        applies.contains("no stored row moves: a proxy applies this edit as it reads it\n"),
        "{applies}"
    );
    assert!(!applies.contains("stored rows it would move"), "{applies}");
}

/// A map of `primaries` (s0, s1, …) with one hashed table.
fn map_of(primaries: &[String]) -> String {
    let shards: Vec<String> = (primaries.iter().enumerate())
        .map(|(i, uri)| format!("  - {{name: s{i}, primary: '{uri}'}}\n"))
        .collect();
    format!(
        "shards:\n{}default_shard: s0\ntables:\n  users: {{strategy: hash, key: user_id, key_type: bigint}}\n",
        shards.concat()
    )
}

/// `check --connect` against real primaries: a clean report, then one naming a primary that
/// allows no prepared transactions (and what to set), one nobody listens on and one that
/// refuses the login; with `transactions.atomic: false` the first is no problem.
#[test]
fn check_connect_reports_primaries_unfit_for_atomic_commit() {
    let auth = shardgate::local_cluster::BackendAuth::ScramSha256;
    let mut own = crate::harness::own_cluster(2, 0, auth);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &map_of(&own.info.primaries));
    let (code, stdout, stderr) = shardgate(&["check", "--connect"], &config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for (i, uri) in own.info.primaries.iter().enumerate() {
        let shown = shardgate::config::BackendUri::parse(uri).unwrap();
        let line = format!("app/s{i} primary ({shown}): ok (max_prepared_transactions ");
        assert!(stdout.contains(&line), "{line:?} is not in:\n{stdout}");
    }
    assert!(stderr.is_empty(), "{stderr}");

    // s1 now allows no prepared transactions, and a third shard's primary is not there.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        crate::harness::connect_direct(&own.info.primaries[1])
            .await
            .batch_execute("ALTER SYSTEM SET max_prepared_transactions = 0")
            .await
            .unwrap();
    });
    let s1 = &mut own.cluster.shards_mut()[1].primary;
    s1.stop().unwrap();
    s1.start().unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!(
        "postgres://app:app@127.0.0.1:{}/app",
        nobody.local_addr().unwrap().port()
    );
    drop(nobody);
    let mut primaries = own.info.primaries.clone();
    // Another database of s0's server (a map may not name one server twice), wrong password.
    let (server, _) = primaries[0].rsplit_once('/').unwrap();
    let refused = format!("{}/postgres", server.replace(":app@", ":wrong@"));
    assert!(
        refused.contains(":wrong@"),
        "a password to get wrong: {refused}"
    );
    primaries.extend([gone, refused]);
    let config = write_config(dir.path(), &map_of(&primaries));
    let (code, stdout, stderr) = shardgate(&["check", "--connect"], &config);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("app/s0 primary ("), "{stdout}{stderr}");
    let s1_problem = "app/s1: max_prepared_transactions is 0, so transactions and statements \
                      that write on several shards cannot commit (set it above 0, or \
                      transactions.atomic: false)";
    assert!(stderr.contains(s1_problem), "{stderr}");
    assert!(
        stderr.contains("app/s2 primary (postgres://app@127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains(") is not reachable: "), "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 problem(s) with shard primaries"),
        "{stderr}"
    );

    // Without atomic commit, prepared transactions are not needed.
    let two = map_of(&own.info.primaries[..2]);
    write_config(dir.path(), &two);
    let text = std::fs::read_to_string(&config).unwrap() + "transactions:\n  atomic: false\n";
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = shardgate(&["check", "--connect"], &config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("app/s1 primary ("), "{stdout}");
    assert!(
        stdout.contains("ok (max_prepared_transactions 0)"),
        "{stdout}"
    );
}
