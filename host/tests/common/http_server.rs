//! A tiny local HTTP(S) server standing in for the upstreams a guest calls.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use spin_osb_test_support::http::{dechunk, find};

/// What a [`HttpServer`] saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a [`HttpServer`] answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync + 'static;

/// A minimal HTTP/1.1 server (one thread per connection, `Connection: close`)
/// on 127.0.0.1, optionally TLS.
pub struct HttpServer {
    pub port: u16,
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    /// Connections whose TLS handshake or request parsing failed.
    pub failed_connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> HttpServer {
        Self::start_inner(Arc::new(handler), None)
    }

    /// A server that always answers 200 with `body`.
    pub fn fixed(body: &str) -> HttpServer {
        let body = body.to_string();
        Self::start(move |_| Reply::ok(body.clone()))
    }

    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> HttpServer {
        Self::start_inner(Arc::new(handler), Some(tls))
    }

    fn start_inner(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        {
            let stop = stop.clone();
            let requests = requests.clone();
            let failed = failed.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let handler = handler.clone();
                    let requests = requests.clone();
                    let failed = failed.clone();
                    let tls = tls.clone();
                    thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        let ok = match tls {
                            None => serve_conn(conn, &*handler, &requests),
                            Some(cfg) => match rustls::ServerConnection::new(cfg) {
                                Ok(sc) => {
                                    let stream = rustls::StreamOwned::new(sc, conn);
                                    serve_conn(stream, &*handler, &requests)
                                }
                                Err(_) => false,
                            },
                        };
                        if !ok {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
            });
        }
        HttpServer {
            port: addr.port(),
            addr,
            requests,
            failed_connections: failed,
            stop,
        }
    }

    pub fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_conn<S: Read + Write>(
    mut stream: S,
    handler: &Handler,
    requests: &Mutex<Vec<SeenRequest>>,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let mut body = buf[head_end + 4..].to_vec();
    if chunked {
        // Read until the terminating zero-size chunk, then decode.
        while !body.ends_with(b"0\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body = dechunk(&body);
    } else {
        while body.len() < len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let seen = SeenRequest {
        method,
        target,
        headers,
        body,
    };
    requests.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let response = format!(
        "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    true
}
