//! The real Kubernetes control plane of the suites (`tests/kube/kube.sh`: etcd,
//! kube-apiserver and kube-controller-manager v1.20.2 on loopback, HTTPS only), and the
//! calls tests make on it directly: reading what the broker created, and playing the
//! kubelet (no kubelet runs) by patching pod and custom-resource status.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spin_osb_test_support::process::ChildGuard;

use crate::{enc, repo_root, Options};

/// The components that call the Kubernetes API (they get the cluster CA).
pub const KUBE_COMPONENTS: &[&str] = &[
    "osb-provision",
    "osb-update",
    "osb-deprovision",
    "osb-instance-last-operation",
    "osb-bind",
    "osb-unbind",
    "osb-binding-last-operation",
    "osb-operator",
];

/// A running control plane.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `https://127.0.0.1:PORT`.
    pub api_url: String,
    /// The PEM of the CA that signed the API's certificate.
    pub ca_file: PathBuf,
    /// Token of `system:masters`.
    pub admin_token: String,
    /// Token of an authenticated user without any RBAC grant.
    pub restricted_token: String,
    /// Token of `system:serviceaccount:spin-osb:spin-osb`.
    pub broker_token: String,
    /// Where the control plane keeps its files.
    pub run_dir: PathBuf,
}

/// Starts (or reuses) the control plane once per test binary.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| run_kube_sh(&["start"]))
}

/// Starts (or reuses) a second, separate control plane named `name` on
/// `https://127.0.0.2:port`: its own CA, tokens, storage and controller-manager (see
/// `kube.sh cluster`). It has no restricted token (the field is empty).
pub fn second_cluster(name: &str, port: u16) -> Cluster {
    cluster();
    run_kube_sh(&["cluster", name, &port.to_string()])
}

fn run_kube_sh(args: &[&str]) -> Cluster {
    let script = repo_root().join("tests/kube/kube.sh");
    let output = Command::new(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed (build the binaries with `tests/kube/kube.sh build`)",
        script.display()
    );
    let env_file = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let text = std::fs::read_to_string(&env_file).expect("kube env file");
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    let required =
        |name: &str| var(name).unwrap_or_else(|| panic!("{name} missing from {env_file}"));
    Cluster {
        api_url: required("KUBE_API_URL"),
        ca_file: required("KUBE_CA_FILE").into(),
        admin_token: required("KUBE_ADMIN_TOKEN"),
        restricted_token: var("KUBE_RESTRICTED_TOKEN").unwrap_or_default(),
        broker_token: required("KUBE_BROKER_TOKEN"),
        run_dir: required("KUBE_RUN_DIR").into(),
    }
}

/// Broker options for a broker with several clusters: `(name, cluster, token)` each, the
/// first named `default`. The manifest declares the others with `spin-osb clusters add`;
/// the runtime config trusts each cluster's own CA for its own host only.
pub fn clusters_options(
    catalog: &Path,
    clusters: &[(&str, &Cluster, &str)],
    dir: &Path,
) -> Options {
    let ids = KUBE_COMPONENTS
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut config = String::new();
    let mut options = Options {
        catalog: Some(catalog.to_path_buf()),
        ..Options::default()
    };
    for (name, cluster, token) in clusters {
        // Spin's client_tls hosts take no port.
        let authority = cluster.api_url.trim_start_matches("https://");
        let host = authority.split(':').next().unwrap_or(authority);
        config.push_str(&format!(
            "[[client_tls]]\ncomponent_ids = [{ids}]\nhosts = [{host:?}]\nca_roots_file = {:?}\n\n",
            cluster.ca_file.display().to_string()
        ));
        let prefix = if *name == "default" {
            "SPIN_VARIABLE_KUBERNETES".to_string()
        } else {
            options.clusters.push(name.to_string());
            format!("SPIN_VARIABLE_KUBERNETES_{}", name.to_uppercase())
        };
        options = options
            .env(&format!("{prefix}_API_URL"), cluster.api_url.clone())
            .env(&format!("{prefix}_TOKEN"), *token);
    }
    let path = dir.join("runtime-config-clusters.toml");
    std::fs::write(&path, config).expect("runtime config");
    options.runtime_config = Some(path);
    options
}

impl Cluster {
    /// Broker options pointing at this cluster through `api_url` with `token`: the
    /// variables, and a runtime config trusting the cluster's CA for the API host.
    pub fn broker_options(
        &self,
        catalog: &Path,
        api_url: &str,
        token: &str,
        dir: &Path,
    ) -> Options {
        let authority = api_url.trim_start_matches("https://");
        let config = dir.join(format!(
            "runtime-config-{}.toml",
            authority.replace(':', "-")
        ));
        // Spin's client_tls hosts take no port.
        let host = authority.split(':').next().unwrap_or(authority);
        let ids = KUBE_COMPONENTS
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "[[client_tls]]\ncomponent_ids = [{ids}]\nhosts = [{host:?}]\nca_roots_file = {:?}\n",
                self.ca_file.display().to_string()
            ),
        )
        .expect("runtime config");
        Options {
            catalog: Some(catalog.to_path_buf()),
            runtime_config: Some(config),
            ..Options::default()
        }
        .env("SPIN_VARIABLE_KUBERNETES_API_URL", api_url)
        .env("SPIN_VARIABLE_KUBERNETES_TOKEN", token)
    }

    /// An admin client for this cluster.
    pub fn admin(&self) -> Kube {
        self.with_token(&self.admin_token)
    }

    /// A client for this cluster presenting `token`.
    pub fn with_token(&self, token: &str) -> Kube {
        Kube::new(&self.api_url, &self.ca_file, token)
    }

    /// Starts one more apiserver on `port` (same etcd and credentials), for tests that
    /// stop the API under the broker.
    pub fn extra_apiserver(&self, port: u16) -> ExtraApiServer {
        let mut server = ExtraApiServer {
            port,
            child: None,
            ca_file: self.ca_file.clone(),
            token: self.admin_token.clone(),
            log: self.run_dir.join(format!("apiserver-{port}.log")),
        };
        server.start();
        server
    }
}

