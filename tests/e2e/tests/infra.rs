//! The deployment files of `infra/` against the real things they configure:
//!
//! * `infra/spin/*.toml` (and the runtime config inside `infra/kubernetes/secrets.example.yaml`)
//!   start `spin-osb up`, with only machine-specific paths, hosts and the Redis address
//!   swapped for local ones, and the state lands where the file says;
//! * every manifest of `infra/kubernetes/` is server-side applied to the test kube-apiserver
//!   (with the SpinApp and ClusterServiceBroker CRDs of `tests/kube/crds/`) and stored
//!   exactly as written, so a misspelt field (which the API prunes) fails here;
//! * `rbac.yaml` is enough for the default catalog's Kubernetes plans, with the token the
//!   controller puts into `serviceaccount.yaml`'s Secret, and grants nothing beyond them;
//! * `infra/cloudfoundry/register.sh` drives a fake `cf` the way it would drive the real one;
//! * `infra/systemd/spin-osb.service` passes `systemd-analyze verify`, and its command line,
//!   with `spin-osb.env.example`, serves the broker.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use spin_osb_e2e::kube::{cluster, eventually, Kube, KUBE_COMPONENTS};
use spin_osb_e2e::{
    host_bin, json, new_id, repo_root, Broker, Catalog, Options, Plan, Value, API_VERSION,
    START_TIMEOUT,
};

const WAIT: Duration = Duration::from_secs(90);
/// The field manager the tests apply with.
const MANAGER: &str = "spin-osb-infra-e2e";

fn infra(path: &str) -> PathBuf {
    repo_root().join("infra").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("spin-osb-infra-")
        .tempdir()
        .expect("temporary directory")
}

/// `text` with every `(from, to)` replaced; each `from` must occur (the files say what the
/// test replaces, so a renamed path fails loudly instead of being silently kept).
fn substitute(text: &str, replacements: &[(&str, &str)], what: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in replacements {
        assert!(out.contains(from), "{what} no longer contains {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The plan called `name` of the service called `service`.
fn plan_of(catalog: &Catalog, service: &str, name: &str) -> Plan {
    catalog
        .plans()
        .into_iter()
        .find(|p| p.name == name && p.service["name"] == service)
        .unwrap_or_else(|| panic!("{service}/{name} in the catalog"))
}

/// Provisions an instance of the default catalog's synchronous credentials plan and
/// returns its id.
fn provision_sync(b: &Broker) -> String {
    let plan = plan_of(&b.catalog(), "shared-credentials", "sync");
    let iid = new_id();
    b.provision(&iid, &plan.provision_body(json!({})), false)
        .expect(201);
    b.fetch_instance(&iid).expect(200);
    iid
}

/// The key of the instance record in the broker's store.
fn instance_key(iid: &str) -> String {
    format!("osb/v1/instance/{iid}")
}

/// Whether the SQLite store file at `db` holds `key`.
fn sqlite_has_key(db: &Path, key: &str) -> bool {
    let conn = rusqlite::Connection::open(db)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM spin_key_value WHERE key = ?1",
        [key],
        |row| row.get::<_, i64>(0),
    )
    .unwrap_or_else(|e| panic!("cannot query {}: {e}", db.display()))
        > 0
}

/// A child process killed when dropped (a failing test leaves nothing behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------
// Runtime configs (infra/spin)
// ---------------------------------------------------------------------------

/// A throw-away `redis-server` on loopback, with a password.
struct Redis {
    port: u16,
    password: String,
    _server: Guard,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(password: &str) -> Redis {
        let dir = tempdir();
        let port = free_port();
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (apt-get install redis-server): {e}")
            });
        let redis = Redis {
            port,
            password: password.to_string(),
            _server: Guard(server),
            _dir: dir,
        };
        eventually("redis-server to answer PING", WAIT, || {
            (redis.cli(&["PING"]) == "PONG").then_some(())
        });
        redis
    }

    /// `redis-cli ARGS` against this server; its trimmed output.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-a", &self.password, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn broker_with_runtime_config(config: PathBuf) -> Broker {
    Broker::start_with_options(Options {
        runtime_config: Some(config),
        ..Options::default()
    })
}

#[test]
fn the_sqlite_runtime_config_keeps_the_state_at_its_path() {
    let dir = tempdir();
    let state = dir.path().join("var-lib-spin-osb");
    std::fs::create_dir(&state).unwrap();
    let file = infra("spin/runtime-config-sqlite.toml");
    let text = substitute(
        &read(&file),
        &[("/var/lib/spin-osb", state.to_str().unwrap())],
        "runtime-config-sqlite.toml",
    );
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    let db = state.join("sqlite_key_value.db");
    assert!(
        sqlite_has_key(&db, &instance_key(&iid)),
        "the instance is stored in {}",
        db.display()
    );
    assert!(
        b.instance_record_keys(&iid).is_empty(),
        "and not in the default <state-dir> store"
    );
}

