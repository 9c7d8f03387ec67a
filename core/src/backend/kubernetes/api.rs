//! A minimal Kubernetes API client over [`HttpClient`]: discovery (kind → REST path),
//! server-side apply, get and delete, and the mapping of API failures to backend errors.
//! No client-go, no watches: every call is one request, so it fits a request-scoped
//! component.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::clusters::{quoted, ClusterAccess};
use crate::backend::BackendError;
use crate::kv::Kv;
use crate::outbound::{HttpRequest, HttpResponse, Outbound};

/// Characters escaped in a path segment: everything but RFC 3986's unreserved ones.
/// Names are validated before they get here; escaping is the second line of defence.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(text: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(text, SEGMENT)
}
/// How long a discovery answer is trusted; a kind missing from a cached answer is looked
/// up again at once (a CRD may have been installed since).
const DISCOVERY_TTL_SECONDS: u64 = 300;

/// One object the broker manages, with everything needed to reach it again (stored in the
/// operation and the instance, so deletion never depends on the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `group/version` or `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`; `None` for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Resource name from discovery, e.g. `deployments`.
    pub plural: String,
}

impl ObjectRef {
    /// The object's REST path.
    pub fn path(&self) -> String {
        let root = group_version_root(&self.api_version);
        let (plural, name) = (segment(&self.plural), segment(&self.name));
        match &self.namespace {
            Some(ns) => format!("{root}/namespaces/{}/{plural}/{name}", segment(ns)),
            None => format!("{root}/{plural}/{name}"),
        }
    }

    /// `Deployment ns/name`, for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// Same object (api group, kind, namespace and name), whatever version is used.
    pub fn same_object(&self, other: &ObjectRef) -> bool {
        group_of(&self.api_version) == group_of(&other.api_version)
            && self.kind == other.kind
            && self.name == other.name
            && self.namespace == other.namespace
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

fn group_version_root(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some((group, version)) => format!("/apis/{}/{}", segment(group), segment(version)),
        None => format!("/api/{}", segment(api_version)),
    }
}

/// What discovery says about a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiResource {
    /// The kind.
    pub kind: String,
    /// The resource (plural) name used in paths.
    pub name: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

#[derive(Serialize, Deserialize)]
struct CachedDiscovery {
    fetched_at: u64,
    resources: Vec<ApiResource>,
}

/// A connection to one cluster's API server. Descriptions for users name the cluster;
/// its URL goes to the operators' log only.
pub struct Api<'a> {
    http: Outbound<'a>,
    kv: &'a dyn Kv,
    /// `'east'`, for messages.
    cluster: String,
    base_url: String,
    token: String,
    now: u64,
}

impl<'a> Api<'a> {
    /// A client for the cluster `access` describes.
    pub fn new(http: Outbound<'a>, kv: &'a dyn Kv, access: ClusterAccess, now: u64) -> Self {
        Self {
            http,
            kv,
            cluster: quoted(&access.name),
            base_url: access.url.trim_end_matches('/').to_string(),
            token: access.token,
            now,
        }
    }

