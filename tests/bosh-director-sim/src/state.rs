//! The simulated director's database: deployments, tasks, locks, tokens,
//! the request log and the failures queued by tests. One `SimState` sits
//! behind one mutex; HTTP handlers and the lib's control methods both lock
//! it briefly, advance simulated time (see `tasks.rs`), then read or write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{RedirectStatus, SimConfig, TaskTimings};
use crate::manifest::Manifest;
use crate::model::{
    DeploymentInfo, DropPoint, ErrandBehaviour, HoldAt, InstanceInfo, RecordedRequest, TaskFailure,
    TaskInfo, TaskKind, TaskState,
};

/// Maps the monotonic clock that drives tasks to wall-clock epoch seconds
/// for the JSON the director returns.
pub(crate) struct Clock {
    start: Instant,
    start_epoch: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            start_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    pub fn epoch(&self, t: Instant) -> Duration {
        self.start_epoch + t.saturating_duration_since(self.start)
    }

    pub fn epoch_secs(&self, t: Instant) -> i64 {
        self.epoch(t).as_secs() as i64
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, as the director renders `vm_created_at`.
    pub fn rfc3339(&self, t: Instant) -> String {
        let secs = self.epoch_secs(t);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) struct Deployment {
    pub name: String,
    pub manifest_text: Option<String>,
    pub manifest: Option<Manifest>,
    pub post_count: u32,
    pub instances: Vec<Instance>,
}

pub(crate) struct Instance {
    pub group: String,
    pub index: u32,
    pub id: String,
    pub agent_id: String,
    pub vm_cid: String,
    pub ip: String,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub expects_vm: bool,
    pub job_state: String,
    pub jobs: Vec<String>,
    pub created_at: Instant,
}

/// What a task does when it finishes successfully (see `jobs.rs`).
#[derive(Clone)]
pub(crate) enum Work {
    Deploy {
        text: String,
        manifest: Manifest,
        dry_run: bool,
    },
    Delete,
    Errand {
        name: String,
        /// `(group, id-or-index)` selection from the request body.
        selection: Vec<(String, Option<String>)>,
    },
    Vms {
        /// `/instances?format=full` also reports instances without a VM.
        include_missing_vms: bool,
    },
}

pub(crate) struct Task {
    pub id: u64,
    pub kind: TaskKind,
    pub description: String,
    pub deployment: Option<String>,
    pub context_id: String,
    pub user: String,
    pub state: TaskState,
    pub created_at: Instant,
    /// When a worker picks the task up (end of `queued`).
    pub start_at: Instant,
    pub processing: Duration,
    pub started_at: Option<Instant>,
    /// When `processing` ends; set on start.
    pub finish_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    pub result: Option<String>,
    pub result_output: String,
    pub event_output: String,
    pub work: Work,
    /// Injected outcome (state, result) replacing the real work.
    pub forced: Option<(TaskState, String)>,
    /// Set on start when another task holds the deployment lock.
    pub lock_error: Option<String>,
    pub hold: Option<HoldAt>,
}

impl Task {
    pub fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            kind: self.kind,
            state: self.state,
            description: self.description.clone(),
            deployment: self.deployment.clone(),
            context_id: self.context_id.clone(),
            result: self.result.clone(),
            user: self.user.clone(),
            result_output: self.result_output.clone(),
            event_output: self.event_output.clone(),
        }
    }
}

pub(crate) struct LockHolder {
    pub task_id: u64,
    pub since: Instant,
}

pub(crate) struct TokenRecord {
    pub client_id: String,
    pub expires_at: Instant,
}

struct CountedFault {
    remaining: u32,
    prefix: Option<String>,
}