#[test]
fn the_redis_runtime_config_keeps_the_state_in_redis() {
    let file = infra("spin/runtime-config-redis.toml");
    let original = read(&file);
    // The file's own URL shape (password, database) is kept: only the address changes,
    // and the server gets the placeholder password.
    let redis = Redis::start("CHANGE-ME");
    let dir = tempdir();
    let address = format!("127.0.0.1:{}", redis.port);
    let text = substitute(
        &original,
        &[("redis.example.internal:6379", &address)],
        "runtime-config-redis.toml",
    );
    assert!(text.contains(&format!("redis://:CHANGE-ME@{address}/0")));
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    let record = redis.cli(&["GET", &instance_key(&iid)]);
    assert!(
        record.contains(&iid),
        "the instance record is in Redis: {record:?}"
    );
    assert!(b.instance_record_keys(&iid).is_empty(), "not in SQLite");
}

#[test]
fn the_client_tls_runtime_config_is_accepted_with_the_bosh_entry_enabled() {
    let c = cluster();
    let file = infra("spin/runtime-config-kubernetes-tls.toml");
    let original = read(&file);
    // Every component that calls a backend is listed, and only those.
    for component in KUBE_COMPONENTS {
        assert!(
            original.contains(&format!("\"{component}\"")),
            "{component} is missing from {}",
            file.display()
        );
    }
    // Uncomment the BOSH director entry (its lines are commented as `#key`).
    let uncommented: String = original
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        uncommented
            .lines()
            .filter(|l| *l == "[[client_tls]]")
            .count(),
        2,
        "the Kubernetes entry and the (commented) BOSH director entry"
    );
    let ca = c.ca_file.to_str().unwrap();
    let text = substitute(
        &uncommented,
        &[
            ("/etc/spin-osb/kube-ca.pem", ca),
            ("/etc/spin-osb/bosh-director-ca.pem", ca),
        ],
        "runtime-config-kubernetes-tls.toml",
    );
    let dir = tempdir();
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    b.get("/v2/catalog").expect(200);
    provision_sync(&b);
}

#[test]
fn the_runtime_config_secret_for_spinkube_is_accepted() {
    let docs = yaml_docs(&infra("kubernetes/secrets.example.yaml"));
    let secret = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "spin-osb-runtime-config")
        .expect("Secret spin-osb-runtime-config");
    let original = secret["stringData"]["runtime-config.toml"]
        .as_str()
        .expect("key runtime-config.toml (the key SpinKube mounts)");
    let redis = Redis::start("CHANGE-ME");
    let address = format!("127.0.0.1:{}", redis.port);
    let c = cluster();
    let text = substitute(
        original,
        &[
            ("redis.spin-osb.svc.cluster.local:6379", &address),
            ("/etc/spin-osb/kube-ca.pem", c.ca_file.to_str().unwrap()),
        ],
        "secrets.example.yaml's runtime-config.toml",
    );
    let dir = tempdir();
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    assert!(redis.cli(&["GET", &instance_key(&iid)]).contains(&iid));
}

// ---------------------------------------------------------------------------
// Kubernetes manifests (infra/kubernetes)
// ---------------------------------------------------------------------------

fn yaml_docs(path: &Path) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// One object of a manifest file.
#[derive(Clone)]
struct Manifest {
    file: String,
    object: Value,
    /// Its API path, from discovery.
    path: String,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn what(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file)
    }
}

/// The API path of `object`, found through discovery as kubectl does.
fn api_path(k: &Kube, object: &Value, what: &str) -> String {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let kind = object["kind"].as_str().expect("kind");
    let name = object["metadata"]["name"].as_str().expect("metadata.name");
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let (status, discovery) = k.raw("GET", &base, None).expect("the API is reachable");
    assert_eq!(status, 200, "{what}: {base} is not served: {discovery}");
    let resource = discovery["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == kind && !r["name"].as_str().unwrap_or("/").contains('/'))
        .unwrap_or_else(|| panic!("{what}: {base} serves no kind {kind}"));
    let plural = resource["name"].as_str().unwrap();
    if resource["namespaced"] == true {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: a namespaced object names its namespace"));
        format!("{base}/namespaces/{namespace}/{plural}/{name}")
    } else {
        format!("{base}/{plural}/{name}")
    }
}

/// Server-side apply; status and body.
fn apply_raw(k: &Kube, path: &str, object: &Value) -> (u16, Value) {
    k.raw(
        "PATCH",
        &format!("{path}?fieldManager={MANAGER}&force=true"),
        Some(("application/apply-patch+yaml", object.clone())),
    )
    .unwrap_or_else(|| panic!("PATCH {path}: the API is unreachable"))
}

/// What the API stores for `object` if every field is kept: a Secret's write-only
/// `stringData` shows up base64-encoded in `data`.
fn as_stored(object: &Value) -> Value {
    let mut object = object.clone();
    if object["kind"] == "Secret" {
        if let Some(Value::Object(strings)) =
            object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            let data = object
                .as_object_mut()
                .unwrap()
                .entry("data")
                .or_insert_with(|| json!({}));
            for (key, value) in strings {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(value.as_str().unwrap_or_default());
                data[key.as_str()] = Value::String(encoded);
            }
        }
    }
    object
}