/// An apiserver a test may stop and start again.
pub struct ExtraApiServer {
    port: u16,
    child: Option<ChildGuard>,
    ca_file: PathBuf,
    token: String,
    log: PathBuf,
}

impl ExtraApiServer {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until it is ready.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(&self.log).expect("apiserver log");
        let child = ChildGuard::spawn(
            Command::new(repo_root().join("tests/kube/kube.sh"))
                .arg("apiserver")
                .arg(self.port.to_string())
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        )
        .expect("start apiserver");
        self.child = Some(child);
        let kube = Kube::new(&self.url(), &self.ca_file, &self.token);
        let deadline = Instant::now() + Duration::from_secs(90);
        while kube.raw("GET", "/readyz", None).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "apiserver on {} not ready; see {}",
                self.port,
                self.log.display()
            );
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// Kills it (connections are refused until [`ExtraApiServer::start`]); dropping it
    /// does too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }
}

/// A small client for the API, as tests use it.
pub struct Kube {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl Kube {
    /// A client for `base` trusting `ca_file`, authenticating with `token`.
    pub fn new(base: &str, ca_file: &Path, token: &str) -> Kube {
        let pem = std::fs::read(ca_file).expect("CA file");
        let ca = reqwest::Certificate::from_pem(&pem).expect("CA PEM");
        Kube {
            base: base.to_string(),
            token: token.to_string(),
            client: reqwest::blocking::Client::builder()
                .no_proxy()
                .add_root_certificate(ca)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Status and JSON body, `None` when the API cannot be reached.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Option<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request.send().ok()?;
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    fn call(&self, method: &str, path: &str, body: Option<(&str, Value)>) -> (u16, Value) {
        self.raw(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: the API is unreachable"))
    }

    /// The object at `path`, `None` on 404.
    pub fn get(&self, path: &str) -> Option<Value> {
        match self.call("GET", path, None) {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("GET {path}: {status} {body}"),
        }
    }

    /// Creates or replaces with server-side apply as the test (field manager `e2e`).
    pub fn apply(&self, path: &str, object: Value) -> Value {
        let (status, body) = self.call(
            "PATCH",
            &format!("{path}?fieldManager=e2e&force=true"),
            Some(("application/apply-patch+yaml", object)),
        );
        assert!(
            status == 200 || status == 201,
            "apply {path}: {status} {body}"
        );
        body
    }

    /// Merge-patches the `status` subresource.
    pub fn patch_status(&self, path: &str, status: Value) -> Value {
        let (code, body) = self.call(
            "PATCH",
            &format!("{path}/status"),
            Some(("application/merge-patch+json", json!({ "status": status }))),
        );
        assert_eq!(code, 200, "patch {path}/status: {body}");
        body
    }

    /// Deletes `path` (404 is fine).
    pub fn delete(&self, path: &str) {
        let (status, body) = self.call("DELETE", path, None);
        assert!(
            matches!(status, 200 | 202 | 404),
            "DELETE {path}: {status} {body}"
        );
    }

    /// Names of the items at a collection `path` with `label_selector`.
    pub fn list(&self, path: &str, label_selector: &str) -> Vec<Value> {
        let selector: String = enc(label_selector);
        let (status, body) = self.call("GET", &format!("{path}?labelSelector={selector}"), None);
        assert_eq!(status, 200, "list {path}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Plays the kubelet: marks every pod of `namespace` Running and Ready; how many.
    pub fn make_pods_ready(&self, namespace: &str) -> usize {
        let now = rfc3339_now();
        let pods = self.list(&format!("/api/v1/namespaces/{namespace}/pods"), "");
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}
            ]}});
            let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
            // A pod deleted since the list (a rollout replaces pods) is no longer ours to mark.
            let (code, body) = self.call(
                "PATCH",
                &path,
                Some(("application/merge-patch+json", status)),
            );
            assert!(matches!(code, 200 | 404), "patch {path}: {code} {body}");
        }
        pods.len()
    }

    /// Creates `namespace` (for context-namespace plans).
    pub fn create_namespace(&self, namespace: &str) {
        self.apply(
            &format!("/api/v1/namespaces/{namespace}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        );
    }
}

/// RFC 3339 UTC now, as conditions need.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
