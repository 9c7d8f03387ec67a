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
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::outbound_http::full_body;

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
    if declared.is_some_and(|n| n > max_body as u64) {
        return (too_large(max_body), component);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return (too_large(max_body), component)
        }
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
