//! Opening a server connection: TCP, StartupMessage, authentication, then the parameter reports
//! and cancel key the server sends before its first ReadyForQuery.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BackendConn, BackendError, CancelTarget, SessionState};
use crate::config::BackendUri;
use crate::wire::BackendKeyData;

/// Connects and logs in to `uri`, giving up after `timeout`.
pub async fn connect(uri: &BackendUri, timeout: Duration) -> Result<BackendConn, BackendError> {
    let addr: Arc<str> = uri.address().into();
    match tokio::time::timeout(timeout, connect_inner(uri, addr.clone())).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        }),
    }
}

async fn connect_inner(uri: &BackendUri, addr: Arc<str>) -> Result<BackendConn, BackendError> {
    let params = [
        ("user", uri.user.as_str()),
        ("database", uri.database.as_str()),
    ];
    let (mut hs, peer) = Handshake::log_in(uri, addr.clone(), &params).await?;
    let (reported, key) = hs.read_until_ready().await?;
    let reported = std::sync::Arc::new(reported);
    let bytewise_text = hs.text_sorts_bytewise().await?;
    Ok(BackendConn {
        stream: hs.stream,
        read_buf: hs.buf,
        cancel: CancelTarget::new(peer, key),
        state: SessionState::with_reported(reported.clone()),
        reported_at_connect: reported,
        prepared: HashSet::new(),
        bytewise_text,
        broken: false,
        addr,
    })
}

impl<'a> Handshake<'a> {
    /// Connects to `uri` at `addr`, sends a StartupMessage with `params` and authenticates;
    /// the server's reports up to ReadyForQuery are still to read.
    pub(super) async fn log_in(
        uri: &'a BackendUri,
        addr: Arc<str>,
        params: &[(&str, &str)],
    ) -> Result<(Handshake<'a>, std::net::SocketAddr), BackendError> {
        let stream = TcpStream::connect(&*addr)
            .await
            .map_err(|source| BackendError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let peer = stream.peer_addr().map_err(|source| BackendError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        let mut hs = Handshake {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            uri,
            addr,
        };
        hs.send_with(|buf| frontend::startup_message(params.iter().copied(), buf))
            .await?;
        hs.authenticate().await?;
        Ok((hs, peer))
    }
}

/// The database's default collation and its provider (PostgreSQL 15 and later).
const COLLATION_SQL: &str = "SELECT datcollate, datlocprovider::text FROM pg_database \
                             WHERE datname = current_database()";
/// The same before PostgreSQL 15, where every database uses libc.
const COLLATION_SQL_OLD: &str =
    "SELECT datcollate, 'c' FROM pg_database WHERE datname = current_database()";

/// Whether a database default collation orders text by its UTF-8 bytes, as the merge of
/// cross-shard results compares it: libc's C and POSIX, and C.UTF-8 (code-point order).
pub fn collation_is_bytewise(collation: &str, provider: &str) -> bool {
    provider == "c" && ["C", "POSIX", "C.UTF-8", "C.utf8"].contains(&collation)
}

/// State of a login in progress.
pub(super) struct Handshake<'a> {
    stream: TcpStream,
    buf: BytesMut,
    pub(super) uri: &'a BackendUri,
    addr: Arc<str>,
}

impl Handshake<'_> {
    /// The connection, once logged in and done with.
    pub(super) fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub(super) async fn send_with(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
    ) -> Result<(), BackendError> {
        let mut out = BytesMut::new();
        encode(&mut out).map_err(|e| self.protocol(e.to_string()))?;
        self.stream.write_all(&out).await.map_err(|e| self.io(e))
    }

    pub(super) async fn next_message(&mut self) -> Result<Message, BackendError> {
        loop {
            if let Some(message) =
                Message::parse(&mut self.buf).map_err(|e| self.protocol(e.to_string()))?
            {
                return Ok(message);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Asks the server how its database sorts text (one round trip per new connection).
    async fn text_sorts_bytewise(&mut self) -> Result<bool, BackendError> {
        for sql in [COLLATION_SQL, COLLATION_SQL_OLD] {
            self.send_with(|buf| frontend::query(sql, buf)).await?;
            match self.read_first_row().await {
                Ok(row) => {
                    if let [collation, provider] = row.as_slice() {
                        return Ok(collation_is_bytewise(collation, provider));
                    }
                }
                Err(BackendError::Refused { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(false)
    }

    /// The first row's text columns of a simple query (NULL as empty), up to its
    /// ReadyForQuery; the server's error when it failed.
    pub(super) async fn read_first_row(&mut self) -> Result<Vec<String>, BackendError> {
        let mut row = None;
        let mut failed = None;
        loop {
            match self.next_message().await? {
                Message::DataRow(body) if row.is_none() => {
                    let mut fields = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) =
                        ranges.next().map_err(|e| self.protocol(e.to_string()))?
                    {
                        let text =
                            range.map(|r| String::from_utf8_lossy(&body.buffer()[r]).into_owned());
                        fields.push(text.unwrap_or_default());
                    }
                    row = Some(fields);
                }
                Message::ErrorResponse(body) => failed = Some(self.refused(body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(row.unwrap_or_default()),
        }
    }

    pub(super) async fn read_until_ready(
        &mut self,
    ) -> Result<(BTreeMap<String, String>, BackendKeyData), BackendError> {
        let mut reported = BTreeMap::new();
        let mut key = None;
        loop {
            match self.next_message().await? {
                Message::ParameterStatus(body) => {
                    let name = body.name().map_err(|e| self.protocol(e.to_string()))?;
                    let value = body.value().map_err(|e| self.protocol(e.to_string()))?;
                    reported.insert(name.to_owned(), value.to_owned());
                }
                Message::BackendKeyData(body) => {
                    key = Some(BackendKeyData {
                        pid: body.process_id(),
                        secret: body.secret_key(),
                    });
                }
                Message::ReadyForQuery(_) => break,
                Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => return Err(self.refused(body)),
                _ => return Err(self.protocol("unexpected message during startup")),
            }
        }
        let key = key.ok_or_else(|| self.protocol("server sent no BackendKeyData"))?;
        Ok((reported, key))
    }

    pub(super) fn protocol(&self, message: impl Into<String>) -> BackendError {
        BackendError::Protocol {
            addr: self.addr.to_string(),
            message: message.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> BackendError {
        BackendError::Io {
            addr: self.addr.to_string(),
            source,
        }
    }

    pub(super) fn refused(&self, body: ErrorResponseBody) -> BackendError {
        let (mut code, mut message) = (String::new(), String::new());
        let mut fields = body.fields();
        while let Ok(Some(field)) = fallible_iterator::FallibleIterator::next(&mut fields) {
            match field.type_() {
                b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                _ => {}
            }
        }
        BackendError::Refused {
            addr: self.addr.to_string(),
            code,
            message,
        }
    }
}
