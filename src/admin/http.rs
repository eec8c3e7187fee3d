//! A minimal HTTP/1.1 server for `/metrics`, `/health` and `/ready` (the prometheus crate has
//! none). One request per connection, GET only, headers capped at 8 KiB, 5 s to send the
//! request and 5 s to take the answer, at most 64 connections at once: enough for Prometheus
//! and load-balancer probes, and nothing a stray client can tie up.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::AdminContext;
use crate::lifecycle::stopped;

const MAX_REQUEST_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve_http(
    listener: TcpListener,
    admin: Arc<AdminContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Past the cap the connection is closed at once.
                    if let Ok(slot) = slots.clone().try_acquire_owned() {
                        let admin = admin.clone();
                        tokio::spawn(async move {
                            answer(stream, admin).await;
                            drop(slot);
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut shutdown) => return,
        }
    }
}

async fn answer(mut stream: TcpStream, admin: Arc<AdminContext>) {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let response = match request {
        Ok(Some(head)) => respond(&head, &admin),
        Ok(None) => Response::text(400, "Bad Request", "malformed request\n".into()),
        Err(_) => return,
    };
    let sent = async {
        let _ = stream.write_all(&response.into_bytes()).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, sent).await;
}

/// The request line and headers, up to the blank line; `None` if the client sent too much,
/// closed early or sent no request line.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(head).ok()
}

fn respond(head: &str, admin: &AdminContext) -> Response {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "only GET\n".into());
    }
    match path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: admin.render_metrics(),
            head_only: method == "HEAD",
        },
        "/health" => Response::text(200, "OK", "ok\n".into()),
        "/ready" => match admin.readiness_problems() {
            problems if problems.is_empty() => Response::text(200, "OK", "ready\n".into()),
            problems => Response::text(
                503,
                "Service Unavailable",
                format!("not ready:\n{}\n", problems.join("\n")),
            ),
        },
        _ => Response::text(404, "Not Found", "try /metrics, /health or /ready\n".into()),
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: String) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body,
            head_only: false,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_say_their_length_and_close() {
        let response = Response::text(404, "Not Found", "nope\n".into());
        let bytes = String::from_utf8(response.into_bytes()).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(bytes.contains("Content-Length: 5\r\n"));
        assert!(bytes.contains("Connection: close\r\n"));
        assert!(bytes.ends_with("\r\n\r\nnope\n"));
    }
}
