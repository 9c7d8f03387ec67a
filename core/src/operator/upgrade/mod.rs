//! Upgrade-all by `maintenance_info`: a run that brings every instance whose plan's
//! `maintenance_info.version` changed in the catalog to the new version, canaries first.
//!
//! The run lives in the store, not in the CLI that drives it (`spin-osb fleet upgrade`):
//! each `POST /operator/upgrades/current/step` takes one bounded step (polls the upgrades in
//! flight, starts new ones up to `max_in_flight`, scans a slice of the instance index) and
//! writes the run back, so a killed CLI, or a crashed component, resumes where the store
//! says. A step holds a lease on the run, so two CLIs never start the same upgrade twice;
//! an upgrade started by a step that crashed before recording it is found again by the
//! scan (its update is running to the new version) and adopted.
//!
//! Each upgrade is the instance's ordinary update ([`crate::broker::Maintenance`]), so
//! users see an ordinary operation and get the ordinary 422 while it runs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod stepper;

use self::stepper::Stepper;
use crate::broker::Broker;
use crate::error::OsbError;
use crate::http::{OsbRequest, OsbResponse};
use crate::state::{create, instance_index, read, replace, Created, InstanceRecord, Stored};

/// Where the current (or last) run is kept.
const RUN_KEY: &str = "osb/v1/upgrade/run";
/// How long a step may hold the run: longer than a step can take (its backend calls stop
/// starting after `STEP_MILLIS`, and one call is bounded by the broker's step budget).
const LEASE_SECONDS: u64 = 60;
/// How a run proceeds; fixed when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Instances upgraded first, one failure of which stops the run (0: no canaries).
    #[serde(default = "one")]
    pub canaries: u32,
    /// Only instances matching this are canaries.
    #[serde(default)]
    pub canary_filter: CanaryFilter,
    /// Upgrades running at once.
    #[serde(default = "one")]
    pub max_in_flight: u32,
    /// Attempts per instance before it counts as failed.
    #[serde(default = "two")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

/// Which instances may be canaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFilter {
    /// Only instances of this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Only instances of this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
}

impl CanaryFilter {
    fn keeps(&self, record: &InstanceRecord) -> bool {
        self.service_id
            .as_ref()
            .is_none_or(|s| *s == record.service_id)
            && self.plan_id.as_ref().is_none_or(|p| *p == record.plan_id)
    }
}

impl Settings {
    fn check(&self) -> Result<(), OsbError> {
        let range = |name: &str, value: u32, low: u32, high: u32| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(OsbError::bad_request(format!(
                    "{name} must be between {low} and {high}"
                )))
            }
        };
        range("canaries", self.canaries, 0, 1_000)?;
        range("max_in_flight", self.max_in_flight, 1, 100)?;
        range("attempts", self.attempts, 1, 10)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Upgrading canaries.
    Canaries,
    /// Upgrading everything else.
    Rest,
    /// Every outdated instance was upgraded or failed.
    Done,
    /// Stopped by a canary's failure or the operator.
    Stopped,
}

/// An upgrade running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    instance_id: String,
    operation: String,
    attempt: u32,
    canary: bool,
}

/// An instance to try again later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Waiting {
    instance_id: String,
    /// Attempts made so far.
    attempts: u32,
    /// Times it was found busy with another operation.
    #[serde(default)]
    waits: u32,
    canary: bool,
    not_before: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// An instance whose upgrade failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Failure {
    instance_id: String,
    canary: bool,
    description: String,
}

/// A run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    id: String,
    settings: Settings,
    phase: Phase,
    started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<u64>,
    /// Index slots the current phase has examined.
    cursor: u64,
    canaries_succeeded: u32,
    succeeded: u64,
    /// Instances found outdated but not upgradable (failed provisions, gone).
    skipped: u64,
    failed_total: u64,
    failed: Vec<Failure>,
    in_flight: Vec<Tracked>,
    waiting: Vec<Waiting>,
    /// Set when the run must start nothing more: it stops once nothing is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<u64>,
}

impl Run {
    fn active(&self) -> bool {
        matches!(self.phase, Phase::Canaries | Phase::Rest)
    }

    fn tracks(&self, instance_id: &str) -> bool {
        self.in_flight.iter().any(|t| t.instance_id == instance_id)
            || self.waiting.iter().any(|w| w.instance_id == instance_id)
    }

    /// What the operator API shows.
    fn view(&self, indexed: u64) -> Value {
        json!({
            "id": self.id,
            "phase": self.phase,
            "settings": self.settings,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "examined": self.cursor,
            "indexed": indexed,
            "canaries_succeeded": self.canaries_succeeded,
            "succeeded": self.succeeded,
            "skipped": self.skipped,
            "failed_total": self.failed_total,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "stop_reason": self.stop_reason,
        })
    }
}

