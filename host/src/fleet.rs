//! `spin-osb fleet …`: the operator's commands against a running broker's operator API.
//!
//! The CLI keeps no state of its own: a fleet upgrade lives in the broker's store
//! (`spin_osb_core::operator`), and this command only drives it step by step and prints what
//! happens. Killing it loses nothing; running it again resumes the same run.

use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Where the broker is and who the operator is.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The broker's base URL (e.g. https://broker.example.com).
    #[arg(long, env = "SPIN_OSB_BROKER_URL")]
    pub broker: String,
    /// The operator's user name (the broker's `operator_username`).
    #[arg(long, env = "SPIN_OSB_OPERATOR_USERNAME", default_value = "operator")]
    pub username: String,
    /// The operator's password (the broker's `operator_password`); best from the
    /// environment, so it stays out of shell history and process lists.
    #[arg(long, env = "SPIN_OSB_OPERATOR_PASSWORD", hide_env_values = true)]
    pub password: String,
}

/// `spin-osb fleet upgrade` options: how a new run proceeds (a resumed run keeps its own).
#[derive(clap::Args, Debug, Clone)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub target: Target,
    /// Instances upgraded first; a canary that fails stops the run (0: no canaries).
    #[arg(long, default_value_t = 1)]
    pub canaries: u32,
    /// Only instances of this plan id are canaries.
    #[arg(long)]
    pub canary_plan: Option<String>,
    /// Only instances of this service id are canaries.
    #[arg(long)]
    pub canary_service: Option<String>,
    /// Upgrades running at once.
    #[arg(long, default_value_t = 1)]
    pub max_in_flight: u32,
    /// Attempts per instance before it counts as failed.
    #[arg(long, default_value_t = 2)]
    pub attempts: u32,
    /// Longest wait between steps, in seconds (the broker suggests shorter ones).
    #[arg(long, default_value_t = 5)]
    pub max_interval_secs: u64,
}

/// The operator API over HTTP.
struct Api {
    client: reqwest::blocking::Client,
    target: Target,
}

