//! Hand-made protocol messages, for tests that must send what no driver would.

use std::time::Duration;

use postgres_protocol::message::frontend;
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

/// SSLRequest.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// GSSENCRequest (request code 80877104).
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 48];

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

/// A client's protocol messages in order, sent as one write: tests say what a driver sends
/// (`Script::new().parse("", sql).bind("", "").execute("", 0).sync()`) instead of building
/// bytes by hand. Only tests about malformed bytes write them themselves.
#[derive(Default)]
pub struct Script(bytes::BytesMut);

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse of `sql` as statement `name`, parameter types left to the server.
    pub fn parse(self, name: &str, sql: &str) -> Self {
        self.parse_typed(name, sql, &[])
    }

    /// Parse with parameter type OIDs.
    pub fn parse_typed(mut self, name: &str, sql: &str, types: &[u32]) -> Self {
        frontend::parse(name, sql, types.iter().copied(), &mut self.0).unwrap();
        self
    }

    /// Bind of `statement` to `portal`, no parameters, default result formats.
    pub fn bind(self, portal: &str, statement: &str) -> Self {
        self.bind_text(portal, statement, &[])
    }

    /// Bind with text parameters (`None`: NULL).
    pub fn bind_text(mut self, portal: &str, statement: &str, values: &[Option<&str>]) -> Self {
        let encode = |v: &Option<&str>, buf: &mut bytes::BytesMut| match v {
            Some(text) => {
                buf.extend_from_slice(text.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        };
        let formats: &[i16] = if values.is_empty() { &[] } else { &[0] };
        let formats = formats.iter().copied();
        let bound = frontend::bind(portal, statement, formats, values, encode, [], &mut self.0);
        bound.map_err(|_| ()).unwrap();
        self
    }

    /// Describe of a portal.
    pub fn describe_portal(mut self, portal: &str) -> Self {
        frontend::describe(b'P', portal, &mut self.0).unwrap();
        self
    }

    /// Close of a portal.
    pub fn close_portal(mut self, portal: &str) -> Self {
        frontend::close(b'P', portal, &mut self.0).unwrap();
        self
    }

    /// Describe of a prepared statement.
    pub fn describe_statement(mut self, name: &str) -> Self {
        frontend::describe(b'S', name, &mut self.0).unwrap();
        self
    }

    /// Execute of `portal`, at most `max_rows` rows (0: all).
    pub fn execute(mut self, portal: &str, max_rows: i32) -> Self {
        frontend::execute(portal, max_rows, &mut self.0).unwrap();
        self
    }

    /// A simple Query.
    pub fn query(mut self, sql: &str) -> Self {
        frontend::query(sql, &mut self.0).unwrap();
        self
    }

    /// Flush.
    pub fn flush(mut self) -> Self {
        frontend::flush(&mut self.0);
        self
    }

    /// Sync.
    pub fn sync(mut self) -> Self {
        frontend::sync(&mut self.0);
        self
    }

    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Sends `script` and returns the tags of every reply up to ReadyForQuery (or the end of the
/// connection), rows folded into one `D×n` entry, errors with their fields.
pub async fn exchange(stream: &mut tokio::net::TcpStream, script: &Script) -> Vec<String> {
    exchange_to_ready(stream, script).await.0
}

/// Sends `script` and returns every reply up to ReadyForQuery, each as its tag and what
/// matters in it: a DataRow's first field, a CommandComplete's tag, an error's SQLSTATE
/// (`D:1`, `C:SELECT 3`, `E:0A000`, `s`, `Z`).
pub async fn exchange_verbose(stream: &mut tokio::net::TcpStream, script: &Script) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(script.bytes()).await.unwrap();
    let mut replies = Vec::new();
    while let Some((tag, body)) = read_message(stream).await {
        replies.push(match tag {
            b'D' => {
                let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
                let field = usize::try_from(len).map(|n| &body[6..6 + n]);
                let text = field.map_or("NULL".into(), String::from_utf8_lossy);
                format!("D:{text}")
            }
            b'C' => format!(
                "C:{}",
                String::from_utf8_lossy(&body).trim_end_matches('\0')
            ),
            b'E' => format!("E:{}", sqlstate_of(&body)),
            b'N' | b'S' => continue,
            other => (other as char).to_string(),
        });
        if tag == b'Z' {
            break;
        }
    }
    replies
}

/// [`exchange`], and the transaction status of the ReadyForQuery that ended it (`I`, `T`,
/// `E`; `?` when the connection ended first).
pub async fn exchange_to_ready(
    stream: &mut tokio::net::TcpStream,
    script: &Script,
) -> (Vec<String>, char) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(script.bytes()).await.unwrap();
    let mut tags: Vec<String> = Vec::new();
    let mut status = '?';
    let mut rows = 0;
    while let Some((tag, body)) = read_message(stream).await {
        if tag == b'D' {
            rows += 1;
            continue;
        }
        if rows > 0 {
            tags.push(format!("D×{rows}"));
            rows = 0;
        }
        match tag {
            b'E' => tags.push(format!(
                "E({})",
                String::from_utf8_lossy(&body).replace('\0', "|")
            )),
            b'N' | b'S' => {}
            other => tags.push((other as char).to_string()),
        }
        if tag == b'Z' {
            status = body.first().map_or('?', |b| *b as char);
            break;
        }
    }
    (tags, status)
}
