//! `backend: {type: bosh}`: each instance is a BOSH deployment named
//! `service-instance_<instance_id>`, deployed from the plan's manifest template through the
//! director's HTTP API.
//!
//! ```yaml
//! backend:
//!   type: bosh
//!   manifest: |                      # one YAML document (instance scope + deployment_name)
//!     name: "{{ deployment_name }}"
//!     releases: [{name: redis, version: 15.3.0}]
//!     stemcells: [{alias: default, os: ubuntu-jammy, version: "1.404"}]
//!     instance_groups:
//!       - name: redis
//!         instances: "{{ parameters.instances | default(1) }}"
//!         ...
//!   post_deploy_errands: [smoke-tests]   # run in order after every deploy
//!   pre_delete_errands: [backup]         # run in order before the deployment is deleted
//!   credentials:                     # binding scope + deployment_name + instances
//!     host: "{{ instances.redis[0] }}"
//!     password: "{{ secret('redis-password') }}"
//!   dashboard_url: "https://…/{{ instance_id }}"
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Bosh, CLIENT_SECRET_VARIABLE, CLIENT_VARIABLE, DIRECTOR_URL_VARIABLE, UAA_URL_VARIABLE,
};
use crate::backend::{BackendConfig, Services};
use crate::catalog::{check_template_leaves, PlanView, Problems};
use crate::template::{self, Scope};

/// The manifest also sees the deployment's name.
const MANIFEST_SCOPE: Scope = Scope::INSTANCE.with(&["deployment_name"]);
/// Binding credentials also see the deployment's name and its instances' addresses per
/// instance group.
const BINDING_SCOPE: Scope = Scope::BINDING.with(&["deployment_name", "instances"]);

/// Configuration of the BOSH backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoshConfig {
    /// The deployment manifest: a YAML template of one document.
    pub manifest: String,
    /// Errands run, in order, after each successful deploy (provision and update).
    #[serde(default)]
    pub post_deploy_errands: Vec<String>,
    /// Errands run, in order, before the deployment is deleted.
    #[serde(default)]
    pub pre_delete_errands: Vec<String>,
    /// The binding's `credentials`; string leaves are templates.
    #[serde(default)]
    pub credentials: Map<String, Value>,
    /// Template of the instance's `dashboard_url` (instance scope).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

impl BackendConfig for BoshConfig {
    const VARIABLES: &'static [&'static str] = &[
        DIRECTOR_URL_VARIABLE,
        UAA_URL_VARIABLE,
        CLIENT_VARIABLE,
        CLIENT_SECRET_VARIABLE,
    ];
    const OUTBOUND_HOSTS: &'static [&'static str] =
        &["{{ bosh_director_url }}", "{{ bosh_uaa_url }}"];
    type Backend<'a> = Bosh<'a>;

    fn backend<'a>(&'a self, services: Services<'a>) -> Bosh<'a> {
        Bosh {
            config: self,
            services,
        }
    }

    fn dashboard_url(&self) -> Option<&str> {
        self.dashboard_url.as_deref()
    }

    /// Deploys take minutes to hours; the director's own task timeouts apply too.
    fn default_deadline_seconds(&self) -> Option<u64> {
        Some(86_400)
    }

    fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
        if let Err(error) = template::check_manifest(&self.manifest, MANIFEST_SCOPE) {
            problems.push(
                format!("{path}.manifest"),
                format!("invalid template: {error}"),
            );
        }
        if let Some(source) = &self.dashboard_url {
            if let Err(error) = template::check_template(source, Scope::INSTANCE) {
                problems.push(
                    format!("{path}.dashboard_url"),
                    format!("invalid template: {error}"),
                );
            }
        }
        for (field, errands) in [
            ("post_deploy_errands", &self.post_deploy_errands),
            ("pre_delete_errands", &self.pre_delete_errands),
        ] {
            for (index, errand) in errands.iter().enumerate() {
                let valid = !errand.is_empty()
                    && errand
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !valid {
                    problems.push(
                        format!("{path}.{field}[{index}]"),
                        "an errand name is letters, digits, '-', '_' and '.'",
                    );
                }
            }
        }
        check_template_leaves(
            &Value::Object(self.credentials.clone()),
            &mut format!("{path}.credentials"),
            BINDING_SCOPE,
            problems,
        );
        if plan.bindable() && !plan.bindings_retrievable() {
            problems.push(
                path.to_string(),
                "BOSH bindings are asynchronous (the instances' addresses come from a director task), which OSB allows only when the service has `bindings_retrievable: true`",
            );
        }
        if !plan.bindable() && !self.credentials.is_empty() {
            problems.push(
                format!("{path}.credentials"),
                "are never used: the plan is not bindable",
            );
        }
    }
}
