//! Request limits (body size, timeout) and graceful shutdown.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_body_within_the_limit_is_delivered_whole() {
    let host = Up::app("basic")
        .arg("--max-request-body-bytes")
        .arg("1024")
        .start();
    let body = "x".repeat(1024);
    let v = host.post("/upload", body).ok();
    assert_eq!(v["body_len"], 1024);
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let host = Up::app("basic")
        .arg("--max-request-body-bytes")
        .arg("1024")
        .start();
    let r = host.post("/upload", "x".repeat(1025));
    assert_eq!(r.status, 413, "{}", r.body);
    // The host keeps serving.
    assert_eq!(host.get("/after").status, 200);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let host = Up::app("basic")
        .arg("--max-request-body-bytes")
        .arg("1024")
        .start();
    let reader = std::io::Cursor::new(vec![b'y'; 4096]);
    let resp = host
        .client
        .post(host.url("/upload"))
        .body(reqwest::blocking::Body::new(reader))
        .send();
    match resp {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        // Closing the connection after answering 413 mid-upload is acceptable
        // only if the host answered at all; a reset without answer is not.
        Err(e) => panic!("no response to an oversized chunked body: {e:?}"),
    }
}

#[test]
fn the_default_body_limit_is_one_mebibyte() {
    let host = Up::app("basic").start();
    let v = host.post("/upload", vec![b'a'; 1024 * 1024]).ok();
    assert_eq!(v["body_len"], 1024 * 1024);
    let r = host.post("/upload", vec![b'a'; 1024 * 1024 + 1]);
    assert_eq!(r.status, 413);
}

#[test]
fn a_request_over_the_timeout_is_cut_off() {
    let host = Up::app("basic")
        .arg("--request-timeout-secs")
        .arg("1")
        .start();
    let started = Instant::now();
    let r = host.get("/slow?op=sleep&ms=5000");
    let took = started.elapsed();
    assert!(
        r.status >= 500,
        "expected a 5xx (504), got {}: {}",
        r.status,
        r.body
    );
    assert!(took < Duration::from_millis(4000), "took {took:?}");
    assert_eq!(host.get("/fast").status, 200);
}

#[test]
fn a_guest_can_sleep_within_the_timeout() {
    let host = Up::app("basic").start();
    let started = Instant::now();
    let v = host.get("/slow?op=sleep&ms=300").ok();
    assert_eq!(v["slept_ms"], 300);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let mut host = Up::app("basic").start();
    let url = host.url("/slow?op=sleep&ms=2500");
    let inflight = std::thread::spawn(move || {
        let r = client().get(url).send();
        r.map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    // Let the request reach the guest.
    std::thread::sleep(Duration::from_millis(800));
    let addr = host.addr;
    let started = Instant::now();
    let status = host.terminate(Duration::from_secs(30));
    let (code, body) = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request failed: {e:?}\n{}", host.output.pretty()));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("slept_ms"), "{body}");
    let status = status.unwrap_or_else(|| {
        panic!(
            "spin-osb did not exit after SIGTERM\n{}",
            host.output.pretty()
        )
    });
    assert!(
        status.success() || status.code().is_some(),
        "killed by a signal: {status:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "exited before the request finished"
    );
    assert!(!is_listening(addr), "still listening after exit");
}

#[test]
fn sigterm_waits_for_an_in_flight_outbound_call_to_a_slow_server() {
    let slow = HttpServer::start(|_| Reply::ok("finally").delayed(Duration::from_millis(2500)));
    let mut host = Up::app("outbound").var("upstream_port", "1").start();
    let url = format!(
        "{}/any/x?{}",
        host.base,
        query(&[("op", "outbound"), ("url", &slow.url("/slow"))])
    );
    let inflight = std::thread::spawn(move || {
        client()
            .get(url)
            .send()
            .map(|r| r.text().unwrap_or_default())
    });
    // Wait until the slow server has the request, then ask the host to stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(slow.hits(), 1, "the outbound call never arrived");
    let status = host.terminate(Duration::from_secs(30));
    let body = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request failed: {e:?}\n{}", host.output.pretty()));
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(v["ok"], true, "{body}");
    assert_eq!(v["body"], "finally", "{body}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
}

#[test]
fn sigterm_stops_accepting_new_connections() {
    let mut host = Up::app("basic").start();
    let url = host.url("/slow?op=sleep&ms=2000");
    let inflight =
        std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(600));
    signal(host.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(400));
    // While draining, a new connection is refused (or gets no response).
    let late = client()
        .get(host.url("/late"))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(
        late.as_ref()
            .map(|r| r.status().as_u16() != 200)
            .unwrap_or(true),
        "a new request was served after SIGTERM: {late:?}"
    );
    assert_eq!(inflight.join().unwrap().ok(), Some(200));
    host.terminate(Duration::from_secs(20));
}

#[test]
fn sigint_shuts_down_cleanly() {
    let mut host = Up::app("basic").start();
    assert_eq!(host.get("/").status, 200);
    signal(host.pid(), "INT");
    let status = host.terminate(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "did not exit after SIGINT\n{}",
        host.output.pretty()
    );
    assert!(!is_listening(host.addr));
}

#[test]
fn a_restart_loads_compiled_components_from_the_cache_instead_of_recompiling() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_string_lossy().to_string();
    let ready = |out: &str| out.contains("is ready");
    let mut first = Up::app("basic")
        .env("SPIN_OSB_CACHE_DIR", cache_dir.clone())
        .start();
    assert!(
        first.wait_for_output(Duration::from_secs(10), ready),
        "{}",
        first.output.pretty()
    );
    assert!(
        first.output.stderr().contains("compiled "),
        "a cold cache compiles: {}",
        first.output.pretty()
    );
    first.terminate(Duration::from_secs(10));
    let cached = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(
        cached, 1,
        "one compiled component, named by the wasm's hash"
    );

    let second = Up::app("basic")
        .env("SPIN_OSB_CACHE_DIR", cache_dir)
        .start();
    assert!(
        second.wait_for_output(Duration::from_secs(10), ready),
        "{}",
        second.output.pretty()
    );
    assert!(
        !second.output.stderr().contains("compiled "),
        "a warm cache does not compile: {}",
        second.output.pretty()
    );
    assert_eq!(second.get("/x").status, 200);
}