/// Something that happened to one instance in a step (the CLI prints them).
#[derive(Debug, Clone, Serialize)]
struct Event {
    instance_id: String,
    event: &'static str,
    canary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// `POST /operator/upgrades`: starts a run with the body's settings, or answers the active
/// run (200, `resumed`) so that a restarted CLI goes on with it.
pub(super) fn start(broker: &Broker<'_>, request: &OsbRequest) -> Result<OsbResponse, OsbError> {
    let settings: Settings = if request.body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_value(json!({})).map_err(|e| OsbError::internal(e.to_string()))?
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|e| OsbError::bad_request(format!("the upgrade settings are invalid: {e}")))?
    };
    settings.check()?;
    let kv = broker.kv;
    let indexed = instance_index().len(kv)?;
    let stored = read::<Run>(kv, RUN_KEY)?;
    if let Some(current) = stored.as_ref().filter(|s| s.value.active()) {
        let mut body = current.value.view(indexed);
        body["resumed"] = json!(true);
        return Ok(OsbResponse::json(200, body));
    }
    let now = broker.env.now();
    let run = Run {
        id: format!("upgrade-{}", broker.env.random_hex(6)?),
        phase: if settings.canaries > 0 {
            Phase::Canaries
        } else {
            Phase::Rest
        },
        settings,
        started_at: now,
        finished_at: None,
        cursor: 0,
        canaries_succeeded: 0,
        succeeded: 0,
        skipped: 0,
        failed_total: 0,
        failed: Vec::new(),
        in_flight: Vec::new(),
        waiting: Vec::new(),
        stop_reason: None,
        lease_until: None,
    };
    let created = match stored {
        Some(finished) => replace(kv, broker.env, RUN_KEY, &finished, &run)?.is_some(),
        None => matches!(create(kv, broker.env, RUN_KEY, &run)?, Created::New(_)),
    };
    if !created {
        return Err(OsbError::conflict(
            "another fleet upgrade was started at the same moment; ask for the current one",
        ));
    }
    Ok(OsbResponse::json(201, run.view(indexed)))
}

/// `GET /operator/upgrades/current`.
pub(super) fn show(broker: &Broker<'_>) -> Result<OsbResponse, OsbError> {
    let run = current(broker)?;
    let indexed = instance_index().len(broker.kv)?;
    Ok(OsbResponse::json(200, run.value.view(indexed)))
}

/// `DELETE /operator/upgrades/current`: stops an active run at once (upgrades already
/// running go on as the ordinary operations they are).
pub(super) fn abandon(broker: &Broker<'_>) -> Result<OsbResponse, OsbError> {
    let stored = current(broker)?;
    let now = broker.env.now();
    if stored.value.lease_until.is_some_and(|until| until > now) {
        return Err(lease_taken());
    }
    let mut run = stored.value.clone();
    if run.active() {
        run.phase = Phase::Stopped;
        run.finished_at = Some(now);
        run.stop_reason = Some("abandoned by the operator".into());
        replace(broker.kv, broker.env, RUN_KEY, &stored, &run)?.ok_or_else(lease_taken)?;
    }
    let indexed = instance_index().len(broker.kv)?;
    Ok(OsbResponse::json(200, run.view(indexed)))
}

/// `POST /operator/upgrades/current/step`: one step of the active run.
pub(super) async fn step(broker: &Broker<'_>) -> Result<OsbResponse, OsbError> {
    let stored = current(broker)?;
    let kv = broker.kv;
    let indexed = instance_index().len(kv)?;
    if !stored.value.active() {
        let mut body = stored.value.view(indexed);
        body["events"] = json!([]);
        return Ok(OsbResponse::json(200, body));
    }
    let now = broker.env.now();
    if stored.value.lease_until.is_some_and(|until| until > now) {
        return Err(lease_taken());
    }
    let mut leased = stored.value.clone();
    leased.lease_until = Some(now + LEASE_SECONDS);
    let leased = replace(kv, broker.env, RUN_KEY, &stored, &leased)?.ok_or_else(lease_taken)?;

    let mut stepper = Stepper::new(broker, leased.value.clone());
    let outcome = stepper.take().await;
    let (mut run, events) = stepper.into_parts();
    run.lease_until = None;
    // Whatever the step did is recorded, even when it stopped on an error.
    replace(kv, broker.env, RUN_KEY, &leased, &run)?.ok_or_else(|| {
        OsbError::conflict(
            "the run changed while this step held it (its lease expired); step again",
        )
    })?;
    outcome?;
    let mut body = run.view(instance_index().len(kv)?);
    body["events"] = json!(events);
    let retry_after = if run.in_flight.is_empty() { 1 } else { 5 };
    Ok(OsbResponse::json(200, body).with_header("Retry-After", retry_after.to_string()))
}

fn current(broker: &Broker<'_>) -> Result<Stored<Run>, OsbError> {
    read::<Run>(broker.kv, RUN_KEY)?
        .ok_or_else(|| OsbError::not_found("no fleet upgrade was started"))
}

fn lease_taken() -> OsbError {
    OsbError::conflict("another step of this fleet upgrade is running; step again in a few seconds")
}