impl CountedFault {
    fn matches(&self, path: &str) -> bool {
        self.remaining > 0 && self.prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// Failures queued by tests, each consumed as it fires.
#[derive(Default)]
pub(crate) struct Faults {
    fail_requests: Vec<CountedFault>,
    drop_requests: Vec<(CountedFault, DropPoint)>,
    stall_requests: Vec<(CountedFault, std::time::Duration)>,
    pub drop_connections: u32,
    fail_tasks: Vec<TaskFailure>,
}

impl Faults {
    pub fn add_fail_requests(&mut self, count: u32, prefix: Option<&str>) {
        self.fail_requests.push(CountedFault {
            remaining: count,
            prefix: prefix.map(str::to_string),
        });
    }

    pub fn add_drop_requests(&mut self, count: u32, prefix: Option<&str>, when: DropPoint) {
        self.drop_requests.push((
            CountedFault {
                remaining: count,
                prefix: prefix.map(str::to_string),
            },
            when,
        ));
    }

    pub fn add_stall_requests(
        &mut self,
        count: u32,
        prefix: Option<&str>,
        stall: std::time::Duration,
    ) {
        self.stall_requests.push((
            CountedFault {
                remaining: count,
                prefix: prefix.map(str::to_string),
            },
            stall,
        ));
    }

    /// Consume one queued stall matching `path`: how long to hold its answer.
    pub fn take_stall_request(&mut self, path: &str) -> Option<std::time::Duration> {
        let (f, stall) = self
            .stall_requests
            .iter_mut()
            .find(|(f, _)| f.matches(path))?;
        f.remaining -= 1;
        Some(*stall)
    }

    pub fn add_fail_tasks(&mut self, failure: TaskFailure) {
        self.fail_tasks.push(failure);
    }

    /// Consume one queued "answer 500" matching `path`.
    pub fn take_fail_request(&mut self, path: &str) -> bool {
        let hit = self.fail_requests.iter_mut().find(|f| f.matches(path));
        hit.map(|f| f.remaining -= 1).is_some()
    }

    /// Consume one queued drop matching `path`.
    pub fn take_drop_request(&mut self, path: &str) -> Option<DropPoint> {
        let (f, when) = self
            .drop_requests
            .iter_mut()
            .find(|(f, _)| f.matches(path))?;
        f.remaining -= 1;
        Some(*when)
    }

    /// Consume one queued task failure matching a new task.
    pub fn take_task_failure(
        &mut self,
        kind: TaskKind,
        deployment: Option<&str>,
    ) -> Option<(TaskState, String)> {
        let f = self.fail_tasks.iter_mut().find(|f| {
            f.count > 0
                && f.kind.is_none_or(|k| k == kind)
                && f.deployment
                    .as_deref()
                    .is_none_or(|d| Some(d) == deployment)
        })?;
        f.count -= 1;
        Some((f.state, f.result.clone()))
    }
}

pub(crate) struct SimState {
    pub clock: Clock,
    pub timings: TaskTimings,
    pub redirect_status: RedirectStatus,
    pub absolute_location: bool,
    pub deployments: BTreeMap<String, Deployment>,
    /// Task `id` is at index `id - 1`.
    pub tasks: Vec<Task>,
    /// Ids of non-terminal tasks.
    pub active: BTreeSet<u64>,
    pub locks: HashMap<String, LockHolder>,
    pub tokens: HashMap<String, TokenRecord>,
    pub token_grants: u64,
    pub requests: Vec<RecordedRequest>,
    pub faults: Faults,
    /// Hold applied to tasks created while it is set.
    pub hold: Option<HoldAt>,
    pub errands: HashMap<String, ErrandBehaviour>,
    pub next_ip: u32,
}

impl SimState {
    pub fn new(config: &SimConfig) -> SimState {
        SimState {
            clock: Clock::new(),
            timings: config.timings,
            redirect_status: config.redirect_status,
            absolute_location: config.absolute_location,
            deployments: BTreeMap::new(),
            tasks: Vec::new(),
            active: BTreeSet::new(),
            locks: HashMap::new(),
            tokens: HashMap::new(),
            token_grants: 0,
            requests: Vec::new(),
            faults: Faults::default(),
            hold: None,
            errands: HashMap::new(),
            next_ip: 0,
        }
    }

    pub fn task(&self, id: u64) -> Option<&Task> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.tasks.get(i)
    }

    pub fn task_mut(&mut self, id: u64) -> Option<&mut Task> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.tasks.get_mut(i)
    }

    /// `find_or_create_by_name`: the record exists from the first POST on.
    pub fn deployment_entry(&mut self, name: &str) -> &mut Deployment {
        self.deployments
            .entry(name.to_string())
            .or_insert_with(|| Deployment {
                name: name.to_string(),
                manifest_text: None,
                manifest: None,
                post_count: 0,
                instances: Vec::new(),
            })
    }

    /// A fresh fake address: 10.244.0.2, 10.244.0.3, ... never reused.
    pub fn allocate_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.244.{}.{}", (n / 250) % 256, n % 250 + 2)
    }

    pub fn deployment_info(&self, d: &Deployment) -> DeploymentInfo {
        DeploymentInfo {
            name: d.name.clone(),
            manifest: d.manifest_text.clone(),
            post_count: d.post_count,
            instances: d
                .instances
                .iter()
                .map(|i| InstanceInfo {
                    group: i.group.clone(),
                    index: i.index,
                    id: i.id.clone(),
                    agent_id: i.agent_id.clone(),
                    vm_cid: i.vm_cid.clone(),
                    ip: i.ip.clone(),
                    az: i.az.clone(),
                    bootstrap: i.bootstrap,
                    expects_vm: i.expects_vm,
                    job_state: i.job_state.clone(),
                })
                .collect(),
            locked_by: self.locks.get(&d.name).map(|l| l.task_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn faults_are_consumed_by_matching_paths_only() {
        let mut f = Faults::default();
        f.add_fail_requests(1, Some("/tasks"));
        assert!(!f.take_fail_request("/deployments"));
        assert!(f.take_fail_request("/tasks/1"));
        assert!(!f.take_fail_request("/tasks/1"));
    }
}
