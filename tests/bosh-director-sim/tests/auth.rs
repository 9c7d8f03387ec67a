//! `/info`, basic and UAA authentication, 401 shapes, token expiry, HTTPS
//! with the simulator's CA, and the context-id limit (contract A.1–A.3,
//! A.9), all over real HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bosh_director_sim::{AuthKind, SimConfig, Simulator};
use common::{basic_header, client, Api, PASSWORD, USER};
use serde_json::Value;

#[test]
fn info_needs_no_auth_and_reports_basic_mode() {
    let api = Api::basic();
    let r = client().get(api.url("/info")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(r.headers().contains_key("date"));
    let info: Value = r.json().unwrap();
    assert_eq!(info["name"], "bosh-director-simulator");
    assert_eq!(info["user"], Value::Null);
    assert_eq!(
        info["user_authentication"],
        serde_json::json!({"type": "basic", "options": {}})
    );
    // ODB parses the first token of `version` as semver.
    let version = info["version"].as_str().unwrap();
    assert_eq!(
        version
            .split_whitespace()
            .next()
            .unwrap()
            .split('.')
            .count(),
        3
    );
}

#[test]
fn info_user_is_set_only_for_valid_credentials() {
    let api = Api::basic();
    let info: Value = api.get("/info").json().unwrap();
    assert_eq!(info["user"], USER);
    let wrong: Value = client()
        .get(api.url("/info"))
        .header("authorization", basic_header(USER, "wrong"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(wrong["user"], Value::Null);
}

#[test]
fn missing_or_wrong_credentials_get_the_directors_401() {
    let api = Api::basic();
    for auth in [
        None,
        Some(basic_header(USER, "nope")),
        Some("Bearer x".into()),
    ] {
        let mut r = client().get(api.url("/deployments?exclude_configs=true"));
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 401, "auth {auth:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"BOSH Director\""
        );
        assert_eq!(r.text().unwrap(), "Not authorized: '/deployments'\n");
    }
    // Unknown routes authenticate first, too.
    let r = client().get(api.url("/no/such/route")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = api.get("/no/such/route");
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "Endpoint '/no/such/route' not found.");
}

fn uaa_api(ttl: Duration) -> Api {
    let mut api = Api::with(SimConfig::uaa("broker", "broker-secret", ttl));
    api.auth = String::new();
    api
}

fn fetch_token(uaa_url: &str, id: &str, secret: &str) -> reqwest::blocking::Response {
    client()
        .post(format!("{uaa_url}/oauth/token"))
        .header("authorization", basic_header(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body("grant_type=client_credentials")
        .send()
        .unwrap()
}

#[test]
fn uaa_mode_advertises_the_token_endpoint_and_accepts_bearer_tokens() {
    let api = uaa_api(Duration::from_secs(600));
    let info: Value = client()
        .get(api.url("/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["user_authentication"]["type"], "uaa");
    let uaa_url = info["user_authentication"]["options"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uaa_url, format!("{}/uaa", api.sim.base_url()));
    assert_eq!(api.sim.uaa_url().as_deref(), Some(uaa_url.as_str()));

    let r = fetch_token(&uaa_url, "broker", "broker-secret");
    assert_eq!(r.status(), 200);
    let grant: Value = r.json().unwrap();
    assert_eq!(grant["token_type"], "bearer");
    assert_eq!(grant["scope"], "bosh.admin");
    assert_eq!(grant["expires_in"], 600);
    assert!(grant["jti"].is_string());
    assert!(grant.get("refresh_token").is_none());
    let token = grant["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    assert_eq!(api.sim.token_grants(), 1);

    // The CLI sends `bearer`; any case of the scheme works.
    for scheme in ["bearer", "Bearer", "BEARER"] {
        let r = client()
            .get(api.url("/deployments"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let info: Value = client()
        .get(api.url("/info"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["user"], "broker");

    // Basic credentials are not accepted by a UAA director.
    let r = client()
        .get(api.url("/deployments"))
        .header("authorization", basic_header("broker", "broker-secret"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let kinds: Vec<AuthKind> = api.sim.requests().into_iter().map(|r| r.auth).collect();
    assert!(kinds.contains(&AuthKind::Bearer) && kinds.contains(&AuthKind::Basic));
}

#[test]
fn uaa_rejects_a_bad_client_with_an_oauth_error() {
    let api = uaa_api(Duration::from_secs(600));
    let uaa = api.sim.uaa_url().unwrap();
    let r = fetch_token(&uaa, "broker", "wrong");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["error_description"], "Bad credentials");
    let r = client()
        .post(format!("{uaa}/oauth/token"))
        .header("authorization", basic_header("broker", "broker-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(api.sim.token_grants(), 0);
}

#[test]
fn tokens_expire_after_their_ttl_and_on_demand() {
    let api = uaa_api(Duration::from_secs(1));
    let uaa = api.sim.uaa_url().unwrap();
    let token = || -> String {
        let v: Value = fetch_token(&uaa, "broker", "broker-secret").json().unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    let status = |t: &str| {
        client()
            .get(api.url("/tasks"))
            .header("authorization", format!("bearer {t}"))
            .send()
            .unwrap()
            .status()
    };
    let t1 = token();
    assert_eq!(status(&t1), 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&t1), 401, "expired by TTL");

    let t2 = token();
    assert_eq!(status(&t2), 200);
    api.sim.expire_tokens();
    assert_eq!(status(&t2), 401, "expired on demand");
    let t3 = token();
    assert_eq!(status(&t3), 200, "a fresh token works again");
    assert_eq!(api.sim.token_grants(), 3);
}

#[test]
fn context_id_longer_than_64_characters_is_rejected() {
    let api = Api::basic();
    let r = api
        .req(reqwest::Method::GET, "/tasks")
        .header("x-bosh-context-id", "x".repeat(65))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], 70010);
    let r = api
        .req(reqwest::Method::GET, "/tasks")
        .header("x-bosh-context-id", "x".repeat(64))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn requests_are_recorded_with_their_auth_kind() {
    let api = Api::basic();
    client().get(api.url("/info")).send().unwrap();
    api.post_manifest(&common::manifest("rec", 1), Some("ctx-1"));
    let log = api.sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].auth, AuthKind::None);
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[1].method, "POST");
    assert_eq!(log[1].path, "/deployments");
    assert_eq!(log[1].content_type.as_deref(), Some("text/yaml"));
    assert_eq!(log[1].context_id.as_deref(), Some("ctx-1"));
    assert_eq!(log[1].auth, AuthKind::Basic);
    assert!(log[1].authenticated);
    assert_eq!(log[1].status, Some(303));
    assert!(log[1].body.contains("name: rec"));
}

/// One HTTPS GET with a rustls client that trusts only `ca_pem`.
fn https_get(port: u16, server_name: &str, ca_pem: &str, auth: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET /deployments HTTP/1.1\r\nHost: {server_name}:{port}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn https_is_served_with_a_certificate_for_127_0_0_1_and_localhost() {
    let sim = Simulator::start(SimConfig::basic(USER, PASSWORD).with_tls());
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let ca = sim.ca_pem().expect("a CA for HTTPS").to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let auth = basic_header(USER, PASSWORD);
    for name in ["127.0.0.1", "localhost"] {
        let text = https_get(sim.port(), name, &ca, &auth).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{name}: {text}");
        assert!(text.ends_with("[]"), "{text}");
    }
    // A client that trusts another CA refuses the certificate.
    let other = Simulator::start(SimConfig::default().with_tls());
    let err = https_get(sim.port(), "127.0.0.1", other.ca_pem().unwrap(), &auth).unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("Unknown"),
        "{err}"
    );
    // Plain HTTP against the TLS port gets no HTTP answer.
    let plain = client()
        .get(format!("http://127.0.0.1:{}/info", sim.port()))
        .send();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}
