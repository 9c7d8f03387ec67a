//! A throw-away `redis-server` (Debian's `redis-server` package) on 127.0.0.1, for the
//! suites that run stores and brokers on Redis.
//!
//! Each server has its own port and directory and no automatic persistence. Tests then
//! do to it what happens to a production Redis:
//! * [`RedisServer::pause`]/[`RedisServer::resume`]: SIGSTOP/SIGCONT, a server that keeps
//!   its connections but answers nothing;
//! * [`RedisServer::stop`]/[`RedisServer::restart`]: killed, and started again empty;
//! * [`RedisServer::shutdown_save`]/[`RedisServer::start_again`]: `SHUTDOWN SAVE`, and
//!   started again on the same port with the same data;
//! * [`RedisServer::start_with_password`]: `requirepass`, as deployment configs have it.
//!
//! [`RedisServer::snapshot`] and [`RedisServer::command`] show what is stored. The
//! server is killed when dropped, also when the test panics.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::query::enc;

/// How long a starting server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The `redis-server` binary: `$REDIS_SERVER`, else Debian's `/usr/bin/redis-server`,
/// `/usr/local/bin/redis-server` or the first one on `PATH`. Panics with how to install it.
pub fn redis_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REDIS_SERVER={} is not a file",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("redis-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is required by this test but was not found (looked in /usr/bin, \
                 /usr/local/bin and PATH): install it with `apt-get install -y redis-server`, \
                 or set REDIS_SERVER to its path"
            )
        })
}

/// A running (or stopped) `redis-server` on 127.0.0.1, killed when dropped.
pub struct RedisServer {
    child: Option<ChildGuard>,
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server without password on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        Self::launch(None)
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        Self::launch(Some(password.to_string()))
    }

    fn launch(password: Option<String>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            password,
            dir: crate::files::tempdir("spin-osb-redis-"),
        };
        // Another process may take the port between `free_port` and the bind: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start: {}", server.log());
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, with `:<password>@` when it has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{}@127.0.0.1:{}", enc(password), self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Its data directory (`dump.rdb`, `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process runs (paused or not).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// A new connection (authenticated when the server has a password); read and write
    /// time out after `timeout`.
    pub fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let connection = client.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(connection)
    }

    /// Sends one command line (`EXISTS key`, inline protocol) over a fresh connection and
    /// returns the reply exactly as Redis sends it (`:1\r\n`, `$5\r\nvalue\r\n`, ...).
    pub fn command(&self, line: &str) -> String {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("redis on port {}: {e}", self.port));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut reply = Vec::new();
        if let Some(password) = &self.password {
            write!(
                writer,
                "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n",
                password.len()
            )
            .unwrap();
            read_raw_reply(&mut reader, &mut reply).unwrap();
            assert_eq!(reply, b"+OK\r\n", "AUTH");
            reply.clear();
        }
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        read_raw_reply(&mut reader, &mut reply)
            .unwrap_or_else(|e| panic!("{line}: {e} after {:?}", String::from_utf8_lossy(&reply)));
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Every key with its value (the broker's keys all hold strings).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut connection = self
            .connect(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("redis on port {}: {e}", self.port));
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .unwrap_or_else(|e| panic!("KEYS: {e}"));
        let mut out = BTreeMap::new();
        for key in keys {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query(&mut connection)
                .unwrap_or_else(|e| panic!("GET {}: {e}", String::from_utf8_lossy(&key)));
            // `None`: deleted meanwhile.
            if let Some(value) = value {
                out.insert(String::from_utf8_lossy(&key).into_owned(), value);
            }
        }
        out
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        let child = self.child.as_ref().expect("redis-server is not running");
        assert!(child.signal("STOP"), "kill -STOP {} failed", child.id());
    }

    /// Undoes [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) {
        let child = self.child.as_ref().expect("redis-server is not running");
        assert!(child.signal("CONT"), "kill -CONT {} failed", child.id());
    }

    /// Kills the server (SIGKILL): its data is lost, as nothing is persisted.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// `SHUTDOWN SAVE`: the server writes its data to `dump.rdb` and exits; the port is
    /// then closed. [`RedisServer::start_again`] brings the data back.
    pub fn shutdown_save(&mut self) {
        if let Ok(mut connection) = self.connect(Duration::from_secs(20)) {
            // The server closes the connection instead of answering.
            let _ = redis::cmd("SHUTDOWN")
                .arg("SAVE")
                .query::<redis::Value>(&mut connection);
        }
        if let Some(mut child) = self.child.take() {
            child.wait_timeout(Duration::from_secs(20));
            child.kill();
        }
        assert!(
            TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "redis port {} still accepts connections",
            self.port
        );
        assert!(
            self.dir().join("dump.rdb").exists(),
            "SHUTDOWN SAVE wrote no snapshot: {}",
            self.log()
        );
    }

    /// Starts the server again on the same port and directory, with the data of the last
    /// [`RedisServer::shutdown_save`] (if any).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        // The old process's port may take a moment to be free.
        for _ in 0..20 {
            if self.spawn() {
                return;
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "redis-server did not come back on port {}: {}",
            self.port,
            self.log()
        );
    }

    /// [`RedisServer::stop`], then [`RedisServer::start_again`]: a new server on the same
    /// port, empty unless a [`RedisServer::shutdown_save`] left a snapshot.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Spawns the server on `self.port`; false if it exits (the port was taken) or does not
    /// answer in time.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_server_bin());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(self.dir())
            .arg("--logfile")
            .arg(self.dir().join("redis.log"))
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let mut child = ChildGuard::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", redis_server_bin().display()));
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.answers_as(child.id()) {
                self.child = Some(child);
                return true;
            }
            if let Some(status) = child.wait_timeout(Duration::ZERO) {
                eprintln!("redis-server exited ({status}): {}", self.log());
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("redis-server did not answer: {}", self.log());
        false
    }

    /// Whether process `pid` answers on our port. `INFO` (rather than `PING`) names the
    /// answering process, so a server another test started on the same port is not
    /// mistaken for ours.
    fn answers_as(&self, pid: u32) -> bool {
        let Ok(mut connection) = self.connect(Duration::from_millis(500)) else {
            return false;
        };
        redis::cmd("INFO")
            .arg("server")
            .query::<String>(&mut connection)
            .is_ok_and(|info| info.contains(&format!("process_id:{pid}\r\n")))
    }

    /// The server's log file.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("redis.log")).unwrap_or_default()
    }
}

