//! The `shardgate` binary: `check` on good and broken files, and the one-command `demo`.

use std::io::{BufRead, BufReader};
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
