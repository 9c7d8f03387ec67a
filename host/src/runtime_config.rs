//! Spin's runtime configuration file (`--runtime-config-file`), the parts this host uses.
//!
//! ```toml
//! [key_value_store.default]       # SQLite file (path relative to this file)
//! type = "spin"
//! path = "data/kv.db"
//!
//! [key_value_store.shared]        # shared by every replica
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [[client_tls]]                  # trust a private CA for some hosts
//! component_ids = ["kubernetes"]
//! hosts = ["kube.example"]          # Spin: no port (any port); this host also takes host:port
//! ca_roots_file = "kube-ca.pem"     # also: ca_use_webpki_roots, client_cert_file,
//!                                   # client_private_key_file (Spin's names)
//! ```
//!
//! Sections Spin knows but this host does not implement are rejected by name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::Deserialize;

/// A parsed runtime config with paths resolved against its directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `[key_value_store.<label>]`.
    #[serde(default)]
    pub key_value_store: IndexMap<String, KeyValueStoreConfig>,
    /// `[[client_tls]]`.
    #[serde(default)]
    pub client_tls: Vec<ClientTls>,
}

/// One key-value store definition.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyValueStoreConfig {
    /// Spin's built-in SQLite store.
    Spin {
        /// Database file; defaults to `<state-dir>/sqlite_key_value.db`.
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// A Redis server shared by replicas.
    Redis {
        /// `redis://[user:password@]host:port[/db]`.
        url: String,
    },
}

/// `[[client_tls]]`: TLS settings for outbound requests of some components to some hosts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// Components the entry applies to.
    pub component_ids: Vec<String>,
    /// `host` entries (any port, as Spin requires) or `host:port` (this host only).
    pub hosts: Vec<String>,
    /// PEM file with extra trusted CA certificates.
    #[serde(default)]
    pub ca_roots_file: Option<PathBuf>,
    /// Also trust the default roots. As in Spin: defaults to true unless `ca_roots_file`
    /// is given.
    #[serde(default, rename = "ca_use_webpki_roots", alias = "ca_webpki_roots")]
    pub ca_use_webpki_roots: Option<bool>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[serde(default, rename = "client_cert_file", alias = "cert_chain_file")]
    pub cert_chain_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(
        default,
        rename = "client_private_key_file",
        alias = "private_key_file"
    )]
    pub private_key_file: Option<PathBuf>,
}

impl ClientTls {
    /// Whether the default roots are trusted too (Spin's rule).
    pub fn ca_webpki_roots(&self) -> bool {
        self.ca_use_webpki_roots
            .unwrap_or(self.ca_roots_file.is_none())
    }
}

impl RuntimeConfig {
    /// Reads `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let mut config: RuntimeConfig = toml::from_str(&text)
            .with_context(|| format!("invalid runtime config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for store in config.key_value_store.values_mut() {
            if let KeyValueStoreConfig::Spin { path: Some(p) } = store {
                *p = base.join(&*p);
            }
        }
        for tls in &mut config.client_tls {
            for file in [
                &mut tls.ca_roots_file,
                &mut tls.cert_chain_file,
                &mut tls.private_key_file,
            ]
            .into_iter()
            .flatten()
            {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_client_tls_parse_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rc.toml");
        std::fs::write(
            &file,
            r#"
[key_value_store.default]
type = "spin"
path = "kv.db"
[key_value_store.shared]
type = "redis"
url = "redis://127.0.0.1:6379"
[[client_tls]]
component_ids = ["a"]
hosts = ["127.0.0.1:8443"]
ca_roots_file = "ca.pem"
"#,
        )
        .unwrap();
        let rc = RuntimeConfig::load(&file).unwrap();
        assert!(
            matches!(&rc.key_value_store["default"], KeyValueStoreConfig::Spin { path: Some(p) } if p == &dir.path().join("kv.db"))
        );
        assert!(matches!(
            &rc.key_value_store["shared"],
            KeyValueStoreConfig::Redis { .. }
        ));
        assert_eq!(
            rc.client_tls[0].ca_roots_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
    }

    #[test]
    fn unsupported_sections_are_rejected_by_name() {
        let err = toml::from_str::<RuntimeConfig>("[llm_compute]\ntype = \"spin\"\n").unwrap_err();
        assert!(err.to_string().contains("llm_compute"), "{err}");
    }
}
