//! Fleet metrics, kept as counters in the key-value store and served in the Prometheus
//! format by the operator component ([`exposition`]).
//!
//! Components keep no memory between requests and a fleet may run on many hosts sharing
//! one Redis, so every count lives in the store and changes only by atomic `increment`:
//! correct whichever host served the request, and never found by scanning. What a scrape
//! shows is derived from a few monotonic counters:
//!
//! - a record changing status (created, ready, failed, deleted) adds 1 to the `up` counter
//!   of its new (plan, status) and to the `down` counter of its old one; the gauge is
//!   `up - down`;
//! - an operation first written while still running adds 1 to `started`; an operation that
//!   ends adds 1 to the duration bucket of its (kind, plan, outcome) and its milliseconds to
//!   a sum. Succeeded, failed and duration histograms are sums of those buckets; operations
//!   created already finished (a synchronous request) count as started when they finish.
//!
//! So a synchronous provision, bind, unbind or deprovision costs three increments (bucket,
//! sum, status), an asynchronous one a few more. The first increment of a counter also
//! appends it to a series index (once per counter, ever: counters only grow), which is how
//! a scrape finds them. Counting happens after the record's write landed and never fails a
//! request: a store error is logged, and a crash between a write and its increments loses
//! those counts (never doubles them).

pub mod exposition;

use crate::env::Env;
use crate::error::OsbError;
use crate::index::Index;
use crate::kv::Kv;
use crate::outbound::Config;
use crate::state::{Operation, OperationKind, OperationState, Record, Status};

/// The Spin variable that turns counting off (`off`); on by default.
pub const VARIABLE: &str = "metrics";
/// Where counters live: `{PREFIX}{name}?{labels}`.
const PREFIX: &str = "osb/v1/metrics/";

/// Upper bounds (seconds) of the operation duration histogram's buckets, from a
/// synchronous request's milliseconds to a BOSH deployment's hour.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    3600.0,
];

/// Counter names (the part of a key before `?`).
pub(crate) mod names {
    /// Records entering a (record, service, plan, status).
    pub const UP: &str = "records_up";
    /// Records leaving one.
    pub const DOWN: &str = "records_down";
    /// Operations first written while running, by kind and plan.
    pub const STARTED: &str = "operations_started";
    /// Finished operations by kind, plan, outcome, whether they were counted as started,
    /// and duration bucket.
    pub const FINISHED: &str = "operations_finished";
    /// Milliseconds of finished operations by kind and plan.
    pub const MILLIS: &str = "operations_millis";
    /// Failed backend calls by backend, operation kind and failure.
    pub const BACKEND_FAILURES: &str = "backend_failures";
}

/// The index of every counter ever incremented (what a scrape reads).
pub(crate) fn series_index() -> Index {
    Index::new("osb/v1/index/metrics")
}

/// A counter's key: its name and labels, label values percent-encoded.
pub(crate) fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (label, value) in labels {
        query.append_pair(label, value);
    }
    format!("{PREFIX}{name}?{}", query.finish())
}

/// A counter's name and labels, from its key.
pub(crate) fn parse_series_key(key: &str) -> Option<(&str, Vec<(String, String)>)> {
    let (name, labels) = key.strip_prefix(PREFIX)?.split_once('?')?;
    let labels = form_urlencoded::parse(labels.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some((name, labels))
}

/// Counting for one request.
pub struct Metrics<'a> {
    kv: &'a dyn Kv,
    env: &'a dyn Env,
    on: bool,
}

/// A record as the metrics see it: where it is counted.
#[derive(PartialEq, Eq)]
struct Placed<'a> {
    service_id: &'a str,
    plan_id: &'a str,
    status: Status,
}

impl<'a> Metrics<'a> {
    /// Counting into `kv`, unless the deployment turned it off.
    pub fn new(kv: &'a dyn Kv, env: &'a dyn Env, config: &dyn Config) -> Self {
        let on = !matches!(
            config.get(VARIABLE).as_deref().map(str::trim),
            Some("off" | "false" | "0")
        );
        Metrics { kv, env, on }
    }

    /// Counts what changed when `after` replaced `before` (`None`: it was created) in the
    /// store. Call only once the write landed.
    pub fn record_written<R: Record>(&self, before: Option<&R>, after: &R) {
        if self.on {
            self.logged(self.count_transition(before, after));
        }
    }

    /// Counts a record deleted without a deletion operation (a binding that goes with its
    /// instance's tombstone).
    pub fn record_dropped<R: Record>(&self, record: &R) {
        if self.on {
            self.logged(self.leave(record));
        }
    }

