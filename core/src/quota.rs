//! Instance quotas: limits on how many instances exist, for the whole broker, a service, a
//! plan, and per platform tenant (Cloud Foundry organization and space, Kubernetes
//! namespace), declared in the catalog.
//!
//! Each limit is a counter in the key-value store. A provision takes a slot in every limit
//! that applies to it by atomic `increment`: a result over the limit gives the slot back and
//! refuses the provision (422, naming the limit), so of 50 concurrent provisions against a
//! limit of 10 exactly 10 proceed, on any number of hosts sharing the store. The slots
//! taken are kept in the instance record and given back exactly once: when the instance
//! stops counting (its provision failed, or it was deleted). A crash between taking slots
//! and writing the record keeps them taken (the limit errs on the safe side).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::CatalogLookup;
use crate::error::OsbError;
use crate::kv::Kv;
use crate::state::{Record, Status};

/// Where counters live.
const PREFIX: &str = "osb/v1/quota/";

/// The `quotas:` of the catalog (top level), a service or a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Instances in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u64>,
    /// Instances per Cloud Foundry organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_organization: Option<u64>,
    /// Instances per Cloud Foundry space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_space: Option<u64>,
    /// Instances per Kubernetes namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_namespace: Option<u64>,
}

/// What a limit covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every instance of the broker.
    Broker,
    /// The instances of one service.
    Service,
    /// The instances of one plan.
    Plan,
}

impl Scope {
    /// Its name in the catalog, the operator API and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Broker => "broker",
            Scope::Service => "service",
            Scope::Plan => "plan",
        }
    }
}

/// Which instances of the scope a limit counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tenant {
    /// All of them.
    All,
    /// Those of one organization.
    Organization,
    /// Those of one space.
    Space,
    /// Those of one namespace.
    Namespace,
}

/// One limit as a plan's provisions check it (resolved when the catalog is compiled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// What it covers.
    pub scope: Scope,
    /// The service or plan id (empty for the broker).
    pub scope_id: String,
    /// Counted per tenant, or all together.
    pub tenant: Tenant,
    /// The most instances.
    pub max: u64,
}

impl Quotas {
    /// The limits these quotas declare for `scope` `scope_id`.
    pub fn limits(&self, scope: Scope, scope_id: &str) -> Vec<Limit> {
        [
            (Tenant::All, self.instances),
            (Tenant::Organization, self.per_organization),
            (Tenant::Space, self.per_space),
            (Tenant::Namespace, self.per_namespace),
        ]
        .into_iter()
        .filter_map(|(tenant, max)| {
            max.map(|max| Limit {
                scope,
                scope_id: scope_id.to_string(),
                tenant,
                max,
            })
        })
        .collect()
    }
}

/// The platform tenant of a provision request, from its body and OSB context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    /// Cloud Foundry organization GUID.
    pub organization: Option<String>,
    /// Cloud Foundry space GUID.
    pub space: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
}

impl Tenancy {
    /// The tenant of a provision with these top-level GUIDs and `context`.
    pub fn of(organization_guid: Option<&str>, space_guid: Option<&str>, context: &Value) -> Self {
        let field = |name: &str| context.get(name).and_then(Value::as_str).map(str::to_owned);
        let kubernetes = context.get("platform").and_then(Value::as_str) == Some("kubernetes");
        let or_top = |top: Option<&str>| top.filter(|v| !v.is_empty()).map(str::to_owned);
        Tenancy {
            // Kubernetes platforms send their cluster id and namespace as organization and
            // space: those count as the namespace, not as a Cloud Foundry org and space.
            organization: (!kubernetes)
                .then(|| field("organization_guid").or_else(|| or_top(organization_guid)))
                .flatten(),
            space: (!kubernetes)
                .then(|| field("space_guid").or_else(|| or_top(space_guid)))
                .flatten(),
            namespace: field("namespace").filter(|_| kubernetes),
        }
    }

    fn of_kind(&self, tenant: Tenant) -> Option<Option<&str>> {
        match tenant {
            Tenant::All => Some(None),
            Tenant::Organization => self.organization.as_deref().map(Some),
            Tenant::Space => self.space.as_deref().map(Some),
            Tenant::Namespace => self.namespace.as_deref().map(Some),
        }
    }
}

