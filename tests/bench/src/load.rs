//! The load generator: closed-loop workers on keep-alive connections, every latency
//! recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BODY;

#[derive(Default)]
pub(crate) struct RunResult {
    pub(crate) planned: u64,
    /// Latencies of every complete response (any status), nanoseconds, sorted.
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) ok: u64,
    /// Complete responses that were not 200 + the expected body.
    pub(crate) bad_responses: u64,
    /// Connect/send/receive failures (the connection is replaced).
    pub(crate) transport_errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
}

impl RunResult {
    pub(crate) fn completed(&self) -> u64 {
        self.ok + self.bad_responses
    }
    pub(crate) fn errors(&self) -> u64 {
        self.bad_responses + self.transport_errors
    }
    pub(crate) fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.completed() as f64 / secs
        } else {
            0.0
        }
    }
    pub(crate) fn percentile_us(&self, p: f64) -> f64 {
        percentile_us(&self.latencies_ns, p)
    }
    pub(crate) fn max_us(&self) -> f64 {
        self.latencies_ns
            .last()
            .map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
    }
    pub(crate) fn merge(&mut self, w: RunResult) {
        self.latencies_ns.extend(w.latencies_ns);
        self.ok += w.ok;
        self.bad_responses += w.bad_responses;
        self.transport_errors += w.transport_errors;
        self.timed_out |= w.timed_out;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
    }
    pub(crate) fn error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// The `p`th percentile (nearest rank) of sorted nanosecond latencies, in µs.
pub(crate) fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let n = sorted_ns.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, n) - 1] as f64 / 1000.0
}

/// Closed loop: `concurrency` workers with one keep-alive connection each take
/// request tickets until `total` are taken or `deadline` passes.
pub(crate) async fn load(
    addr: SocketAddr,
    total: u64,
    concurrency: u64,
    deadline: Instant,
) -> RunResult {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let tickets = tickets.clone();
            let per_worker = (total / concurrency + 1) as usize;
            tokio::spawn(worker(addr, total, tickets, deadline, per_worker))
        })
        .collect();
    let mut result = RunResult {
        planned: total,
        ..RunResult::default()
    };
    for w in workers {
        match w.await {
            Ok(r) => result.merge(r),
            Err(e) => {
                result.transport_errors += 1;
                result.error(format!("worker failed: {e}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    result.latencies_ns.sort_unstable();
    result
}

pub(crate) async fn worker(
    addr: SocketAddr,
    total: u64,
    tickets: Arc<AtomicU64>,
    deadline: Instant,
    capacity: usize,
) -> RunResult {
    let mut r = RunResult {
        latencies_ns: Vec::with_capacity(capacity),
        ..RunResult::default()
    };
    let authority = addr.to_string();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        if Instant::now() >= deadline {
            r.timed_out = true;
            break;
        }
        if tickets.fetch_add(1, Ordering::Relaxed) >= total {
            break;
        }
        let sender = match conn.as_mut() {
            Some(s) => s,
            None => match tokio::time::timeout_at(deadline.into(), connect(addr)).await {
                Err(_) => {
                    r.timed_out = true;
                    break;
                }
                Ok(Err(e)) => {
                    r.transport_errors += 1;
                    r.error(format!("connect: {e:#}"));
                    // Do not spin on a dead server; the deadline still bounds us.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Ok(Ok(s)) => conn.insert(s),
            },
        };
        let request = Request::get("/")
            .header(http::header::HOST, &authority)
            .body(Empty::<Bytes>::new())
            .expect("static request");
        let t0 = Instant::now();
        let answer = tokio::time::timeout_at(deadline.into(), async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await;
        let dt = t0.elapsed();
        match answer {
            Err(_) => {
                r.timed_out = true;
                break;
            }
            Ok(Err(e)) => {
                r.transport_errors += 1;
                r.error(format!("request: {e}"));
                conn = None;
            }
            Ok(Ok((status, body))) => {
                r.latencies_ns.push(dt.as_nanos() as u64);
                if status == StatusCode::OK && body.as_ref() == BODY {
                    r.ok += 1;
                } else {
                    r.bad_responses += 1;
                    r.error(format!(
                        "status {status}, body {:?}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
            }
        }
    }
    r
}

pub(crate) async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Fetched {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Headers without `date` (which differs by the second), sorted.
    pub(crate) fn comparable_headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect();
        h.sort();
        h
    }
    pub(crate) fn describe(&self) -> String {
        let headers: Vec<String> = self
            .comparable_headers()
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "{} [{}] {:?}",
            self.status,
            headers.join("; "),
            String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
        )
    }
}

pub(crate) async fn fetch_one(addr: SocketAddr, deadline: Instant) -> Result<Fetched> {
    let limit = deadline.min(Instant::now() + Duration::from_secs(10));
    tokio::time::timeout_at(limit.into(), async {
        let mut sender = connect(addr).await?;
        let request = Request::get("/")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Fetched {
            status,
            headers,
            body,
        })
    })
    .await
    .map_err(|_| anyhow!("no answer in time"))?
}
