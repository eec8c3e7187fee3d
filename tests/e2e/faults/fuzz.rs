//! A protocol fuzzer over raw sockets: random, truncated, oversized and unknown messages,
//! before and after login, while a well-behaved client keeps querying and sees no error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardgate::config::{ClientAuthMethod, UserSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ProxyPanics;
use crate::harness::{TestProxy, cluster, config};
use crate::raw::{raw_login, startup_packet};

/// Connections, messages on each, and how many fuzz at once.
const CONNECTIONS: usize = 200;
const MESSAGES: usize = 10;
const PARALLEL: usize = 4;

/// Frontend tags (PostgreSQL docs, "Message Formats") and a few that mean nothing.
const TAGS: &[u8] = b"QPBEDCSHFXdcfp\0Yz\xff";

/// Statement texts worth more than random bytes: valid, broken, and transaction control.
const TEXTS: &[&str] = &[
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT * FROM users WHERE user_id = 1",
    "SELECT 'unterminated",
    "",
    ";;;",
    "SET search_path = x; SELECT 1",
    "COPY users FROM STDIN",
    "SELECT repeat('x', 100000)",
];

/// One message with a random tag and body, and a length that is usually right and sometimes
/// short, oversized (over `max_message_bytes`) or absurd.
fn message(rng: &mut StdRng) -> Vec<u8> {
    let tag = TAGS[rng.random_range(0..TAGS.len())];
    let mut body = match rng.random_range(0..4) {
        0 => TEXTS[rng.random_range(0..TEXTS.len())].as_bytes().to_vec(),
        _ => {
            let mut bytes = vec![0u8; rng.random_range(0..48)];
            rng.fill(&mut bytes[..]);
            bytes
        }
    };
    if tag == b'F' {
        body.splice(0..body.len().min(4), [0; 4]); // function OID 0: no function runs
    }
    if rng.random_bool(0.7) {
        body.push(0);
    }
    let length = match rng.random_range(0..20) {
        0 => rng.random_range(0..4), // shorter than the length field
        1 => (2 << 20) + rng.random_range(0..1000), // over max_message_bytes
        2 => 0x7fff_ffff,            // absurd
        3 => body.len() as u32 + 4 + rng.random_range(1..100), // truncated
        _ => body.len() as u32 + 4,
    };
    let mut frame = vec![tag];
    frame.extend(length.to_be_bytes());
    frame.extend(body);
    frame
}

/// A random opening: a startup packet with random parameters, a bad length, or random bytes.
fn opening(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => startup_packet(&random_word(rng), &random_word(rng)),
        1 => {
            let mut packet = startup_packet("app", "app");
            let at = rng.random_range(0..packet.len());
            packet[at] = rng.random();
            packet
        }
        2 => rng.random_range(0u32..20).to_be_bytes().to_vec(),
        _ => {
            let mut bytes = vec![0u8; rng.random_range(1..64)];
            rng.fill(&mut bytes[..]);
            bytes
        }
    }
}

fn random_word(rng: &mut StdRng) -> String {
    (0..rng.random_range(0..12))
        .map(|_| rng.random_range(b' '..=b'~') as char)
        .collect()
}

/// Sends one connection's fuzz and reads until the proxy closes it; true if it did within
/// a few seconds (nothing may hang).
async fn fuzz_connection(
    proxy_addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    login: Option<TcpStream>,
) -> bool {
    let mut stream = match login {
        Some(stream) => stream,
        None => TcpStream::connect(proxy_addr).await.unwrap(),
    };
    let _ = stream.write_all(&bytes).await; // the proxy may close first
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    let drained = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_fuzz_disturbs_no_well_behaved_client() {
    let panics = ProxyPanics::watch();
    let mut config = config(cluster());
    config.auth_method = ClientAuthMethod::Trust;
    config.users[0].secret = UserSecret::None;
    config.pool.size = 8;
    let proxy = TestProxy::start(config).await;
    let good = proxy.connect().await;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let querying = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut queries = 0u64;
            while !done.load(Ordering::SeqCst) {
                let row = good
                    .query_one("SELECT $1::int8 * 2", &[&(queries as i64)])
                    .await;
                let doubled: i64 = row.map_err(|e| format!("{e:?}"))?.get(0);
                assert_eq!(doubled, queries as i64 * 2);
                queries += 1;
            }
            Ok::<u64, String>(queries)
        })
    };
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x5ead_9a7e);
    let (mut sent, mut hung) = (0, 0);
    for batch in 0..CONNECTIONS / PARALLEL {
        let mut running = Vec::new();
        for i in 0..PARALLEL {
            let startup_fuzz = (batch * PARALLEL + i).is_multiple_of(7);
            let mut bytes = if startup_fuzz {
                opening(&mut rng)
            } else {
                Vec::new()
            };
            for _ in 0..MESSAGES {
                bytes.extend(message(&mut rng));
            }
            sent += MESSAGES + usize::from(startup_fuzz);
            let login = if startup_fuzz {
                None
            } else {
                Some(raw_login(&proxy).await)
            };
            running.push(tokio::spawn(fuzz_connection(
                proxy.proxy.local_addr,
                bytes,
                login,
            )));
        }
        for connection in running {
            hung += usize::from(!connection.await.unwrap());
        }
    }
    done.store(true, Ordering::SeqCst);
    let queries = querying
        .await
        .unwrap()
        .expect("the well-behaved client saw no error");
    assert!(sent >= 2000, "{sent}");
    assert_eq!(hung, 0, "every fuzzed connection ended by itself");
    panics.assert_none();
    assert!(queries > 10, "the good client kept querying: {queries}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.proxy.connection_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} sessions left",
            proxy.proxy.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = proxy.connect().await;
    let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42, "still serving after the fuzz");
    eprintln!(
        "fuzz: {sent} messages, {queries} good queries in {:?}",
        began.elapsed()
    );
}
