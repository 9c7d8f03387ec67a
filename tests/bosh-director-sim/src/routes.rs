//! Routing and the director endpoints the broker uses (contract A.1–A.10).
//!
//! The order of checks is the director's: the before filter first
//! (authentication → 401, then the `X-Bosh-Context-Id` length → 400), then
//! route matching, where an unknown route *or a failed route condition*
//! (the `consumes :yaml` check) gives 404 `Endpoint '<path>' not found.`,
//! then deployment lookup (404 code 70000), then the route itself.

use std::time::Duration;

use http::{Method, StatusCode, Version};
use serde_json::{json, Value};

use crate::auth::{self, Identity};
use crate::config::{AuthConfig, RedirectStatus, SimConfig};
use crate::http::{Req, Resp, JSON, SINATRA_HTML};
use crate::manifest;
use crate::model::{AuthKind, TaskKind};
use crate::state::{SimState, Work};
use crate::tasks::NewTask;
use crate::views;

/// The answer plus what the request log records about authentication.
pub(crate) struct Handled {
    pub resp: Resp,
    pub auth: AuthKind,
    pub authenticated: bool,
}

/// Per-request context shared by the endpoint functions.
struct Ctx<'a> {
    cfg: &'a SimConfig,
    req: &'a Req,
    user: String,
    context_id: String,
}

pub(crate) fn handle(cfg: &SimConfig, st: &mut SimState, req: &Req) -> Handled {
    st.advance();
    let segs = req.segs();
    if matches!(cfg.auth, AuthConfig::Uaa { .. }) && segs.first() == Some(&"uaa") {
        let resp = auth::token_endpoint(&cfg.auth, st, req);
        return Handled {
            authenticated: resp.status == StatusCode::OK,
            auth: auth::kind(&req.headers),
            resp,
        };
    }
    let Identity { kind, user } = auth::identify(&cfg.auth, st, &req.headers);
    let authenticated = user.is_some();
    let done = |resp| Handled {
        resp,
        auth: kind.clone(),
        authenticated,
    };
    // `/info` is the only controller that does not require authentication.
    let is_info = segs.first() == Some(&"info");
    if !is_info && user.is_none() {
        return done(Resp::not_authorized(&req.path));
    }
    let context_id = req.header("x-bosh-context-id").unwrap_or("").to_string();
    if context_id.chars().count() > 64 {
        return done(Resp::director_error(
            StatusCode::BAD_REQUEST,
            70010,
            "X-Bosh-Context-Id cannot be more than 64 characters in length",
        ));
    }
    let ctx = Ctx {
        cfg,
        req,
        user: user.clone().unwrap_or_default(),
        context_id,
    };
    let m = &req.method;
    let resp = match segs.as_slice() {
        ["info"] if m == Method::GET => info(&ctx, user),
        ["deployments"] if m == Method::GET => list_deployments(&ctx, st),
        ["deployments"] if m == Method::POST && consumes_yaml(req) => post_deployment(&ctx, st),
        ["deployments", name] if m == Method::GET => with_deployment(st, name, |st| {
            let d = &st.deployments[*name];
            Resp::json(
                StatusCode::OK,
                SINATRA_HTML,
                &json!({"manifest": d.manifest_text}),
            )
        }),
        ["deployments", name] if m == Method::DELETE => with_deployment(st, name, |st| {
            let id = st.create_task(NewTask {
                kind: TaskKind::DeleteDeployment,
                description: format!("delete deployment {name}"),
                deployment: Some(name.to_string()),
                context_id: ctx.context_id.clone(),
                user: ctx.user.clone(),
                work: Work::Delete,
            });
            redirect(st, req, id)
        }),
        ["deployments", name, which @ ("vms" | "instances")] if m == Method::GET => {
            with_deployment(st, name, |st| instances(&ctx, st, name, *which == "vms"))
        }
        ["deployments", name, "variables"] if m == Method::GET => {
            with_deployment(st, name, |_| Resp::new(StatusCode::OK, SINATRA_HTML, "[]"))
        }
        ["deployments", name, "errands"] if m == Method::GET => {
            with_deployment(st, name, |st| list_errands(st, name))
        }
        ["deployments", name, "errands", errand, "runs"] if m == Method::POST => {
            with_deployment(st, name, |st| run_errand(&ctx, st, name, errand))
        }
        ["deployments", name, "jobs", _job] if m == Method::PUT && consumes_yaml(req) => {
            with_deployment(st, name, |st| change_job_state(&ctx, st, name))
        }
        ["tasks"] if m == Method::GET => list_tasks(&ctx, st),
        ["tasks", id] if m == Method::GET => with_task(st, id, |st, id| {
            let t = st.task(id).expect("task looked up");
            Resp::json(
                StatusCode::OK,
                JSON,
                &views::task(st, t, cfg.timestamp_while_running),
            )
        }),
        ["tasks", id, "output"] if m == Method::GET => {
            with_task(st, id, |st, id| task_output(req, st, id))
        }
        ["task", id] if m == Method::DELETE => {
            with_task(st, id, |st, id| match st.cancel_task(id) {
                Ok(()) => Resp::empty(StatusCode::NO_CONTENT),
                Err(state) => Resp::new(
                    StatusCode::BAD_REQUEST,
                    SINATRA_HTML,
                    format!("Cannot cancel task {id}: invalid state ({state})"),
                ),
            })
        }
        ["locks"] if m == Method::GET => locks(st),
        _ => Resp::endpoint_not_found(&req.path),
    };
    done(resp)
}

