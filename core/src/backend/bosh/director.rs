//! A BOSH director client over [`HttpClient`], following the wire contract: auth discovered
//! from `GET /info` (basic, or UAA client credentials with the token cached in the store
//! until shortly before expiry and refreshed once on a 401), task ids from the `Location`
//! of 302/303 redirects (never followed), `text/yaml` manifests, `X-Bosh-Context-Id` on
//! every mutating call, and 404 code 70000 as "deployment gone".

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::UAA_URL_VARIABLE;
use crate::backend::BackendError;
use crate::kv::Kv;
use crate::outbound::{HttpRequest, HttpResponse, Outbound};

/// Director error code "deployment doesn't exist".
const DEPLOYMENT_NOT_FOUND: u64 = 70_000;
/// A token is renewed this many seconds before it expires.
const TOKEN_MARGIN_SECONDS: u64 = 60;
/// How long the auth mode from `/info` (basic) is trusted.
const INFO_TTL_SECONDS: u64 = 300;

/// A director task, as `GET /tasks/:id` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: u64,
    /// `queued`, `processing`, `cancelling`, `done`, `error`, `cancelled`, `timeout`.
    pub state: String,
    /// What it does, e.g. "create deployment".
    #[serde(default)]
    pub description: String,
    /// Summary or error message (≤ 128 characters).
    #[serde(default)]
    pub result: Option<String>,
    /// The `X-Bosh-Context-Id` it was created with.
    #[serde(default)]
    pub context_id: Option<String>,
}

impl Task {
    /// Still queued, running or being cancelled.
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "processing" | "cancelling")
    }
}

/// What `/info` and UAA said, cached in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CachedAuth {
    /// `basic` or `uaa`.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// Unix seconds after which the entry is not used.
    valid_until: u64,
}

/// A connection to one director.
pub struct Director<'a> {
    http: Outbound<'a>,
    kv: &'a dyn Kv,
    base_url: String,
    /// The configured UAA (`bosh_uaa_url`); `/info` must name the same origin.
    uaa_url: Option<String>,
    client: String,
    secret: String,
    now: u64,
}

impl<'a> Director<'a> {
    /// A client for `base_url` authenticating as `client` (a basic-auth user or a UAA client).
    pub fn new(
        http: Outbound<'a>,
        kv: &'a dyn Kv,
        base_url: &str,
        client: String,
        secret: String,
        now: u64,
    ) -> Self {
        Self {
            http,
            kv,
            base_url: base_url.trim_end_matches('/').to_string(),
            uaa_url: None,
            client,
            secret,
            now,
        }
    }

    /// The UAA this broker trusts with its client secret (the `bosh_uaa_url` variable).
    pub fn with_uaa(mut self, uaa_url: Option<String>) -> Self {
        self.uaa_url = uaa_url.filter(|u| !u.trim().is_empty());
        self
    }

