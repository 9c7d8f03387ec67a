//! Loopback ports. Servers under test mostly bind port 0 and report the port they got;
//! these are for the places where a port must be chosen before the process starts (a
//! `redis-server`, the real Spin CLI) or must be known to be closed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port on 127.0.0.1 that nothing listened on a moment ago (another process may still
/// take it before the caller binds it: callers that start a server retry on failure).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether something accepts TCP connections on `addr` (within 300 ms).
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}
