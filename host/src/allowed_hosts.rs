//! `allowed_outbound_hosts`: which URLs a component may request, with Spin's syntax.
//!
//! Entries are `scheme://host[:port]`. Any part may be `*`; a host may be `*.suffix`; a
//! port may be a range `a..b` (inclusive start, exclusive end, as in Spin). Without a port
//! the scheme's default port applies. `http://<component>.spin.internal` (or
//! `http://*.spin.internal`) permits service chaining to that component, and
//! `insecure:allow-all` permits everything.

use anyhow::{anyhow, bail, Result};

/// Suffix that marks a service-chaining request.
pub const SPIN_INTERNAL: &str = ".spin.internal";

/// A component's parsed allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    patterns: Vec<Pattern>,
    allow_all: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` stores `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    /// No port written: the default port of the request's scheme.
    Default,
    Exact(u16),
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses rendered entries (templates already substituted).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let mut hosts = Self::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "insecure:allow-all" {
                hosts.allow_all = true;
                continue;
            }
            hosts.patterns.push(
                Pattern::parse(entry)
                    .map_err(|e| anyhow!("allowed_outbound_hosts entry {entry:?}: {e}"))?,
            );
        }
        Ok(hosts)
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.allow_all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let scheme = scheme.to_ascii_lowercase();
        self.patterns
            .iter()
            .any(|p| p.matches(&scheme, &host, port))
    }
}

impl Pattern {
    fn parse(entry: &str) -> Result<Self> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| anyhow!("expected `scheme://host[:port]`"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("paths are not allowed, only `scheme://host[:port]`");
        }
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                Some(s.to_ascii_lowercase())
            }
            s => bail!("invalid scheme {s:?}"),
        };
        let (host, port) = split_host_port(rest)?;
        let host = match host.as_str() {
            "" => bail!("missing host"),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => bail!("`*` is only allowed as the whole host or as `*.domain`"),
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        let port = match port.as_deref() {
            None => {
                if !matches!(scheme.as_deref(), None | Some("http") | Some("https"))
                    && host != HostPattern::Any
                {
                    bail!(
                        "a port is required for scheme {:?}",
                        scheme.unwrap_or_default()
                    );
                }
                PortPattern::Default
            }
            Some("*") => PortPattern::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => PortPattern::Range(parse_port(a)?, parse_port(b)?),
                None => PortPattern::Exact(parse_port(p)?),
            },
        };
        Ok(Self { scheme, host, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(suffix) => {
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }
        };
        let port = port.or_else(|| default_port(scheme));
        let port_ok = match (&self.port, port) {
            (PortPattern::Any, _) => true,
            (PortPattern::Default, Some(p)) => Some(p) == default_port(scheme),
            (PortPattern::Exact(e), Some(p)) => *e == p,
            (PortPattern::Range(a, b), Some(p)) => (*a..*b).contains(&p),
            (_, None) => false,
        };
        host_ok && port_ok
    }
}

fn split_host_port(rest: &str) -> Result<(String, Option<String>)> {
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| anyhow!("unclosed `[` in IPv6 host"))?;
        let port = after.strip_prefix(':').map(str::to_string);
        return Ok((host.to_string(), port));
    }
    Ok(match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (rest.to_string(), None),
    })
}

fn parse_port(text: &str) -> Result<u16> {
    text.parse().map_err(|_| anyhow!("invalid port {text:?}"))
}

/// The default port of `http`/`https`.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], scheme: &str, host: &str, port: Option<u16>) -> bool {
        AllowedHosts::parse(entries)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn exact_entry_with_port() {
        assert!(allows(
            &["http://127.0.0.1:8080"],
            "http",
            "127.0.0.1",
            Some(8080)
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "http",
            "127.0.0.1",
            Some(8081)
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "https",
            "127.0.0.1",
            Some(8080)
        ));
    }

    #[test]
    fn missing_port_means_the_default_port() {
        assert!(allows(
            &["https://example.com"],
            "https",
            "example.com",
            None
        ));
        assert!(allows(
            &["https://example.com"],
            "https",
            "example.com",
            Some(443)
        ));
        assert!(!allows(
            &["https://example.com"],
            "https",
            "example.com",
            Some(8443)
        ));
    }

    #[test]
    fn wildcards_for_scheme_host_and_port() {
        assert!(allows(&["*://127.0.0.1:*"], "https", "127.0.0.1", Some(1)));
        assert!(allows(
            &["https://*.example.com"],
            "https",
            "api.example.com",
            None
        ));
        assert!(!allows(
            &["https://*.example.com"],
            "https",
            "example.com",
            None
        ));
        assert!(allows(
            &["http://localhost:8000..8010"],
            "http",
            "localhost",
            Some(8005)
        ));
        assert!(!allows(
            &["http://localhost:8000..8010"],
            "http",
            "localhost",
            Some(8010)
        ));
    }

    #[test]
    fn service_chaining_entries() {
        assert!(allows(
            &["http://osb-catalog.spin.internal"],
            "http",
            "osb-catalog.spin.internal",
            None
        ));
        assert!(!allows(
            &["http://osb-catalog.spin.internal"],
            "http",
            "osb-provision.spin.internal",
            None
        ));
        assert!(allows(
            &["http://*.spin.internal"],
            "http",
            "osb-provision.spin.internal",
            None
        ));
    }

    #[test]
    fn empty_list_denies_everything_and_allow_all_allows_it() {
        assert!(!allows(&[], "http", "127.0.0.1", Some(80)));
        assert!(allows(
            &["insecure:allow-all"],
            "http",
            "127.0.0.1",
            Some(80)
        ));
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert!(AllowedHosts::parse(&["127.0.0.1"]).is_err());
        assert!(AllowedHosts::parse(&["http://h:port"]).is_err());
        assert!(AllowedHosts::parse(&["http://h/path"]).is_err());
        assert!(AllowedHosts::parse(&["http://a*b"]).is_err());
    }
}