/// `consumes :yaml`: the media type must be exactly `text/yaml`.
fn consumes_yaml(req: &Req) -> bool {
    req.media_type().as_deref() == Some("text/yaml")
}

fn with_deployment(st: &mut SimState, name: &str, f: impl FnOnce(&mut SimState) -> Resp) -> Resp {
    if st.deployments.contains_key(name) {
        f(st)
    } else {
        Resp::deployment_not_found(name)
    }
}

fn with_task(st: &mut SimState, id: &str, f: impl FnOnce(&mut SimState, u64) -> Resp) -> Resp {
    match id.parse::<u64>().ok().filter(|&n| st.task(n).is_some()) {
        Some(n) => f(st, n),
        None => Resp::director_error(
            StatusCode::NOT_FOUND,
            10000,
            &format!("Task {id} not found"),
        ),
    }
}

/// `redirect "/tasks/#{task.id}"`, as Sinatra renders it.
fn redirect(st: &SimState, req: &Req, task_id: u64) -> Resp {
    let see_other = match st.redirect_status {
        RedirectStatus::Sinatra => req.method != Method::GET && req.version == Version::HTTP_11,
        RedirectStatus::Always302 => false,
        RedirectStatus::Always303 => true,
    };
    let status = if see_other {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    let location = if st.absolute_location {
        let host = req.header("host").unwrap_or(&req.local_authority);
        format!("{}://{host}/tasks/{task_id}", req.scheme)
    } else {
        format!("/tasks/{task_id}")
    };
    Resp::new(status, SINATRA_HTML, "").with_header("location", location)
}

fn info(ctx: &Ctx, user: Option<String>) -> Resp {
    let auth = match &ctx.cfg.auth {
        AuthConfig::Basic { .. } => json!({"type": "basic", "options": {}}),
        AuthConfig::Uaa { .. } => {
            let url = format!("{}://{}/uaa", ctx.req.scheme, ctx.req.local_authority);
            json!({"type": "uaa", "options": {"url": url, "urls": [url]}})
        }
    };
    Resp::json(
        StatusCode::OK,
        JSON,
        &json!({
            "name": "bosh-director-simulator",
            "uuid": ctx.cfg.director_uuid,
            "version": ctx.cfg.director_version,
            "user": user,
            "cpi": "simulator",
            "stemcell_os": "ubuntu-jammy",
            "stemcell_version": "1.0",
            "user_authentication": auth,
            "features": {
                "local_dns": {"status": true, "extras": {"domain_name": "bosh"}},
                "power_dns": {"status": false, "extras": {"domain_name": "bosh"}},
                "compiled_package_cache": {"status": false, "extras": {"provider": null}},
                "snapshots": {"status": false},
                "config_server": {"status": false, "extras": {"urls": []}},
            },
        }),
    )
}

fn list_deployments(ctx: &Ctx, st: &SimState) -> Resp {
    let exclude = |k: &str| ctx.req.query(k) == Some("true");
    let list: Vec<Value> = st
        .deployments
        .values()
        .map(|d| views::deployment_summary(st, d, exclude))
        .collect();
    Resp::json(StatusCode::OK, SINATRA_HTML, &Value::Array(list))
}

fn post_deployment(ctx: &Ctx, st: &mut SimState) -> Resp {
    let text = String::from_utf8_lossy(&ctx.req.body).into_owned();
    let manifest = match manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => return Resp::director_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let name = manifest.name.clone();
    st.deployment_entry(&name).post_count += 1;
    let dry_run = ctx.req.query("dry_run") == Some("true");
    let id = st.create_task(NewTask {
        kind: TaskKind::UpdateDeployment,
        description: if dry_run {
            "create deployment (dry run)".to_string()
        } else {
            "create deployment".to_string()
        },
        deployment: Some(name),
        context_id: ctx.context_id.clone(),
        user: ctx.user.clone(),
        work: Work::Deploy {
            text,
            manifest,
            dry_run,
        },
    });
    redirect(st, ctx.req, id)
}

/// `PUT /deployments/:name/jobs/:job?state=...`: with an empty body the
/// stored manifest is deployed again (ODB's recreate); with a body, that
/// manifest. Job and state are recorded only through the request log.
fn change_job_state(ctx: &Ctx, st: &mut SimState, name: &str) -> Resp {
    let text = if ctx.req.body.is_empty() {
        st.deployments[name]
            .manifest_text
            .clone()
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(&ctx.req.body).into_owned()
    };
    let manifest = match manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => return Resp::director_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let id = st.create_task(NewTask {
        kind: TaskKind::UpdateDeployment,
        description: "create deployment".to_string(),
        deployment: Some(name.to_string()),
        context_id: ctx.context_id.clone(),
        user: ctx.user.clone(),
        work: Work::Deploy {
            text,
            manifest,
            dry_run: false,
        },
    });
    redirect(st, ctx.req, id)
}

fn instances(ctx: &Ctx, st: &mut SimState, name: &str, for_vms: bool) -> Resp {
    if ctx.req.query("format") == Some("full") {
        let id = st.create_task(NewTask {
            kind: TaskKind::Vms,
            description: "retrieve vm-stats".to_string(),
            deployment: Some(name.to_string()),
            context_id: ctx.context_id.clone(),
            user: ctx.user.clone(),
            work: Work::Vms {
                include_missing_vms: !for_vms,
            },
        });
        return redirect(st, ctx.req, id);
    }
    let list: Vec<Value> = st.deployments[name]
        .instances
        .iter()
        .filter(|i| !for_vms || i.expects_vm)
        .map(|i| views::instance(st, i, for_vms))
        .collect();
    Resp::json(StatusCode::OK, SINATRA_HTML, &Value::Array(list))
}

/// Errand instance groups, plus colocated jobs the test declared as errands
/// with `Simulator::set_errand` (the simulator cannot see release jobs'
/// `bin/run`).
fn list_errands(st: &SimState, name: &str) -> Resp {
    let mut names: Vec<String> = Vec::new();
    if let Some(m) = &st.deployments[name].manifest {
        for g in m.groups.iter().filter(|g| g.errand) {
            names.push(g.name.clone());
        }
        for g in &m.groups {
            for j in g.jobs.iter().filter(|j| st.errands.contains_key(*j)) {
                if !names.contains(j) {
                    names.push(j.clone());
                }
            }
        }
    }
    let list: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    Resp::json(StatusCode::OK, SINATRA_HTML, &Value::Array(list))
}

fn run_errand(ctx: &Ctx, st: &mut SimState, name: &str, errand: &str) -> Resp {
    // `json_decode(request.body.read)`: an empty or non-JSON body raises,
    // and so does a body that is not an object; both are a bare 500.
    let body: Value = match serde_json::from_slice(&ctx.req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Resp::empty(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let selection = body
        .get("instances")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|i| {
                    let group = i.get("group")?.as_str()?.to_string();
                    let id = match i.get("id") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    };
                    Some((group, id))
                })
                .collect()
        })
        .unwrap_or_default();
    let id = st.create_task(NewTask {
        kind: TaskKind::RunErrand,
        description: format!("run errand {errand} from deployment {name}"),
        deployment: Some(name.to_string()),
        context_id: ctx.context_id.clone(),
        user: ctx.user.clone(),
        work: Work::Errand {
            name: errand.to_string(),
            selection,
        },
    });
    redirect(st, ctx.req, id)
}