    /// Tasks of `deployment`, oldest first; `states` like `queued,processing,cancelling`.
    pub async fn tasks(
        &self,
        deployment: &str,
        states: Option<&str>,
        context_id: Option<&str>,
    ) -> Result<Vec<Task>, BackendError> {
        let mut query = format!("deployment={}&verbose=2", encode(deployment));
        if let Some(states) = states {
            query.push_str(&format!("&state={states}"));
        }
        if let Some(context_id) = context_id {
            query.push_str(&format!("&context_id={}", encode(context_id)));
        }
        let response = self
            .send(HttpRequest::new(
                "GET",
                self.url(&format!("/tasks?{query}")),
            ))
            .await?;
        let mut tasks: Vec<Task> = self.json_body(&response, "listing tasks")?;
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// One task.
    pub async fn task(&self, id: u64) -> Result<Task, BackendError> {
        let response = self
            .send(HttpRequest::new("GET", self.url(&format!("/tasks/{id}"))))
            .await?;
        self.json_body(&response, &format!("reading task {id}"))
    }

    /// The `result` output of a task (NDJSON for errands and `vms` tasks).
    pub async fn task_result(&self, id: u64) -> Result<String, BackendError> {
        let url = self.url(&format!("/tasks/{id}/output?type=result"));
        let response = self.send(HttpRequest::new("GET", url)).await?;
        match response.status {
            204 => Ok(String::new()),
            200 => Ok(response.text()),
            _ => Err(self.failure(&response, &format!("reading the result of task {id}"))),
        }
    }

    /// The names of every deployment on the director.
    pub async fn deployments(&self) -> Result<Vec<String>, BackendError> {
        let url = self
            .url("/deployments?exclude_configs=true&exclude_releases=true&exclude_stemcells=true");
        let response = self.send(HttpRequest::new("GET", url)).await?;
        if response.status != 200 {
            return Err(self.failure(&response, "listing deployments"));
        }
        let list: Value = serde_json::from_slice(&response.body).map_err(|e| {
            BackendError::Transient(format!("the director's deployment list is not JSON: {e}"))
        })?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Whether the deployment exists.
    pub async fn deployment_exists(&self, deployment: &str) -> Result<bool, BackendError> {
        let url = self.url(&format!("/deployments/{}", encode(deployment)));
        let response = self.send(HttpRequest::new("GET", url)).await?;
        match response.status {
            200 => Ok(true),
            404 if error_code(&response) == Some(DEPLOYMENT_NOT_FOUND) => Ok(false),
            _ => Err(self.failure(&response, &format!("reading deployment {deployment}"))),
        }
    }

    /// Creates or updates a deployment; the task id.
    pub async fn deploy(&self, manifest: &str, context_id: &str) -> Result<u64, BackendError> {
        let request = HttpRequest::new("POST", self.url("/deployments"))
            .header("x-bosh-context-id", context_id)
            .body("text/yaml", manifest.as_bytes().to_vec());
        let response = self.send(request).await?;
        self.task_redirect(&response, "deploying")
    }

    /// Runs an errand on its deployment; the task id.
    pub async fn run_errand(
        &self,
        deployment: &str,
        errand: &str,
        context_id: &str,
    ) -> Result<u64, BackendError> {
        let url = self.url(&format!(
            "/deployments/{}/errands/{}/runs",
            encode(deployment),
            encode(errand)
        ));
        let body = json!({"keep-alive": false, "when-changed": false});
        let request = HttpRequest::new("POST", url)
            .header("x-bosh-context-id", context_id)
            .body("application/json", body.to_string().into_bytes());
        let response = self.send(request).await?;
        self.task_redirect(&response, &format!("running errand {errand}"))
    }

    /// Deletes a deployment; `None` when it was already gone.
    pub async fn delete_deployment(
        &self,
        deployment: &str,
        context_id: &str,
    ) -> Result<Option<u64>, BackendError> {
        let url = self.url(&format!("/deployments/{}", encode(deployment)));
        let request = HttpRequest::new("DELETE", url).header("x-bosh-context-id", context_id);
        let response = self.send(request).await?;
        if response.status == 404 && error_code(&response) == Some(DEPLOYMENT_NOT_FOUND) {
            return Ok(None);
        }
        self.task_redirect(&response, &format!("deleting deployment {deployment}"))
            .map(Some)
    }

    /// Starts the `vms` task listing the deployment's instances with their addresses.
    pub async fn instances_task(&self, deployment: &str) -> Result<u64, BackendError> {
        let url = self.url(&format!(
            "/deployments/{}/instances?format=full",
            encode(deployment)
        ));
        let response = self.send(HttpRequest::new("GET", url)).await?;
        self.task_redirect(&response, &format!("listing the instances of {deployment}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends with credentials; on a 401 the credentials are fetched again once and the
    /// request repeated once (as the BOSH CLI does).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, BackendError> {
        let authorization = self.authorization(false).await?;
        let response = self
            .raw(request.clone().header("authorization", authorization))
            .await?;
        if response.status != 401 {
            return Ok(response);
        }
        let authorization = self.authorization(true).await?;
        let response = self
            .raw(request.header("authorization", authorization))
            .await?;
        if response.status == 401 {
            self.http.log(&format!(
                "BOSH director {}: refused the credentials of client {:?}",
                self.base_url, self.client
            ));
            return Err(BackendError::Permanent(
                "the BOSH director refused the broker's credentials".into(),
            ));
        }
        Ok(response)
    }

    async fn raw(&self, request: HttpRequest) -> Result<HttpResponse, BackendError> {
        let request = request.header("accept", "application/json");
        self.http.send(request).await.map_err(|e| {
            self.http
                .log(&format!("BOSH director {}: {e}", self.base_url));
            BackendError::Transient(format!("cannot reach the BOSH director: {e}"))
        })
    }

    /// The `Authorization` value: basic, or a UAA bearer token (cached unless `fresh`).
    async fn authorization(&self, fresh: bool) -> Result<String, BackendError> {
        let key = self.cache_key();
        let cached = (!fresh)
            .then(|| self.kv.get(&key).ok().flatten())
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<CachedAuth>(&bytes).ok())
            .filter(|c| self.now < c.valid_until);
        let auth = match cached {
            Some(auth) => auth,
            None => {
                let auth = self.discover().await?;
                if let Ok(bytes) = serde_json::to_vec(&auth) {
                    // A cache: losing the write costs one more token request later.
                    let _ = self.kv.set(&key, &bytes);
                }
                auth
            }
        };
        Ok(match (auth.kind.as_str(), auth.token) {
            ("uaa", Some(token)) => token,
            _ => format!("Basic {}", self.basic_credentials()),
        })
    }

    /// `GET /info`, then for UAA a client-credentials token.
    async fn discover(&self) -> Result<CachedAuth, BackendError> {
        let info = self.raw(HttpRequest::new("GET", self.url("/info"))).await?;
        let info: Value = self.json_body(&info, "reading the director's /info")?;
        let kind = info
            .pointer("/user_authentication/type")
            .and_then(Value::as_str)
            .unwrap_or("basic")
            .to_string();
        if kind != "uaa" {
            return Ok(CachedAuth {
                kind,
                valid_until: self.now + INFO_TTL_SECONDS,
                ..CachedAuth::default()
            });
        }
        let uaa_url = info
            .pointer("/user_authentication/options/url")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                BackendError::Permanent("the director uses UAA but /info names no UAA URL".into())
            })?
            .trim_end_matches('/')
            .to_string();
        // `/info` is unauthenticated: a director that is not what it seems could name any
        // UAA. The client secret goes only to the UAA the operator configured.
        let Some(configured) = &self.uaa_url else {
            return Err(BackendError::Permanent(format!(
                "the director authenticates with UAA: set the Spin variable \
                 {UAA_URL_VARIABLE} to its URL"
            )));
        };
        if origin(&uaa_url).is_none() || origin(&uaa_url) != origin(configured) {
            self.http.log(&format!(
                "BOSH director {}: /info names its UAA at {uaa_url:?}, which is not \
                 {UAA_URL_VARIABLE} ({configured:?}); no token was requested",
                self.base_url
            ));
            return Err(BackendError::Permanent(format!(
                "the director names a UAA other than {UAA_URL_VARIABLE}; the client secret is \
                 only sent to the configured UAA"
            )));
        }
        let request = HttpRequest::new("POST", format!("{uaa_url}/oauth/token"))
            .header(
                "authorization",
                format!("Basic {}", self.basic_credentials()),
            )
            .header("accept", "application/json")
            .body(
                "application/x-www-form-urlencoded",
                b"grant_type=client_credentials".to_vec(),
            );
        let response = self.http.send(request).await.map_err(|e| {
            self.http.log(&format!("BOSH UAA {uaa_url}: {e}"));
            BackendError::Transient(format!("cannot reach the director's UAA: {e}"))
        })?;
        if response.status == 401 || response.status == 400 {
            self.http.log(&format!(
                "BOSH UAA {uaa_url}: refused client {:?}: {}",
                self.client,
                response.text().chars().take(500).collect::<String>()
            ));
            return Err(BackendError::Permanent(
                "the director's UAA refused the broker's client credentials".into(),
            ));
        }
        let token: Value = self.json_body(&response, "getting a UAA token")?;
        let access = token["access_token"].as_str().unwrap_or_default();
        if access.is_empty() {
            return Err(BackendError::Transient(
                "the director's UAA answered without an access_token".into(),
            ));
        }
        let token_type = token["token_type"].as_str().unwrap_or("bearer");
        let expires_in = token["expires_in"].as_u64().unwrap_or(0);
        Ok(CachedAuth {
            kind,
            token: Some(format!("{token_type} {access}")),
            valid_until: self.now + expires_in.saturating_sub(TOKEN_MARGIN_SECONDS),
        })
    }

    fn basic_credentials(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.client, self.secret))
    }

    fn cache_key(&self) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.base_url, self.client).as_bytes());
        let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("osb/v1/cache/bosh/{id}/auth")
    }
}

