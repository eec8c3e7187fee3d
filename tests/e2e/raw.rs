//! Hand-made protocol messages, for tests that must send what no driver would.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads one tagged message; `None` on EOF, error or a 5 s silence.
pub async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut header))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    Some((header[0], body))
}

/// The SQLSTATE field of an ErrorResponse body.
pub fn sqlstate_of(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

/// A protocol 3.0 StartupMessage.
pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// A simple Query message.
pub fn query_message(sql: &str) -> Vec<u8> {
    let mut message = vec![b'Q'];
    message.extend(((sql.len() + 5) as u32).to_be_bytes());
    message.extend(sql.as_bytes());
    message.push(0);
    message
}

/// SSLRequest.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// A CancelRequest quoting (pid, secret).
pub fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut packet = vec![0, 0, 0, 16, 4, 210, 22, 46];
    packet.extend(pid.to_be_bytes());
    packet.extend(secret.to_be_bytes());
    packet
}

/// Logs in to a trust-auth proxy by hand and reads up to the first ReadyForQuery.
pub async fn raw_login(proxy: &crate::harness::TestProxy) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(proxy.proxy.local_addr)
        .await
        .unwrap();
    stream
        .write_all(&startup_packet("app", "app"))
        .await
        .unwrap();
    while let Some((tag, _)) = read_message(&mut stream).await {
        if tag == b'Z' {
            return stream;
        }
    }
    panic!("no ReadyForQuery after startup");
}