impl Limit {
    /// The counter of this limit for `tenant` (`None` for per-tenant limits the request has
    /// no tenant of that kind for: they do not apply).
    fn counter(&self, tenancy: &Tenancy) -> Option<String> {
        let tenant = tenancy.of_kind(self.tenant)?;
        let scope = match self.scope {
            Scope::Broker => "broker".to_string(),
            Scope::Service => format!("service/{}", self.scope_id),
            Scope::Plan => format!("plan/{}", self.scope_id),
        };
        Some(match tenant {
            None => format!("{PREFIX}{scope}/instances"),
            Some(id) => {
                let kind = match self.tenant {
                    Tenant::Organization => "organization",
                    Tenant::Space => "space",
                    _ => "namespace",
                };
                format!("{PREFIX}{scope}/{kind}/{id}")
            }
        })
    }

    /// What users read when the limit refuses them.
    fn describe(&self, service_name: &str, plan_name: &str) -> String {
        let whose = match self.scope {
            Scope::Broker => "this broker's".to_string(),
            Scope::Service => format!("service {service_name}'s"),
            Scope::Plan => format!("plan {plan_name}'s"),
        };
        let per = match self.tenant {
            Tenant::All => "",
            Tenant::Organization => " per organization",
            Tenant::Space => " per space",
            Tenant::Namespace => " per namespace",
        };
        format!(
            "{whose} quota of {} instance{}{per} is reached; delete an instance or ask the broker's operator to raise it",
            self.max,
            if self.max == 1 { "" } else { "s" }
        )
    }
}

/// Takes a slot in every limit of `limits` that applies to `tenancy`: the counters taken,
/// or a 422 naming the first limit reached (with every slot given back).
pub fn take(
    kv: &dyn Kv,
    limits: &[Limit],
    tenancy: &Tenancy,
    names: (&str, &str),
) -> Result<Vec<String>, OsbError> {
    take_beyond(kv, limits, tenancy, names, &[])
}

/// A plan change's slots: the counters the instance holds under the target plan's
/// `limits` (`all`), and those of them taken now because it did not hold them already
/// (`taken`, given back if the change does not happen). A 422 names the first limit reached.
pub struct PlanChange {
    /// Every counter of the target plan that applies to the instance.
    pub all: Vec<String>,
    /// The ones newly taken.
    pub taken: Vec<String>,
}

/// Takes the slots a change to a plan with `limits` needs beyond those in `held`.
pub fn take_for_plan_change(
    kv: &dyn Kv,
    limits: &[Limit],
    tenancy: &Tenancy,
    names: (&str, &str),
    held: &[String],
) -> Result<PlanChange, OsbError> {
    let taken = take_beyond(kv, limits, tenancy, names, held)?;
    let all = limits.iter().filter_map(|l| l.counter(tenancy)).collect();
    Ok(PlanChange { all, taken })
}

fn take_beyond(
    kv: &dyn Kv,
    limits: &[Limit],
    tenancy: &Tenancy,
    (service_name, plan_name): (&str, &str),
    held: &[String],
) -> Result<Vec<String>, OsbError> {
    let mut taken = Vec::new();
    for limit in limits {
        let Some(counter) = limit.counter(tenancy).filter(|c| !held.contains(c)) else {
            continue;
        };
        let count = match kv.increment(&counter, 1) {
            Ok(count) => count,
            Err(error) => {
                release(kv, &taken);
                return Err(error.into());
            }
        };
        taken.push(counter);
        if u64::try_from(count).unwrap_or(0) > limit.max {
            release(kv, &taken);
            return Err(OsbError::unprocessable(
                limit.describe(service_name, plan_name),
            ));
        }
    }
    Ok(taken)
}

/// Gives the slots back (best effort: a failure leaves a slot taken, the safe side).
pub fn release(kv: &dyn Kv, counters: &[String]) {
    for counter in counters {
        let _ = kv.increment(counter, -1);
    }
}