    /// The REST resource for `api_version`/`kind`, from discovery (cached in the store).
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<ApiResource, BackendError> {
        let key = self.discovery_key(api_version);
        if let Some(cached) = self.cached(&key) {
            if self.now < cached.fetched_at + DISCOVERY_TTL_SECONDS {
                if let Some(found) = cached.resources.iter().find(|r| r.kind == kind) {
                    return Ok(found.clone());
                }
            }
        }
        let path = group_version_root(api_version);
        let response = self.send(HttpRequest::new("GET", self.url(&path))).await?;
        if response.status == 404 {
            return Err(BackendError::Permanent(format!(
                "Kubernetes cluster {} does not serve {api_version} (is the CustomResourceDefinition installed?)",
                self.cluster
            )));
        }
        let list = self.expect_ok(&response, &format!("discovery of {api_version}"))?;
        let resources: Vec<ApiResource> = list
            .get("resources")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|r| serde_json::from_value::<ApiResource>(r.clone()).ok())
                    .filter(|r| !r.name.contains('/'))
                    .collect()
            })
            .unwrap_or_default();
        let found = resources.iter().find(|r| r.kind == kind).cloned();
        let cached = CachedDiscovery {
            fetched_at: self.now,
            resources,
        };
        // A cache: losing the write only costs a discovery request next time.
        if let Ok(bytes) = serde_json::to_vec(&cached) {
            let _ = self.kv.set(&key, &bytes);
        }
        found.ok_or_else(|| {
            BackendError::Permanent(format!(
                "Kubernetes cluster {} has no kind {kind} in {api_version}",
                self.cluster
            ))
        })
    }

    /// Resolves an object's identity to an [`ObjectRef`]; namespaced kinds without a
    /// namespace get `default_namespace`.
    pub async fn object_ref(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        default_namespace: &str,
    ) -> Result<ObjectRef, BackendError> {
        let resource = self.resource(api_version, kind).await?;
        Ok(ObjectRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: resource
                .namespaced
                .then(|| namespace.unwrap_or(default_namespace).to_string()),
            plural: resource.name,
        })
    }

    /// The live object, `None` when it does not exist.
    pub async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, BackendError> {
        let response = self
            .send(HttpRequest::new("GET", self.url(&object.path())))
            .await?;
        if response.status == 404 {
            return Ok(None);
        }
        self.expect_ok(&response, &format!("reading {}", object.describe()))
            .map(Some)
    }

    /// Updates an object its owner already has with server-side apply as `manager`,
    /// forcing (the broker's rendering is the truth for the fields it sets), so retries
    /// and re-polls converge.
    pub async fn apply(
        &self,
        object: &ObjectRef,
        body: &Value,
        manager: &str,
    ) -> Result<Value, BackendError> {
        let response = self.send_apply(object, body, manager, true).await?;
        self.expect_ok(&response, &format!("applying {}", object.describe()))
    }

    /// Creates an object with server-side apply as `manager` without forcing: if another
    /// owner's apply created it first, its fields (the owner marks at least) conflict and
    /// the answer is `Ok(false)`, so of two owners rendering one object exactly one gets it.
    pub async fn create(
        &self,
        object: &ObjectRef,
        body: &Value,
        manager: &str,
    ) -> Result<bool, BackendError> {
        let response = self.send_apply(object, body, manager, false).await?;
        if response.status == 409 {
            return Ok(false);
        }
        self.expect_ok(&response, &format!("creating {}", object.describe()))
            .map(|_| true)
    }

    async fn send_apply(
        &self,
        object: &ObjectRef,
        body: &Value,
        manager: &str,
        force: bool,
    ) -> Result<HttpResponse, BackendError> {
        let url = format!(
            "{}?fieldManager={}&force={force}",
            self.url(&object.path()),
            segment(manager)
        );
        let request = HttpRequest::new("PATCH", url).body(
            "application/apply-patch+yaml",
            serde_json::to_vec(body).unwrap_or_default(),
        );
        self.send(request).await
    }

    /// Starts deleting `object` with foreground propagation (dependents first); an object
    /// that is already gone is fine.
    pub async fn delete(&self, object: &ObjectRef) -> Result<(), BackendError> {
        let url = format!("{}?propagationPolicy=Foreground", self.url(&object.path()));
        let request = HttpRequest::new("DELETE", url);
        let response = self.send(request).await?;
        if response.status == 404 {
            return Ok(());
        }
        self.expect_ok(&response, &format!("deleting {}", object.describe()))
            .map(|_| ())
    }

    /// Every object of `api_version`/`kind` (in every namespace) labelled as made by the
    /// broker `broker_id`.
    pub async fn list_managed(
        &self,
        api_version: &str,
        kind: &str,
        broker_id: &str,
    ) -> Result<Vec<(ObjectRef, Value)>, BackendError> {
        let resource = self.resource(api_version, kind).await?;
        let selector = format!(
            "{}=spin-osb,{}={broker_id}",
            super::objects::MANAGED_BY,
            super::objects::BROKER_LABEL
        );
        let path = format!(
            "{}/{}?labelSelector={}",
            group_version_root(api_version),
            segment(&resource.name),
            percent_encoding::utf8_percent_encode(&selector, percent_encoding::NON_ALPHANUMERIC)
        );
        let response = self.send(HttpRequest::new("GET", self.url(&path))).await?;
        let list = self.expect_ok(&response, &format!("listing {kind} objects"))?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let metadata = &item["metadata"];
                let reference = ObjectRef {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    name: metadata["name"].as_str()?.to_string(),
                    namespace: metadata["namespace"].as_str().map(str::to_owned),
                    plural: resource.name.clone(),
                };
                Some((reference, item))
            })
            .collect())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, BackendError> {
        let request = request
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        self.http.send(request).await.map_err(|e| {
            self.http.log(&format!(
                "Kubernetes cluster {} at {}: {e}",
                self.cluster, self.base_url
            ));
            BackendError::Transient(format!(
                "cannot reach Kubernetes cluster {}: {}",
                self.cluster,
                transport_failure(&e.0)
            ))
        })
    }

    /// The body of a 2xx answer, or the API's refusal as a backend error: retried later
    /// for conflicts, throttling and server errors; final for everything the request itself
    /// got wrong (401, 403, 404, 422 …). Users get the status, the API's reason and the
    /// fields it names; the API's whole message goes to the operators' log.
    fn expect_ok(&self, response: &HttpResponse, what: &str) -> Result<Value, BackendError> {
        refusal(response, what, &self.cluster).map_err(|(error, detail)| {
            self.http.log(&format!(
                "Kubernetes cluster {} at {}: {what}: {detail}",
                self.cluster, self.base_url
            ));
            error
        })
    }

    fn discovery_key(&self, api_version: &str) -> String {
        let server = Sha256::digest(self.base_url.as_bytes());
        let server: String = server[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("osb/v1/cache/kubernetes/{server}/discovery/{api_version}")
    }

    fn cached(&self, key: &str) -> Option<CachedDiscovery> {
        let bytes = self.kv.get(key).ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

/// What a failed send means, in words that name no host (the transport's own text, which
/// may, goes to the log).
fn transport_failure(error: &str) -> &'static str {
    let lower = error.to_ascii_lowercase();
    if lower.contains("not allowed") || lower.contains("denied") {
        "the component's allowed_outbound_hosts does not list it"
    } else if lower.contains("tls") || lower.contains("certificate") {
        "TLS failed (is its CA in the runtime config's [[client_tls]]?)"
    } else if lower.contains("refused") {
        "connection refused"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "no answer in time"
    } else if lower.contains("dns") {
        "its host name does not resolve"
    } else {
        "the connection failed"
    }
}

/// [`Api::expect_ok`] without the log: the error for users and the API's full answer.
fn refusal(
    response: &HttpResponse,
    what: &str,
    cluster: &str,
) -> Result<Value, (BackendError, String)> {
    if (200..300).contains(&response.status) {
        return serde_json::from_slice(&response.body).map_err(|e| {
            let error = BackendError::Transient(format!(
                "{what}: Kubernetes cluster {cluster} answered {} with an unreadable body",
                response.status
            ));
            (error, format!("{}: unreadable body: {e}", response.status))
        });
    }
    if response.status == 401 {
        let error = BackendError::Permanent(format!(
            "{what}: Kubernetes cluster {cluster} refused the broker's token (401 Unauthorized): check the cluster's token variable"
        ));
        return Err((
            error,
            format!(
                "401 {}",
                response.text().chars().take(500).collect::<String>()
            ),
        ));
    }
    let status: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let mut summary = format!(
        "{what}: Kubernetes cluster {cluster} answered {}",
        response.status
    );
    if let Some(reason) = status.get("reason").and_then(Value::as_str) {
        summary.push_str(&format!(" ({})", words_of(reason)));
    }
    let fields: Vec<&str> = status
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|cause| cause.get("field").and_then(Value::as_str))
        .take(3)
        .collect();
    if !fields.is_empty() {
        summary.push_str(&format!(" in {}", fields.join(", ")));
    }
    let detail = match status.get("message").and_then(Value::as_str) {
        Some(message) => format!("{} {message}", response.status),
        None => format!(
            "{} {}",
            response.status,
            response.text().chars().take(500).collect::<String>()
        ),
    };
    let error = match response.status {
        409 | 429 | 500..=599 => BackendError::Transient(summary),
        _ => BackendError::Permanent(summary),
    };
    Err((error, detail))
}

