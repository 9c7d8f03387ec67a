//! What each task type does when it finishes without an injected failure or
//! a lock conflict: the simulated equivalent of the director's `Jobs::*`.
//! No VM is created and nothing is compiled: a deploy only records the
//! manifest and reconciles the instance list; a delete forgets the
//! deployment; `vms` reports the instance list; an errand reports the exit
//! codes the test configured.

use std::time::Instant;

use serde_json::{json, Value};

use crate::ids;
use crate::manifest::Manifest;
use crate::model::ErrandBehaviour;
use crate::state::{Instance, SimState, Work};

/// A failure raised inside a job: ends the task in `error`.
pub(crate) struct JobError {
    pub code: u32,
    pub message: String,
}

fn not_found(name: &str) -> JobError {
    JobError {
        code: 70000,
        message: format!("Deployment '{name}' doesn't exist"),
    }
}

/// Run the job of task `id`; returns `(result, result_output)`.
pub(crate) fn perform(
    st: &mut SimState,
    id: u64,
    at: Instant,
) -> Result<(String, String), JobError> {
    let Some(task) = st.task(id) else {
        return Err(JobError {
            code: 10000,
            message: format!("Task {id} not found"),
        });
    };
    let name = task.deployment.clone().unwrap_or_default();
    match task.work.clone() {
        Work::Deploy {
            text,
            manifest,
            dry_run,
        } => {
            if !dry_run {
                deploy(st, &name, text, manifest, at);
            }
            Ok((format!("/deployments/{name}"), String::new()))
        }
        Work::Delete => {
            st.deployments
                .remove(&name)
                .ok_or_else(|| not_found(&name))?;
            Ok((format!("/deployments/{name}"), String::new()))
        }
        Work::Vms {
            include_missing_vms,
        } => {
            let d = st.deployments.get(&name).ok_or_else(|| not_found(&name))?;
            let stemcell = d
                .manifest
                .as_ref()
                .and_then(|m| m.stemcells.first().cloned());
            let lines: String = d
                .instances
                .iter()
                .filter(|i| include_missing_vms || i.expects_vm)
                .map(|i| format!("{}\n", vm_state(st, i, stemcell.as_ref())))
                .collect();
            Ok((String::new(), lines))
        }
        Work::Errand {
            name: errand,
            selection,
        } => run_errand(st, &name, &errand, &selection),
    }
}

/// Store the manifest and reconcile instances with its instance groups:
/// existing `(group, index)` instances keep id and IP, new ones get fresh
/// ones, instances no longer in the manifest go away.
pub(crate) fn deploy(st: &mut SimState, name: &str, text: String, manifest: Manifest, at: Instant) {
    let old = std::mem::take(&mut st.deployment_entry(name).instances);
    let mut instances = Vec::new();
    for g in &manifest.groups {
        for index in 0..g.instances {
            let az = (!g.azs.is_empty()).then(|| g.azs[index as usize % g.azs.len()].clone());
            let existing = old.iter().find(|i| i.group == g.name && i.index == index);
            let inst = match existing {
                Some(i) => Instance {
                    group: i.group.clone(),
                    index,
                    id: i.id.clone(),
                    agent_id: i.agent_id.clone(),
                    vm_cid: i.vm_cid.clone(),
                    ip: i.ip.clone(),
                    az,
                    bootstrap: index == 0,
                    expects_vm: !g.errand,
                    job_state: i.job_state.clone(),
                    jobs: g.jobs.clone(),
                    created_at: i.created_at,
                },
                None => Instance {
                    group: g.name.clone(),
                    index,
                    id: ids::uuid(),
                    agent_id: ids::uuid(),
                    vm_cid: format!("vm-{}", ids::uuid()),
                    ip: st.allocate_ip(),
                    az,
                    bootstrap: index == 0,
                    expects_vm: !g.errand,
                    job_state: "running".to_string(),
                    jobs: g.jobs.clone(),
                    created_at: at,
                },
            };
            instances.push(inst);
        }
    }
    let d = st.deployment_entry(name);
    d.instances = instances;
    d.manifest_text = Some(text);
    d.manifest = Some(manifest);
}