/// How director answers become results or backend errors.
impl Director<'_> {
    /// Writes a line about this director to the operators' log.
    pub fn log(&self, line: &str) {
        self.http
            .log(&format!("BOSH director {}: {line}", self.base_url));
    }

    /// The task id of a 302/303 answer (`Location: …/tasks/ID`, relative or absolute).
    fn task_redirect(&self, response: &HttpResponse, what: &str) -> Result<u64, BackendError> {
        if !matches!(response.status, 302 | 303) {
            return Err(self.failure(response, what));
        }
        response
            .header("location")
            .and_then(task_id_of)
            .ok_or_else(|| {
                self.http.log(&format!(
                    "BOSH director {}: {what}: redirect without a task id (Location {:?})",
                    self.base_url,
                    response.header("location")
                ));
                BackendError::Transient(format!("{what}: the director's redirect names no task"))
            })
    }

    fn json_body<T: serde::de::DeserializeOwned>(
        &self,
        response: &HttpResponse,
        what: &str,
    ) -> Result<T, BackendError> {
        if response.status != 200 {
            return Err(self.failure(response, what));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            self.http.log(&format!(
                "BOSH director {}: {what}: unreadable answer: {e}",
                self.base_url
            ));
            BackendError::Transient(format!("{what}: the director's answer is unreadable"))
        })
    }

    /// A director refusal as a backend error: server errors and throttling are retried on
    /// later polls; anything else is final. Users get the status and the director's error
    /// code; its description goes to the operators' log.
    fn failure(&self, response: &HttpResponse, what: &str) -> BackendError {
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let detail = match (body.get("code"), body.get("description")) {
            (Some(code), Some(Value::String(d))) => format!("{d} (code {code})"),
            _ => {
                let text = response.text();
                let text = text.trim();
                if text.is_empty() {
                    format!("HTTP {}", response.status)
                } else {
                    text.chars().take(200).collect()
                }
            }
        };
        self.http.log(&format!(
            "BOSH director {}: {what}: {} {detail}",
            self.base_url, response.status
        ));
        let message = match body.get("code") {
            Some(code) => format!(
                "{what}: the director answered {} (code {code})",
                response.status
            ),
            None => format!("{what}: the director answered {}", response.status),
        };
        match response.status {
            429 | 500..=599 => BackendError::Transient(message),
            _ => BackendError::Permanent(message),
        }
    }
}