/// `AlreadyExists` → `already exists`.
fn words_of(reason: &str) -> String {
    let mut words = String::new();
    for (index, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: &str, namespace: Option<&str>) -> ObjectRef {
        ObjectRef {
            api_version: api_version.into(),
            kind: "Thing".into(),
            name: "x".into(),
            namespace: namespace.map(Into::into),
            plural: "things".into(),
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let mut object = reference("v1", Some("ns/x"));
        object.name = "a?dryRun=All&x=../y".into();
        assert_eq!(
            object.path(),
            "/api/v1/namespaces/ns%2Fx/things/a%3FdryRun%3DAll%26x%3D..%2Fy"
        );
    }

    #[test]
    fn paths_follow_the_group_layout() {
        assert_eq!(
            reference("v1", Some("ns")).path(),
            "/api/v1/namespaces/ns/things/x"
        );
        assert_eq!(
            reference("example.com/v1", None).path(),
            "/apis/example.com/v1/things/x"
        );
    }

    #[test]
    fn api_failures_are_transient_or_final_by_status() {
        let answer = |status: u16| HttpResponse {
            status,
            headers: vec![],
            body: br#"{"kind":"Status","message":"nope","reason":"X"}"#.to_vec(),
        };
        for status in [409, 429, 500, 503] {
            assert!(matches!(
                refusal(&answer(status), "x", "'default'"),
                Err((BackendError::Transient(_), _))
            ));
        }
        for status in [400, 403, 404, 422] {
            match refusal(&answer(status), "applying Secret a/b", "'default'") {
                Err((BackendError::Permanent(m), detail)) => {
                    assert!(m.contains("Secret a/b") && m.contains("(x)"), "{m}");
                    assert!(!m.contains("nope"), "the API's message is for the log: {m}");
                    assert!(detail.contains("nope"), "{detail}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        let invalid = HttpResponse {
            status: 422,
            headers: vec![],
            body: br#"{"kind":"Status","reason":"Invalid","message":"Deployment.apps \"x\" is invalid: spec.replicas: Invalid value: -1","details":{"causes":[{"field":"spec.replicas"}]}}"#.to_vec(),
        };
        match refusal(&invalid, "applying Deployment a/x", "'default'") {
            Err((BackendError::Permanent(m), _)) => assert_eq!(
                m,
                "applying Deployment a/x: Kubernetes cluster 'default' answered 422 (invalid) in spec.replicas"
            ),
            other => panic!("{other:?}"),
        }
        match refusal(&answer(401), "reading Secret a/b", "'east'") {
            Err((BackendError::Permanent(m), _)) => assert_eq!(
                m,
                "reading Secret a/b: Kubernetes cluster 'east' refused the broker's token (401 Unauthorized): check the cluster's token variable"
            ),
            other => panic!("{other:?}"),
        }
    }
}