/// One answer: status, JSON body, `Retry-After`.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Api {
    fn new(target: &Target) -> Result<Api> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            client,
            target: target.clone(),
        })
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.target.broker.trim_end_matches('/'));
        let mut request = self
            .client
            .request(method, &url)
            .basic_auth(&self.target.username, Some(&self.target.password));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().with_context(|| format!("calling {url}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "description": text }));
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Fails with the broker's own description for anything but `expected`.
    fn expect(&self, answer: Answer, expected: &[u16], what: &str) -> Result<Answer> {
        if expected.contains(&answer.status) {
            return Ok(answer);
        }
        let description = answer.body["description"]
            .as_str()
            .unwrap_or("no description");
        bail!(
            "{what}: the broker answered {}: {description}",
            answer.status
        )
    }
}

/// `spin-osb fleet outdated`: every instance running an older `maintenance_info` than its
/// plan's, page by page.
pub fn outdated(target: &Target) -> Result<()> {
    let api = Api::new(target)?;
    let mut after = String::new();
    let mut count = 0;
    loop {
        let path = format!("/operator/instances?outdated=true&limit=500&after={after}");
        let answer = api.send(reqwest::Method::GET, &path, None)?;
        let page = api
            .expect(answer, &[200], "listing outdated instances")?
            .body;
        for instance in page["instances"].as_array().into_iter().flatten() {
            count += 1;
            println!(
                "{}\tplan {}\tversion {}\t{}",
                instance["instance_id"].as_str().unwrap_or("?"),
                instance["plan_id"].as_str().unwrap_or("?"),
                instance["maintenance_version"].as_str().unwrap_or("(none)"),
                instance["status"].as_str().unwrap_or("?"),
            );
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    eprintln!("{count} outdated instance(s)");
    Ok(())
}

/// `spin-osb fleet orphans` options.
#[derive(clap::Args, Debug, Clone)]
pub struct OrphansArgs {
    #[command(flatten)]
    pub target: Target,
    /// Delete the orphans found (each is checked again by the broker first) and poll the
    /// stuck instances (which ends them, failed, past their deadline).
    #[arg(long)]
    pub delete: bool,
}

/// `spin-osb fleet orphans`: backend resources of instances the broker no longer has, and
/// instances stuck in progress past their deadline; with `--delete`, cleans them up.
pub fn orphans(args: &OrphansArgs) -> Result<()> {
    let api = Api::new(&args.target)?;
    let answer = api.send(reqwest::Method::GET, "/operator/orphans", None)?;
    let report = api.expect(answer, &[200], "looking for orphans")?.body;
    let mut cleanup = json!({});
    let mut found = 0;
    for backend in ["kubernetes", "bosh"] {
        let Some(section) = report.get(backend) else {
            continue;
        };
        if let Some(error) = section["error"].as_str() {
            println!("{backend}: could not look ({error})");
            continue;
        }
        // Kubernetes: the clusters that could not be asked (the others were).
        for failed in section["errors"].as_array().into_iter().flatten() {
            println!(
                "{backend}: could not look in cluster {} ({})",
                failed["cluster"].as_str().unwrap_or("?"),
                failed["error"].as_str().unwrap_or("?")
            );
        }
        let orphans = section["orphans"].as_array().cloned().unwrap_or_default();
        println!("{backend}: {} orphan(s)", orphans.len());
        for orphan in &orphans {
            found += 1;
            let what = match backend {
                "bosh" => format!(
                    "deployment {}",
                    orphan["deployment"].as_str().unwrap_or("?")
                ),
                _ => format!(
                    "{} {}{} (cluster {})",
                    orphan["kind"].as_str().unwrap_or("?"),
                    orphan["namespace"]
                        .as_str()
                        .map(|ns| format!("{ns}/"))
                        .unwrap_or_default(),
                    orphan["name"].as_str().unwrap_or("?"),
                    orphan["cluster"].as_str().unwrap_or("?"),
                ),
            };
            println!(
                "  {what}\tinstance {}",
                orphan["instance_id"].as_str().unwrap_or("?")
            );
        }
        cleanup[backend] = match backend {
            "bosh" => json!(orphans
                .iter()
                .map(|o| o["deployment"].clone())
                .collect::<Vec<_>>()),
            _ => json!(orphans),
        };
    }
    let mut stuck = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/operator/instances?stuck=true&limit=500&after={after}");
        let answer = api.send(reqwest::Method::GET, &path, None)?;
        let page = api.expect(answer, &[200], "listing stuck instances")?.body;
        for instance in page["instances"].as_array().into_iter().flatten() {
            stuck.push(instance["instance_id"].as_str().unwrap_or("?").to_string());
            println!(
                "stuck: {}\t{} since {}",
                instance["instance_id"].as_str().unwrap_or("?"),
                instance["operation"]["kind"].as_str().unwrap_or("?"),
                instance["operation"]["started_at"],
            );
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    println!("{found} orphan(s), {} stuck instance(s)", stuck.len());
    if !args.delete {
        if found + stuck.len() > 0 {
            println!("nothing was changed; run again with --delete to clean up");
        }
        return Ok(());
    }
    if found > 0 {
        let answer = api.send(
            reqwest::Method::POST,
            "/operator/orphans/cleanup",
            Some(&cleanup),
        )?;
        let results = api.expect(answer, &[200], "cleaning up orphans")?.body;
        for result in results["results"].as_array().into_iter().flatten() {
            let reason = result["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!(
                "  {}: {}{reason}",
                result["resource"].as_str().unwrap_or("?"),
                result["state"].as_str().unwrap_or("?")
            );
        }
    }
    for id in &stuck {
        let path = format!("/operator/instances/{id}/last_operation");
        let answer = api.send(reqwest::Method::POST, &path, None)?;
        let polled = api.expect(answer, &[200], &format!("polling {id}"))?.body;
        println!(
            "  {id}: {}{}",
            polled["state"].as_str().unwrap_or("?"),
            polled["description"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `spin-osb fleet abandon`: stops the active upgrade run.
pub fn abandon(target: &Target) -> Result<()> {
    let api = Api::new(target)?;
    let answer = api.send(reqwest::Method::DELETE, "/operator/upgrades/current", None)?;
    let run = api
        .expect(answer, &[200], "abandoning the fleet upgrade")?
        .body;
    println!(
        "{} {}",
        run["id"].as_str().unwrap_or("?"),
        run["phase"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `spin-osb fleet upgrade`: starts (or resumes) a run and steps it to its end, printing
/// every instance's progress. `Ok(false)` when the run stopped or anything failed.
pub fn upgrade(args: &UpgradeArgs) -> Result<bool> {
    let api = Api::new(&args.target)?;
    let mut filter = json!({});
    if let Some(plan) = &args.canary_plan {
        filter["plan_id"] = json!(plan);
    }
    if let Some(service) = &args.canary_service {
        filter["service_id"] = json!(service);
    }
    let settings = json!({
        "canaries": args.canaries,
        "canary_filter": filter,
        "max_in_flight": args.max_in_flight,
        "attempts": args.attempts,
    });
    let answer = api.send(reqwest::Method::POST, "/operator/upgrades", Some(&settings))?;
    let created = answer.status == 201;
    let run = api
        .expect(answer, &[200, 201], "starting the fleet upgrade")?
        .body;
    let id = run["id"].as_str().unwrap_or("?").to_string();
    if created {
        println!("fleet upgrade {id} started: {}", run["settings"]);
    } else {
        println!(
            "fleet upgrade {id} resumed (its own settings: {}; {} upgraded so far)",
            run["settings"], run["succeeded"]
        );
    }
    let mut errors_in_a_row = 0;
    let mut last_status = String::new();
    let run = loop {
        let answer = match api.send(
            reqwest::Method::POST,
            "/operator/upgrades/current/step",
            None,
        ) {
            Ok(answer) => answer,
            Err(error) => {
                errors_in_a_row += 1;
                if errors_in_a_row >= 10 {
                    return Err(error.context(format!(
                        "the broker stayed unreachable; run again to resume {id}"
                    )));
                }
                eprintln!("  ! {error:#}; retrying");
                thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        match answer.status {
            200 => errors_in_a_row = 0,
            // Another step of the run holds it (another CLI, or a step that died).
            409 => {
                println!("  … another step holds the run; waiting");
                thread::sleep(Duration::from_secs(5));
                continue;
            }
            503 | 500 | 502 | 504 if errors_in_a_row < 10 => {
                errors_in_a_row += 1;
                eprintln!(
                    "  ! the broker answered {}: {}; retrying",
                    answer.status, answer.body["description"]
                );
                thread::sleep(Duration::from_secs(2));
                continue;
            }
            _ => {
                api.expect(answer, &[200], "stepping the fleet upgrade")?;
                unreachable!("expect fails on anything but 200");
            }
        }
        let run = answer.body;
        for event in run["events"].as_array().into_iter().flatten() {
            println!("  {}", describe(event));
        }
        let status = progress(&run);
        if status != last_status {
            println!("{status}");
            last_status = status;
        }
        if matches!(run["phase"].as_str(), Some("done" | "stopped")) {
            break run;
        }
        let wait = answer
            .retry_after
            .unwrap_or(1)
            .clamp(1, args.max_interval_secs.max(1));
        thread::sleep(Duration::from_secs(wait));
    };
    Ok(summary(&run))
}

/// One event as a line.
fn describe(event: &Value) -> String {
    let id = event["instance_id"].as_str().unwrap_or("?");
    let canary = if event["canary"] == true {
        " (canary)"
    } else {
        ""
    };
    let detail = event["description"]
        .as_str()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let (mark, verb) = match event["event"].as_str().unwrap_or("?") {
        "started" => ("→", "upgrading"),
        "succeeded" => ("✓", "upgraded"),
        "failed" => ("✗", "failed"),
        "retrying" => ("↻", "will retry"),
        "adopted" => ("→", "already upgrading"),
        "skipped" => ("-", "skipped"),
        "gone" => ("-", "gone"),
        other => ("?", other),
    };
    format!("{mark} {verb} {id}{canary}{detail}")
}

/// The run's counts on one line.
fn progress(run: &Value) -> String {
    let count = |field: &str| run[field].as_array().map_or(0, Vec::len);
    let phase = match run["phase"].as_str() {
        Some("canaries") => format!(
            "canaries {}/{}",
            run["canaries_succeeded"], run["settings"]["canaries"]
        ),
        Some(phase) => phase.to_string(),
        None => "?".into(),
    };
    format!(
        "[{phase}] upgraded {} · failed {} · in flight {} · waiting {} · examined {}/{} instances",
        run["succeeded"],
        run["failed_total"],
        count("in_flight"),
        count("waiting"),
        run["examined"],
        run["indexed"],
    )
}

/// Prints the end of a run; whether it went through without failures.
fn summary(run: &Value) -> bool {
    let id = run["id"].as_str().unwrap_or("?");
    let failed = run["failed_total"].as_u64().unwrap_or(0);
    println!(
        "fleet upgrade {id} {}: {} upgraded, {failed} failed, {} skipped",
        run["phase"].as_str().unwrap_or("?"),
        run["succeeded"],
        run["skipped"],
    );
    for failure in run["failed"].as_array().into_iter().flatten() {
        println!(
            "  ✗ {}{}: {}",
            failure["instance_id"].as_str().unwrap_or("?"),
            if failure["canary"] == true {
                " (canary)"
            } else {
                ""
            },
            failure["description"].as_str().unwrap_or("")
        );
    }
    if let Some(reason) = run["stop_reason"].as_str() {
        println!("stopped: {reason}");
    }
    run["phase"] == "done" && failed == 0
}
