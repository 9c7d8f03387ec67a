//! Outbound HTTP(S) from guests: `allowed_outbound_hosts` matching (with
//! `{{ var }}` templates and `*` wildcards) and `[[client_tls]]` custom CAs.
//! Only local servers on 127.0.0.1 are ever contacted.

mod common;

use common::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

struct Fixture {
    host: Host,
    upstream: HttpServer,
    other: HttpServer,
}

/// The `outbound` app with `upstream_port` pointing at `upstream`.
fn fixture() -> Fixture {
    let upstream = HttpServer::start(|req| {
        if req.target.starts_with("/missing") {
            Reply {
                status: 404,
                body: "no such thing".into(),
                delay: Default::default(),
            }
        } else {
            Reply::ok(format!(
                "upstream saw {} {} body={}",
                req.method,
                req.target,
                String::from_utf8_lossy(&req.body)
            ))
        }
    });
    let other = HttpServer::fixed("other server");
    let host = Up::app("outbound")
        .var("upstream_port", upstream.port.to_string())
        .start();
    Fixture {
        host,
        upstream,
        other,
    }
}

#[track_caller]
fn outbound(host: &Host, component_path: &str, url: &str) -> Value {
    host.probe(component_path, &[("op", "outbound"), ("url", url)])
}

#[test]
fn a_host_allowed_through_a_variable_template_is_reachable() {
    let f = fixture();
    let r = outbound(&f.host, "/out/x", &f.upstream.url("/hello?a=b"));
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["status"], 200, "{r:#}");
    assert_eq!(r["body"], "upstream saw GET /hello?a=b body=", "{r:#}");
    assert_eq!(f.upstream.hits(), 1);
}

#[test]
fn the_upstream_status_and_a_posted_body_pass_through() {
    let f = fixture();
    let r = outbound(&f.host, "/out/x", &f.upstream.url("/missing"));
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["status"], 404, "{r:#}");
    assert_eq!(r["body"], "no such thing");
    let r = f.host.probe_post(
        "/out/x",
        &[
            ("op", "outbound"),
            ("method", "POST"),
            ("url", &f.upstream.url("/submit")),
        ],
        "payload-123",
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(
        r["body"], "upstream saw POST /submit body=payload-123",
        "{r:#}"
    );
}