/// One line of `vms`/`instances?format=full` output (`jobs/vm_state.rb`).
fn vm_state(st: &SimState, i: &Instance, stemcell: Option<&(String, String)>) -> Value {
    let has_vm = i.expects_vm;
    let job_state = has_vm.then(|| i.job_state.clone());
    let process_state = if i.job_state == "running" {
        "running"
    } else {
        "failing"
    };
    let processes: Vec<Value> = if has_vm {
        i.jobs
            .iter()
            .map(|j| {
                json!({"name": j, "state": process_state, "uptime": {"secs": 60},
                            "mem": {"kb": 1024, "percent": 0.1}, "cpu": {"total": 0.1}})
            })
            .collect()
    } else {
        Vec::new()
    };
    let (sc_name, sc_version) = stemcell.cloned().unwrap_or_default();
    json!({
        "vm_cid": has_vm.then(|| i.vm_cid.clone()),
        "active": has_vm,
        "vm_created_at": has_vm.then(|| st.clock.rfc3339(i.created_at)),
        "cloud_properties": {},
        "disk_cid": null,
        "disk_cids": [],
        "ips": if has_vm { vec![i.ip.clone()] } else { Vec::new() },
        "dns": [],
        "agent_id": has_vm.then(|| i.agent_id.clone()),
        "job_name": i.group,
        "index": i.index,
        "job_state": job_state,
        "process_state": job_state,
        "state": "started",
        "resource_pool": "default",
        "vm_type": "default",
        "vitals": has_vm.then(|| json!({
            "cpu": {"sys": "0.3", "user": "1.2", "wait": "0.0"},
            "disk": {"system": {"percent": "41", "inode_percent": "32"}},
            "load": ["0.02", "0.03", "0.01"],
            "mem": {"kb": "412345", "percent": "10"},
            "swap": {"kb": "0", "percent": "0"},
            "uptime": {"secs": 3600}
        })),
        "processes": processes,
        "resurrection_paused": false,
        "az": i.az,
        "id": i.id,
        "bootstrap": i.bootstrap,
        "ignore": false,
        "stemcell": {"name": sc_name, "version": sc_version, "api_version": 3},
    })
}

/// Errand `errand` runs on the instances of the `lifecycle: errand` group
/// of that name, or else on every instance whose group has a job of that
/// name (a colocated errand). The task ends `done` whatever the exit codes
/// (contract A.8 gotcha); exit codes above 128 count as canceled.
fn run_errand(
    st: &SimState,
    deployment: &str,
    errand: &str,
    selection: &[(String, Option<String>)],
) -> Result<(String, String), JobError> {
    let d = st
        .deployments
        .get(deployment)
        .ok_or_else(|| not_found(deployment))?;
    let doesnt_exist = || JobError {
        code: 70009,
        message: format!("Errand '{errand}' doesn't exist"),
    };
    let manifest = d.manifest.as_ref().ok_or_else(doesnt_exist)?;
    let errand_group = manifest.groups.iter().any(|g| g.errand && g.name == errand);
    let targets: Vec<&Instance> = d
        .instances
        .iter()
        .filter(|i| {
            if errand_group {
                i.group == errand
            } else {
                i.expects_vm && i.jobs.iter().any(|j| j == errand)
            }
        })
        .collect();
    if targets.is_empty() {
        return Err(doesnt_exist());
    }
    let selected: Vec<&Instance> = targets
        .into_iter()
        .filter(|i| {
            selection.is_empty()
                || selection.iter().any(|(g, id)| {
                    *g == i.group
                        && id
                            .as_deref()
                            .is_none_or(|id| id == i.id || id == i.index.to_string())
                })
        })
        .collect();
    if selected.is_empty() {
        return Err(JobError {
            code: 70001,
            message: format!("No instances of errand '{errand}' match the selection"),
        });
    }
    let behaviour = st
        .errands
        .get(errand)
        .cloned()
        .unwrap_or_else(ErrandBehaviour::default);
    let (mut ok, mut failed, mut canceled) = (0, 0, 0);
    let mut lines = String::new();
    for i in selected {
        match behaviour.exit_code {
            0 => ok += 1,
            c if c > 128 => canceled += 1,
            _ => failed += 1,
        }
        let line = json!({
            "instance": {"group": i.group, "id": i.id},
            "errand_name": errand,
            "exit_code": behaviour.exit_code,
            "stdout": behaviour.stdout,
            "stderr": behaviour.stderr,
            "logs": {"blobstore_id": ids::uuid(), "sha1": ids::hex(&ids::random_bytes::<20>())},
        });
        lines.push_str(&format!("{line}\n"));
    }
    Ok((
        format!("{ok} succeeded, {failed} errored, {canceled} canceled"),
        lines,
    ))
}
