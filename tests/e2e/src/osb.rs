//! One method per OSB endpoint, and the paths and store keys of instances and bindings.

use serde_json::Value;
use spin_osb_test_support::query;

use crate::{Broker, Catalog, Plan, Resp};

impl Broker {
    /// Authenticated `GET`.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path).send()
    }

    /// `GET /v2/catalog`, expecting 200.
    pub fn catalog(&self) -> Catalog {
        let resp = self.get("/v2/catalog").expect(200);
        Catalog { json: resp.json }
    }

    /// `PUT /v2/service_instances/:iid[?accepts_incomplete=true]`.
    pub fn provision(&self, iid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PUT", &with_ai(&instance_path(iid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `PATCH /v2/service_instances/:iid[?accepts_incomplete=true]`.
    pub fn update(&self, iid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PATCH", &with_ai(&instance_path(iid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `DELETE /v2/service_instances/:iid?service_id=..&plan_id=..[&accepts_incomplete=true]`.
    pub fn deprovision(&self, iid: &str, plan: &Plan, accepts_incomplete: bool) -> Resp {
        let path = format!(
            "{}?{}",
            instance_path(iid),
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        );
        self.request("DELETE", &with_ai(&path, accepts_incomplete))
            .send()
    }

    /// `GET /v2/service_instances/:iid`.
    pub fn fetch_instance(&self, iid: &str) -> Resp {
        self.get(&instance_path(iid))
    }

    /// `GET /v2/service_instances/:iid/last_operation[?operation=..]`.
    pub fn instance_last_operation(&self, iid: &str, operation: Option<&str>) -> Resp {
        let mut path = format!("{}/last_operation", instance_path(iid));
        if let Some(op) = operation {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.get(&path)
    }

    /// `PUT .../service_bindings/:bid[?accepts_incomplete=true]`.
    pub fn bind(&self, iid: &str, bid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PUT", &with_ai(&binding_path(iid, bid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `DELETE .../service_bindings/:bid?service_id=..&plan_id=..[&accepts_incomplete=true]`.
    pub fn unbind(&self, iid: &str, bid: &str, plan: &Plan, accepts_incomplete: bool) -> Resp {
        let path = format!(
            "{}?{}",
            binding_path(iid, bid),
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        );
        self.request("DELETE", &with_ai(&path, accepts_incomplete))
            .send()
    }

    /// `GET .../service_bindings/:bid`.
    pub fn fetch_binding(&self, iid: &str, bid: &str) -> Resp {
        self.get(&binding_path(iid, bid))
    }

    /// `GET .../service_bindings/:bid/last_operation[?operation=..]`.
    pub fn binding_last_operation(&self, iid: &str, bid: &str, operation: Option<&str>) -> Resp {
        let mut path = format!("{}/last_operation", binding_path(iid, bid));
        if let Some(op) = operation {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.get(&path)
    }
}

/// `osb/v1/instance/{iid}`
pub fn instance_key(iid: &str) -> String {
    format!("osb/v1/instance/{iid}")
}

/// `osb/v1/binding/{iid}/{bid}`
pub fn binding_key(iid: &str, bid: &str) -> String {
    format!("osb/v1/binding/{iid}/{bid}")
}

/// `/v2/service_instances/{iid}`
pub fn instance_path(iid: &str) -> String {
    format!("/v2/service_instances/{iid}")
}

/// `/v2/service_instances/{iid}/service_bindings/{bid}`
pub fn binding_path(iid: &str, bid: &str) -> String {
    format!("/v2/service_instances/{iid}/service_bindings/{bid}")
}

/// `path` with `accepts_incomplete=true` added to its query when `accepts_incomplete`.
pub fn with_ai(path: &str, accepts_incomplete: bool) -> String {
    if !accepts_incomplete {
        return path.to_string();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}accepts_incomplete=true")
}
