//! Listing and showing instances: the operator's view of the fleet, never a secret.
//!
//! Listing reads the instance index ([`crate::index`]), never the store's key list: a page
//! reads at most `SCAN_PER_PAGE` index slots, so it costs the same at 10 and at 100,000
//! instances; filters that match little make short pages, and `next` goes on.

use serde::Serialize;
use serde_json::{json, Value};

use crate::broker::{Broker, Maintenance};
use crate::error::OsbError;
use crate::http::{OsbRequest, OsbResponse};
use crate::index::Index;
use crate::kv::Kv;
use crate::state::{
    binding_index, instance_index, instance_key, read, BindingRecord, InstanceRecord, Operation,
    OperationSummary, Status,
};

/// Instances on a page when `limit` is not given, and the most a page may ask for.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;
/// Index slots one page reads at most, whatever the filters.
const SCAN_PER_PAGE: u64 = 2 * MAX_LIMIT;
/// Bindings listed with an instance at most.
const MAX_BINDINGS: u64 = 200;

/// What a listing keeps.
pub(super) struct Filter {
    service_id: Option<String>,
    plan_id: Option<String>,
    status: Option<Status>,
    maintenance_version: Option<String>,
    /// Only instances running an older `maintenance_info` than their plan's.
    outdated: bool,
    /// Only instances whose operation is still in progress past its deadline.
    stuck: bool,
    limit: u64,
    after: u64,
}

impl Filter {
    pub(super) fn from_request(request: &OsbRequest) -> Result<Self, OsbError> {
        let text = |name: &str| {
            request
                .query(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let number = |name: &str, default: u64| -> Result<u64, OsbError> {
            match request.query(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    OsbError::bad_request(format!("{name} must be a non-negative integer"))
                }),
            }
        };
        let status = match text("status") {
            None => None,
            Some(s) => Some(serde_json::from_value(json!(s)).map_err(|_| {
                OsbError::bad_request("status must be one of creating, ready, failed, deleted")
            })?),
        };
        let limit = number("limit", DEFAULT_LIMIT)?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(OsbError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let flag = |name: &str| match text(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(OsbError::bad_request(format!(
                "{name} must be true or false"
            ))),
        };
        Ok(Filter {
            outdated: flag("outdated")?,
            stuck: flag("stuck")?,
            service_id: text("service_id"),
            plan_id: text("plan_id"),
            status,
            maintenance_version: text("maintenance_version"),
            limit,
            after: number("after", 0)?,
        })
    }

    fn keeps(&self, record: &InstanceRecord) -> bool {
        self.service_id
            .as_ref()
            .is_none_or(|s| *s == record.service_id)
            && self.plan_id.as_ref().is_none_or(|p| *p == record.plan_id)
            && self.status.is_none_or(|s| s == record.status)
            && self
                .maintenance_version
                .as_ref()
                .is_none_or(|v| Some(v) == record.maintenance_info_version.as_ref())
    }
}

/// An instance as the operator API shows it.
#[derive(Serialize)]
struct InstanceSummary<'a> {
    instance_id: &'a str,
    service_id: &'a str,
    plan_id: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance_version: Option<&'a str>,
    /// Where the backend put it (see [`placement`]).
    #[serde(skip_serializing_if = "Value::is_null")]
    placement: Value,
    operation: OperationView<'a>,
}

/// What an operator needs to find an instance's resources: the backend's type and the
/// cluster, namespace or deployment it keeps in the record (never its object list or
/// anything else the backend keeps there).
fn placement(backend: &Value) -> Value {
    let mut shown = serde_json::Map::new();
    for key in ["type", "cluster", "namespace", "deployment"] {
        if let Some(value) = backend.get(key).filter(|v| v.is_string()) {
            shown.insert(key.to_string(), value.clone());
        }
    }
    if shown.is_empty() {
        Value::Null
    } else {
        Value::Object(shown)
    }
}

#[derive(Serialize)]
struct OperationView<'a> {
    id: &'a str,
    kind: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    started_at: u64,
}

