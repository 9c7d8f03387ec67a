//! Fleet metrics, kept as counters in the key-value store and served in the Prometheus
//! format by the operator component ([`exposition`]).
//!
//! Components keep no memory between requests and a fleet may run on many hosts sharing
//! one Redis, so every count lives in the store and changes only by atomic `increment`:
//! correct whichever host served the request, and never found by scanning. Each operation
//! event is **one** increment of a counter whose labels say everything a scrape derives
//! from it:
//!
//! - an operation first written while still running adds 1 to `started` (kind, plan);
//! - an operation that ends adds 1 to `finished` (kind, plan, outcome, duration bucket,
//!   and whether its start was counted on its own), and its milliseconds to a sum when
//!   there are any (a synchronous request's own operation takes less than one);
//! - either carries, when the record's (plan, status) changed in the same write, the old and
//!   the new one: instance and binding gauges are the sums of what entered a (plan, status)
//!   minus what left it.
//!
//! So a synchronous provision, bind, unbind or deprovision costs one increment. The first
//! increment of a counter also appends it to a series index (once per counter, ever:
//! counters only grow), which is how a scrape finds them. Counting happens after the
//! record's write landed and never fails a request: a store error is logged, and a crash
//! between a write and its increment loses that count (never doubles it).

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

/// Upper bounds of the operation duration histogram's buckets, from a synchronous
/// request's milliseconds to a BOSH deployment's hour: milliseconds, and the `le` label
/// (written out, so that the endpoint components carry no float formatting).
pub const DURATION_BUCKETS: [(u64, &str); 17] = [
    (5, "0.005"),
    (10, "0.01"),
    (25, "0.025"),
    (50, "0.05"),
    (100, "0.1"),
    (250, "0.25"),
    (500, "0.5"),
    (1_000, "1"),
    (2_500, "2.5"),
    (5_000, "5"),
    (10_000, "10"),
    (30_000, "30"),
    (60_000, "60"),
    (120_000, "120"),
    (300_000, "300"),
    (900_000, "900"),
    (3_600_000, "3600"),
];

/// Counter names (the part of a key before `?`).
pub(crate) mod names {
    /// Operations first written while running, by kind and plan (and status change).
    pub const STARTED: &str = "operations_started";
    /// Finished operations by kind, plan, outcome, whether they were counted as started,
    /// duration bucket (and status change).
    pub const FINISHED: &str = "operations_finished";
    /// Milliseconds of finished operations by kind and plan.
    pub const MILLIS: &str = "operations_millis";
    /// Records deleted without an operation (bindings that go with their instance).
    pub const DROPPED: &str = "records_dropped";
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
#[derive(Clone, Copy, PartialEq, Eq)]
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
            self.logged(self.count_transition(before.map(Seen::of), Seen::of(after)));
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

    fn count_transition(&self, before: Option<Seen<'_>>, after: Seen<'_>) -> Result<(), OsbError> {
        let was = before.as_ref().and_then(|b| b.placed);
        let is = after.placed;
        // The record's change of (plan, status), told with the first event of this write.
        let mut moved = (was != is).then_some(Moved {
            noun: after.noun,
            was,
            is,
        });
        let operation = after.operation;
        match &before {
            Some(previous) if previous.operation.id == operation.id => {
                if previous.operation.in_progress() && !operation.in_progress() {
                    self.finished(after.operation_plan, operation, true, moved.take())?;
                }
            }
            previous => {
                // A running operation replaced by a new one (a deletion cancelling a
                // creation) ended then, as failed.
                if let Some(previous) = previous.as_ref().filter(|p| p.operation.in_progress()) {
                    let mut cancelled = previous.operation.clone();
                    cancelled.state = OperationState::Failed;
                    self.finished(previous.operation_plan, &cancelled, true, moved.take())?;
                }
                if operation.in_progress() {
                    let (service_id, plan_id) = after.operation_plan;
                    let mut labels = vec![
                        ("kind", operation.kind.prefix()),
                        ("service_id", service_id),
                        ("plan_id", plan_id),
                    ];
                    let moved = moved.take();
                    if let Some(moved) = &moved {
                        moved.label(&mut labels);
                    }
                    self.add(names::STARTED, &labels, 1)?;
                } else {
                    self.finished(after.operation_plan, operation, false, moved.take())?;
                }
            }
        }
        if moved.is_some() {
            // Every status change comes with an operation's start or end.
            self.env
                .log("metrics: a record changed status without an operation; not counted");
        }
        Ok(())
    }

    /// The record leaves the (plan, status) it is counted in without an operation.
    fn leave<R: Record>(&self, record: &R) -> Result<(), OsbError> {
        match placed(record) {
            Some(was) => {
                let labels = [
                    ("record", R::NOUN),
                    ("service_id", was.service_id),
                    ("plan_id", was.plan_id),
                    ("status", status_name(was.status)),
                ];
                self.add(names::DROPPED, &labels, 1)
            }
            None => Ok(()),
        }
    }

    /// An operation ended; `counted_started` when its start was counted on its own.
    fn finished(
        &self,
        (service_id, plan_id): (&str, &str),
        operation: &Operation,
        counted_started: bool,
        moved: Option<Moved<'_>>,
    ) -> Result<(), OsbError> {
        let millis = self
            .env
            .now_ms()
            .saturating_sub(operation.started_ms.unwrap_or(operation.started_at * 1000));
        let bucket = DURATION_BUCKETS
            .iter()
            .find(|(bound, _)| millis <= *bound)
            .map_or("+Inf", |(_, le)| le);
        let outcome = match operation.state {
            OperationState::Succeeded => "succeeded",
            _ => "failed",
        };
        let kind = operation.kind.prefix();
        let mut labels = vec![
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
            ("le", bucket),
        ];
        if let Some(moved) = &moved {
            moved.label(&mut labels);
        }
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

/// What the metrics read of a record (one copy of the counting code for every kind of
/// record, not one per kind in every component).
struct Seen<'a> {
    noun: &'static str,
    placed: Option<Placed<'a>>,
    operation: &'a Operation,
    operation_plan: (&'a str, &'a str),
}

impl<'a> Seen<'a> {
    fn of<R: Record>(record: &'a R) -> Self {
        Seen {
            noun: R::NOUN,
            placed: placed(record),
            operation: record.operation(),
            operation_plan: record.operation_plan(),
        }
    }
}

/// A record's change of (plan, status) in one write, as counter labels.
struct Moved<'a> {
    noun: &'static str,
    was: Option<Placed<'a>>,
    is: Option<Placed<'a>>,
}

impl<'a> Moved<'a> {
    fn label<'l>(&self, labels: &mut Vec<(&'static str, &'l str)>)
    where
        'a: 'l,
    {
        labels.push(("record", self.noun));
        for (plan, status, place) in [
            ("from_plan", "from", &self.was),
            ("to_plan", "to", &self.is),
        ] {
            match place {
                Some(place) => {
                    labels.push((plan, place.plan_id));
                    labels.push((status, status_name(place.status)));
                }
                None => labels.push((status, "none")),
            }
        }
    }
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
