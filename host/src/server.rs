//! The HTTP trigger: accepts connections, routes requests and runs components.
//!
//! Request bodies are read up to the configured limit before the guest starts (OSB
//! bodies are small; a larger one is a 413 without waking a component). Every request
//! gets one log line: method, path, status, duration, component.

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
use tokio::net::TcpListener;
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

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    max_body: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
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
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, request, client_addr, max_body).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {client_addr}: {e}");
            }
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

async fn handle(
    app: Arc<App>,
    request: hyper::Request<Incoming>,
    client_addr: SocketAddr,
    max_body: usize,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (response, component) = dispatch(&app, request, client_addr, max_body).await;
    tracing::info!(
        target: "spin_osb::request",
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
    max_body: usize,
) -> (hyper::Response<HyperOutgoingBody>, Option<String>) {
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
    let body = match read_limited(body, max_body).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return (too_large(max_body), component),
        Err(e) => {
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