/// The first field `wanted` sets that `stored` lacks or holds differently (`None`: all are
/// kept; the server may add more).
fn missing(wanted: &Value, stored: &Value, at: &str) -> Option<String> {
    match (wanted, stored) {
        (Value::Object(w), Value::Object(s)) => {
            w.iter().find_map(|(key, value)| match s.get(key) {
                Some(kept) => missing(value, kept, &format!("{at}.{key}")),
                None => Some(format!(
                    "{at}.{key} was dropped by the API (unknown field?)"
                )),
            })
        }
        (Value::Array(w), Value::Array(s)) if w.len() == s.len() => w
            .iter()
            .zip(s)
            .enumerate()
            .find_map(|(i, (a, b))| missing(a, b, &format!("{at}[{i}]"))),
        (w, s) if w == s => None,
        (w, s) => Some(format!("{at}: applied {w}, stored {s}")),
    }
}

/// Applies `object` and asserts the API accepted it and stored every field of it.
fn apply_exactly(k: &Kube, manifest: &Manifest) {
    let (status, stored) = apply_raw(k, &manifest.path, &manifest.object);
    assert!(
        status == 200 || status == 201,
        "{} refused: {status} {stored}",
        manifest.what()
    );
    if let Some(problem) = missing(&as_stored(&manifest.object), &stored, "") {
        panic!("{}: {problem}", manifest.what());
    }
}

fn crd_manifests(k: &Kube) -> Vec<Manifest> {
    let dir = repo_root().join("tests/kube/crds");
    yaml_files(&dir)
        .into_iter()
        .flat_map(|file| {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            yaml_docs(&file)
                .into_iter()
                .map(move |object| (name.clone(), object))
        })
        .map(|(file, object)| Manifest {
            path: api_path(k, &object, &file),
            file,
            object,
        })
        .collect()
}

