//! A throw-away redis-server on loopback and a raw RESP client, for the suites that run
//! brokers on a shared Redis store (Debian's `redis-server` package).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A throw-away redis-server on 127.0.0.1 (no automatic persistence). `stop` saves a
/// snapshot on the way out (`SHUTDOWN SAVE`) so `start_again` on the same port and
/// directory comes back with the same data, like a restarted production Redis.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn redis_bin() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("redis-server is required by this suite; install it (`apt-get install redis-server`)")
        })
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("spin-osb-scale-redis-")
            .tempdir()
            .expect("redis dir");
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = Self::spawn(port, dir.path()) {
                return RedisServer {
                    child: Some(child),
                    port,
                    dir,
                };
            }
        }
        panic!("redis-server did not come up");
    }

    fn spawn(port: u16, dir: &Path) -> Option<Child> {
        let mut child = Command::new(redis_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if matches!(redis_call(port, &[b"PING"]), Ok(RedisReply::Status(s)) if s == "PONG") {
                return Some(child);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn call(&self, args: &[&[u8]]) -> RedisReply {
        redis_call(self.port, args).unwrap_or_else(|e| panic!("redis {:?}: {e}", args.first()))
    }

    /// Every key with its value (all of the broker's keys are strings).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let keys = match self.call(&[b"KEYS", b"*"]) {
            RedisReply::Array(Some(items)) => items,
            other => panic!("KEYS: {other:?}"),
        };
        let mut out = BTreeMap::new();
        for key in keys {
            let RedisReply::Bulk(Some(key)) = key else {
                panic!("KEYS item {key:?}")
            };
            match self.call(&[b"GET", &key]) {
                RedisReply::Bulk(Some(value)) => {
                    out.insert(String::from_utf8_lossy(&key).into_owned(), value);
                }
                RedisReply::Bulk(None) => {} // deleted meanwhile
                other => panic!("GET {}: {other:?}", String::from_utf8_lossy(&key)),
            }
        }
        out
    }

    /// `SHUTDOWN SAVE`: writes the data to dump.rdb and exits; the port is then closed.
    pub fn stop(&mut self) {
        let _ = redis_call(self.port, &[b"SHUTDOWN", b"SAVE"]);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "redis port {} still accepts connections",
            self.port
        );
        assert!(
            self.dir.path().join("dump.rdb").exists(),
            "SHUTDOWN SAVE wrote no snapshot"
        );
    }

    /// Starts redis-server again on the same port and directory (it loads dump.rdb).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is running");
        for _ in 0..20 {
            if let Some(child) = Self::spawn(self.port, self.dir.path()) {
                self.child = Some(child);
                return;
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!("redis-server did not come back on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RedisReply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<RedisReply>>),
}

/// One command over a fresh connection, in RESP (binary-safe arguments).
pub fn redis_call(port: u16, args: &[&[u8]]) -> std::io::Result<RedisReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<RedisReply> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("short RESP line {line:?}"),
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|e| bad(format!("{text:?}: {e}")))
    };
    Ok(match line[0] {
        b'+' => RedisReply::Status(text.clone()),
        b'-' => RedisReply::Error(text.clone()),
        b':' => RedisReply::Int(number()?),
        b'$' => {
            let n = number()?;
            if n < 0 {
                RedisReply::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(r, &mut buf)?;
                buf.truncate(n as usize);
                RedisReply::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                RedisReply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r)?);
                }
                RedisReply::Array(Some(items))
            }
        }
        other => return Err(bad(format!("unknown RESP type {:?}", other as char))),
    })
}
