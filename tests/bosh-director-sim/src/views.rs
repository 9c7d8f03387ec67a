//! JSON renderings of stored records, field for field as the director's
//! `task_to_hash`, deployments list and instance list produce them
//! (contract A.5, A.6).

use serde_json::{json, Value};

use crate::state::{Deployment, Instance, SimState, Task};

/// `TaskManager#task_to_hash`.
pub(crate) fn task(st: &SimState, t: &Task, timestamp_while_running: bool) -> Value {
    let timestamp = match t.finished_at {
        Some(f) => Some(st.clock.epoch_secs(f)),
        None if timestamp_while_running => {
            Some(st.clock.epoch_secs(t.started_at.unwrap_or(t.created_at)))
        }
        None => None,
    };
    json!({
        "id": t.id,
        "state": t.state.as_str(),
        "description": t.description,
        "timestamp": timestamp,
        "started_at": t.started_at.map(|s| st.clock.epoch_secs(s)),
        "result": t.result,
        "user": t.user,
        "deployment": t.deployment,
        "context_id": t.context_id,
    })
}

/// One entry of `GET /deployments`; `exclude_*=true` drops keys.
pub(crate) fn deployment_summary(
    st: &SimState,
    d: &Deployment,
    exclude: impl Fn(&str) -> bool,
) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), json!(d.name));
    entry.insert("teams".into(), json!([]));
    if !exclude("exclude_configs") {
        entry.insert("cloud_config".into(), json!("none"));
    }
    let (releases, stemcells) = match &d.manifest {
        Some(m) => (
            m.releases
                .iter()
                .map(|(n, v)| json!({"name": n, "version": v}))
                .collect(),
            m.stemcells
                .iter()
                .map(|(n, v)| json!({"name": n, "version": v}))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    if !exclude("exclude_releases") {
        entry.insert("releases".into(), Value::Array(releases));
    }
    if !exclude("exclude_stemcells") {
        entry.insert("stemcells".into(), Value::Array(stemcells));
    }
    if !exclude("exclude_lock") {
        entry.insert("locked".into(), json!(st.locks.contains_key(&d.name)));
    }
    Value::Object(entry)
}

/// `create_instance_response` (+ `active` for `/vms`, `expects_vm` for
/// `/instances`).
pub(crate) fn instance(st: &SimState, i: &Instance, for_vms: bool) -> Value {
    let has_vm = i.expects_vm;
    let mut v = json!({
        "agent_id": has_vm.then(|| i.agent_id.clone()),
        "cid": has_vm.then(|| i.vm_cid.clone()),
        "job": i.group,
        "index": i.index,
        "id": i.id,
        "az": i.az,
        "ips": if has_vm { vec![i.ip.clone()] } else { Vec::new() },
        "vm_created_at": has_vm.then(|| st.clock.rfc3339(i.created_at)),
    });
    if for_vms {
        v["active"] = json!(true);
        v["permanent_nats_credentials"] = json!(false);
    } else {
        v["expects_vm"] = json!(i.expects_vm);
    }
    v
}
