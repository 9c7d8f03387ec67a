//! The native baseline: the hello handler on hyper, configured like spin-osb's server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{BODY, CONTENT_TYPE, STATUS};

/// The hello body. By default it has no exact size hint, so hyper frames it
/// with `transfer-encoding: chunked`, as spin-osb does for a guest body; with
/// `--native-content-length` it is a `Full` body (`content-length: 13`).
pub(crate) enum HelloBody {
    Chunked(Option<Bytes>),
    Full(Full<Bytes>),
}

impl hyper::body::Body for HelloBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            HelloBody::Chunked(data) => {
                std::task::Poll::Ready(data.take().map(|d| Ok(hyper::body::Frame::data(d))))
            }
            HelloBody::Full(full) => std::pin::Pin::new(full).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            HelloBody::Chunked(data) => data.is_none(),
            HelloBody::Full(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            HelloBody::Chunked(_) => hyper::body::SizeHint::default(),
            HelloBody::Full(full) => full.size_hint(),
        }
    }
}

pub(crate) fn hello(content_length: bool) -> Response<HelloBody> {
    let body = Bytes::from_static(BODY);
    let body = if content_length {
        HelloBody::Full(Full::new(body))
    } else {
        HelloBody::Chunked(Some(body))
    };
    Response::builder()
        .status(STATUS)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(body)
        .expect("static response")
}

pub(crate) async fn start_native_server(content_length: bool) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |_request: Request<Incoming>| async move {
                            Ok::<_, Infallible>(hello(content_length))
                        }),
                    )
                    .await;
            });
        }
    });
    Ok(addr)
}