/// Installs the CRDs and applies every manifest of infra/kubernetes once per test binary
/// (namespaces first, then file order); returns the manifests.
fn applied() -> &'static [Manifest] {
    static APPLIED: OnceLock<Vec<Manifest>> = OnceLock::new();
    APPLIED.get_or_init(|| {
        let k = cluster().admin();
        for crd in crd_manifests(&k) {
            apply_exactly(&k, &crd);
            let group = crd.object["spec"]["group"].as_str().unwrap().to_string();
            for version in crd.object["spec"]["versions"].as_array().unwrap() {
                let path = format!("/apis/{group}/{}", version["name"].as_str().unwrap());
                eventually(&format!("{} to be served", crd.name()), WAIT, || {
                    let established = k.get(&crd.path).is_some_and(|live| {
                        live["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    });
                    let served = k.raw("GET", &path, None).is_some_and(|(s, _)| s == 200);
                    (established && served).then_some(())
                });
            }
        }
        let dir = infra("kubernetes");
        let mut objects: Vec<(String, Value)> = Vec::new();
        for file in yaml_files(&dir) {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            objects.extend(yaml_docs(&file).into_iter().map(|o| (name.clone(), o)));
        }
        objects.sort_by_key(|(_, o)| o["kind"] != "Namespace");
        let mut manifests = Vec::new();
        for (file, object) in objects {
            let path = api_path(&k, &object, &file);
            let manifest = Manifest { file, object, path };
            apply_exactly(&k, &manifest);
            manifests.push(manifest);
        }
        manifests
    })
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in infra/kubernetes"))
}

/// The token the token controller put into `serviceaccount.yaml`'s Secret.
fn service_account_token(k: &Kube) -> String {
    let secret = applied()
        .iter()
        .find(|m| m.kind() == "Secret" && m.object["type"] == "kubernetes.io/service-account-token")
        .expect("a ServiceAccount token Secret");
    let token = eventually("the token controller to fill the Secret", WAIT, || {
        k.get(&secret.path)
            .and_then(|s| s["data"]["token"].as_str().map(str::to_string))
    });
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("base64 token"),
    )
    .expect("UTF-8 token")
}

#[test]
fn every_manifest_of_infra_kubernetes_is_accepted_and_stored_as_written() {
    let manifests = applied();
    let k = cluster().admin();
    let mut kinds: Vec<&str> = manifests.iter().map(Manifest::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterServiceBroker",
            "Namespace",
            "Secret",
            "Service",
            "ServiceAccount",
            "SpinApp"
        ]
    );
    for m in manifests {
        assert!(
            m.object["metadata"]["labels"]["app.kubernetes.io/name"] == "spin-osb",
            "{} carries app.kubernetes.io/name=spin-osb",
            m.what()
        );
    }

    // The references between the objects hold.
    let app = &find(manifests, "SpinApp", "spin-osb").object;
    let namespace = app["metadata"]["namespace"].as_str().unwrap();
    let secret_key = |name: &str, key: &str| {
        let secret = find(manifests, "Secret", name);
        assert_eq!(secret.object["metadata"]["namespace"], namespace);
        if secret.object["type"] == "kubernetes.io/service-account-token" {
            assert_eq!(key, "token", "the token controller fills `token`");
        } else {
            assert!(
                secret.object["stringData"].get(key).is_some(),
                "Secret {name} has key {key}"
            );
        }
    };
    let mut variables: Vec<&str> = Vec::new();
    for variable in app["spec"]["variables"].as_array().unwrap() {
        variables.push(variable["name"].as_str().unwrap());
        if let Some(r) = variable["valueFrom"]["secretKeyRef"].as_object() {
            secret_key(r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
        }
    }
    // The variables spin.toml declares (the required password among them).
    let manifest = read(&repo_root().join("spin.toml"));
    for variable in &variables {
        assert!(
            manifest.contains(&format!("\n{variable} = ")),
            "spin.toml declares variable {variable}"
        );
    }
    // ... and every variable spin.toml requires is given.
    let required: Vec<&str> = manifest
        .split("\n[variables]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("spin.toml [variables]")
        .lines()
        .filter(|l| l.contains("required = true"))
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
        .collect();
    assert!(required.contains(&"broker_password"), "{required:?}");
    for variable in &required {
        assert!(
            variables.contains(variable),
            "the SpinApp sets required variable {variable}"
        );
    }
    assert!(variables.contains(&"kubernetes_token"));
    secret_key(
        app["spec"]["runtimeConfig"]["loadFromSecret"]
            .as_str()
            .unwrap(),
        "runtime-config.toml",
    );
    // The mounted CA is the cluster's (kube-controller-manager publishes kube-root-ca.crt).
    let volume = &app["spec"]["volumes"][0];
    let config_map = volume["configMap"]["name"].as_str().unwrap();
    let live = eventually("the root CA ConfigMap", WAIT, || {
        k.get(&format!(
            "/api/v1/namespaces/{namespace}/configmaps/{config_map}"
        ))
    });
    let key = volume["configMap"]["items"][0]["key"].as_str().unwrap();
    assert_eq!(
        live["data"][key].as_str().map(str::trim),
        Some(read(&cluster().ca_file).trim()),
        "{config_map}/{key} is the CA of the API server"
    );
    let mounted = format!(
        "{}/{}",
        app["spec"]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap(),
        volume["configMap"]["items"][0]["path"].as_str().unwrap()
    );
    let runtime_config = find(manifests, "Secret", "spin-osb-runtime-config").object["stringData"]
        ["runtime-config.toml"]
        .as_str()
        .unwrap();
    assert!(
        runtime_config.contains(&format!("ca_roots_file = \"{mounted}\"")),
        "the runtime config trusts the mounted CA {mounted}"
    );
    // The Service selects the SpinApp's pods.
    let service = &find(manifests, "Service", "spin-osb-broker").object;
    for (label, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&app["spec"]["podLabels"][label], value, "podLabels.{label}");
    }
    // Service Catalog authenticates with the broker's own credentials.
    let broker = &find(manifests, "ClusterServiceBroker", "spin-osb").object;
    let secret_ref = &broker["spec"]["authInfo"]["basic"]["secretRef"];
    assert_eq!(secret_ref["namespace"], namespace);
    let auth = find(manifests, "Secret", secret_ref["name"].as_str().unwrap());
    assert_eq!(auth.object["type"], "kubernetes.io/basic-auth");
    for variable in app["spec"]["variables"].as_array().unwrap() {
        if variable["name"] == "broker_password" {
            assert_eq!(variable["valueFrom"]["secretKeyRef"]["name"], auth.name());
        }
    }
    assert!(broker["spec"]["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "http://{}.{namespace}.svc",
            service["metadata"]["name"].as_str().unwrap()
        )));
    // The binding names the ServiceAccount whose token the SpinApp uses.
    let binding = &find(manifests, "ClusterRoleBinding", "spin-osb-broker").object;
    let subject = &binding["subjects"][0];
    let account = find(
        manifests,
        "ServiceAccount",
        subject["name"].as_str().unwrap(),
    );
    assert_eq!(
        account.object["metadata"]["namespace"],
        subject["namespace"]
    );
    let token_secret = manifests
        .iter()
        .find(|m| m.object["type"] == "kubernetes.io/service-account-token")
        .unwrap();
    assert_eq!(
        token_secret.object["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        account.name()
    );
    assert!(!service_account_token(&k).is_empty());
}

/// A field the CRD's structural schema does not declare never reaches storage: the
/// server-side apply of kube-apiserver 1.20 either refuses it (500 "field not declared in
/// schema", as for `spec.authinfo`) or prunes it silently (as for a scalar `spec.replica`).
/// A pruned typo would go unnoticed but for the exact-storage check of [`apply_exactly`],
/// which every manifest passes. Type errors and missing required fields are refused (422).
#[test]
fn a_misspelt_field_in_a_custom_resource_is_caught() {
    let manifests = applied();
    let k = cluster().admin();
    for (kind, name, typo_path, typo_value) in [
        ("SpinApp", "spin-osb", "replica", json!(3)),
        (
            "ClusterServiceBroker",
            "spin-osb",
            "authinfo",
            json!({"basic": {}}),
        ),
    ] {
        let original = find(manifests, kind, name);
        let mut typo = original.clone();
        let copy = format!("{name}-typo-{}", &new_id()[..8]);
        typo.object["metadata"]["name"] = json!(copy);
        typo.object["spec"][typo_path] = typo_value;
        typo.path = api_path(&k, &typo.object, "typo");
        let (status, stored) = apply_raw(&k, &typo.path, &typo.object);
        match status {
            // Refused outright: 1.20's server-side apply cannot build a typed patch for
            // some undeclared fields (500 "field not declared in schema"); newer servers
            // with strict field validation answer 400/422.
            400 | 422 | 500 => assert!(
                stored.to_string().contains(typo_path),
                "{kind}: refused for the undeclared field: {stored}"
            ),
            // Or accepted with the field pruned.
            200 | 201 => {
                assert!(
                    stored["spec"].get(typo_path).is_none(),
                    "{kind}: an undeclared field is never stored: {stored}"
                );
                let problem = missing(&as_stored(&typo.object), &stored, "")
                    .expect("the exact-storage check reports the dropped field");
                assert!(problem.contains(typo_path), "{problem}");
                k.delete(&typo.path);
            }
            other => panic!("{kind}: unexpected {other}: {stored}"),
        }
    }

    // A misspelt required field and a wrong type are refused (422).
    let app = find(manifests, "SpinApp", "spin-osb");
    for (label, edit) in [
        ("imag instead of image", ("imag", Some("image"))),
        ("replicas as a string", ("replicas", None)),
    ] {
        let mut bad = app.clone();
        bad.object["metadata"]["name"] = json!(format!("spin-osb-bad-{}", &new_id()[..8]));
        let spec = bad.object["spec"].as_object_mut().unwrap();
        match edit {
            (new, Some(old)) => {
                let value = spec.remove(old).unwrap();
                spec.insert(new.to_string(), value);
            }
            (field, None) => {
                spec.insert(field.to_string(), json!("two"));
            }
        }
        bad.path = api_path(&k, &bad.object, label);
        let (status, body) = apply_raw(&k, &bad.path, &bad.object);
        assert_eq!(status, 422, "{label}: {body}");
    }
    let broker = find(manifests, "ClusterServiceBroker", "spin-osb");
    let mut bad = broker.clone();
    bad.object["metadata"]["name"] = json!(format!("spin-osb-bad-{}", &new_id()[..8]));
    bad.object["spec"]["relistBehavior"] = json!("Sometimes");
    bad.path = api_path(&k, &bad.object, "relistBehavior");
    let (status, body) = apply_raw(&k, &bad.path, &bad.object);
    assert_eq!(status, 422, "an unknown relistBehavior: {body}");
}

/// The broker with rbac.yaml's grants (the real ServiceAccount token) and the shipped
/// client-TLS runtime config runs every Kubernetes plan of the default catalog through its
/// whole life; the same token can do nothing else worth having.
#[test]
fn rbac_yaml_is_enough_for_the_default_catalogs_kubernetes_plans_and_grants_no_more() {
    applied();
    let c = cluster();
    let admin = c.admin();
    let token = service_account_token(&admin);

    let dir = tempdir();
    let text = substitute(
        &read(&infra("spin/runtime-config-kubernetes-tls.toml")),
        &[
            ("\"kubernetes.default.svc\"", "\"127.0.0.1\""),
            ("/etc/spin-osb/kube-ca.pem", c.ca_file.to_str().unwrap()),
        ],
        "runtime-config-kubernetes-tls.toml",
    );
    let b = Broker::start_with_options(
        Options {
            runtime_config: Some(write(dir.path(), "runtime-config.toml", &text)),
            ..Options::default()
        }
        .env("SPIN_VARIABLE_KUBERNETES_API_URL", c.api_url.as_str())
        .env("SPIN_VARIABLE_KUBERNETES_TOKEN", token.as_str()),
    );

    // Every shipped Kubernetes plan: Deployment and StatefulSet kinds alike.
    let catalog = b.catalog();
    for (service, name) in [("redis", "small"), ("redis", "ha"), ("postgresql", "small")] {
        let plan = plan_of(&catalog, service, name);
        let what = format!("{service}/{name}");
        let iid = new_id();
        let ns = format!("osb-{iid}");
        let context = json!({"platform": "kubernetes", "clusterid": "e2e"});
        let body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
            "organization_guid": "e2e", "space_guid": "default", "context": context});
        let op = b.provision(&iid, &body, true).expect(202).operation();
        let done = eventually(&format!("{what}: the provision to finish"), WAIT, || {
            admin.make_pods_ready(&ns);
            let resp = b.instance_last_operation(&iid, Some(&op));
            assert_eq!(resp.status, 200, "{what}: {}", resp.body);
            (resp.json["state"] != "in progress").then_some(resp.json)
        });
        assert_eq!(done["state"], "succeeded", "{what}: {done}");

        let bid = new_id();
        let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
        let bound = b.bind(&iid, &bid, &bind_body, false).expect(201);
        let credentials = &bound.json["credentials"];
        assert!(
            credentials["host"]
                .as_str()
                .unwrap_or_default()
                .contains(&ns),
            "{what}: {credentials}"
        );
        assert!(credentials["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 32));
        b.unbind(&iid, &bid, &plan, false).expect(200);

        let op = b.deprovision(&iid, &plan, true).expect(202).operation();
        let last = b.wait_instance_operation(&iid, &op);
        assert!(
            last.status == 410 || last.json["state"] == "succeeded",
            "{what}: {}",
            last.body
        );
        assert_eq!(b.instance_last_operation(&iid, Some(&op)).status, 410);
        assert!(
            admin.get(&format!("/api/v1/namespaces/{ns}")).is_none(),
            "{what}: the instance namespace is gone"
        );
    }
    assert!(!b.output.text().contains(&token), "tokens are never logged");

    // Nothing beyond the four verbs on the five kinds.
    let broker = Kube::new(&c.api_url, &c.ca_file, &token);
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}});
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "spin-osb-escalate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "spin-osb", "namespace": "spin-osb"}]
    });
    for (method, path, body) in [
        ("GET", "/api/v1/nodes", None),
        ("GET", "/api/v1/namespaces", None),
        ("GET", "/api/v1/secrets", None),
        ("GET", "/api/v1/namespaces/kube-system/secrets", None),
        ("GET", "/api/v1/namespaces/spin-osb/pods", None),
        (
            "GET",
            "/apis/apps/v1/namespaces/kube-system/deployments",
            None,
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt",
            None,
        ),
        (
            "POST",
            "/api/v1/namespaces/spin-osb/configmaps",
            Some(("application/json", configmap)),
        ),
        (
            "PUT",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/spin-osb-escalate",
            Some(("application/json", binding)),
        ),
        (
            "PATCH",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/spin-osb-broker",
            Some(("application/merge-patch+json", json!({"rules": []}))),
        ),
    ] {
        let (status, answer) = broker
            .raw(method, path, body)
            .expect("the API is reachable");
        assert_eq!(status, 403, "{method} {path} must be forbidden: {answer}");
    }
}

