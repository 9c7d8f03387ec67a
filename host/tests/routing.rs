//! Routing as Spin does it: exact routes, `:name` captures, trailing `/...`
//! wildcards, precedence, private components, the `spin-*` request headers,
//! local service chaining and request logging.

mod common;

use common::*;
use std::sync::Arc;

/// One `routing` app shared by the read-only tests in this file.
fn routing() -> Arc<Host> {
    shared("routing", || Up::app("routing").start())
}

fn chaining() -> Arc<Host> {
    shared("chaining", || Up::app("chaining").start())
}

#[track_caller]
fn echo(host: &Host, path: &str) -> Value {
    host.get(path).ok()
}

#[track_caller]
fn header<'a>(echo: &'a Value, name: &str) -> &'a str {
    echo["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("header {name} missing in {echo:#}"))
}

#[test]
fn an_exact_route_reaches_its_component_with_the_spin_headers() {
    let host = &routing();
    let e = echo(host, "/exact");
    assert_eq!(e["name"], "exact");
    assert_eq!(e["method"], "GET");
    assert_eq!(header(&e, "spin-full-url"), host.url("/exact"));
    assert_eq!(header(&e, "spin-path-info"), "");
    assert_eq!(header(&e, "spin-matched-route"), "/exact");
    assert_eq!(header(&e, "spin-component-route"), "/exact");
    assert_eq!(header(&e, "spin-raw-component-route"), "/exact");
    assert_eq!(header(&e, "spin-base-path"), "/");
    let client = header(&e, "spin-client-addr");
    assert!(
        client.starts_with("127.0.0.1:") && client[10..].parse::<u16>().is_ok(),
        "spin-client-addr should be 127.0.0.1:<port>, got {client:?}"
    );
}

#[test]
fn an_exact_route_does_not_match_longer_paths() {
    let host = &routing();
    assert_eq!(host.get("/exact/more").status, 404);
    assert_eq!(host.get("/exactly").status, 404);
}

#[test]
fn a_wildcard_route_passes_the_rest_of_the_path_as_path_info() {
    let host = &routing();
    let e = echo(host, "/wild/a/b?x=1&y=two");
    assert_eq!(e["name"], "wild");
    assert_eq!(e["query"], "x=1&y=two");
    assert_eq!(header(&e, "spin-path-info"), "/a/b");
    assert_eq!(header(&e, "spin-matched-route"), "/wild/...");
    assert_eq!(header(&e, "spin-raw-component-route"), "/wild/...");
    assert_eq!(header(&e, "spin-component-route"), "/wild");
    assert_eq!(header(&e, "spin-full-url"), host.url("/wild/a/b?x=1&y=two"));
}

#[test]
fn a_wildcard_route_matches_its_own_prefix() {
    let host = &routing();
    let e = echo(host, "/wild");
    assert_eq!(e["name"], "wild");
    assert_eq!(header(&e, "spin-path-info"), "");
}

#[test]
fn a_trailing_slash_is_kept_in_the_path_info() {
    let host = &routing();
    let e = echo(host, "/wild/");
    assert_eq!(e["name"], "wild");
    assert_eq!(header(&e, "spin-path-info"), "/");
    let e = echo(host, "/wild/a/");
    assert_eq!(header(&e, "spin-path-info"), "/a/");
}

#[test]
fn a_wildcard_matches_whole_segments_only() {
    let host = &routing();
    // `/wild/...` must not match `/wilder`.
    assert_eq!(host.get("/wilder").status, 404);
}

#[test]
fn an_exact_route_beats_a_wildcard_that_also_matches() {
    let host = &routing();
    let e = echo(host, "/wild/special");
    assert_eq!(e["name"], "wild-special");
    assert_eq!(header(&e, "spin-matched-route"), "/wild/special");
    // The exact route matches only itself: deeper paths fall back to the wildcard.
    let e = echo(host, "/wild/special/x");
    assert_eq!(e["name"], "wild");
    assert_eq!(header(&e, "spin-path-info"), "/special/x");
    let e = echo(host, "/wild/specialty");
    assert_eq!(e["name"], "wild");
}

#[test]
fn the_longest_wildcard_prefix_wins() {
    let host = &routing();
    let e = echo(host, "/wild/deeper/x/y");
    assert_eq!(e["name"], "wild-deeper");
    assert_eq!(header(&e, "spin-path-info"), "/x/y");
    assert_eq!(header(&e, "spin-component-route"), "/wild/deeper");
    let e = echo(host, "/wild/deeper");
    assert_eq!(e["name"], "wild-deeper");
    let e = echo(host, "/wild/deeperx");
    assert_eq!(e["name"], "wild");
    assert_eq!(header(&e, "spin-path-info"), "/deeperx");
}

#[test]
fn named_segments_are_captured_into_spin_path_match_headers() {
    let host = &routing();
    let e = echo(host, "/users/42/posts/seven");
    assert_eq!(e["name"], "params");
    assert_eq!(header(&e, "spin-path-match-id"), "42");
    assert_eq!(header(&e, "spin-path-match-post"), "seven");
    assert_eq!(header(&e, "spin-matched-route"), "/users/:id/posts/:post");
    assert_eq!(header(&e, "spin-path-info"), "");
}

#[test]
fn a_named_segment_matches_exactly_one_segment() {
    let host = &routing();
    assert_eq!(host.get("/users/42/posts").status, 404);
    assert_eq!(host.get("/users/42/posts/7/extra").status, 404);
    assert_eq!(host.get("/users/posts/7").status, 404);
}

#[test]
fn a_named_segment_can_precede_a_trailing_wildcard() {
    let host = &routing();
    let e = echo(host, "/files/report/2024/q1.csv");
    assert_eq!(e["name"], "param-wild");
    assert_eq!(header(&e, "spin-path-match-name"), "report");
    assert_eq!(header(&e, "spin-path-info"), "/2024/q1.csv");
    assert_eq!(header(&e, "spin-raw-component-route"), "/files/:name/...");
    assert_eq!(header(&e, "spin-component-route"), "/files/:name");
}

#[test]
fn unmatched_paths_get_404() {
    let host = &routing();
    for path in ["/", "/nope", "/user/1/posts/2", "/EXACT"] {
        assert_eq!(host.get(path).status, 404, "GET {path}");
    }
}

#[test]
fn a_private_component_is_not_reachable_from_outside() {
    let host = &routing();
    for path in ["/hidden", "/hidden/", "/hidden/x", "/private"] {
        assert_eq!(host.get(path).status, 404, "GET {path}");
    }
    // It is not advertised either (wait for the listing to be complete).
    wait_for_route_listing(host);
    let stdout = host.output.stdout();
    let routes: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("Available Routes"))
        .collect();
    assert!(
        !routes.iter().any(|l| l.contains("hidden")),
        "private component listed in routes:\n{stdout}"
    );
}

