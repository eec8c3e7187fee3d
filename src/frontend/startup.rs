//! The opening of a client connection: TLS negotiation (pgwire), the startup packet, protocol
//! version negotiation and the checks that pick a user and a database.

use std::collections::HashMap;

use bytes::BytesMut;
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{FrontendContext, LoginError, auth};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{self, StartupPacket, encode, parse_startup_packet, peek_header};

/// A client socket (plain or TLS) and the bytes read from it but not yet consumed.
pub struct ClientConn {
    /// The socket.
    pub stream: MaybeTls,
    /// Unconsumed input; pipelined bytes after startup stay here for the session.
    pub buf: BytesMut,
    max_message_bytes: usize,
}

/// What a new connection turned out to be.
pub enum Opening {
    /// An authenticated client, ready for its session.
    Login(Login),
    /// A cancel request for another connection.
    Cancel {
        /// Proxy-issued process id.
        pid: i32,
        /// Proxy-issued secret.
        secret: i32,
    },
    /// The client asked for direct TLS that we cannot offer, or left before saying anything.
    Closed,
}

/// An authenticated client.
pub struct Login {
    /// Its connection.
    pub conn: ClientConn,
    /// Role name it logged in as.
    pub user: String,
    /// Logical database it asked for.
    pub database: String,
    /// Other startup parameters (application_name, client_encoding, options, …).
    pub params: Vec<(String, String)>,
}

impl ClientConn {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), LoginError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(LoginError::Disconnected)?;
        self.stream.flush().await.map_err(LoginError::Disconnected)
    }

    /// Sends a FATAL error; the caller then drops the connection.
    pub(super) async fn reject(&mut self, report: &ErrorReport) {
        let mut out = BytesMut::new();
        encode::error_response(&mut out, report);
        let _ = self.write(&out).await;
    }

    async fn fill(&mut self) -> Result<(), LoginError> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(LoginError::Disconnected)?;
        if n == 0 {
            return Err(LoginError::Disconnected(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        Ok(())
    }

    /// Reads one tagged frame, refusing lengths above the configured limit.
    pub(super) async fn read_frame(&mut self) -> Result<(u8, BytesMut), LoginError> {
        loop {
            if let Some(header) = peek_header(&self.buf).map_err(LoginError::wire)? {
                if header.total_len > self.max_message_bytes {
                    return Err(LoginError::protocol("message exceeds max_message_bytes"));
                }
                if self.buf.len() >= header.total_len {
                    let mut frame = self.buf.split_to(header.total_len);
                    let body = frame.split_off(wire::HEADER_LEN);
                    return Ok((header.tag, body));
                }
            }
            self.fill().await?;
        }
    }

    async fn read_startup_packet(&mut self) -> Result<StartupPacket, LoginError> {
        loop {
            if let Some((packet, used)) =
                parse_startup_packet(&self.buf).map_err(LoginError::wire)?
            {
                let _ = self.buf.split_to(used);
                return Ok(packet);
            }
            self.fill().await?;
        }
    }
}

/// Negotiates TLS, reads the startup packet and authenticates. Rejections have already been
/// sent to the client as FATAL ErrorResponses when this returns `Err`.
pub async fn open(tcp: TcpStream, ctx: &FrontendContext) -> Result<Opening, LoginError> {
    let framed = pgwire::tokio::server::negotiate_tls::<()>(tcp, ctx.tls.clone())
        .await
        .map_err(LoginError::Disconnected)?;
    let Some(framed) = framed else {
        return Ok(Opening::Closed);
    };
    let parts = framed.into_parts();
    let _: PgWireMessageServerCodec<()> = parts.codec;
    let mut conn = ClientConn {
        stream: parts.io,
        buf: parts.read_buf,
        max_message_bytes: ctx.limits.max_message_bytes,
    };
    match login(&mut conn, ctx).await {
        Ok(Greeting::Login {
            user,
            database,
            params,
        }) => Ok(Opening::Login(Login {
            conn,
            user,
            database,
            params,
        })),
        Ok(Greeting::Cancel { pid, secret }) => Ok(Opening::Cancel { pid, secret }),
        Err(LoginError::Rejected(report)) => {
            conn.reject(&report).await;
            Err(LoginError::Rejected(report))
        }
        Err(e) => Err(e),
    }
}

/// What the startup packet asked for, after authentication.
enum Greeting {
    Login {
        user: String,
        database: String,
        params: Vec<(String, String)>,
    },
    Cancel {
        pid: i32,
        secret: i32,
    },
}

async fn login(conn: &mut ClientConn, ctx: &FrontendContext) -> Result<Greeting, LoginError> {
    let (minor, params) = loop {
        match conn.read_startup_packet().await? {
            StartupPacket::Startup { minor, params, .. } => break (minor, params),
            StartupPacket::Cancel { pid, secret } => return Ok(Greeting::Cancel { pid, secret }),
            // A second SSL/GSS request (e.g. GSS after SSL was refused) gets another refusal.
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => conn.write(b"N").await?,
        }
    };
    negotiate_protocol(conn, minor, &params).await?;
    let mut params: HashMap<String, String> = params.into_iter().collect();
    let user = params
        .remove("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            LoginError::Rejected(ErrorReport::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                Blame::Client,
                "no PostgreSQL user name specified in startup packet",
            ))
        })?;
    let database = params
        .remove("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    auth::authenticate(conn, ctx.auth_method, &user, ctx.credentials.get(&user)).await?;
    // The database is looked up in the topology when the session starts.
    let params = params
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_pq_."))
        .collect();
    Ok(Greeting::Login {
        user,
        database,
        params,
    })
}

/// Protocol 3.0 is what we speak; newer minors and `_pq_.` options get NegotiateProtocolVersion
/// (PostgreSQL docs, "Protocol versions").
async fn negotiate_protocol(
    conn: &mut ClientConn,
    minor: u16,
    params: &[(String, String)],
) -> Result<(), LoginError> {
    let unknown: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor == 0 && unknown.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    encode::negotiate_protocol_version(&mut out, 0, &unknown);
    conn.write(&out).await
}
