//! The HTTP listener: accepts connections and serves the API on them with hyper, within
//! limits that keep a client from holding the server: how long a request's headers may
//! take to arrive (an idle keep-alive connection waits for its next request's headers, so
//! it is closed after as long), how large they may be, and how many connections are open
//! at once (one beyond is answered 503 and closed, instead of waiting unanswered in the
//! kernel's backlog).

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one client may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time from a connection's readiness for a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// Bytes of a request's head (request line and headers) at most.
    pub max_header_bytes: usize,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // As long as the longest receive wait, so a long-polling client's idle
            // keep-alive connection is not cut between two polls.
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
        }
    }
}

/// Pause after an accept fails for want of resources (file descriptors): retrying at
/// once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a connection beyond [`Limits::max_connections`] is told before it is closed.
const BUSY: &str = r#"{"type":"/problems/busy","title":"Service Unavailable","status":503,"detail":"too many connections: retry later"}"#;

/// Serves `routes` on `listener` until `shutdown` completes; then stops accepting and
/// waits for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    routes: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's floor for its read buffer.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        // Answers are small and written whole: sending them at once saves a round trip
        // of delayed acknowledgements.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            routes
                .clone()
                .map_request(|req: hyper::Request<Incoming>| req.map(Body::new)),
        );
        let connection = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            // A connection ends in an error when the client goes away or breaks the
            // protocol; neither is the server's to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a connection beyond the limit that the server is busy, and closes it.
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
         content-type: application/problem+json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A server with `limits` on a loopback port answering every request with `ok`.
    async fn start(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(serve(listener, routes, limits, std::future::pending()));
        addr
    }

    /// Sends `request` on `stream` and reads until the server closes or answers whole.
    async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            let whole = text.contains("\r\n\r\n") && (text.ends_with("ok") || text.ends_with('}'));
            if n == 0 || whole {
                return text.into_owned();
            }
        }
    }

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let limits = Limits::default();
        let addr = start(limits.clone()).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(
            limits.header_read_timeout * 2,
            exchange(&mut slow, b"GET /x HTTP/1.1\r\nhost: t\r\nx-slow: "),
        )
        .await
        .expect("the server closes the connection");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(started.elapsed() >= limits.header_read_timeout);
        // A client that sends its headers is served, and keeps its connection between
        // requests for as long.
        let mut quick = TcpStream::connect(addr).await.unwrap();
        assert!(
            exchange(&mut quick, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        assert!(
            exchange(&mut quick, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }

    #[tokio::test]
    async fn headers_beyond_the_limit_are_refused() {
        let addr = start(Limits::default()).await;
        let mut big = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /x HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        let answer = exchange(&mut big, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let mut fine = TcpStream::connect(addr).await.unwrap();
        assert!(
            exchange(&mut fine, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }

    #[tokio::test]
    async fn a_connection_beyond_the_limit_is_told_the_server_is_busy() {
        let addr = start(Limits {
            max_connections: 2,
            ..Limits::default()
        })
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(
            exchange(&mut first, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        assert!(
            exchange(&mut second, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        let mut third = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut third, GET).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many connections"), "{answer}");
        // Once one closes, a newcomer is served.
        drop(first);
        let mut served = false;
        for _ in 0..500 {
            let mut next = TcpStream::connect(addr).await.unwrap();
            if exchange(&mut next, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
            {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            served,
            "a slot freed by a closed connection is given to a newcomer"
        );
        // The second connection was never disturbed.
        assert!(
            exchange(&mut second, GET)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }
}
