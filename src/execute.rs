//! Moving bytes between a client and its backend without ever blocking one direction on the
//! other.
//!
//! [`pump`] is one poll over both sockets: it drains whatever is queued for each side, then
//! waits for the first side that has something to read. Writes never wait for reads and reads
//! stop only when the opposite side's queue is over its high-water mark, so a huge pipeline or
//! a COPY in either direction cannot deadlock (each side's kernel buffer keeps draining). The
//! pump knows nothing about messages; the session decides what the bytes mean.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use crate::backend::BackendConn;

pub mod broadcast;
pub mod catalog;
pub mod commit;
pub mod copy_in;
pub mod fanout;

/// Stop reading from one side while this much is queued for the other.
const HIGH_WATER: usize = 1024 * 1024;
/// Keep at least this much free space in a read buffer so each read can take a full segment.
const READ_RESERVE: usize = 16 * 1024;

/// What one pump turn observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEvent {
    /// New bytes in the client input buffer.
    ClientData,
    /// New bytes in the backend's read buffer.
    BackendData,
    /// The client closed its socket.
    ClientClosed,
    /// The backend closed its socket.
    BackendClosed,
}

/// An I/O failure, attributed to the side that failed.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The client socket failed.
    #[error("client I/O error: {0}")]
    Client(#[source] io::Error),
    /// The backend socket failed.
    #[error("backend I/O error: {0}")]
    Backend(#[source] io::Error),
}

/// Byte queues of one client session.
#[derive(Default)]
pub struct Buffers {
    /// Bytes read from the client, not yet processed.
    pub client_in: BytesMut,
    /// Bytes waiting to be written to the client.
    pub to_client: BytesMut,
    /// Bytes waiting to be written to the backend.
    pub to_backend: BytesMut,
    client_needs_flush: bool,
    /// Bytes read from the client since [`Buffers::take_byte_counts`].
    received: u64,
    /// Bytes written to the client since then.
    sent: u64,
}

impl Buffers {
    /// Frees what the buffers hold once they are empty, while no backend is held: an idle
    /// client keeps no buffer (its next transaction allocates a few again; measured, that
    /// costs no throughput, and thousands of idle clients keep kilobytes less each).
    pub fn shrink_when_idle(&mut self) {
        for buf in [
            &mut self.client_in,
            &mut self.to_client,
            &mut self.to_backend,
        ] {
            if buf.is_empty() && buf.capacity() > 0 {
                *buf = BytesMut::new();
            }
        }
    }

    /// Bytes read from and written to the client since the last call.
    pub fn take_byte_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.received),
            std::mem::take(&mut self.sent),
        )
    }

    /// Buffers for a session whose client already sent `client_in` (pipelined after startup).
    /// The login's read buffer (8 KiB from pgwire's framing) is let go when it is empty, so
    /// a client that logs in and waits costs no more than one that has gone idle.
    pub fn with_client_input(client_in: BytesMut) -> Self {
        let mut buffers = Self {
            client_in,
            ..Self::default()
        };
        buffers.shrink_when_idle();
        buffers
    }
}

/// Drives both sockets until something is read or a side closes. `client_reads` lets the
/// session stop reading client input (e.g. while it waits for a reply it must see first).
pub async fn pump<C>(
    client: &mut C,
    mut backend: Option<&mut BackendConn>,
    bufs: &mut Buffers,
    client_reads: bool,
) -> Result<PumpEvent, PumpError>
where
    C: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| {
        drain_to_client(cx, client, bufs)?;
        if backend.is_none() {
            // Nothing in flight on a backend (between transactions, or waiting for one):
            // what went out leaves no buffer behind.
            bufs.shrink_when_idle();
        }
        if let Some(conn) = backend.as_deref_mut() {
            drain(cx, conn.stream_mut(), &mut bufs.to_backend).map_err(PumpError::Backend)?;
            if bufs.to_client.len() < HIGH_WATER {
                let (stream, buf) = conn.io_mut();
                if let Poll::Ready(n) = read(cx, stream, buf).map_err(PumpError::Backend)? {
                    let event = if n == 0 {
                        PumpEvent::BackendClosed
                    } else {
                        PumpEvent::BackendData
                    };
                    return Poll::Ready(Ok(event));
                }
            }
        }
        if client_reads
            && bufs.to_backend.len() < HIGH_WATER
            && let Poll::Ready(n) =
                read_client(cx, client, &mut bufs.client_in).map_err(PumpError::Client)?
        {
            bufs.received += n as u64;
            let event = if n == 0 {
                PumpEvent::ClientClosed
            } else {
                PumpEvent::ClientData
            };
            return Poll::Ready(Ok(event));
        }
        Poll::Pending
    })
    .await
}

/// Writes everything queued for the client and flushes (TLS buffers inside rustls).
pub async fn flush_client<C>(client: &mut C, bufs: &mut Buffers) -> Result<(), PumpError>
where
    C: AsyncWrite + Unpin,
{
    poll_fn(|cx| {
        drain_to_client(cx, client, bufs)?;
        if bufs.to_client.is_empty() && !bufs.client_needs_flush {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

fn drain_to_client<C: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    client: &mut C,
    bufs: &mut Buffers,
) -> Result<(), PumpError> {
    if !bufs.to_client.is_empty() {
        bufs.client_needs_flush = true;
        let before = bufs.to_client.len();
        drain(cx, client, &mut bufs.to_client).map_err(PumpError::Client)?;
        bufs.sent += (before - bufs.to_client.len()) as u64;
    }
    if bufs.to_client.is_empty()
        && bufs.client_needs_flush
        && let Poll::Ready(result) = Pin::new(&mut *client).poll_flush(cx)
    {
        result.map_err(PumpError::Client)?;
        bufs.client_needs_flush = false;
    }
    Ok(())
}

/// Writes as much of `buf` as the socket takes without waiting.
fn drain<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    io: &mut W,
    buf: &mut BytesMut,
) -> io::Result<()> {
    while !buf.is_empty() {
        match Pin::new(&mut *io).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => buf.advance(n),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(())
}

/// Reads client bytes through a stack buffer, so a client that sits idle between statements
/// holds no heap buffer while it waits (thousands of idle clients cost almost nothing).
fn read_client<R: tokio::io::AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut R,
    buf: &mut BytesMut,
) -> io::Result<Poll<usize>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); READ_RESERVE];
    let mut read_buf = ReadBuf::uninit(&mut stack);
    match Pin::new(io).poll_read(cx, &mut read_buf) {
        Poll::Ready(Ok(())) => {
            buf.extend_from_slice(read_buf.filled());
            Ok(Poll::Ready(read_buf.filled().len()))
        }
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Poll::Pending),
    }
}

fn read<R: tokio::io::AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut R,
    buf: &mut BytesMut,
) -> io::Result<Poll<usize>> {
    if buf.capacity() - buf.len() < READ_RESERVE {
        buf.reserve(READ_RESERVE);
    }
    match poll_read_buf(Pin::new(io), cx, buf) {
        Poll::Ready(Ok(n)) => Ok(Poll::Ready(n)),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Poll::Pending),
    }
}