const LISTED: [&str; 6] = [
    "exact",
    "wild",
    "wild-special",
    "wild-deeper",
    "params",
    "param-wild",
];

fn wait_for_route_listing(host: &Host) {
    for id in LISTED {
        let line = format!("{id}:");
        let found = host.wait_for_output(std::time::Duration::from_secs(5), |l| {
            l.trim_start().starts_with(&line)
        });
        assert!(found, "route of {id} not listed:\n{}", host.output.stdout());
    }
}

#[test]
fn the_routes_are_listed_after_the_serving_line() {
    let host = &routing();
    wait_for_route_listing(host);
    let stdout = host.output.stdout();
    let serving = stdout.find("Serving http://").expect("Serving line");
    let listing = stdout
        .find("Available Routes")
        .expect("Available Routes line");
    assert!(serving < listing, "{stdout}");
    assert!(
        stdout.contains(&format!("exact: {}/exact", host.base)),
        "{stdout}"
    );
}

#[test]
fn client_headers_method_and_body_reach_the_guest() {
    let host = &routing();
    let resp = host
        .client
        .put(host.url("/wild/upload"))
        .header("x-custom", "hello there")
        .body("some body bytes")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let e: Value = resp.json().unwrap();
    assert_eq!(e["method"], "PUT");
    assert_eq!(e["headers"]["x-custom"], "hello there");
    assert_eq!(e["body_len"], 15);
    assert_eq!(e["body"], "some body bytes");
}

#[test]
fn the_guest_status_code_is_passed_through() {
    let host = &routing();
    let resp = host.get("/exact?op=status&code=418");
    assert_eq!(resp.status, 418);
    assert_eq!(resp.json["name"], "exact");
}

#[test]
fn a_trapping_guest_gives_500_and_the_host_keeps_serving() {
    let host = &routing();
    let resp = host.get("/exact?op=panic");
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert_eq!(echo(host, "/exact")["name"], "exact");
}