#[test]
fn another_port_on_an_allowed_host_is_denied() {
    let f = fixture();
    let r = outbound(&f.host, "/out/x", &f.other.url("/"));
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error"], "denied", "{r:#}");
    assert_eq!(f.other.hits(), 0, "a denied request must not be sent");
}

#[test]
fn the_same_port_under_another_host_name_is_denied() {
    let f = fixture();
    let url = format!("http://localhost:{}/", f.upstream.port);
    let r = outbound(&f.host, "/out/x", &url);
    assert_eq!(r["error"], "denied", "{r:#}");
    assert_eq!(f.upstream.hits(), 0);
}

#[test]
fn a_component_without_allowed_hosts_is_denied() {
    let f = fixture();
    let r = outbound(&f.host, "/none/x", &f.upstream.url("/"));
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error"], "denied", "{r:#}");
    assert_eq!(f.upstream.hits(), 0);
}

#[test]
fn a_port_wildcard_allows_any_port() {
    let f = fixture();
    for url in [
        f.upstream.url("/"),
        f.other.url("/"),
        format!("http://localhost:{}/", f.other.port),
    ] {
        let r = outbound(&f.host, "/any/x", &url);
        assert_eq!(r["ok"], true, "{url}: {r:#}");
    }
    assert_eq!(f.upstream.hits(), 1);
    assert_eq!(f.other.hits(), 2);
}

#[test]
fn the_scheme_must_match() {
    let f = fixture();
    let url = format!("https://127.0.0.1:{}/", f.upstream.port);
    let r = outbound(&f.host, "/any/x", &url);
    assert_eq!(
        r["error"], "denied",
        "https is not allowed by http://127.0.0.1:*: {r:#}"
    );
    assert_eq!(f.upstream.hits(), 0);
    assert_eq!(f.upstream.failed_connections.load(Ordering::SeqCst), 0);
}

#[test]
fn a_scheme_wildcard_allows_http() {
    let f = fixture();
    let r = outbound(&f.host, "/star/x", &f.other.url("/"));
    assert_eq!(r["ok"], true, "{r:#}");
    // But still not another host.
    let url = format!("http://localhost:{}/", f.other.port);
    let r = outbound(&f.host, "/star/x", &url);
    assert_eq!(r["error"], "denied", "{r:#}");
}

#[test]
fn an_allowed_but_closed_port_is_an_error_other_than_denied() {
    let f = fixture();
    let url = format!("http://127.0.0.1:{}/", free_port());
    let r = outbound(&f.host, "/any/x", &url);
    assert_eq!(r["ok"], false, "{r:#}");
    assert_ne!(r["error"], "denied", "{r:#}");
}

#[test]
fn a_missing_required_template_variable_fails_start_up() {
    let f = Up::app("outbound").start_expect_failure();
    assert!(f.stderr.contains("upstream_port"), "{}", f.text());
}

// ---------------------------------------------------------------------------
// HTTPS with client_tls
// ---------------------------------------------------------------------------

struct TlsFixture {
    server: HttpServer,
    dir: tempfile::TempDir,
}

fn tls_server() -> TlsFixture {
    let pki = TestPki::generate();
    let server = HttpServer::start_tls(pki.server_config(), |req| {
        Reply::ok(format!("secure hello {}", req.target))
    });
    let dir = tempdir();
    write_file(dir.path(), "certs/ca.pem", &pki.ca_pem);
    TlsFixture { server, dir }
}

fn client_tls_config(t: &TlsFixture, component_ids: &[&str], hosts: &[String]) -> PathBuf {
    let ids: Vec<String> = component_ids.iter().map(|c| toml_str(c)).collect();
    let hosts: Vec<String> = hosts.iter().map(|h| toml_str(h)).collect();
    write_file(
        t.dir.path(),
        "runtime-config.toml",
        &format!(
            "[[client_tls]]\ncomponent_ids = [{}]\nhosts = [{}]\nca_roots_file = \"certs/ca.pem\"\n",
            ids.join(", "),
            hosts.join(", ")
        ),
    )
}

fn start_outbound(rc: Option<PathBuf>) -> Host {
    let mut up = Up::app("outbound").var("upstream_port", "1");
    if let Some(rc) = rc {
        up = up.runtime_config(rc);
    }
    up.start()
}

fn is_tls_error(r: &Value) -> bool {
    let kind = r["error"].as_str().unwrap_or("").to_ascii_lowercase();
    let detail = r["detail"].as_str().unwrap_or("").to_ascii_lowercase();
    r["ok"] == false
        && kind != "denied"
        && (kind.contains("tls")
            || detail.contains("tls")
            || detail.contains("certificate")
            || detail.contains("unknownissuer"))
}

#[test]
fn https_to_a_local_server_trusted_through_client_tls_works() {
    let t = tls_server();
    let port = t.server.port;
    let rc = client_tls_config(
        &t,
        &["tls"],
        &[format!("127.0.0.1:{port}"), format!("localhost:{port}")],
    );
    let host = start_outbound(Some(rc));
    for url in [
        format!("https://127.0.0.1:{port}/ip"),
        format!("https://localhost:{port}/name"),
    ] {
        let r = outbound(&host, "/tls/x", &url);
        assert_eq!(r["ok"], true, "{url}: {r:#}");
        assert!(
            r["body"].as_str().unwrap().starts_with("secure hello /"),
            "{r:#}"
        );
    }
}

#[test]
fn https_to_a_server_with_an_unknown_ca_fails_with_a_tls_error() {
    let t = tls_server();
    let host = start_outbound(None);
    let r = outbound(
        &host,
        "/tls/x",
        &format!("https://127.0.0.1:{}/", t.server.port),
    );
    assert!(is_tls_error(&r), "expected a TLS error: {r:#}");
    assert_eq!(
        t.server.hits(),
        0,
        "no request may be sent over an untrusted connection"
    );
}

#[test]
fn client_tls_applies_only_to_the_listed_components_and_hosts() {
    let t = tls_server();
    let port = t.server.port;
    let rc = client_tls_config(&t, &["tls"], &[format!("127.0.0.1:{port}")]);
    let host = start_outbound(Some(rc));
    // Another component with the same allow-list does not get the CA.
    assert_eq!(host.get("/other-tls/x").json["name"], "tls-other");
    let r = outbound(&host, "/other-tls/x", &format!("https://127.0.0.1:{port}/"));
    assert!(
        is_tls_error(&r),
        "tls-other must not trust the custom CA: {r:#}"
    );
    // The listed component to a host:port not listed does not get it either.
    let r = outbound(&host, "/tls/x", &format!("https://localhost:{port}/"));
    assert!(is_tls_error(&r), "localhost:{port} is not in hosts: {r:#}");
    // The configured pair works.
    let r = outbound(&host, "/tls/x", &format!("https://127.0.0.1:{port}/"));
    assert_eq!(r["ok"], true, "{r:#}");
}

#[test]
fn a_missing_ca_roots_file_fails_start_up() {
    let dir = tempdir();
    let rc = write_file(
        dir.path(),
        "rc.toml",
        "[[client_tls]]\ncomponent_ids = [\"tls\"]\nhosts = [\"127.0.0.1:8443\"]\nca_roots_file = \"does-not-exist.pem\"\n",
    );
    let f = Up::app("outbound")
        .var("upstream_port", "1")
        .runtime_config(rc)
        .start_expect_failure();
    assert!(f.stderr.contains("does-not-exist.pem"), "{}", f.text());
}
