//! How a simulator is started: transport, auth mode, redirect style and task
//! pacing. Everything here has a default that matches the director as the
//! wire contract describes it, so `SimConfig::default()` is a realistic
//! director with basic auth over plain HTTP.

use std::time::Duration;

/// How clients authenticate (contract A.2). The mode is what `GET /info`
/// advertises in `user_authentication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// `Authorization: Basic base64(user:password)` on every request.
    Basic { user: String, password: String },
    /// UAA client-credentials: the simulator serves its own token endpoint at
    /// `<base>/uaa/oauth/token` and accepts `bearer <token>` until the token
    /// expires after `token_ttl`.
    Uaa {
        client_id: String,
        client_secret: String,
        token_ttl: Duration,
    },
}

impl AuthConfig {
    /// Basic auth with `admin` / `admin-password`.
    pub fn basic_default() -> AuthConfig {
        AuthConfig::Basic {
            user: "admin".to_string(),
            password: "admin-password".to_string(),
        }
    }

    /// UAA with client `broker` / `broker-secret` and UAA's usual 12 h TTL.
    pub fn uaa_default() -> AuthConfig {
        AuthConfig::Uaa {
            client_id: "broker".to_string(),
            client_secret: "broker-secret".to_string(),
            token_ttl: Duration::from_secs(43_199),
        }
    }
}

/// Which redirect status the asynchronous endpoints answer with (A.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RedirectStatus {
    /// What the director (Sinatra 4) does: `303` for a non-GET HTTP/1.1
    /// request, `302` otherwise (so `GET .../vms?format=full` gets `302`).
    #[default]
    Sinatra,
    /// Always `302`, as the director's unit specs and older Sinatra do.
    Always302,
    /// Always `303`.
    Always303,
}

/// How long a task stays in each non-terminal state when nothing holds it.
/// Applies to tasks created after it is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskTimings {
    /// Time spent `queued` before a worker picks the task up.
    pub queued: Duration,
    /// Time spent `processing` before the task finishes.
    pub processing: Duration,
}

impl Default for TaskTimings {
    fn default() -> TaskTimings {
        TaskTimings {
            queued: Duration::ZERO,
            processing: Duration::from_millis(300),
        }
    }
}

/// Everything needed to start a [`crate::Simulator`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Port on 127.0.0.1; `0` picks a free one.
    pub port: u16,
    /// Serve HTTPS with a freshly generated CA (see `Simulator::ca_pem`).
    pub tls: bool,
    pub auth: AuthConfig,
    pub redirect_status: RedirectStatus,
    /// `Location: http(s)://<Host header>/tasks/N` (Sinatra's default,
    /// `absolute_redirects`) instead of `/tasks/N`.
    pub absolute_location: bool,
    pub timings: TaskTimings,
    /// The contract (A.5) says `timestamp` is `null` until a task finishes;
    /// the director's source sets it at enqueue and again on start and
    /// finish. `false` (default) follows the contract, `true` the source.
    pub timestamp_while_running: bool,
    /// `uuid` in `/info` (also used by nothing else; no team scopes).
    pub director_uuid: String,
    /// `version` in `/info`: `<semver> (<git sha>)`.
    pub director_version: String,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            port: 0,
            tls: false,
            auth: AuthConfig::basic_default(),
            redirect_status: RedirectStatus::default(),
            absolute_location: true,
            timings: TaskTimings::default(),
            timestamp_while_running: false,
            director_uuid: "5e1a7c0d-51a1-4a70-8b0b-000000000001".to_string(),
            director_version: "282.1.0 (00000000)".to_string(),
        }
    }
}

impl SimConfig {
    /// Plain HTTP, basic auth with the given credentials.
    pub fn basic(user: &str, password: &str) -> SimConfig {
        SimConfig {
            auth: AuthConfig::Basic {
                user: user.to_string(),
                password: password.to_string(),
            },
            ..SimConfig::default()
        }
    }

    /// Plain HTTP, UAA client credentials with the given client and TTL.
    pub fn uaa(client_id: &str, client_secret: &str, token_ttl: Duration) -> SimConfig {
        SimConfig {
            auth: AuthConfig::Uaa {
                client_id: client_id.to_string(),
                client_secret: client_secret.to_string(),
                token_ttl,
            },
            ..SimConfig::default()
        }
    }

    /// The same configuration served over HTTPS.
    pub fn with_tls(mut self) -> SimConfig {
        self.tls = true;
        self
    }

    pub fn with_port(mut self, port: u16) -> SimConfig {
        self.port = port;
        self
    }

    pub fn with_timings(mut self, queued: Duration, processing: Duration) -> SimConfig {
        self.timings = TaskTimings { queued, processing };
        self
    }

    pub fn with_redirect(mut self, status: RedirectStatus, absolute_location: bool) -> SimConfig {
        self.redirect_status = status;
        self.absolute_location = absolute_location;
        self
    }
}
