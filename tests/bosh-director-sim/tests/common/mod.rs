//! Shared helpers: a blocking HTTP client that never follows redirects (as
//! a broker must not, contract A.4) and small wrappers for the calls every
//! suite makes.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use base64::Engine;
use bosh_director_sim::{SimConfig, Simulator};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::redirect::Policy;
use serde_json::Value;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "s3cret";

pub fn client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A manifest with one service group of `instances` and an errand group.
pub fn manifest(name: &str, instances: u32) -> String {
    format!(
        "---\nname: {name}\nreleases:\n- name: redis\n  version: 1.2.3\nstemcells:\n- alias: default\n  os: ubuntu-jammy\n  version: '1.99'\n\
         instance_groups:\n- name: redis\n  instances: {instances}\n  azs: [z1, z2]\n  jobs:\n  - name: redis-server\n  - name: smoke-colocated\n\
         - name: smoke-tests\n  lifecycle: errand\n  instances: 1\n  azs: [z1]\n  jobs:\n  - name: smoke-tests\n"
    )
}

/// A simulator plus a client that sends the right credentials.
pub struct Api {
    pub sim: Simulator,
    pub http: Client,
    pub auth: String,
}

impl Api {
    /// Basic auth, fast tasks (no queue time, 50 ms processing).
    pub fn basic() -> Api {
        Api::with(
            SimConfig::basic(USER, PASSWORD)
                .with_timings(Duration::ZERO, Duration::from_millis(50)),
        )
    }

    pub fn with(config: SimConfig) -> Api {
        Api {
            sim: Simulator::start(config),
            http: client(),
            auth: basic_header(USER, PASSWORD),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .header("authorization", &self.auth)
            .send()
            .unwrap()
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("authorization", &self.auth)
    }

    pub fn post_manifest(&self, body: &str, context_id: Option<&str>) -> Response {
        let mut r = self
            .req(reqwest::Method::POST, "/deployments")
            .header("content-type", "text/yaml")
            .body(body.to_string());
        if let Some(c) = context_id {
            r = r.header("x-bosh-context-id", c);
        }
        r.send().unwrap()
    }

    /// Like `post_manifest`, but a transport error is returned, not a panic.
    pub fn post_manifest_result(&self, body: &str, context_id: &str) -> reqwest::Result<Response> {
        self.req(reqwest::Method::POST, "/deployments")
            .header("content-type", "text/yaml")
            .header("x-bosh-context-id", context_id)
            .body(body.to_string())
            .send()
    }

    /// POST a manifest and return the task id from the redirect.
    pub fn deploy(&self, body: &str) -> u64 {
        task_id(&self.post_manifest(body, None))
    }

    pub fn task_json(&self, id: u64) -> Value {
        let r = self.get(&format!("/tasks/{id}"));
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }

    /// Poll `GET /tasks/:id` until the task is terminal (≤ 10 s).
    pub fn wait_task(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.task_json(id);
            let state = t["state"].as_str().unwrap().to_string();
            if !["queued", "processing", "cancelling"].contains(&state.as_str()) {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} still {state}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self, id: u64, kind: &str) -> Response {
        self.get(&format!("/tasks/{id}/output?type={kind}"))
    }

    /// NDJSON `result` output of a task, one value per line.
    pub fn result_lines(&self, id: u64) -> Vec<Value> {
        let r = self.output(id, "result");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        r.text()
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The task id from a redirect's `Location` (`.../tasks/N`).
#[track_caller]
pub fn task_id(resp: &Response) -> u64 {
    assert!(
        resp.status() == 302 || resp.status() == 303,
        "expected a redirect, got {}",
        resp.status()
    );
    let loc = resp.headers()["location"].to_str().unwrap();
    let (_, id) = loc
        .rsplit_once("/tasks/")
        .unwrap_or_else(|| panic!("no task in {loc}"));
    id.parse().unwrap()
}
