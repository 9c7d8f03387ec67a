//! The network side: a listener on 127.0.0.1, optional TLS, HTTP/1.1 via
//! hyper, and the transport-level failures tests inject (dropped
//! connections, requests answered 500 or not at all, the whole director
//! going down and coming back on the same port).
//!
//! Everything runs on one current-thread tokio runtime owned by a thread
//! of the `Simulator`, so blocking tests can use the simulator without a
//! runtime of their own. The supervisor loop owns the listener and obeys
//! control messages from the lib.

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::config::SimConfig;
use crate::http::{split_path, Req, Resp};
use crate::model::{DropPoint, RecordedRequest};
use crate::routes;
use crate::state::SimState;

/// What the server threads and the lib share.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub state: Mutex<SimState>,
    pub scheme: &'static str,
    pub port: u16,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Messages from the lib to the supervisor loop; each carries a reply
/// channel so the lib call returns only once it has taken effect.
pub(crate) enum Ctrl {
    Down(std_mpsc::Sender<()>),
    Up(std_mpsc::Sender<io::Result<()>>),
    Shutdown,
}

/// Bind 127.0.0.1:`port` with SO_REUSEADDR so the same port can be bound
/// again after going down. Must run inside the runtime.
pub(crate) fn bind(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

/// The error a service returns to make hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by bosh-director-simulator fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut ctrl: mpsc::UnboundedReceiver<Ctrl>,
) {
    // Bumped to close every open connection (down, shutdown).
    let (generation, _) = watch::channel(0u64);
    let mut listener = Some(listener);
    loop {
        tokio::select! {
            msg = ctrl.recv() => match msg {
                None | Some(Ctrl::Shutdown) => break,
                Some(Ctrl::Down(reply)) => {
                    listener = None;
                    generation.send_modify(|g| *g += 1);
                    let _ = reply.send(());
                }
                Some(Ctrl::Up(reply)) => {
                    let result = match listener {
                        Some(_) => Ok(()),
                        None => bind(shared.port).map(|l| listener = Some(l)),
                    };
                    let _ = reply.send(result);
                }
            },
            accepted = accept(listener.as_ref()) => {
                let Ok((stream, _)) = accepted else { continue };
                {
                    let mut st = shared.lock();
                    if st.faults.drop_connections > 0 {
                        st.faults.drop_connections -= 1;
                        drop(stream);
                        continue;
                    }
                }
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                let closed = generation.subscribe();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(shared, stream, closed).await;
                            }
                        }
                        None => serve(shared, stream, closed).await,
                    }
                });
            }
        }
    }
    generation.send_modify(|g| *g += 1);
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve<IO>(shared: Arc<Shared>, io: IO, mut closed: watch::Receiver<u64>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(shared.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = closed.changed() => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| DropConnection)?.to_bytes();
    let path = parts.uri.path().to_string();
    let req = Req {
        segments: split_path(&path),
        query: crate::http::parse_form(parts.uri.query().unwrap_or("")),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.to_string()),
        path,
        method: parts.method,
        version: parts.version,
        headers: parts.headers,
        body,
        scheme: shared.scheme,
        local_authority: format!("127.0.0.1:{}", shared.port),
    };
    // The state lock is held only here, never across an await.
    let (resp, stall) = {
        let mut st = shared.lock();
        let mut record = RecordedRequest {
            method: req.method.to_string(),
            path: req.path.clone(),
            path_and_query: req.path_and_query.clone(),
            content_type: req.header("content-type").map(str::to_string),
            context_id: req.header("x-bosh-context-id").map(str::to_string),
            auth: auth::kind(&req.headers),
            authenticated: false,
            body: String::from_utf8_lossy(&req.body).into_owned(),
            status: None,
        };
        let drop_point = st.faults.take_drop_request(&req.path);
        if drop_point == Some(DropPoint::BeforeProcessing) {
            st.requests.push(record);
            return Err(DropConnection);
        }
        if st.faults.take_fail_request(&req.path) {
            record.status = Some(500);
            st.requests.push(record);
            return Ok(to_hyper(Resp::empty(
                http::StatusCode::INTERNAL_SERVER_ERROR,
            )));
        }
        let handled = routes::handle(&shared.config, &mut st, &req);
        record.auth = handled.auth;
        record.authenticated = handled.authenticated;
        if drop_point == Some(DropPoint::AfterProcessing) {
            st.requests.push(record);
            return Err(DropConnection);
        }
        record.status = Some(handled.resp.status.as_u16());
        st.requests.push(record);
        let stall = st.faults.take_stall_request(&req.path);
        (handled.resp, stall)
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    Ok(to_hyper(resp))
}

fn to_hyper(resp: Resp) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(resp.status);
    for (name, value) in resp.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(resp.body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