/// `123` from `https://director:25555/tasks/123` or `/tasks/123`.
pub fn task_id_of(location: &str) -> Option<u64> {
    let rest = &location[location.rfind("/tasks/")? + "/tasks/".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn error_code(response: &HttpResponse) -> Option<u64> {
    serde_json::from_slice::<Value>(&response.body)
        .ok()?
        .get("code")?
        .as_u64()
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

/// `(scheme, host, port)` of an absolute http(s) URL, lower-cased, default ports filled in.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (host_port, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin("https://UAA.example:8443/uaa/"),
            origin("https://uaa.example:8443")
        );
        assert_eq!(origin("https://d"), origin("https://d:443/x"));
        assert_ne!(origin("https://d:8443"), origin("http://d:8443"));
        assert_ne!(origin("https://d:8443"), origin("https://d:8444"));
        assert_ne!(origin("https://d:8443"), origin("https://evil@d2:8443"));
        assert_eq!(origin("https://evil@d:8443"), origin("https://d:8443"));
        assert_eq!(origin("ftp://d"), None);
        assert_eq!(origin("https://"), None);
    }

    #[test]
    fn task_ids_come_from_relative_or_absolute_locations() {
        assert_eq!(task_id_of("/tasks/17"), Some(17));
        assert_eq!(task_id_of("https://10.0.0.6:25555/tasks/4711"), Some(4711));
        assert_eq!(task_id_of("https://d/tasks/"), None);
        assert_eq!(task_id_of("https://d/deployments/x"), None);
    }
}
