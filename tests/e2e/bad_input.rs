//! Hostile or broken clients get a clear error and never disturb anyone else: malformed
//! startup packets and messages (written byte by byte on purpose), clients that vanish, a
//! GSSAPI encryption request, and a pipeline too long to buffer.
//!
//! No tables; trust-auth proxies on the shared cluster.

use std::time::Duration;

use shardgate::config::{ClientAuthMethod, UserSecret};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{TestProxy, cluster, config, sqlstate};
use crate::raw::{GSSENC_REQUEST, Script, raw_login, read_message, sqlstate_of, startup_packet};

async fn trust_proxy() -> TestProxy {
    let mut cfg = config(cluster());
    cfg.auth_method = ClientAuthMethod::Trust;
    cfg.users[0].secret = UserSecret::None;
    TestProxy::start(cfg).await
}

/// Expects a FATAL ErrorResponse with `code`, then the proxy closing the connection.
async fn expect_fatal(stream: &mut TcpStream, code: &str) {
    let (tag, body) = read_message(stream).await.expect("an error response");
    assert_eq!(tag, b'E');
    assert_eq!(sqlstate_of(&body), code);
    assert!(
        read_message(stream).await.is_none(),
        "connection closed after the error"
    );
}

async fn still_serving(proxy: &TestProxy) {
    let client = proxy.connect().await;
    assert_eq!(
        client
            .query_one("SELECT 41 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_unknown_database() {
    let proxy = TestProxy::shared().await;
    let attempt = |user: &str, password: &str, db: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            proxy.port()
        )
    };
    for (conn, code) in [
        (attempt("app", "wrong", "app"), "28P01"),
        (attempt("nobody", "app", "app"), "28P01"),
        (attempt("app", "app", "nodb"), "3D000"),
    ] {
        let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .err()
            .expect("login refused");
        assert_eq!(sqlstate(&err), code, "{conn}");
    }
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets() {
    let proxy = TestProxy::shared().await;
    // Protocol version 9.0.
    let mut stream = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    stream.write_all(&[0, 0, 0, 8, 0, 9, 0, 0]).await.unwrap();
    expect_fatal(&mut stream, "08P01").await;
    // A length prefix of 2 GiB: refused without waiting for (or allocating) the bytes.
    let mut stream = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    stream
        .write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        .await
        .unwrap();
    expect_fatal(&mut stream, "08P01").await;
    // Silence: the startup timeout closes it; meanwhile others are served.
    let _silent = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_or_unknown_messages_after_login() {
    let proxy = trust_proxy().await;
    let mut stream = raw_login(&proxy).await;
    stream
        .write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    expect_fatal(&mut stream, "08P01").await;

    let mut stream = raw_login(&proxy).await;
    stream.write_all(&[b'Y', 0, 0, 0, 4]).await.unwrap();
    expect_fatal(&mut stream, "08P01").await;

    let mut stream = raw_login(&proxy).await;
    stream.write_all(&[b'Q', 0, 0, 0, 2]).await.unwrap();
    expect_fatal(&mut stream, "08P01").await;
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_query_disturbs_nobody() {
    let proxy = trust_proxy().await;
    for _ in 0..5 {
        let mut stream = raw_login(&proxy).await;
        let query = Script::new().query("SELECT pg_sleep(0.5)");
        stream.write_all(query.bytes()).await.unwrap();
        drop(stream);
    }
    still_serving(&proxy).await;
    let mut open = usize::MAX;
    for _ in 0..50 {
        open = proxy.proxy.connection_count();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "sessions of vanished clients are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssapi_encryption_is_refused_and_login_goes_on() {
    let proxy = trust_proxy().await;
    let mut stream = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    stream.write_all(&GSSENC_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"N");
    stream
        .write_all(&startup_packet("app", "app"))
        .await
        .unwrap();
    let mut tags = Vec::new();
    while let Some((tag, _)) = read_message(&mut stream).await {
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags.first(), Some(&b'R'));
    assert_eq!(tags.last(), Some(&b'Z'));
    assert!(tags.contains(&b'K') && tags.contains(&b'S'), "{tags:?}");
}

/// Parse once, then many Bind/Execute pairs and a single Sync, written while the responses are
/// read concurrently: the proxy must keep both directions moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_pipeline_flows_in_both_directions() {
    let proxy = trust_proxy().await;
    let stream = raw_login(&proxy).await;
    let (mut reader, mut writer) = stream.into_split();
    const ROUNDS: usize = 50_000;
    let writing = tokio::spawn(async move {
        let mut batch = Script::new().parse("", "SELECT repeat('x', 200)");
        for _ in 0..ROUNDS {
            batch = batch.bind("", "").execute("", 0);
            if batch.bytes().len() > 64 * 1024 {
                writer.write_all(batch.bytes()).await.unwrap();
                batch = Script::new();
            }
        }
        writer.write_all(batch.sync().bytes()).await.unwrap();
        writer
    });
    let (mut rows, mut completions) = (0usize, 0usize);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (tag, _) = tokio::time::timeout_at(deadline, read_message(&mut reader))
            .await
            .expect("the pipeline finishes")
            .expect("the connection stays up");
        match tag {
            b'D' => rows += 1,
            b'C' => completions += 1,
            b'Z' => break,
            b'E' => panic!("pipeline failed"),
            _ => {}
        }
    }
    assert_eq!((rows, completions), (ROUNDS, ROUNDS));
    drop(writing.await.unwrap());
}
