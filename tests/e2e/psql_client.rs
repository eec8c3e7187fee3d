//! psql through the proxy: what people type.

use crate::harness::{TestProxy, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_describe_commands() {
    let proxy = TestProxy::shared().await;
    let setup = "DROP TABLE IF EXISTS psql_t; CREATE TABLE psql_t (id int PRIMARY KEY, name text NOT NULL); \
                 INSERT INTO psql_t VALUES (1, 'one'), (2, 'two');";
    let out = proxy.psql(&["-c", setup], None).await;
    assert!(out.status.success(), "{:?}", text(&out));

    let out = proxy
        .psql(&["-At", "-c", "SELECT name FROM psql_t ORDER BY id"], None)
        .await;
    assert_eq!(text(&out).0, "one\ntwo\n");

    let out = proxy.psql(&["-c", "\\dt psql_t"], None).await;
    assert!(text(&out).0.contains("psql_t"), "{:?}", text(&out));
    let out = proxy.psql(&["-c", "\\d+ psql_t"], None).await;
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("psql_t_pkey") && stdout.contains("not null"),
        "{stdout}{stderr}"
    );
    let out = proxy.psql(&["-c", "\\d"], None).await;
    assert!(text(&out).0.contains("psql_t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let proxy = TestProxy::shared().await;
    let script = "DROP TABLE IF EXISTS psql_copy; CREATE TABLE psql_copy (a int, b text);\n\
                  COPY psql_copy FROM STDIN;\n1\tx\n2\ty\n3\tz\n\\.\n\
                  SELECT count(*) FROM psql_copy;\n\
                  COPY (SELECT * FROM psql_copy ORDER BY a) TO STDOUT;\n";
    let out = proxy.psql(&["-At", "-f", "-"], Some(script)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("COPY 3") || stdout.contains("3\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("1\tx\n2\ty\n3\tz\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mid_transaction_then_rollback() {
    let proxy = TestProxy::shared().await;
    let script = "BEGIN;\nSELECT 1/0;\nSELECT 1;\nROLLBACK;\nSELECT 'after' AS x;\n";
    let out = proxy.psql(&["-At", "-f", "-"], Some(script)).await;
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert!(
        stderr.contains("current transaction is aborted"),
        "{stderr}"
    );
    assert!(stdout.trim_end().ends_with("after"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_and_empty_queries() {
    let proxy = TestProxy::shared().await;
    let out = proxy
        .psql(&["-At", "-c", "SELECT 1; SELECT 2;"], None)
        .await;
    assert_eq!(text(&out).0, "1\n2\n");
    // An error in a multi-statement query rolls back its implicit transaction.
    let out = proxy
        .psql(
            &[
                "-At",
                "-c",
                "CREATE TEMP TABLE IF NOT EXISTS ms(a int); INSERT INTO ms VALUES (1); SELECT 1/0;",
            ],
            None,
        )
        .await;
    assert!(text(&out).1.contains("division by zero"));
    let out = proxy.psql(&["-At", "-c", ";"], None).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_function_calls_pass_through() {
    let proxy = TestProxy::shared().await;
    let out = proxy
        .psql(
            &[
                "-c",
                "DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$",
            ],
            None,
        )
        .await;
    assert!(
        text(&out).1.contains("hello from plpgsql"),
        "{:?}",
        text(&out)
    );
    // \lo_import uses libpq's large-object API, which is FunctionCall ('F') messages.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.txt");
    std::fs::write(&file, "large object body").unwrap();
    let script = format!(
        "BEGIN;\n\\lo_import {}\nSELECT convert_from(lo_get(:LASTOID), 'UTF8');\nSELECT lo_unlink(:LASTOID);\nCOMMIT;\n",
        file.display()
    );
    let out = proxy.psql(&["-At", "-f", "-"], Some(&script)).await;
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("large object body"), "{stdout}{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_psql_cancels_the_running_query() {
    let proxy = TestProxy::shared().await;
    let binaries = shardgate::local_cluster::PgBinaries::find().unwrap();
    let child = std::process::Command::new(binaries.psql.unwrap())
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.port().to_string(),
            "-U",
            "app",
            "-d",
            "app",
        ])
        .args(["-c", "SELECT pg_sleep(30)"])
        .env("PGPASSWORD", "app")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
}
