//! # bosh-director-simulator
//!
//! A **simulator** of a BOSH director's HTTP API, for testing the broker
//! without a director. It is a real HTTP(S) server on 127.0.0.1 that
//! follows parts A and D of `shared/contracts/bosh-and-kubernetes-wire-contract.md`:
//! `/info`, basic or UAA auth (with its own token endpoint), async
//! deployments, deletes, errands and `format=full` instance listings that
//! answer with redirects to tasks, task polling and output, deployment
//! locks, and the director's error shapes.
//!
//! No VM, release, stemcell, CPI or config server exists behind it: tasks
//! only move through their states on a timer and record what a director
//! would record. See `README.md` for exactly what is and is not modelled.
//!
//! Tests start it in-process, point the broker at [`Simulator::base_url`],
//! steer it (holds, injected failures, errand exit codes, down/up) and
//! inspect what it received:
//!
//! ```no_run
//! use bosh_director_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::basic("admin", "secret"));
//! println!("director at {}", sim.base_url());
//! // ... drive the broker ...
//! assert!(sim.requests().iter().any(|r| r.path == "/deployments"));
//! ```

mod auth;
mod config;
mod http;
mod ids;
mod jobs;
mod manifest;
mod model;
mod routes;
mod server;
mod state;
mod tasks;
mod tls;
mod views;

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

pub use config::{AuthConfig, RedirectStatus, SimConfig, TaskTimings};
pub use model::{
    AuthKind, DeploymentInfo, DropPoint, ErrandBehaviour, HoldAt, InstanceInfo, RecordedRequest,
    TaskFailure, TaskInfo, TaskKind, TaskState,
};

use server::{Ctrl, Shared};
use state::SimState;

/// A running BOSH director simulator. Dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    ca_pem: Option<String>,
}

impl Simulator {
    /// Start a simulator; panics if it cannot (e.g. the port is taken).
    pub fn start(config: SimConfig) -> Simulator {
        Simulator::try_start(config).expect("starting the BOSH director simulator")
    }