/// `GET /tasks`: filters as in `tasks_controller.rb`, newest first.
fn list_tasks(ctx: &Ctx, st: &SimState) -> Resp {
    const VERBOSE_1_TYPES: &[&str] = &[
        "attach_disk",
        "create_snapshot",
        "delete_deployment",
        "delete_release",
        "delete_snapshot",
        "delete_stemcell",
        "run_errand",
        "snapshot_deployment",
        "update_instance",
        "update_deployment",
        "update_release",
        "update_stemcell",
        "export_release",
    ];
    let q = |k| ctx.req.query(k);
    let states: Vec<&str> = q("state")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    let verbose_1 = q("verbose").unwrap_or("1") == "1";
    let limit = q("limit").map(|l| l.trim().parse::<usize>().unwrap_or(0).max(1));
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|t| states.is_empty() || states.contains(&t.state.as_str()))
        .filter(|t| !verbose_1 || VERBOSE_1_TYPES.contains(&t.kind.as_str()))
        .filter(|t| q("context_id").is_none_or(|c| t.context_id == c))
        .filter(|t| q("deployment").is_none_or(|d| t.deployment.as_deref() == Some(d)))
        .take(limit.unwrap_or(usize::MAX))
        .map(|t| views::task(st, t, ctx.cfg.timestamp_while_running))
        .collect();
    Resp::json(StatusCode::OK, JSON, &Value::Array(list))
}