// ---------------------------------------------------------------------------
// Cloud Foundry registration (infra/cloudfoundry/register.sh)
// ---------------------------------------------------------------------------

/// A `cf` that records every call (CF_BROKER_PASSWORD, then the arguments, tab-separated)
/// and lists `$FAKE_CF_EXISTING` as an existing broker.
const FAKE_CF: &str = r#"#!/bin/sh
{
  printf '%s' "${CF_BROKER_PASSWORD-<unset>}"
  for arg in "$@"; do printf '\t%s' "$arg"; done
  printf '\n'
} >> "$FAKE_CF_LOG"
if [ "$1" = service-brokers ]; then
  echo "Getting service brokers as admin..."
  echo
  echo "name                url"
  if [ -n "$FAKE_CF_EXISTING" ]; then echo "$FAKE_CF_EXISTING   https://old.example.com"; fi
fi
exit 0
"#;

struct CfRun {
    status: std::process::ExitStatus,
    output: String,
    /// `(CF_BROKER_PASSWORD, args)` of every `cf` call.
    calls: Vec<(String, Vec<String>)>,
}

fn register(password: &str, existing: &str, args: &[&str]) -> CfRun {
    let dir = tempdir();
    let cf = write(dir.path(), "cf", FAKE_CF);
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = dir.path().join("calls");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(infra("cloudfoundry/register.sh"))
        .args(args)
        .env("PATH", path)
        .env("BROKER_PASSWORD", password)
        .env_remove("BROKER_USERNAME")
        .env_remove("CF_BROKER_PASSWORD")
        .env_remove("CF")
        .env("FAKE_CF_LOG", &log)
        .env("FAKE_CF_EXISTING", existing)
        .output()
        .expect("run register.sh");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut fields = line.split('\t').map(str::to_string);
            let password = fields.next().unwrap_or_default();
            (password, fields.collect())
        })
        .collect();
    CfRun {
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        calls,
    }
}

