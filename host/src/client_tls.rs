//! TLS client configurations for outbound HTTPS.
//!
//! Every request trusts the system's roots (plus the webpki bundle, so a minimal container
//! without CA certificates still reaches public hosts). A runtime-config `[[client_tls]]`
//! entry adds a private CA — a Kubernetes API server or a BOSH director usually has one —
//! and optionally a client certificate, for the listed components and hosts only.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::runtime_config::ClientTls;

/// The client configurations of one app, built once at start-up.
pub struct TlsConfigs {
    default: Arc<ClientConfig>,
    entries: Vec<Entry>,
}

struct Entry {
    component_ids: Vec<String>,
    hosts: Vec<String>,
    config: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Loads the system roots and every `[[client_tls]]` entry's files.
    pub fn new(client_tls: &[ClientTls]) -> Result<Self> {
        let system = system_roots();
        let default = Arc::new(build_config(roots_with(&system, true, &[])?, None)?);
        let mut entries = Vec::new();
        for (index, entry) in client_tls.iter().enumerate() {
            let at = || format!("client_tls[{index}]");
            let extra = match &entry.ca_roots_file {
                Some(file) => {
                    load_certs(file).with_context(|| format!("{}.ca_roots_file", at()))?
                }
                None => Vec::new(),
            };
            let roots = roots_with(&system, entry.ca_webpki_roots(), &extra).with_context(at)?;
            let client_auth = match (&entry.cert_chain_file, &entry.private_key_file) {
                (Some(chain), Some(key)) => Some((
                    load_certs(chain).with_context(|| format!("{}.client_cert_file", at()))?,
                    load_key(key).with_context(|| format!("{}.client_private_key_file", at()))?,
                )),
                (None, None) => None,
                _ => bail!(
                    "{}: client_cert_file and client_private_key_file go together",
                    at()
                ),
            };
            entries.push(Entry {
                component_ids: entry.component_ids.clone(),
                hosts: entry.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                config: Arc::new(build_config(roots, client_auth).with_context(at)?),
            });
        }
        Ok(Self { default, entries })
    }

    /// The configuration for `component` connecting to `host:port`.
    pub fn for_host(&self, component: &str, host: &str, port: u16) -> Arc<ClientConfig> {
        let host = host.to_ascii_lowercase();
        let authority = format!("{host}:{port}");
        self.entries
            .iter()
            .find(|e| {
                e.component_ids.iter().any(|c| c == component)
                    && e.hosts.iter().any(|h| *h == host || *h == authority)
            })
            .map(|e| e.config.clone())
            .unwrap_or_else(|| self.default.clone())
    }
}

fn system_roots() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for error in &result.errors {
        tracing::debug!("skipping unreadable system certificate: {error}");
    }
    result.certs
}

fn roots_with(
    system: &[CertificateDer<'static>],
    webpki: bool,
    extra: &[CertificateDer<'static>],
) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if webpki {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Broken system certificates are skipped, as curl does.
        let _ = roots.add_parsable_certificates(system.iter().cloned());
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| anyhow!("invalid CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn build_config(
    roots: RootCertStore,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let mut config = match client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{} contains no certificate", path.display());
    }
    Ok(certs)
}

fn load_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{} is not valid PEM", path.display()))?
        .ok_or_else(|| anyhow!("{} contains no private key", path.display()))
}
