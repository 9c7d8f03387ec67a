//! The operator API: what the operators of a fleet need beyond OSB, served under
//! `/operator/` by its own component with its own credentials (never the platform's).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /operator/instances?service_id=&plan_id=&status=&maintenance_version=&outdated=&stuck=&limit=&after=` | a page of instances, oldest first, and `next` (the `after` of the next page) |
//! | `GET /operator/instances/:instance_id` | one instance with its operation history and bindings |
//! | `POST /operator/instances/:instance_id/last_operation` | polls its operation as a platform would (ends a stuck one past its deadline) |
//! | `GET /operator/quotas?organization_guid=&space_guid=&namespace=` | every quota limit with its use (per-tenant ones for the tenant named) |
//! | `GET /operator/orphans` | backend resources of instances the broker no longer has ([`orphans`]) |
//! | `POST /operator/orphans/cleanup` | deletes the named orphans that still are orphans |
//! | `POST /operator/upgrades` | starts an upgrade-all by `maintenance_info` ([`upgrade`]), or answers the active one |
//! | `GET`/`DELETE /operator/upgrades/current` | the current run; abandon it |
//! | `POST /operator/upgrades/current/step` | one step of the active run |
//! | `GET /metrics` | the fleet's metrics in the Prometheus text format ([`crate::metrics`]) |
//!
//! Nothing secret is ever returned: no seeds, credentials, parameter values or contexts.

mod instances;
mod orphans;
mod upgrade;

use crate::broker::Broker;
use crate::error::OsbError;
use crate::http::{Body, OsbRequest, OsbResponse};
use crate::outbound::Config;
use crate::protocol::check_credentials;

/// The Spin variable with the operator's user name (default `operator`).
pub const USERNAME_VARIABLE: &str = "operator_username";
/// The Spin variable with the operator's password; unset, the operator API is refused.
pub const PASSWORD_VARIABLE: &str = "operator_password";
/// Serves one operator request (`/operator/...` and `/metrics`).
pub async fn serve(broker: &Broker<'_>, request: &OsbRequest) -> OsbResponse {
    match route(broker, request).await {
        Ok(response) => response,
        Err(error) => error.into(),
    }
}

async fn route(broker: &Broker<'_>, request: &OsbRequest) -> Result<OsbResponse, OsbError> {
    authenticate(broker.config, request)?;
    let kv = broker.kv;
    let path = request.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["metrics"] => {
            only_get(request)?;
            let text = crate::metrics::exposition::render(kv, broker.catalog)?;
            Ok(OsbResponse {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    crate::metrics::exposition::CONTENT_TYPE.into(),
                )],
                body: Body::Bytes(text.into_bytes()),
            })
        }
        ["operator", "instances"] => {
            only_get(request)?;
            instances::list_instances(broker, &instances::Filter::from_request(request)?)
        }
        ["operator", "instances", id] => {
            only_get(request)?;
            let id = crate::http::decode_id("instance_id", id)?;
            instances::show_instance(kv, &id)
        }
        ["operator", "instances", id, "last_operation"] => {
            only(request, "POST")?;
            let id = crate::http::decode_id("instance_id", id)?;
            let (state, description) = broker.poll_instance(&id, None).await?;
            Ok(OsbResponse::json(
                200,
                serde_json::json!({ "state": state.as_osb(), "description": description }),
            ))
        }
        ["operator", "quotas"] => {
            only_get(request)?;
            quota_usage(broker, request)
        }
        ["operator", "orphans"] => {
            only_get(request)?;
            orphans::report(broker).await
        }
        ["operator", "orphans", "cleanup"] => {
            only(request, "POST")?;
            orphans::clean(broker, request).await
        }
        ["operator", "upgrades"] => {
            only(request, "POST")?;
            upgrade::start(broker, request)
        }
        ["operator", "upgrades", "current"] => match request.method.as_str() {
            "GET" => upgrade::show(broker),
            "DELETE" => upgrade::abandon(broker),
            other => Err(OsbError::method_not_allowed(
                format!("{other} is not allowed here"),
                &["GET", "DELETE"],
            )),
        },
        ["operator", "upgrades", "current", "step"] => {
            only(request, "POST")?;
            upgrade::step(broker).await
        }
        _ => Err(OsbError::not_found(format!(
            "{path} is not an operator API path (see the README's Operating section)"
        ))),
    }
}

/// `GET /operator/quotas?organization_guid=&space_guid=&namespace=`: every limit the catalog
/// declares with how much of it is used (per-tenant limits for the tenant the query names).
fn quota_usage(broker: &Broker<'_>, request: &OsbRequest) -> Result<OsbResponse, OsbError> {
    let text = |name: &str| {
        request
            .query(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let tenancy = crate::quota::Tenancy {
        organization: text("organization_guid"),
        space: text("space_guid"),
        namespace: text("namespace"),
    };
    let mut limits = Vec::new();
    for limit in crate::quota::declared(broker.catalog)? {
        let mut entry = serde_json::to_value(&limit).unwrap_or_default();
        // A per-tenant limit's use is only known for a tenant the query names (else null).
        entry["used"] = serde_json::json!(crate::quota::used(broker.kv, &limit, &tenancy)?);
        limits.push(entry);
    }
    Ok(OsbResponse::json(
        200,
        serde_json::json!({ "limits": limits }),
    ))
}

/// The operator's own credentials: refused entirely while `operator_password` is unset,
/// and never the platform's.
fn authenticate(config: &dyn Config, request: &OsbRequest) -> Result<(), OsbError> {
    let Some(password) = config.get(PASSWORD_VARIABLE) else {
        return Err(OsbError::forbidden(format!(
            "the operator API is disabled: set the Spin variable {PASSWORD_VARIABLE}"
        )));
    };
    let username = config
        .get(USERNAME_VARIABLE)
        .unwrap_or_else(|| "operator".into());
    if config.get("broker_password").as_deref() == Some(password.as_str()) {
        return Err(OsbError::internal(format!(
            "{PASSWORD_VARIABLE} must not be the platform's broker_password: the operator API admits no one until it differs"
        )));
    }
    check_credentials(
        request.header("authorization"),
        &username,
        &password,
        PASSWORD_VARIABLE,
    )
}

fn only_get(request: &OsbRequest) -> Result<(), OsbError> {
    only(request, "GET")
}

fn only(request: &OsbRequest, method: &'static str) -> Result<(), OsbError> {
    if request.method == method {
        Ok(())
    } else {
        Err(OsbError::method_not_allowed(
            format!("{} is not allowed here", request.method),
            &[method],
        ))
    }
}
