//! The catalog the broker serves (`GET /v2/catalog`) and as written in `catalog/*.yaml`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::repo_root;

/// A `GET /v2/catalog` answer.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The response body.
    pub json: Value,
}

/// A plan and its service, as the catalog shows them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The service offering's id.
    pub service_id: String,
    /// The plan's id.
    pub plan_id: String,
    /// The plan's name.
    pub name: String,
    /// The service offering object.
    pub service: Value,
    /// The plan object.
    pub plan: Value,
}

impl Catalog {
    /// Every service offering.
    pub fn services(&self) -> Vec<Value> {
        self.json["services"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every plan of every service.
    pub fn plans(&self) -> Vec<Plan> {
        let mut plans = Vec::new();
        for service in self.services() {
            for plan in service["plans"].as_array().cloned().unwrap_or_default() {
                plans.push(Plan {
                    service_id: service["id"].as_str().unwrap_or_default().to_string(),
                    plan_id: plan["id"].as_str().unwrap_or_default().to_string(),
                    name: plan["name"].as_str().unwrap_or_default().to_string(),
                    service: service.clone(),
                    plan,
                });
            }
        }
        plans
    }

    /// The plan called `name` (of any service).
    pub fn plan_named(&self, name: &str) -> Option<Plan> {
        self.plans().into_iter().find(|p| p.name == name)
    }
}

impl Plan {
    /// Whether instances of this plan can be bound (the plan overrides the service).
    pub fn bindable(&self) -> bool {
        self.plan["bindable"]
            .as_bool()
            .or_else(|| self.service["bindable"].as_bool())
            .unwrap_or(false)
    }

    /// Whether plan changes are allowed from this plan (the plan overrides the service).
    pub fn plan_updateable(&self) -> bool {
        self.plan["plan_updateable"]
            .as_bool()
            .or_else(|| self.service["plan_updateable"].as_bool())
            .unwrap_or(false)
    }

    /// `binding_rotatable`.
    pub fn binding_rotatable(&self) -> bool {
        self.plan["binding_rotatable"].as_bool().unwrap_or(false)
    }

    /// `maintenance_info.version`, when the plan has one.
    pub fn maintenance_version(&self) -> Option<String> {
        self.plan["maintenance_info"]["version"]
            .as_str()
            .map(str::to_string)
    }

    /// The JSON schema of `kind` parameters (`["service_instance","create"]` ...).
    pub fn schema(&self, section: &str, action: &str) -> Option<Value> {
        let schema = &self.plan["schemas"][section][action]["parameters"];
        (!schema.is_null()).then(|| schema.clone())
    }

    /// `{"service_id", "plan_id", "context", "organization_guid", "space_guid",
    /// "parameters"}` for a provision.
    pub fn provision_body(&self, parameters: Value) -> Value {
        json!({
            "service_id": self.service_id,
            "plan_id": self.plan_id,
            "organization_guid": "e2e-org",
            "space_guid": "e2e-space",
            "context": {"platform": "cloudfoundry", "organization_guid": "e2e-org", "space_guid": "e2e-space"},
            "parameters": parameters,
        })
    }

    /// A bind body for this plan.
    pub fn bind_body(&self, parameters: Value) -> Value {
        json!({
            "service_id": self.service_id,
            "plan_id": self.plan_id,
            "bind_resource": {"app_guid": "e2e-app"},
            "context": {"platform": "cloudfoundry"},
            "parameters": parameters,
        })
    }
}

/// `catalog/*.yaml` (and `*.yml`) as JSON: `{"services": [...]}` with every file's
/// services in file-name order, the way the broker loads them.
pub fn yaml_catalog() -> Value {
    static YAML: OnceLock<Value> = OnceLock::new();
    YAML.get_or_init(|| {
        let dir = repo_root().join("catalog");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut services = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let doc: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            services.extend(doc["services"].as_array().cloned().unwrap_or_default());
        }
        json!({ "services": services })
    })
    .clone()
}

impl Plan {
    /// This plan as written in `catalog/*.yaml` (`Null` if it is not there).
    pub fn yaml(&self) -> Value {
        yaml_catalog()["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["plans"].as_array().cloned().unwrap_or_default())
            .find(|p| p["id"] == json!(self.plan_id))
            .unwrap_or(Value::Null)
    }

    /// Whether the plan's backend renders a `dashboard_url`.
    pub fn has_dashboard_url(&self) -> bool {
        self.yaml()["backend"]["dashboard_url"].is_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_catalog_is_read_with_its_anchors_resolved() {
        let yaml = yaml_catalog();
        let services = yaml["services"].as_array().expect("services");
        assert!(!services.is_empty());
        for plan in services.iter().flat_map(|s| s["plans"].as_array().unwrap()) {
            assert!(plan["id"].is_string(), "{plan}");
            if let Some(schemas) = plan.get("schemas") {
                assert!(
                    schemas.is_object(),
                    "aliases must resolve to objects: {schemas}"
                );
            }
        }
    }
}