/// `GET /tasks/:id/output?type=`: `result`/`event` NDJSON with `Range`
/// support, a minimal `debug` log, `204` when there is nothing.
fn task_output(req: &Req, st: &SimState, id: u64) -> Resp {
    let t = st.task(id).expect("task looked up");
    let text = match req.query("type").unwrap_or("debug") {
        "none" => return Resp::empty(StatusCode::NO_CONTENT),
        "result" => t.result_output.clone(),
        "event" => t.event_output.clone(),
        "cpi" => String::new(),
        "debug" => format!(
            "I, [{}] INFO -- DirectorJobRunner: Enqueuing task: {id}\n\
             I, [{}] INFO -- DirectorJobRunner: bosh-director-simulator keeps no debug log\n",
            st.clock.rfc3339(t.created_at),
            st.clock.rfc3339(t.created_at)
        ),
        other => {
            return Resp::director_error(
                StatusCode::UNAUTHORIZED,
                600000,
                &format!("Unknown type {other}"),
            )
        }
    };
    if text.is_empty() {
        return Resp::empty(StatusCode::NO_CONTENT);
    }
    let size = text.len();
    match req.header("range").map(|r| byte_range(r, size)) {
        None | Some(RangeAnswer::Whole) => Resp::new(StatusCode::OK, "text/plain", text),
        Some(RangeAnswer::Unsatisfiable) => Resp::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "text/plain",
            "Byte range unsatisfiable",
        )
        .with_header("content-range", format!("bytes */{size}")),
        Some(RangeAnswer::Part(a, b)) => Resp::new(
            StatusCode::PARTIAL_CONTENT,
            "text/plain",
            text.as_bytes()[a..=b].to_vec(),
        )
        .with_header("content-range", format!("bytes {a}-{b}/{size}")),
    }
}

enum RangeAnswer {
    Whole,
    Unsatisfiable,
    Part(usize, usize),
}

/// `Rack::Utils.byte_ranges` for one range; several or unparsable → whole.
fn byte_range(header: &str, size: usize) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        match b.parse::<usize>() {
            Ok(0) => return RangeAnswer::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size - 1),
            Err(_) => return RangeAnswer::Whole,
        }
    } else {
        let Ok(start) = a.parse::<usize>() else {
            return RangeAnswer::Whole;
        };
        let end = if b.is_empty() {
            size - 1
        } else {
            match b.parse::<usize>() {
                Ok(e) if e >= start => e.min(size - 1),
                _ => return RangeAnswer::Whole,
            }
        };
        (start, end)
    };
    if range.0 >= size {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Part(range.0, range.1)
    }
}

/// `GET /locks`.
fn locks(st: &SimState) -> Resp {
    let mut held: Vec<(&String, &crate::state::LockHolder)> = st.locks.iter().collect();
    held.sort_by_key(|(name, _)| name.as_str());
    let list: Vec<Value> = held
        .into_iter()
        .map(|(name, h)| {
            let expires = st.clock.epoch(h.since + Duration::from_secs(10));
            json!({
                "type": "deployment",
                "resource": [name],
                "timeout": format!("{}.{:06}", expires.as_secs(), expires.subsec_micros()),
                "task_id": h.task_id.to_string(),
            })
        })
        .collect();
    Resp::json(StatusCode::OK, SINATRA_HTML, &Value::Array(list))
}
