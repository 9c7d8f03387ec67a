//! Guest stdout/stderr, prefixed line by line with the component id (as `spin up` does),
//! so interleaved output of concurrent components stays readable.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Which host stream a guest stream goes to.
#[derive(Clone, Copy)]
pub enum Target {
    /// The host's stdout.
    Stdout,
    /// The host's stderr.
    Stderr,
}

/// A `StdoutStream` that prefixes each line with `[component]`.
#[derive(Clone)]
pub struct PrefixedOutput {
    prefix: String,
    target: Target,
}

impl PrefixedOutput {
    /// Output of `component_id` to `target`.
    pub fn new(component_id: &str, target: Target) -> Self {
        Self {
            prefix: format!("[{component_id}] "),
            target,
        }
    }
}

impl IsTerminal for PrefixedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PrefixedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            prefix: self.prefix.clone(),
            target: self.target,
            pending: Vec::new(),
        })
    }
}

/// Buffers a partial line until its newline (or until the stream is closed/dropped).
struct LineWriter {
    prefix: String,
    target: Target,
    pending: Vec<u8>,
}

/// Guests cannot make the host buffer more than this per unfinished line.
const MAX_PENDING: usize = 64 * 1024;

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let mut out = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
        // Guest logging must never fail a request: write errors (closed pipe) are dropped.
        let _ = match self.target {
            Target::Stdout => std::io::stdout().lock().write_all(&out),
            Target::Stderr => std::io::stderr().lock().write_all(&out),
        };
    }

    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line);
        }
        if self.pending.len() > MAX_PENDING {
            self.flush_pending();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_pending();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_pending();
    }
}
