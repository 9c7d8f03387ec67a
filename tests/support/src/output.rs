//! What a process under test prints. A failing test shows the host's output (its log is
//! the only account of what happened on the other side), and some tests assert on it (a
//! route table, a warning, a secret that must never appear).
//!
//! [`capture`] reads a child's stdout and stderr on two threads into an [`Output`], line by
//! line in arrival order, and reports the `Serving http://...` line the hosts print once
//! they accept connections.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

/// Where a captured line came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// The process's stderr.
    Stderr,
}

/// Where a line of an [`Output`] came from: a stream, or the test harness itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Stream(Stream),
    Note,
}

/// A process's stdout and stderr, line by line in arrival order, plus notes the harness
/// adds (starts and stops). Clones share the lines.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<(Source, String)>>>);

impl Output {
    fn lines(&self) -> MutexGuard<'_, Vec<(Source, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, source: Source, line: String) {
        self.lines().push((source, line));
    }

    /// Adds a line of the harness's own (`=== started ... ===`) between the process's lines.
    pub fn note(&self, line: impl Into<String>) {
        self.push(Source::Note, line.into());
    }

    /// Number of lines so far.
    pub fn len(&self) -> usize {
        self.lines().len()
    }

    /// Whether nothing was captured yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stdout lines, each ending in `\n`.
    pub fn stdout(&self) -> String {
        self.only(Source::Stream(Stream::Stdout))
    }

    /// The stderr lines, each ending in `\n`.
    pub fn stderr(&self) -> String {
        self.only(Source::Stream(Stream::Stderr))
    }

    fn only(&self, which: Source) -> String {
        self.lines()
            .iter()
            .filter(|(s, _)| *s == which)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    /// Every line as printed, in arrival order.
    pub fn all(&self) -> String {
        self.lines().iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// Every line, tagged with its stream: `[out] ...`, `[err] ...` (notes as they are).
    pub fn text(&self) -> String {
        self.lines()
            .iter()
            .map(|(s, l)| format!("{}\n", tagged(*s, l)))
            .collect()
    }

    /// The tagged lines from index `from` on, at most the last `max` of them, indented
    /// for a failure message.
    pub fn since(&self, from: usize, max: usize) -> String {
        let lines = self.lines();
        let from = from.min(lines.len()).max(lines.len().saturating_sub(max));
        lines[from..]
            .iter()
            .map(|(s, l)| format!("  {}\n", tagged(*s, l)))
            .collect()
    }

    /// Every tagged line, indented for a failure message.
    pub fn pretty(&self) -> String {
        self.since(0, usize::MAX)
    }
}

fn tagged(source: Source, line: &str) -> String {
    match source {
        Source::Stream(Stream::Stdout) => format!("[out] {line}"),
        Source::Stream(Stream::Stderr) => format!("[err] {line}"),
        Source::Note => line.to_string(),
    }
}

/// The threads that read a child's output (see [`capture`]).
pub struct Readers(Vec<thread::JoinHandle<()>>);

impl Readers {
    /// Waits until both streams are closed (after the process exited), so that the
    /// [`Output`] holds everything it printed.
    pub fn join(self) {
        for r in self.0 {
            let _ = r.join();
        }
    }
}

/// Reads `child`'s piped stdout and stderr into `output` (both must be `Stdio::piped()`);
/// the receiver gets `Some(url)` for each `Serving <url>` line on stdout, and `None` once
/// stdout closes.
pub fn capture(child: &mut Child, output: &Output) -> (mpsc::Receiver<Option<String>>, Readers) {
    let (tx, serving) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = Readers(vec![
        spawn_reader(stdout, Stream::Stdout, output.clone(), Some(tx)),
        spawn_reader(stderr, Stream::Stderr, output.clone(), None),
    ]);
    (serving, readers)
}

fn spawn_reader<R: Read + Send + 'static>(
    reader: R,
    stream: Stream,
    output: Output,
    serving: Option<mpsc::Sender<Option<String>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    let url = line
                        .trim()
                        .strip_prefix("Serving ")
                        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                    output.push(Source::Stream(stream), line);
                    if let (Some(tx), Some(url)) = (&serving, url) {
                        let _ = tx.send(Some(url));
                    }
                }
            }
        }
        if let Some(tx) = serving {
            let _ = tx.send(None);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    #[test]
    fn both_streams_are_captured_and_the_serving_line_is_reported() {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "echo starting >&2; echo 'Serving http://127.0.0.1:1234 (x)'; echo done",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Output::default();
        output.note("=== start ===");
        let (serving, readers) = capture(&mut child, &output);
        assert_eq!(
            serving.recv_timeout(Duration::from_secs(10)).unwrap(),
            Some("http://127.0.0.1:1234".to_string())
        );
        assert_eq!(serving.recv_timeout(Duration::from_secs(10)).unwrap(), None);
        child.wait().unwrap();
        readers.join();
        assert_eq!(output.len(), 4);
        assert_eq!(output.stderr(), "starting\n");
        assert_eq!(output.stdout(), "Serving http://127.0.0.1:1234 (x)\ndone\n");
        assert!(output.text().starts_with("=== start ===\n"));
        assert!(output.text().contains("[err] starting\n"));
        assert!(output.text().contains("[out] done\n"));
        assert_eq!(output.since(0, 1).lines().count(), 1);
        assert!(output.pretty().starts_with("  === start ===\n  ["));
    }
}