    /// Counts one failed call to a backend (`transient`: the API was unreachable or busy).
    pub fn backend_failure(&self, backend: &str, kind: OperationKind, transient: bool) {
        if self.on {
            let failure = if transient { "transient" } else { "permanent" };
            let labels = [
                ("backend", backend),
                ("kind", kind.prefix()),
                ("failure", failure),
            ];
            self.logged(self.add(names::BACKEND_FAILURES, &labels, 1));
        }
    }

    fn logged(&self, result: Result<(), OsbError>) {
        if let Err(error) = result {
            self.env
                .log(&format!("metrics not counted: {}", error.description));
        }
    }

    fn count_transition<R: Record>(&self, before: Option<&R>, after: &R) -> Result<(), OsbError> {
        let was = before.and_then(placed);
        let is = placed(after);
        if was != is {
            if let Some(before) = before.filter(|_| was.is_some()) {
                self.leave(before)?;
            }
            if let Some(is) = &is {
                self.add(names::UP, &status_labels::<R>(is), 1)?;
            }
        }
        let operation = after.operation();
        match before.map(|b| (b, b.operation())) {
            Some((_, previous)) if previous.id == operation.id => {
                if previous.in_progress() && !operation.in_progress() {
                    self.finished(after.operation_plan(), operation, true)?;
                }
            }
            previous => {
                // A running operation replaced by a new one (a deletion cancelling a
                // creation) ended then, as failed.
                if let Some((before, previous)) = previous.filter(|(_, p)| p.in_progress()) {
                    let mut cancelled = previous.clone();
                    cancelled.state = OperationState::Failed;
                    self.finished(before.operation_plan(), &cancelled, true)?;
                }
                if operation.in_progress() {
                    let (service_id, plan_id) = after.operation_plan();
                    let labels = [
                        ("kind", operation.kind.prefix()),
                        ("service_id", service_id),
                        ("plan_id", plan_id),
                    ];
                    self.add(names::STARTED, &labels, 1)?;
                } else {
                    self.finished(after.operation_plan(), operation, false)?;
                }
            }
        }
        Ok(())
    }

    /// The record leaves the (plan, status) it is counted in.
    fn leave<R: Record>(&self, record: &R) -> Result<(), OsbError> {
        match placed(record) {
            Some(was) => self.add(names::DOWN, &status_labels::<R>(&was), 1),
            None => Ok(()),
        }
    }

    /// An operation ended; `counted_started` when its start was counted on its own.
    fn finished(
        &self,
        (service_id, plan_id): (&str, &str),
        operation: &Operation,
        counted_started: bool,
    ) -> Result<(), OsbError> {
        let millis = self
            .env
            .now_ms()
            .saturating_sub(operation.started_ms.unwrap_or(operation.started_at * 1000));
        let seconds = millis as f64 / 1000.0;
        let bucket = DURATION_BUCKETS
            .iter()
            .find(|bound| seconds <= **bound)
            .map_or_else(|| "+Inf".to_string(), |bound| bound.to_string());
        let outcome = match operation.state {
            OperationState::Succeeded => "succeeded",
            _ => "failed",
        };
        let kind = operation.kind.prefix();
        let labels = [
            ("kind", kind),
            ("service_id", service_id),
            ("plan_id", plan_id),
            ("outcome", outcome),
            (
                "started",
                if counted_started {
                    "counted"
                } else {
                    "with_end"
                },
            ),
            ("le", &bucket),
        ];
        self.add(names::FINISHED, &labels, 1)?;
        let labels = [
            ("kind", kind),
            ("service_id", service_id),
            ("plan_id", plan_id),
        ];
        self.add(names::MILLIS, &labels, millis)
    }

    /// Adds `delta` to a counter; its first increment registers it in the series index.
    fn add(&self, name: &str, labels: &[(&str, &str)], delta: u64) -> Result<(), OsbError> {
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(());
        };
        if delta == 0 {
            return Ok(());
        }
        let key = series_key(name, labels);
        if self.kv.increment(&key, delta)? == delta {
            series_index().append(self.kv, &key)?;
        }
        Ok(())
    }
}

/// Where a record is counted: nowhere once deleted.
fn placed<R: Record>(record: &R) -> Option<Placed<'_>> {
    let (service_id, plan_id) = record.plan();
    let status = record.status();
    (status != Status::Deleted).then_some(Placed {
        service_id,
        plan_id,
        status,
    })
}

fn status_labels<'a, R: Record>(placed: &Placed<'a>) -> [(&'static str, &'a str); 4] {
    [
        ("record", R::NOUN),
        ("service_id", placed.service_id),
        ("plan_id", placed.plan_id),
        ("status", status_name(placed.status)),
    ]
}

/// The `status` label of a record status.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Creating => "creating",
        Status::Ready => "ready",
        Status::Failed => "failed",
        Status::Deleted => "deleted",
    }
}

#[cfg(test)]
mod tests;
