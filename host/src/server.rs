//! The HTTP trigger: accepts connections, routes requests and runs components.
//!
//! Request bodies are read up to the configured limit before the guest starts (OSB
//! bodies are small; a larger one is a 413 without waking a component). Every request
//! gets one log line: method, path, status, duration, component.
//!
//! Hostile or broken clients cannot hold the server: headers must arrive within the header
//! deadline (the connection is closed otherwise) and bodies within the body deadline
//! (408); open connections are capped (one more gets a canned 503 with `Retry-After`), and
//! a full instance pool is a 503 with `Retry-After`, never a 500.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::outbound_http::full_body;

/// An oversized body is read and discarded up to this many times the limit (at least
/// `DRAIN_MIN` bytes, for at most `DRAIN_TIME`) before the connection is given up.
const DRAIN_FACTOR: usize = 16;
const DRAIN_MIN: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What a client is told to wait before retrying a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// The server's defences against slow, huge and many clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body; larger ones get 413.
    pub max_body: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers (and to start the next one on a kept-alive
    /// connection).
    pub header_read_timeout: Duration,
    /// Time to send a request's body.
    pub body_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(
                stream,
                client_addr,
                limits.max_connections,
            ));
            continue;
        };
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, request, client_addr, limits).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {client_addr}: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Answers a connection over the cap with a canned 503 and closes it, without reading the
/// request (a client past the cap gets an answer, not a hang or a reset).
async fn refuse_connection(mut stream: TcpStream, client_addr: SocketAddr, cap: usize) {
    tracing::warn!("connection from {client_addr} refused: {cap} connections are open");
    let body = format!("Service Unavailable: {cap} connections are open; retry later\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: {RETRY_AFTER_SECS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

async fn handle(
    app: Arc<App>,
    request: hyper::Request<Incoming>,
    client_addr: SocketAddr,
    limits: Limits,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (response, component) = dispatch(&app, request, client_addr, limits).await;
    tracing::info!(
        target: "spin_osb_host::request",
        "{method} {path} {} {:.1}ms {}",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
        component.as_deref().unwrap_or("-"),
    );
    response
}

async fn dispatch(
    app: &Arc<App>,
    request: hyper::Request<Incoming>,
    client_addr: SocketAddr,
    limits: Limits,
) -> (hyper::Response<HyperOutgoingBody>, Option<String>) {
    let max_body = limits.max_body;
    let Some(route) = app.router().route(request.uri().path()) else {
        return (plain(404, "Not Found"), None);
    };
    let component = Some(route.component_id.clone());
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    if declared.is_some_and(|n| n > max_body as u64) {
        drain(body, max_body).await;
        return (too_large(max_body), component);
    }
    let body =
        match tokio::time::timeout(limits.body_read_timeout, read_limited(body, max_body)).await {
            Err(_) => {
                tracing::warn!(
                    "{client_addr}: the request body did not arrive within {:?}",
                    limits.body_read_timeout
                );
                let text = format!(
                    "Request Timeout: the request body did not arrive within {} s",
                    limits.body_read_timeout.as_secs()
                );
                let mut response = plain(408, &text);
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return (response, component);
            }
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return (too_large(max_body), component),
            Ok(Err(e)) => {
                tracing::debug!("reading request body failed: {e}");
                return (
                    plain(400, "Bad Request: the request body could not be read"),
                    component,
                );
            }
        };
    let request = hyper::Request::from_parts(parts, full_body(body));
    let response = match tokio::time::timeout(
        app.request_timeout(),
        app.handle(route, request, client_addr),
    )
    .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(e)) if pool_is_full(&e) => {
            tracing::warn!("instance pool full: {e:#}");
            let mut response = plain(
                503,
                "Service Unavailable: the broker is at capacity; retry later",
            );
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(RETRY_AFTER_SECS),
            );
            response
        }
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            plain(500, "Internal Server Error")
        }
        Err(_) => {
            tracing::error!("request timed out after {:?}", app.request_timeout());
            plain(504, "Gateway Timeout: the component did not answer in time")
        }
    };
    (response, component)
}

/// Whether `error` is wasmtime's pooling allocator saying every slot is in use.
fn pool_is_full(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// Reads at most `max` bytes; `Ok(None)` when the body is larger (the rest is drained).
async fn read_limited(mut body: Incoming, max: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buffer.len() + data.len() > max {
                drain(body, max).await;
                return Ok(None);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Some(buffer.freeze()))
}

/// Reads and discards what the client is still sending (up to a bound), so it gets to read
/// the 413 instead of failing its write on a closed connection.
async fn drain(mut body: Incoming, max_body: usize) {
    let cap = max_body.saturating_mul(DRAIN_FACTOR).max(DRAIN_MIN);
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    while seen <= cap {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

fn too_large(max_body: usize) -> hyper::Response<HyperOutgoingBody> {
    plain(
        413,
        &format!("Payload Too Large: request bodies are limited to {max_body} bytes"),
    )
}

fn plain(status: u16, text: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    hyper::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .expect("static response parts are valid")
}