/// Gives back the slots a record stopped holding in this write: a creation that ended
/// failed at once; a record whose provision failed or that was deleted; a plan change that
/// succeeded (the old plan's slots the new one does not share) or did not (the slots taken
/// for it). Call once the write landed (so every slot is given back exactly once).
pub fn record_written<R: Record>(kv: &dyn Kv, before: Option<&R>, after: &R) {
    match before.filter(|b| b.status() != Status::Deleted) {
        // A creation (possibly over a tombstone).
        None if !counts(after.status()) => release(kv, after.quota_slots()),
        None => {}
        Some(before) => {
            let kept = owned(after);
            let dropped: Vec<String> = owned(before)
                .into_iter()
                .filter(|slot| !kept.contains(slot))
                .collect();
            release(kv, &dropped);
        }
    }
}

fn counts(status: Status) -> bool {
    matches!(status, Status::Creating | Status::Ready)
}

/// The slots a record holds, once each: its own and those of a plan change in progress,
/// while it counts at all.
fn owned<R: Record>(record: &R) -> Vec<String> {
    if !counts(record.status()) {
        return Vec::new();
    }
    let mut slots = record.quota_slots().to_vec();
    for slot in record.pending_quota_slots() {
        if !slots.contains(slot) {
            slots.push(slot.clone());
        }
    }
    slots
}

/// Every limit the catalog declares, once each (a broker or service limit is shared by
/// its plans), in catalog order.
pub fn declared(catalog: &dyn CatalogLookup) -> Result<Vec<Limit>, OsbError> {
    let mut limits: Vec<Limit> = Vec::new();
    for plan in crate::catalog::all_plans(catalog)? {
        for limit in &plan.quotas {
            if !limits.contains(limit) {
                limits.push(limit.clone());
            }
        }
    }
    Ok(limits)
}

/// How many slots of `limit` are taken for `tenancy`; `None` for a per-tenant limit whose
/// kind of tenant `tenancy` does not name.
pub fn used(kv: &dyn Kv, limit: &Limit, tenancy: &Tenancy) -> Result<Option<u64>, OsbError> {
    let Some(counter) = limit.counter(tenancy) else {
        return Ok(None);
    };
    Ok(Some(
        kv.get(&counter)?
            .and_then(|b| crate::index::parse_counter(&b))
            .unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use serde_json::json;

    fn plan_limit(max: u64, tenant: Tenant) -> Limit {
        Limit {
            scope: Scope::Plan,
            scope_id: "p".into(),
            tenant,
            max,
        }
    }

    #[test]
    fn a_full_limit_refuses_and_gives_every_slot_back() {
        let kv = MemoryKv::default();
        let tenancy = Tenancy::of(Some("org"), Some("space"), &json!({}));
        let limits = [plan_limit(5, Tenant::All), plan_limit(1, Tenant::Space)];
        let taken = take(&kv, &limits, &tenancy, ("s", "p")).unwrap();
        assert_eq!(taken.len(), 2);
        let refused = take(&kv, &limits, &tenancy, ("s", "p")).unwrap_err();
        assert_eq!(refused.status, 422);
        assert!(refused
            .description
            .contains("plan p's quota of 1 instance per space"));
        assert_eq!(used(&kv, &limits[0], &tenancy).unwrap(), Some(1));
        release(&kv, &taken);
        assert_eq!(used(&kv, &limits[0], &tenancy).unwrap(), Some(0));
    }

    #[test]
    fn tenants_come_from_the_context_and_kubernetes_counts_namespaces() {
        let cf = Tenancy::of(Some("o"), Some("s"), &json!({"platform": "cloudfoundry"}));
        assert_eq!(
            (cf.organization.as_deref(), cf.namespace.as_deref()),
            (Some("o"), None)
        );
        let k8s = json!({"platform": "kubernetes", "namespace": "ns", "clusterid": "c"});
        let k8s = Tenancy::of(Some("c"), Some("ns"), &k8s);
        assert_eq!(
            (k8s.organization.as_deref(), k8s.namespace.as_deref()),
            (None, Some("ns"))
        );
        // A per-namespace limit does not apply to a Cloud Foundry request.
        let kv = MemoryKv::default();
        let limits = [plan_limit(0, Tenant::Namespace)];
        assert_eq!(
            take(&kv, &limits, &cf, ("s", "p")).unwrap(),
            Vec::<String>::new()
        );
        assert!(take(&kv, &limits, &k8s, ("s", "p")).is_err());
    }
}
