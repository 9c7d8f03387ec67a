//! Route matching for the HTTP trigger, with Spin's semantics.
//!
//! Spin delegates matching to `routefinder`: `/foo/...` is a trailing wildcard, `:name`
//! captures a segment, exact routes beat wildcards and the longest prefix wins. This module
//! keeps that behaviour (so an app routes identically here and on Spin) and derives the
//! `spin-*` request headers that tell a component how it was reached.

use std::net::SocketAddr;

use anyhow::{anyhow, Result};

/// Where one routable component lives.
#[derive(Clone, Debug)]
struct RouteHandler {
    component_id: String,
    /// The route as written in the manifest (`/foo/...`).
    raw_route: String,
}

/// The app's public route table. Private components are absent from it by construction.
#[derive(Debug)]
pub struct Router {
    router: routefinder::Router<RouteHandler>,
    /// `(route, component)` in manifest order, for the start-up banner.
    listing: Vec<(String, String)>,
}

/// A request path resolved to a component.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The component that serves the request.
    pub component_id: String,
    /// The route as written in the manifest.
    pub raw_route: String,
    /// `:name` captures, in path order.
    pub captures: Vec<(String, String)>,
    /// The part of the path matched by a trailing `/...` (Spin keeps trailing slashes).
    pub path_info: String,
}

impl Router {
    /// Builds the table from `(component id, route)` pairs. A later duplicate of a route
    /// replaces the earlier one, with a warning, as Spin does.
    pub fn build<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut unique: Vec<(String, String)> = Vec::new();
        for (component_id, raw_route) in routes {
            let raw_route = absolutize(raw_route);
            if let Some(existing) = unique.iter_mut().find(|(r, _)| *r == raw_route) {
                tracing::warn!(
                    "route {raw_route} is used by components '{}' and '{component_id}'; '{component_id}' wins",
                    existing.1
                );
                existing.1 = component_id.to_string();
            } else {
                unique.push((raw_route, component_id.to_string()));
            }
        }
        let mut router = routefinder::Router::new();
        for (raw_route, component_id) in &unique {
            let spec = to_routefinder_spec(raw_route);
            router
                .add(
                    spec.as_str(),
                    RouteHandler {
                        component_id: component_id.clone(),
                        raw_route: raw_route.clone(),
                    },
                )
                .map_err(|e| {
                    anyhow!("invalid route {raw_route:?} for component '{component_id}': {e}")
                })?;
        }
        Ok(Self {
            router,
            listing: unique,
        })
    }

    /// The component for `path` (no query), or `None` for a 404.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let best = self.router.best_match(path)?;
        let handler = best.handler();
        let captures = best.captures();
        let path_info = match captures.wildcard() {
            None => String::new(),
            // Spin traditionally keeps trailing slashes, which routefinder drops.
            Some(s) => match (s.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{s}"),
                (false, true) => format!("/{s}/"),
            },
        };
        Some(RouteMatch {
            component_id: handler.component_id.clone(),
            raw_route: handler.raw_route.clone(),
            captures: captures
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            path_info,
        })
    }

    /// Routes in manifest order, for display.
    pub fn listing(&self) -> &[(String, String)] {
        &self.listing
    }
}

impl RouteMatch {
    /// The match service chaining uses: the whole path is path info under a `/...` route.
    pub fn synthetic(component_id: &str, path: &str) -> Self {
        Self {
            component_id: component_id.to_string(),
            raw_route: "/...".to_string(),
            captures: Vec::new(),
            path_info: path.to_string(),
        }
    }

    /// The route without its trailing wildcard (`/foo/...` → `/foo`).
    pub fn route_prefix(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }

    /// Spin's request headers for this match (`spin-full-url`, `spin-path-info`, ...).
    pub fn spin_headers(&self, full_url: &str, client_addr: SocketAddr) -> Vec<(String, String)> {
        let mut headers = vec![
            ("spin-path-info".to_string(), self.path_info.clone()),
            ("spin-full-url".to_string(), full_url.to_string()),
            ("spin-matched-route".to_string(), self.raw_route.clone()),
            ("spin-base-path".to_string(), "/".to_string()),
            (
                "spin-raw-component-route".to_string(),
                self.raw_route.clone(),
            ),
            (
                "spin-component-route".to_string(),
                self.route_prefix().to_string(),
            ),
            ("spin-client-addr".to_string(), client_addr.to_string()),
        ];
        for (name, value) in &self.captures {
            let name = name.to_ascii_lowercase().replace('_', "-");
            headers.push((format!("spin-path-match-{name}"), value.clone()));
        }
        headers
    }
}

/// Checks a manifest route before the router is built, so errors name the component.
pub fn validate_route(route: &str) -> Result<(), String> {
    if route.is_empty() {
        return Err("route must not be empty".into());
    }
    if route.contains("...") && !route.ends_with("/...") && route != "..." {
        return Err(
            "the `...` wildcard is only allowed as the last segment (`/prefix/...`)".into(),
        );
    }
    let spec = to_routefinder_spec(&absolutize(route));
    routefinder::RouteSpec::try_from(spec.as_str())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn absolutize(route: &str) -> String {
    let route = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    // Spin strips one trailing slash (but `/` itself stays the root).
    match route.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_string(),
        _ => route,
    }
}

fn to_routefinder_spec(raw_route: &str) -> String {
    match raw_route.strip_suffix("/...") {
        Some(prefix) => format!("{prefix}/*"),
        None if raw_route == "/..." => "/*".to_string(),
        None => raw_route.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(routes.iter().copied()).unwrap()
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router(&[("all", "/..."), ("one", "/one")]);
        assert_eq!(r.route("/one").unwrap().component_id, "one");
        assert_eq!(r.route("/two").unwrap().component_id, "all");
    }

    #[test]
    fn longest_wildcard_prefix_wins_regardless_of_order() {
        let r = router(&[
            ("a", "/one/..."),
            ("abc", "/one/two/three/..."),
            ("ab", "/one/two/..."),
        ]);
        assert_eq!(r.route("/one/two/three/four").unwrap().component_id, "abc");
        assert_eq!(r.route("/one/two/x").unwrap().component_id, "ab");
        assert_eq!(r.route("/one").unwrap().component_id, "a");
    }

    #[test]
    fn path_info_keeps_trailing_slashes_like_spin() {
        let r = router(&[("w", "/foo/...")]);
        assert_eq!(r.route("/foo").unwrap().path_info, "");
        assert_eq!(r.route("/foo/").unwrap().path_info, "/");
        assert_eq!(r.route("/foo/bar").unwrap().path_info, "/bar");
        assert_eq!(r.route("/foo/bar/").unwrap().path_info, "/bar/");
    }

    #[test]
    fn named_captures_become_headers() {
        let r = router(&[("c", "/v2/service_instances/:instance_id")]);
        let m = r.route("/v2/service_instances/abc").unwrap();
        assert_eq!(
            m.captures,
            vec![("instance_id".to_string(), "abc".to_string())]
        );
        let headers = m.spin_headers(
            "http://h/v2/service_instances/abc",
            "127.0.0.1:1".parse().unwrap(),
        );
        assert!(headers.contains(&("spin-path-match-instance-id".to_string(), "abc".to_string())));
        assert!(headers.contains(&(
            "spin-component-route".to_string(),
            "/v2/service_instances/:instance_id".to_string()
        )));
    }

    #[test]
    fn unmatched_path_is_none() {
        let r = router(&[("a", "/a")]);
        assert!(r.route("/b").is_none());
    }

    #[test]
    fn later_duplicate_route_wins() {
        let r = router(&[("first", "/x"), ("second", "/x")]);
        assert_eq!(r.route("/x").unwrap().component_id, "second");
        assert_eq!(r.listing().len(), 1);
    }

    #[test]
    fn wildcard_in_the_middle_is_rejected() {
        assert!(validate_route("/a/.../b").is_err());
        assert!(validate_route("/a/...").is_ok());
        assert!(validate_route("/...").is_ok());
    }
}