    /// Start a simulator on its own thread and tokio runtime.
    pub fn try_start(config: SimConfig) -> io::Result<Simulator> {
        let pki = if config.tls {
            Some(tls::generate().map_err(io::Error::other)?)
        } else {
            None
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = rt.block_on(async { server::bind(config.port) })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState::new(&config)),
            config,
            scheme: if pki.is_some() { "https" } else { "http" },
            port: addr.port(),
        });
        let acceptor = pki
            .as_ref()
            .map(|p| TlsAcceptor::from(p.server_config.clone()));
        let (ctrl, rx) = mpsc::unbounded_channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("bosh-director-sim-{}", addr.port()))
            .spawn(move || {
                rt.block_on(server::run(server_shared, listener, acceptor, rx));
                rt.shutdown_background();
            })?;
        Ok(Simulator {
            shared,
            ctrl,
            thread: Some(thread),
            addr,
            ca_pem: pki.map(|p| p.ca_pem),
        })
    }

    // ----- where it is ---------------------------------------------------

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM of the CA that signed the server certificate (HTTPS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `<base>/uaa` in UAA mode (what `/info` advertises).
    pub fn uaa_url(&self) -> Option<String> {
        match self.shared.config.auth {
            AuthConfig::Uaa { .. } => Some(format!("{}/uaa", self.base_url())),
            AuthConfig::Basic { .. } => None,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    // ----- steering --------------------------------------------------------

    fn with_state<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        let mut st = self.shared.lock();
        st.advance();
        f(&mut st)
    }

    /// Durations for tasks created from now on.
    pub fn set_task_timings(&self, queued: Duration, processing: Duration) {
        self.with_state(|st| st.timings = TaskTimings { queued, processing });
    }

    pub fn set_redirect(&self, status: RedirectStatus, absolute_location: bool) {
        self.with_state(|st| {
            st.redirect_status = status;
            st.absolute_location = absolute_location;
        });
    }

    /// Stop tasks at `at` until released: every running task and every task
    /// created before [`Simulator::release_tasks`].
    pub fn hold_tasks(&self, at: HoldAt) {
        self.with_state(|st| st.hold_tasks(at));
    }

    /// Release all holds; held tasks continue from now.
    pub fn release_tasks(&self) {
        self.with_state(SimState::release_tasks);
    }

    /// Release one held task; `false` if it is unknown or already finished.
    pub fn release_task(&self, id: u64) -> bool {
        self.with_state(|st| st.release_task(id))
    }

    /// Make the next matching tasks fail (see [`TaskFailure`]).
    pub fn fail_next_tasks(&self, failure: TaskFailure) {
        self.with_state(|st| st.faults.add_fail_tasks(failure));
    }

    /// Answer the next `count` requests (whose path starts with
    /// `path_prefix`, if given) with `500` and an empty body, before
    /// authentication or any other processing.
    pub fn fail_next_requests(&self, count: u32, path_prefix: Option<&str>) {
        self.with_state(|st| st.faults.add_fail_requests(count, path_prefix));
    }

    /// Close the connection instead of answering the next `count` matching
    /// requests, before or after processing them.
    pub fn drop_next_requests(&self, count: u32, path_prefix: Option<&str>, when: DropPoint) {
        self.with_state(|st| st.faults.add_drop_requests(count, path_prefix, when));
    }

    /// Handle the next `count` matching requests at once (a deploy creates its
    /// task) but hold their answers for `stall`: a director or network that
    /// answers far later than clients wait.
    pub fn stall_next_requests(&self, count: u32, path_prefix: Option<&str>, stall: Duration) {
        self.with_state(|st| st.faults.add_stall_requests(count, path_prefix, stall));
    }

    /// Close the next `count` accepted connections before reading anything
    /// (before the TLS handshake too).
    pub fn drop_next_connections(&self, count: u32) {
        self.with_state(|st| st.faults.drop_connections += count);
    }

    /// Forget every queued fault (task failures, 500s, drops).
    pub fn clear_faults(&self) {
        self.with_state(|st| st.faults = Default::default());
    }

    /// Expire every token issued so far (UAA mode): the next request with
    /// one gets 401, and the client must fetch a new token.
    pub fn expire_tokens(&self) {
        self.with_state(|st| {
            let now = Instant::now();
            for t in st.tokens.values_mut() {
                t.expires_at = t.expires_at.min(now);
            }
        });
    }

    /// What errand `name` does when run (also declares a colocated job of
    /// that name as an errand for `GET /deployments/:d/errands`).
    pub fn set_errand(&self, name: &str, behaviour: ErrandBehaviour) {
        self.with_state(|st| st.errands.insert(name.to_string(), behaviour));
    }

    /// Shorthand for [`Simulator::set_errand`] with only an exit code.
    pub fn set_errand_exit_code(&self, name: &str, exit_code: i32) {
        self.set_errand(name, ErrandBehaviour::exit(exit_code));
    }

    /// Set the `job_state` that `format=full` reports for every instance of
    /// `group` (e.g. `failing`); `false` if there is no such instance.
    pub fn set_job_state(&self, deployment: &str, group: &str, job_state: &str) -> bool {
        self.with_state(|st| {
            let Some(d) = st.deployments.get_mut(deployment) else {
                return false;
            };
            let mut found = false;
            for i in d.instances.iter_mut().filter(|i| i.group == group) {
                i.job_state = job_state.to_string();
                found = true;
            }
            found
        })
    }

    /// Create (or replace) a deployment as if it had been deployed before
    /// the test started, without a task. Errors on an invalid manifest.
    pub fn seed_deployment(&self, manifest_yaml: &str) -> Result<String, String> {
        let m = manifest::parse(manifest_yaml).map_err(|e| format!("{}: {}", e.code, e.message))?;
        let name = m.name.clone();
        self.with_state(|st| jobs::deploy(st, &name, manifest_yaml.to_string(), m, Instant::now()));
        Ok(name)
    }

    /// Stop listening and close every open connection: clients get
    /// "connection refused" until [`Simulator::come_up`]. State is kept.
    pub fn go_down(&self) {
        let (tx, rx) = std_mpsc::channel();
        if self.ctrl.send(Ctrl::Down(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Listen again on the same port.
    pub fn come_up(&self) -> io::Result<()> {
        let (tx, rx) = std_mpsc::channel();
        self.ctrl
            .send(Ctrl::Up(tx))
            .map_err(|_| io::Error::other("simulator stopped"))?;
        rx.recv()
            .map_err(|_| io::Error::other("simulator stopped"))?
    }

    // ----- inspection ------------------------------------------------------

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|st| st.requests.clone())
    }

    pub fn clear_requests(&self) {
        self.with_state(|st| st.requests.clear());
    }

    /// All deployment records, by name.
    pub fn deployments(&self) -> Vec<DeploymentInfo> {
        self.with_state(|st| {
            st.deployments
                .values()
                .map(|d| st.deployment_info(d))
                .collect()
        })
    }

    pub fn deployment(&self, name: &str) -> Option<DeploymentInfo> {
        self.with_state(|st| st.deployments.get(name).map(|d| st.deployment_info(d)))
    }

    /// All tasks, oldest first.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.with_state(|st| st.tasks.iter().map(state::Task::info).collect())
    }

    pub fn task(&self, id: u64) -> Option<TaskInfo> {
        self.with_state(|st| st.task(id).map(state::Task::info))
    }

    /// Wait until task `id` is terminal; `None` on timeout or unknown id.
    pub fn wait_for_task(&self, id: u64, timeout: Duration) -> Option<TaskInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.task(id)?;
            if t.state.is_terminal() {
                return Some(t);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many tokens the UAA endpoint has issued.
    pub fn token_grants(&self) -> u64 {
        self.with_state(|st| st.token_grants)
    }

    /// Stop the server now (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.ctrl.send(Ctrl::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    /// Tests may share one simulator between threads.
    #[test]
    fn simulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Simulator>();
    }
}
