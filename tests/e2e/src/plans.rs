//! The synchronous and the asynchronous plan of the catalog, found by how they behave.

use std::sync::OnceLock;

use crate::{new_id, Broker, Catalog, Plan};

/// The plans the suites use, found by behaviour: `sync` provisions without
/// `accepts_incomplete` (201), `asynchronous` answers that with 422 `AsyncRequired`.
#[derive(Debug, Clone)]
pub struct Plans {
    /// A bindable plan that provisions synchronously.
    pub sync: Plan,
    /// A bindable plan that provisions only asynchronously.
    pub asynchronous: Plan,
    /// The whole catalog.
    pub catalog: Catalog,
}

impl Broker {
    /// Finds (once per test binary) a synchronous and an asynchronous bindable plan by
    /// provisioning throw-away instances without `accepts_incomplete`.
    pub fn plans(&self) -> Plans {
        static PLANS: OnceLock<Plans> = OnceLock::new();
        PLANS.get_or_init(|| discover_plans(self)).clone()
    }
}

fn discover_plans(broker: &Broker) -> Plans {
    let catalog = broker.catalog();
    let mut sync = None;
    let mut asynchronous = None;
    let mut seen = Vec::new();
    let mut candidates: Vec<Plan> = catalog.plans().into_iter().filter(Plan::bindable).collect();
    // Plans whose names say what they are are tried first.
    candidates.sort_by_key(|p| !(p.name.contains("sync") || p.name.contains("async")));
    for plan in candidates {
        if sync.is_some() && asynchronous.is_some() {
            break;
        }
        let iid = new_id();
        let body = plan.provision_body(plan.provision_parameters());
        let resp = broker.provision(&iid, &body, false);
        seen.push(format!(
            "{} ({}): {} {}",
            plan.name, plan.plan_id, resp.status, resp.body
        ));
        match resp.status {
            201 => {
                broker.deprovision(&iid, &plan, true);
                sync.get_or_insert(plan);
            }
            422 if resp.json["error"] == "AsyncRequired" => {
                asynchronous.get_or_insert(plan);
            }
            _ => {}
        }
    }
    match (sync, asynchronous) {
        (Some(sync), Some(asynchronous)) => Plans {
            sync,
            asynchronous,
            catalog,
        },
        _ => panic!(
            "the catalog needs a bindable synchronous plan (201 without accepts_incomplete) and a \
             bindable asynchronous plan (422 AsyncRequired); probing gave:\n  {}\ncatalog: {}",
            seen.join("\n  "),
            catalog.json
        ),
    }
}
