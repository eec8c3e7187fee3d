//! TLS for clients: SSLRequest upgrades, direct TLS (ALPN `postgresql`), plain connections
//! still allowed, and cancel requests that arrive over TLS.

use std::sync::Arc;
use std::time::Duration;

use shardgate::config::{ClientAuthMethod, Config, TlsFiles, UserSecret};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::harness::{TestProxy, cluster, config, text};
use crate::raw::{SSL_REQUEST, Script, cancel_request, read_message, sqlstate_of, startup_packet};

/// A proxy with a fresh self-signed certificate for `localhost`; returns the certificate too.
async fn tls_proxy(
    dir: &tempfile::TempDir,
    edit: impl FnOnce(&mut Config),
) -> (TestProxy, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut cfg = config(cluster());
    cfg.tls = Some(TlsFiles { cert, key });
    edit(&mut cfg);
    (TestProxy::start(cfg).await, generated.cert.der().clone())
}

fn connector(cert: CertificateDer<'static>, alpn: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    TlsConnector::from(Arc::new(config))
}

/// Opens a TLS session the classic way: SSLRequest, `S`, handshake.
async fn upgrade(
    proxy: &TestProxy,
    cert: &CertificateDer<'static>,
) -> impl AsyncRead + AsyncWrite + Unpin {
    let mut tcp = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S");
    let name = ServerName::try_from("localhost").unwrap();
    connector(cert.clone(), false)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Logs in (trust) over `stream`; returns the cancel key from BackendKeyData.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> (i32, i32) {
    stream
        .write_all(&startup_packet("app", "app"))
        .await
        .unwrap();
    let mut key = None;
    while let Some((tag, body)) = read_message(stream).await {
        match tag {
            b'K' => {
                let pid = i32::from_be_bytes(body[0..4].try_into().unwrap());
                let secret = i32::from_be_bytes(body[4..8].try_into().unwrap());
                key = Some((pid, secret));
            }
            b'Z' => return key.expect("BackendKeyData before ReadyForQuery"),
            b'E' => panic!("login failed: {}", sqlstate_of(&body)),
            _ => {}
        }
    }
    panic!("connection closed during login");
}

fn trust(cfg: &mut Config) {
    cfg.auth_method = ClientAuthMethod::Trust;
    cfg.users[0].secret = UserSecret::None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_requires_tls_and_plain_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _) = tls_proxy(&dir, |_| {}).await;
    let conn = format!(
        "host=localhost port={} user=app password=app dbname=app sslmode=require",
        proxy.port()
    );
    let out = proxy
        .psql(
            &["-At", "-d", &conn, "-c", "\\conninfo", "-c", "SELECT 7"],
            None,
        )
        .await;
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("SSL connection") && stdout.contains("7"),
        "{stdout}{stderr}"
    );
    let out = proxy.psql(&["-At", "-c", "SELECT 8"], None).await;
    assert_eq!(text(&out).0, "8\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, cert) = tls_proxy(&dir, trust).await;
    let tcp = TcpStream::connect(proxy.proxy.local_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = connector(cert, true).connect(name, tcp).await.unwrap();
    login(&mut stream).await;
    let query = Script::new().query("SELECT 1");
    stream.write_all(query.bytes()).await.unwrap();
    let (tag, _) = read_message(&mut stream).await.unwrap();
    assert_eq!(tag, b'T');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, cert) = tls_proxy(&dir, trust).await;
    let mut session = upgrade(&proxy, &cert).await;
    let (pid, secret) = login(&mut session).await;
    let sleep = "SELECT pg_sleep(30) AS tls_cancel";
    let query = Script::new().query(sleep);
    session.write_all(query.bytes()).await.unwrap();
    // Cancel only once the statement runs: earlier, a loaded machine may still be replaying
    // settings on the backend, and the cancel would hit that instead.
    let server = crate::harness::connect_direct(&cluster().primaries[0]).await;
    let running = format!("SELECT count(*) FROM pg_stat_activity WHERE query = '{sleep}'");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .query_one(&running, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut canceller = upgrade(&proxy, &cert).await;
    canceller
        .write_all(&cancel_request(pid, secret))
        .await
        .unwrap();
    canceller.flush().await.unwrap();
    let error = loop {
        let (tag, body) = read_message(&mut session)
            .await
            .expect("the sleep is cancelled within 5 s");
        match tag {
            b'E' => break sqlstate_of(&body),
            b'T' | b'N' => continue,
            other => panic!("unexpected {:?}", other as char),
        }
    };
    assert_eq!(error, "57014");
    assert_eq!(read_message(&mut session).await.map(|m| m.0), Some(b'Z'));
    // A wrong secret cancels nothing. First let any late delivery of the first cancel land
    // on an idle backend (seen twice on fresh CI machines: a second SIGINT cancelled the
    // next statement; not understood yet, see the stop's closing note).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let query = Script::new().query("SELECT pg_sleep(1)");
    session.write_all(query.bytes()).await.unwrap();
    let mut wrong = upgrade(&proxy, &cert).await;
    wrong
        .write_all(&cancel_request(pid, secret.wrapping_add(1)))
        .await
        .unwrap();
    wrong.flush().await.unwrap();
    let mut tags = Vec::new();
    while let Some((tag, body)) = read_message(&mut session).await {
        let shown = match tag {
            b'E' => format!("E {}", String::from_utf8_lossy(&body).replace('\0', "|")),
            other => (other as char).to_string(),
        };
        tags.push(shown);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(
        tags,
        ["T", "D", "C", "Z"],
        "the wrong secret cancelled nothing"
    );
}
