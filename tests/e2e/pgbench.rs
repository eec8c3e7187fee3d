//! pgbench through the proxy in every query mode, with more clients than backends.

use std::process::Command;

use shardgate::local_cluster::PgBinaries;

use crate::harness::{DATABASE, PASSWORD, TestProxy, USER, run_with_stdin, text};

fn pgbench(proxy: &TestProxy, args: &[&str]) -> Command {
    let binaries = PgBinaries::find().expect("PostgreSQL binaries");
    let mut command = Command::new(binaries.pgbench.expect("pgbench is installed"));
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.port().to_string(),
            "-U",
            USER,
        ])
        .args(args)
        .arg(DATABASE)
        .env("PGPASSWORD", PASSWORD);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_clean_in_simple_extended_and_prepared_modes() {
    let proxy = TestProxy::shared().await;
    let out = run_with_stdin(pgbench(&proxy, &["-i", "-q", "-s", "1"]), None).await;
    assert!(out.status.success(), "pgbench -i failed: {:?}", text(&out));
    for mode in ["simple", "extended", "prepared"] {
        let out = run_with_stdin(
            pgbench(&proxy, &["-c", "16", "-j", "2", "-T", "5", "-M", mode]),
            None,
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "pgbench -M {mode} failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 (0.000%)"),
            "pgbench -M {mode}:\n{stdout}\n{stderr}"
        );
        let processed = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            processed > 100,
            "pgbench -M {mode} processed only {processed} transactions:\n{stdout}"
        );
    }
}
