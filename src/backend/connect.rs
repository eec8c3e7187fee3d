//! Opening a server connection: TCP, StartupMessage, authentication, then the parameter reports
//! and cancel key the server sends before its first ReadyForQuery.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
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
        addr: addr.clone(),
    };
    let params = [
        ("user", uri.user.as_str()),
        ("database", uri.database.as_str()),
    ];
    hs.send_with(|buf| frontend::startup_message(params, buf))
        .await?;
    hs.authenticate().await?;
    let (reported, key) = hs.read_until_ready().await?;
    Ok(BackendConn {
        stream: hs.stream,
        read_buf: hs.buf,
        cancel: CancelTarget { addr: peer, key },
        state: SessionState::with_reported(reported.clone()),
        reported_at_connect: reported,
        prepared: HashSet::new(),
        broken: false,
        addr,
    })
}

/// State of a login in progress.
pub(super) struct Handshake<'a> {
    stream: TcpStream,
    buf: BytesMut,
    pub(super) uri: &'a BackendUri,
    addr: Arc<str>,
}

impl Handshake<'_> {
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

    async fn read_until_ready(
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
