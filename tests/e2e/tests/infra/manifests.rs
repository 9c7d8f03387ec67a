//! The manifests of `infra/kubernetes/` and the CRDs of `tests/kube/crds/`, applied to the
//! test kube-apiserver once per test binary and checked to be stored as written.

use super::*;

pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
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
pub struct Manifest {
    pub file: String,
    pub object: Value,
    /// Its API path, from discovery.
    pub path: String,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn what(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file)
    }
}

/// The API path of `object`, found through discovery as kubectl does.
pub fn api_path(k: &Kube, object: &Value, what: &str) -> String {
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
pub fn apply_raw(k: &Kube, path: &str, object: &Value) -> (u16, Value) {
    k.raw(
        "PATCH",
        &format!("{path}?fieldManager={MANAGER}&force=true"),
        Some(("application/apply-patch+yaml", object.clone())),
    )
    .unwrap_or_else(|| panic!("PATCH {path}: the API is unreachable"))
}

/// What the API stores for `object` if every field is kept: a Secret's write-only
/// `stringData` shows up base64-encoded in `data`.
pub fn as_stored(object: &Value) -> Value {
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
pub fn missing(wanted: &Value, stored: &Value, at: &str) -> Option<String> {
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
pub fn apply_exactly(k: &Kube, manifest: &Manifest) {
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

pub fn crd_manifests(k: &Kube) -> Vec<Manifest> {
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
pub fn applied() -> &'static [Manifest] {
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

pub fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in infra/kubernetes"))
}

/// The token the token controller put into `serviceaccount.yaml`'s Secret.
pub fn service_account_token(k: &Kube) -> String {
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