impl<'a> OperationView<'a> {
    fn of(operation: &'a Operation) -> Self {
        OperationView {
            id: &operation.id,
            kind: operation.kind.prefix(),
            state: operation.state.as_osb(),
            description: operation.description.as_deref(),
            started_at: operation.started_at,
        }
    }
}

fn summary(record: &InstanceRecord) -> InstanceSummary<'_> {
    InstanceSummary {
        instance_id: &record.instance_id,
        service_id: &record.service_id,
        plan_id: &record.plan_id,
        status: record.status,
        maintenance_version: record.maintenance_info_version.as_deref(),
        placement: placement(&record.backend),
        operation: OperationView::of(&record.operation),
    }
}

pub(super) fn list_instances(
    broker: &Broker<'_>,
    filter: &Filter,
) -> Result<OsbResponse, OsbError> {
    let kv = broker.kv;
    let now = broker.env.now();
    let index = instance_index();
    let len = index.len(kv)?;
    let last = len.min(filter.after.saturating_add(SCAN_PER_PAGE));
    let mut records = Vec::new();
    let mut scanned = filter.after;
    for slot in filter.after + 1..=last {
        scanned = slot;
        let Some(id) = index.get(kv, slot)? else {
            continue;
        };
        let Some(stored) = read::<InstanceRecord>(kv, &instance_key(&id))? else {
            continue;
        };
        let outdated = || -> Result<bool, OsbError> {
            Ok(broker.maintenance(&stored.value)? != Maintenance::Current)
        };
        let operation = &stored.value.operation;
        let stuck = operation.in_progress() && operation.deadline.is_some_and(|d| now >= d);
        if Index::live(slot, stored.value.index_slot)
            && filter.keeps(&stored.value)
            && (!filter.stuck || stuck)
            && (!filter.outdated || outdated()?)
        {
            records.push(stored.value);
            if records.len() as u64 == filter.limit {
                break;
            }
        }
    }
    let instances: Vec<InstanceSummary<'_>> = records.iter().map(summary).collect();
    let next = (scanned < len).then(|| scanned.to_string());
    Ok(OsbResponse::json(
        200,
        json!({ "instances": instances, "next": next }),
    ))
}

pub(super) fn show_instance(kv: &dyn Kv, instance_id: &str) -> Result<OsbResponse, OsbError> {
    let not_found =
        || OsbError::not_found(format!("service instance {instance_id} does not exist"));
    let record = read::<InstanceRecord>(kv, &instance_key(instance_id))?
        .ok_or_else(not_found)?
        .value;
    let history: Vec<Value> = record.history.iter().map(history_entry).collect();
    let mut parameters: Vec<&String> = record.parameters.keys().collect();
    parameters.sort();
    let bindings = bindings_of(kv, instance_id)?;
    let mut body = serde_json::to_value(summary(&record)).unwrap_or_default();
    body["history"] = json!(history);
    body["parameter_names"] = json!(parameters);
    body["bindings"] = json!(bindings);
    Ok(OsbResponse::json(200, body))
}

fn history_entry(summary: &OperationSummary) -> Value {
    json!({
        "id": summary.id,
        "kind": summary.kind.prefix(),
        "state": summary.state.as_osb(),
        "description": summary.description,
    })
}

/// The instance's bindings (deleted ones included, until they expire), never their
/// credentials.
fn bindings_of(kv: &dyn Kv, instance_id: &str) -> Result<Vec<Value>, OsbError> {
    let index = binding_index(instance_id);
    let len = index.len(kv)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut bindings = Vec::new();
    for slot in 1..=len.min(MAX_BINDINGS) {
        let Some(binding_id) = index.get(kv, slot)? else {
            continue;
        };
        if !seen.insert(binding_id.clone()) {
            continue;
        }
        let key = crate::state::binding_key(instance_id, &binding_id);
        if let Some(stored) = read::<BindingRecord>(kv, &key)? {
            let binding = &stored.value;
            bindings.push(json!({
                "binding_id": binding.binding_id,
                "status": binding.status,
                "operation": OperationView::of(&binding.operation),
            }));
        }
    }
    Ok(bindings)
}
