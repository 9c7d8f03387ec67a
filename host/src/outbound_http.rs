//! Outbound HTTP for guests: the allow-list check, service chaining and the network send.
//!
//! `wasi:http/outgoing-handler` calls [`OutboundHooks::send_request`] for every guest
//! request. A `*.spin.internal` host is dispatched in-process to that component (no
//! network hop, private components included); anything else must match the component's
//! `allowed_outbound_hosts` and goes out over TCP, with TLS from [`crate::client_tls`].
//! A denied request reaches the guest as `HttpRequestDenied`, as on Spin.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::{default_port, SPIN_INTERNAL};
use crate::app::App;
use crate::routes::RouteMatch;

/// Used when the guest sets no connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Used when the guest sets no first-byte timeout.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// Per-instance hooks: knows which component is calling and how to reach the app.
pub struct OutboundHooks {
    /// The calling component.
    pub component_id: String,
    /// The running app (for chaining and TLS settings).
    pub app: Arc<App>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let app = self.app.clone();
        let caller = self.component_id.clone();
        Box::new(async move { send(app, caller, request, options).await })
    }
}

async fn send(
    app: Arc<App>,
    caller: String,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .to_ascii_lowercase();
    let port = uri.port_u16();
    let component = app.component(&caller).ok_or(HttpError::HttpRequestDenied)?;
    if !component.allowed_hosts.allows(&scheme, &host, port) {
        tracing::warn!("component '{caller}': outbound request to {scheme}://{host}{} denied by allowed_outbound_hosts", port.map(|p| format!(":{p}")).unwrap_or_default());
        return Err(HttpError::HttpRequestDenied);
    }
    if let Some(target) = host.strip_suffix(SPIN_INTERNAL) {
        return chain(app, target, request).await;
    }
    let port = port
        .or_else(|| default_port(&scheme))
        .ok_or(HttpError::HttpRequestUriInvalid)?;
    let tls = (scheme == "https").then(|| app.tls().for_host(&caller, &host, port));
    send_over_network(request, &host, port, tls, options).await
}

/// Service chaining: run `target` in-process with the request.
async fn chain(app: Arc<App>, target: &str, mut request: http::Request<WasiBody>) -> SendResult {
    if app.component(target).is_none() {
        tracing::warn!("service chaining to unknown component '{target}'");
        return Err(HttpError::DestinationNotFound);
    }
    // Spin strips the Host header of chained requests; the URI keeps the authority.
    request.headers_mut().remove(http::header::HOST);
    let path = request.uri().path().to_string();
    let route = RouteMatch::synthetic(target, &path);
    let client_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    match app.handle(route, request, client_addr).await {
        Ok(response) => Ok((response, Box::new(async { Ok(()) }))),
        Err(e) => {
            tracing::error!("service chaining to '{target}' failed: {e:#}");
            Err(HttpError::InternalError(Some(format!("{e:#}"))))
        }
    }
}

async fn send_over_network(
    mut request: http::Request<WasiBody>,
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    options: Option<RequestOptions>,
) -> SendResult {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
    let connect_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = match tokio::time::timeout(
        connect_timeout,
        TcpStream::connect((connect_host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(HttpError::ConnectionRefused)
        }
        Ok(Err(e)) => return Err(HttpError::Connect(e)),
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let _ = tcp.set_nodelay(true);
    // Requests go out in origin form; scheme and authority live in the Host header.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    match tls {
        Some(config) => {
            let server_name = rustls::pki_types::ServerName::try_from(connect_host)
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let stream =
                match tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::warn!("TLS handshake with {host}:{port} failed: {e}");
                        return Err(tls_error(&e));
                    }
                    Err(_) => return Err(HttpError::ConnectionTimeout),
                };
            exchange(stream, request, connect_timeout, first_byte_timeout).await
        }
        None => exchange(tcp, request, connect_timeout, first_byte_timeout).await,
    }
}

fn tls_error(e: &std::io::Error) -> HttpError {
    let certificate_problem = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if certificate_problem {
        HttpError::TlsCertificateError
    } else {
        HttpError::TlsProtocolError
    }
}

async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> SendResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake::<_, WasiBody>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let connection = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let io: IoFuture = Box::new(async move {
        match connection.await {
            Ok(result) => result.map_err(HttpError::from),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    });
    Ok((response, io))
}

/// A body that yields `bytes` once (used for buffered request bodies).
pub fn full_body(bytes: Bytes) -> WasiBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