#[test]
fn each_request_is_logged_and_guest_output_is_prefixed_with_the_component_id() {
    let host = &routing();
    let marker = format!("probe-log-marker-{}", std::process::id());
    let resp = host.get(&format!("/wild/log?op=log&msg={marker}"));
    assert_eq!(resp.status, 200);
    let found = host.wait_for_output(std::time::Duration::from_secs(5), |l| {
        l.contains(&marker) && l.contains("wild") && !l.contains("(stderr)") && !l.contains("msg=")
    });
    assert!(
        found,
        "guest stdout line not found with component id:\n{}",
        host.output.pretty()
    );
    let found = host.wait_for_output(std::time::Duration::from_secs(5), |l| {
        l.contains(&format!("{marker} (stderr)")) && l.contains("wild") && !l.contains("msg=")
    });
    assert!(
        found,
        "guest stderr line not found with component id:\n{}",
        host.output.pretty()
    );
    // And a request log line naming the path.
    let found = host.wait_for_output(std::time::Duration::from_secs(5), |l| {
        l.contains("/wild/log") && !l.contains(&marker)
    });
    assert!(
        found,
        "no request log line for /wild/log:\n{}",
        host.output.pretty()
    );
}

// ---------------------------------------------------------------------------
// Service chaining (`chaining` app)
// ---------------------------------------------------------------------------

#[track_caller]
fn chain(host: &Host, from: &str, target: &str, inner: &str) -> Value {
    host.probe(
        from,
        &[("op", "chain"), ("target", target), ("path", inner)],
    )
}

#[test]
fn a_public_component_can_chain_to_an_allowed_private_one() {
    let host = &chaining();
    let r = chain(host, "/", "backend", "/some/path?op=echo&k=v");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["status"], 200, "{r:#}");
    let inner = &r["json"];
    assert_eq!(inner["name"], "backend", "{r:#}");
    assert_eq!(inner["query"], "op=echo&k=v", "{r:#}");
    assert!(
        inner["path"].as_str().unwrap_or("").ends_with("/some/path"),
        "{r:#}"
    );
    // Spin matches a chained request as if against `/...`.
    assert_eq!(inner["headers"]["spin-path-info"], "/some/path", "{r:#}");
}

#[test]
fn chaining_to_a_component_missing_from_the_allow_list_is_denied() {
    let host = &chaining();
    let r = chain(host, "/", "secret-backend", "/");
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error"], "denied", "{r:#}");
}

#[test]
fn chaining_without_any_allowed_hosts_is_denied() {
    let host = &chaining();
    let r = chain(host, "/nochain/x", "backend", "/");
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error"], "denied", "{r:#}");
}

#[test]
fn a_spin_internal_wildcard_allows_chaining_to_any_component() {
    let host = &chaining();
    for target in ["secret-backend", "backend", "public-back"] {
        let r = chain(host, "/wildchain/x", target, "/?op=echo");
        assert_eq!(r["ok"], true, "{target}: {r:#}");
        assert_eq!(r["json"]["name"], target, "{r:#}");
    }
}

#[test]
fn chaining_to_an_unknown_component_fails() {
    let host = &chaining();
    let r = chain(host, "/wildchain/x", "ghost", "/");
    assert_eq!(r["ok"], false, "{r:#}");
}

#[test]
fn a_private_component_can_use_its_own_features_when_chained() {
    let host = &chaining();
    // Two hops: front -> backend (echo of a POST-less GET) proves the backend
    // ran; a second hop from a private component without allow-list is denied.
    let r = chain(
        host,
        "/",
        "backend",
        &format!(
            "/?{}",
            query(&[("op", "chain"), ("target", "public-back"), ("path", "/")])
        ),
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["json"]["ok"], false, "{r:#}");
    assert_eq!(r["json"]["error"], "denied", "{r:#}");
}

#[test]
fn the_root_wildcard_catches_everything_else() {
    let host = &chaining();
    let e = echo(host, "/anything/else?q=1");
    assert_eq!(e["name"], "front");
    assert_eq!(header(&e, "spin-path-info"), "/anything/else");
    assert_eq!(header(&e, "spin-matched-route"), "/...");
    // Private components are not reachable by their id either.
    let e = echo(host, "/backend");
    assert_eq!(e["name"], "front");
    // More specific wildcards still win.
    assert_eq!(echo(host, "/public-back/x")["name"], "public-back");
}