/// Appends one whole RESP reply, as received, to `out` (nested arrays included).
fn read_raw_reply(reader: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    if reader.read_until(b'\n', out)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = String::from_utf8_lossy(&out[start..])
        .trim_end()
        .to_string();
    let count = || {
        line[1..]
            .parse::<i64>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    match line.as_bytes().first() {
        Some(b'$') => {
            if let Ok(len @ 0..) = count() {
                let mut data = vec![0; len as usize + 2];
                reader.read_exact(&mut data)?;
                out.extend_from_slice(&data);
            }
        }
        Some(b'*') => {
            for _ in 0..count()?.max(0) {
                read_raw_reply(reader, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn set(server: &RedisServer, key: &str, value: &str) {
        let mut connection = server.connect(Duration::from_secs(5)).unwrap();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut connection)
            .unwrap();
    }

    #[test]
    fn a_server_answers_and_shows_its_keys() {
        let server = RedisServer::start();
        set(&server, "a", "1");
        set(&server, "b", "two");
        assert_eq!(server.command("EXISTS a"), ":1\r\n");
        assert_eq!(server.command("GET b"), "$3\r\ntwo\r\n");
        assert_eq!(server.command("GET nothing"), "$-1\r\n");
        assert_eq!(
            server.command("KEYS *").len(),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n".len()
        );
        let snapshot = server.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot["b"], b"two");
    }

    #[test]
    fn a_password_is_required_and_used() {
        let server = RedisServer::start_with_password("s3cret pass");
        assert!(server.url().contains(":s3cret%20pass@"));
        set(&server, "k", "v");
        assert_eq!(server.command("GET k"), "$1\r\nv\r\n");
        let mut anonymous = redis::Client::open(format!("redis://127.0.0.1:{}", server.port()))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        let refused = redis::cmd("GET")
            .arg("k")
            .query::<Option<String>>(&mut anonymous);
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn a_saved_server_comes_back_with_its_data_and_a_restarted_one_without() {
        let mut server = RedisServer::start();
        let port = server.port();
        set(&server, "kept", "yes");
        server.shutdown_save();
        assert!(!server.is_running());
        server.start_again();
        assert_eq!(server.port(), port);
        assert_eq!(server.snapshot()["kept"], b"yes");
        std::fs::remove_file(server.dir().join("dump.rdb")).unwrap();
        server.restart();
        assert_eq!(server.port(), port);
        assert!(server.snapshot().is_empty());
    }

    #[test]
    fn a_paused_server_answers_nothing_until_resumed() {
        let server = RedisServer::start();
        server.pause();
        let mut connection = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        connection
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        connection.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 16];
        assert!(
            connection.read(&mut buf).is_err(),
            "a paused server answered"
        );
        server.resume();
        connection
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = connection.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"+PONG\r\n");
    }

    #[test]
    fn a_stopped_server_closes_its_port_and_a_dropped_one_is_gone() {
        let mut server = RedisServer::start();
        let port = server.port();
        server.stop();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        server.restart();
        let pid = server.child.as_ref().unwrap().id();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