impl CfRun {
    fn commands(&self) -> Vec<Vec<&str>> {
        self.calls
            .iter()
            .map(|(_, args)| args.iter().map(String::as_str).collect())
            .collect()
    }
}

#[test]
fn register_sh_creates_or_updates_the_broker_and_enables_every_service() {
    let b = Broker::start();
    let url = b.base();
    let services: Vec<String> = b
        .catalog()
        .services()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(services.len() >= 3, "{services:?}");
    let enables = |extra: &[&str]| -> Vec<Vec<String>> {
        services
            .iter()
            .map(|s| {
                let mut call = vec!["enable-service-access".to_string(), s.clone()];
                call.extend(["-b", "spin-osb"].iter().map(|a| a.to_string()));
                call.extend(extra.iter().map(|a| a.to_string()));
                call
            })
            .collect()
    };
    let as_strings =
        |run: &CfRun| -> Vec<Vec<String>> { run.calls.iter().map(|(_, a)| a.clone()).collect() };

    // A new broker (another broker's name only starts the same way).
    let run = register(&b.password, "spin-osb-old", &[&url]);
    assert!(run.status.success(), "{}", run.output);
    let mut expected = vec![
        vec!["service-brokers".to_string()],
        ["create-service-broker", "spin-osb", "broker", &url]
            .map(String::from)
            .to_vec(),
    ];
    expected.extend(enables(&[]));
    assert_eq!(as_strings(&run), expected, "{}", run.output);
    for (password, args) in &run.calls {
        assert_eq!(
            password, &b.password,
            "cf reads the password from CF_BROKER_PASSWORD"
        );
        assert!(
            !args.contains(&b.password),
            "never on a command line: {args:?}"
        );
    }

    // The update path: the broker exists, its catalog is re-read, access enabled again.
    let run = register(
        &b.password,
        "spin-osb",
        &["--org", "acme", &format!("{url}/")],
    );
    assert!(run.status.success(), "{}", run.output);
    let mut expected = vec![
        vec!["service-brokers".to_string()],
        ["update-service-broker", "spin-osb", "broker", &url]
            .map(String::from)
            .to_vec(),
    ];
    expected.extend(enables(&["-o", "acme"]));
    assert_eq!(as_strings(&run), expected, "{}", run.output);

    // Space-scoped: the plans are visible in the space; service access does not apply.
    let run = register(
        &b.password,
        "",
        &["--space-scoped", "--name", "my-osb", &url],
    );
    assert!(run.status.success(), "{}", run.output);
    assert_eq!(
        run.commands(),
        vec![
            vec!["service-brokers"],
            vec![
                "create-service-broker",
                "my-osb",
                "broker",
                &url,
                "--space-scoped"
            ],
        ],
        "{}",
        run.output
    );

    // A wrong password stops before anything is registered.
    let run = register("wrong", "", &[&url]);
    assert!(!run.status.success(), "{}", run.output);
    assert!(run.calls.is_empty(), "no cf call: {:?}", run.commands());
    assert!(
        run.output.contains("check the URL and the credentials"),
        "{}",
        run.output
    );
}

