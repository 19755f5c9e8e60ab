//! A minimal HTTP/1.1 responder for `GET /metrics` on tokio: one request
//! per connection, a bounded head, a time limit, `Connection: close`. The
//! page itself is rendered on the daemon's loop (a
//! [`crate::api::Request::Metrics`] through the operator inbox), so it never
//! races a reload.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::MetricsError;
use crate::api::server::Pending;
use crate::api::{Answer, Request};

/// Longest request head read.
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `GET /metrics` from the loop behind `loop_tx`
/// (call inside a runtime); returns the bound address.
///
/// # Errors
/// [`MetricsError::Bind`].
pub async fn start(
    addr: SocketAddr,
    loop_tx: mpsc::Sender<Pending>,
) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, loop_tx.clone()));
                }
                Err(e) => {
                    warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (or `HEAD`).
    Metrics,
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
    /// Not HTTP.
    Bad,
}

/// Routes the request line of `head`.
///
/// ```
/// use kowabunga_control::metrics::http::{route, Route};
/// assert_eq!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
/// assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
/// assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
/// assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
/// assert_eq!(route("hello"), Route::Bad);
/// ```
pub fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" && method != "HEAD" {
        return Route::NotAllowed;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// A complete response.
pub fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

async fn serve(mut stream: TcpStream, loop_tx: mpsc::Sender<Pending>) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return,
    };
    let text = match route(&head) {
        Route::Metrics => {
            let (reply, answer) = oneshot::channel();
            let body = if loop_tx.send((Request::Metrics, reply)).await.is_ok() {
                match answer.await.map(|r| r.into_result()) {
                    Ok(Ok(Answer::Metrics(text))) => Some(text),
                    _ => None,
                }
            } else {
                None
            };
            match body {
                Some(body) => response("200 OK", CONTENT_TYPE, &body),
                None => response("503 Service Unavailable", "text/plain", "daemon busy\n"),
            }
        }
        Route::NotFound => response("404 Not Found", "text/plain", "try /metrics\n"),
        Route::NotAllowed => response("405 Method Not Allowed", "text/plain", "GET only\n"),
        Route::Bad => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    if let Err(e) = stream.write_all(text.as_bytes()).await {
        debug!("metrics: write failed: {e}");
    }
    let _ = stream.shutdown().await;
}