// ---------------------------------------------------------------------------
// systemd (infra/systemd)
// ---------------------------------------------------------------------------

/// `KEY=value` lines of an environment file (systemd's syntax, as the example uses it).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The values of `Key=` lines of the unit.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

/// Where the host caches compiled components without SPIN_OSB_CACHE_DIR (host/src/app.rs).
fn default_cache_dir() -> PathBuf {
    std::env::var_os("SPIN_OSB_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("spin-osb/components"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/spin-osb/components")
        })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_systemd_unit_verifies_and_its_command_line_serves_the_broker() {
    let unit_file = infra("systemd/spin-osb.service");
    let unit = read(&unit_file);
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let exec = exec[0];
    assert!(exec.starts_with("/usr/local/bin/spin-osb up "), "{exec}");
    assert_eq!(
        unit_values(&unit, "EnvironmentFile"),
        ["/etc/spin-osb/spin-osb.env"]
    );
    // The directories systemd creates are the ones the command line and config use.
    assert_eq!(unit_values(&unit, "StateDirectory"), ["spin-osb"]);
    assert!(exec.contains("--state-dir /var/lib/spin-osb"), "{exec}");
    assert!(read(&infra("spin/runtime-config-sqlite.toml")).contains("\"/var/lib/spin-osb/"));
    assert_eq!(unit_values(&unit, "CacheDirectory"), ["spin-osb"]);
    assert_eq!(
        unit_values(&unit, "Environment"),
        ["SPIN_OSB_CACHE_DIR=/var/cache/spin-osb"]
    );

    let dir = tempdir();
    // `systemd-analyze verify` checks every key and that ExecStart is executable, so it
    // runs on a copy that points at the built binary instead of /usr/local/bin.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let copy = write(
            dir.path(),
            "spin-osb.service",
            &unit.replace("/usr/local/bin/spin-osb", host_bin().to_str().unwrap()),
        );
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify: {}\n{stderr}",
            out.status
        );
    } else {
        eprintln!("systemd-analyze is not installed: the unit's keys were not verified");
    }

    // Run ExecStart the way systemd would: the environment file's variables (with the
    // password and listen address of this test), ${VAR} expanded, and the unit's paths
    // mapped into a temporary root laid out as infra/systemd/README.md installs it.
    let env_example = read(&infra("systemd/spin-osb.env.example"));
    let mut env = env_file(&env_example);
    let password = format!("e2e-{}", new_id());
    assert!(
        env.iter()
            .any(|(k, v)| k == "SPIN_VARIABLE_BROKER_PASSWORD" && v.contains("CHANGE-ME")),
        "the example's password is a marked placeholder"
    );
    for (key, value) in &mut env {
        match key.as_str() {
            "SPIN_VARIABLE_BROKER_PASSWORD" => *value = password.clone(),
            "SPIN_OSB_LISTEN" => *value = "127.0.0.1:0".to_string(),
            _ => {}
        }
    }
    let username = env
        .iter()
        .find(|(k, _)| k == "SPIN_VARIABLE_BROKER_USERNAME")
        .map(|(_, v)| v.clone())
        .expect("SPIN_VARIABLE_BROKER_USERNAME");
    let root = dir.path();
    let opt = root.join("opt-spin-osb");
    std::fs::create_dir(&opt).unwrap();
    std::fs::copy(repo_root().join("spin.toml"), opt.join("spin.toml")).unwrap();
    copy_dir(&repo_root().join("catalog"), &opt.join("catalog"));
    std::os::unix::fs::symlink(repo_root().join("target"), opt.join("target")).unwrap();
    let etc = root.join("etc-spin-osb");
    let state = root.join("var-lib-spin-osb");
    std::fs::create_dir(&etc).unwrap();
    std::fs::create_dir(&state).unwrap();
    let paths = [
        ("/usr/local/bin/spin-osb", host_bin()),
        ("/opt/spin-osb", opt.clone()),
        ("/etc/spin-osb", etc.clone()),
        ("/var/lib/spin-osb", state.clone()),
        ("/var/cache/spin-osb", default_cache_dir()),
    ];
    let map = |text: &str| -> String {
        paths.iter().fold(text.to_string(), |t, (from, to)| {
            t.replace(from, to.to_str().unwrap())
        })
    };
    // The runtime config the README installs: runtime-config-sqlite.toml.
    write(
        &etc,
        "runtime-config.toml",
        &map(&read(&infra("spin/runtime-config-sqlite.toml"))),
    );
    let mut args: Vec<String> = Vec::new();
    for word in exec.split_whitespace() {
        let mut word = word.to_string();
        for (key, value) in &env {
            word = word.replace(&format!("${{{key}}}"), value);
        }
        assert!(
            !word.contains("${"),
            "{word}: undefined in spin-osb.env.example"
        );
        args.push(map(&word));
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .current_dir(map(unit_values(&unit, "WorkingDirectory")[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
            cmd.env_remove(key);
        }
    }
    for value in unit_values(&unit, "Environment") {
        let (key, value) = value.split_once('=').unwrap();
        cmd.env(key, map(value));
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = Guard(cmd.spawn().expect("run the unit's ExecStart"));
    let (tx, rx) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Serving ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let mut stderr = child.0.stderr.take().unwrap();
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let base = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("{args:?} did not serve"));
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let get = client
        .get(format!("{base}/v2/catalog"))
        .basic_auth(&username, Some(&password))
        .header("X-Broker-API-Version", API_VERSION)
        .send()
        .expect("GET /v2/catalog");
    assert_eq!(get.status().as_u16(), 200);
    let catalog = Catalog {
        json: get.json().expect("catalog JSON"),
    };
    let plan = plan_of(&catalog, "shared-credentials", "sync");
    let iid = new_id();
    let put = client
        .put(format!("{base}/v2/service_instances/{iid}"))
        .basic_auth(&username, Some(&password))
        .header("X-Broker-API-Version", API_VERSION)
        .json(&plan.provision_body(json!({})))
        .send()
        .expect("provision");
    assert_eq!(put.status().as_u16(), 201);
    let db = state.join("sqlite_key_value.db");
    assert!(
        sqlite_has_key(&db, &instance_key(&iid)),
        "state in {}",
        db.display()
    );

    // KillSignal=SIGTERM: a graceful stop.
    let pid = child.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        thread::sleep(Duration::from_millis(50));
    };
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "exit after SIGTERM: {status}\n{errors}");
}
