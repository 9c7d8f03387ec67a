//! The task state machine: queued → processing → done | error | cancelled |
//! timeout, driven by simulated time.
//!
//! Nothing runs in the background. Every HTTP request and every lib call
//! first calls [`SimState::advance`], which replays, in time order, every
//! transition that became due since the last call (a finish at the same
//! instant as a start comes first, then lower task ids). This makes lock
//! contention deterministic: whether a second deploy finds the deployment
//! locked depends only on the configured durations and the order of
//! requests, never on thread scheduling.

use std::time::Instant;

use serde_json::json;

use crate::ids;
use crate::jobs;
use crate::model::{HoldAt, TaskKind, TaskState};
use crate::state::{LockHolder, SimState, Task, Work};

/// What a handler asks for when it enqueues a task.
pub(crate) struct NewTask {
    pub kind: TaskKind,
    pub description: String,
    pub deployment: Option<String>,
    pub context_id: String,
    pub user: String,
    pub work: Work,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Finish,
    Start,
}

impl SimState {
    /// Enqueue a task (`JobQueue#enqueue`); returns its id.
    pub fn create_task(&mut self, new: NewTask) -> u64 {
        let now = Instant::now();
        let id = self.tasks.len() as u64 + 1;
        let forced = self
            .faults
            .take_task_failure(new.kind, new.deployment.as_deref());
        self.tasks.push(Task {
            id,
            kind: new.kind,
            description: new.description,
            deployment: new.deployment,
            context_id: new.context_id,
            user: new.user,
            state: TaskState::Queued,
            created_at: now,
            start_at: now + self.timings.queued,
            processing: self.timings.processing,
            started_at: None,
            finish_at: None,
            finished_at: None,
            result: None,
            result_output: String::new(),
            event_output: String::new(),
            work: new.work,
            forced,
            lock_error: None,
            hold: self.hold,
        });
        self.active.insert(id);
        self.advance_to(now);
        id
    }

    /// Apply every transition due by now.
    pub fn advance(&mut self) {
        self.advance_to(Instant::now());
    }

    fn advance_to(&mut self, now: Instant) {
        loop {
            let next = self
                .active
                .iter()
                .filter_map(|&id| self.task(id).and_then(due).map(|(t, p)| (t, p, id)))
                .min();
            match next {
                Some((t, Phase::Start, id)) if t <= now => self.start(id, t),
                Some((t, Phase::Finish, id)) if t <= now => self.finish(id, t),
                _ => break,
            }
        }
    }

    /// Hold every non-terminal task, and tasks created from now on, at `at`.
    pub fn hold_tasks(&mut self, at: HoldAt) {
        self.advance();
        self.hold = Some(at);
        for id in self.active.clone() {
            if let Some(t) = self.task_mut(id) {
                t.hold = Some(at);
            }
        }
    }

    /// Lift every hold; held transitions happen from now on.
    pub fn release_tasks(&mut self) {
        self.advance();
        self.hold = None;
        for id in self.active.clone() {
            self.release_one(id);
        }
        self.advance();
    }

    /// Lift the hold of one task; `false` if it is unknown or finished.
    pub fn release_task(&mut self, id: u64) -> bool {
        self.advance();
        if !self.active.contains(&id) {
            return false;
        }
        self.release_one(id);
        self.advance();
        true
    }

    fn release_one(&mut self, id: u64) {
        let now = Instant::now();
        if let Some(t) = self.task_mut(id) {
            if t.hold.take().is_some() {
                t.start_at = t.start_at.max(now);
                t.finish_at = t.finish_at.map(|f| f.max(now));
            }
        }
    }

    /// `DELETE /task/:id`: queued or processing → cancelling, honoured at
    /// once (holds do not delay a cancel). `Err` carries the state that made
    /// the task not cancellable.
    pub fn cancel_task(&mut self, id: u64) -> Result<(), TaskState> {
        self.advance();
        let now = Instant::now();
        let Some(t) = self.task_mut(id) else {
            return Err(TaskState::Done);
        };
        match t.state {
            TaskState::Queued | TaskState::Processing => {
                t.state = TaskState::Cancelling;
                t.hold = None;
                if t.started_at.is_some() {
                    t.finish_at = Some(now);
                } else {
                    t.start_at = now;
                }
                Ok(())
            }
            other => Err(other),
        }
    }

    fn start(&mut self, id: u64, at: Instant) {
        let epoch = self.clock.epoch_secs(at);
        let holder = {
            let Some(t) = self.task(id) else { return };
            match (&t.deployment, t.kind.takes_deployment_lock()) {
                (Some(d), true) => Some((d.clone(), self.locks.get(d).map(|h| h.task_id))),
                _ => None,
            }
        };
        let lock_error = match &holder {
            Some((dep, Some(other))) if *other != id => {
                let desc = self
                    .task(*other)
                    .map(|t| t.description.clone())
                    .unwrap_or_default();
                Some(format!(
                    "Failed to acquire lock for lock:deployment:{dep} uid: {}. Locking task id is {other}, description: '{desc}'",
                    ids::uuid()
                ))
            }
            _ => None,
        };
        if let (Some((dep, None)), None) = (&holder, &lock_error) {
            self.locks.insert(
                dep.clone(),
                LockHolder {
                    task_id: id,
                    since: at,
                },
            );
        }
        let Some(t) = self.task_mut(id) else { return };
        t.started_at = Some(at);
        if t.state == TaskState::Cancelling {
            // Cancelled while queued: the worker notices before doing anything.
            self.finish(id, at);
            return;
        }
        t.state = TaskState::Processing;
        t.finish_at = Some(if lock_error.is_some() {
            at
        } else {
            at + t.processing
        });
        t.lock_error = lock_error;
        let stage = stage_name(t.kind);
        t.event_output
            .push_str(&stage_event(epoch, stage, "started", 0));
    }

    fn finish(&mut self, id: u64, at: Instant) {
        let epoch = self.clock.epoch_secs(at);
        let Some(t) = self.task(id) else { return };
        let outcome = if t.state == TaskState::Cancelling {
            Err((TaskState::Cancelled, 10001, "task cancelled".to_string()))
        } else if let Some(msg) = &t.lock_error {
            Err((TaskState::Error, 100, msg.clone()))
        } else if let Some((state, result)) = &t.forced {
            if *state == TaskState::Done {
                Ok((result.clone(), String::new()))
            } else {
                Err((*state, 100, result.clone()))
            }
        } else {
            jobs::perform(self, id, at).map_err(|e| (TaskState::Error, e.code, e.message))
        };
        if let Some(dep) = self.task(id).and_then(|t| t.deployment.clone()) {
            if self.locks.get(&dep).is_some_and(|h| h.task_id == id) {
                self.locks.remove(&dep);
            }
        }
        let Some(t) = self.task_mut(id) else { return };
        t.finished_at = Some(at);
        let stage = stage_name(t.kind);
        match outcome {
            Ok((result, output)) => {
                t.state = TaskState::Done;
                t.result = Some(truncate(&result));
                t.result_output = output;
                t.event_output
                    .push_str(&stage_event(epoch, stage, "finished", 100));
            }
            Err((state, code, message)) => {
                t.state = state;
                t.result = Some(truncate(&message));
                if state != TaskState::Timeout {
                    t.event_output.push_str(&format!(
                        "{}\n",
                        json!({"time": epoch, "error": {"code": code, "message": message}})
                    ));
                }
            }
        }
        self.active.remove(&id);
    }
}

/// The next transition of a task and when it is due, unless held.
fn due(t: &Task) -> Option<(Instant, Phase)> {
    match (t.state, t.started_at) {
        (TaskState::Queued, _) if t.hold == Some(HoldAt::Queued) => None,
        (TaskState::Queued, _) | (TaskState::Cancelling, None) => Some((t.start_at, Phase::Start)),
        (TaskState::Processing, _) if t.hold == Some(HoldAt::Processing) => None,
        (TaskState::Processing | TaskState::Cancelling, Some(_)) => {
            t.finish_at.map(|f| (f, Phase::Finish))
        }
        _ => None,
    }
}

fn stage_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::UpdateDeployment => "Updating deployment",
        TaskKind::DeleteDeployment => "Deleting deployment",
        TaskKind::RunErrand => "Running errand",
        TaskKind::Vms => "Retrieving vm-stats",
    }
}

/// One line of the `event` output, in the director's event log format.
fn stage_event(epoch: i64, stage: &str, state: &str, progress: u32) -> String {
    format!(
        "{}\n",
        json!({"time": epoch, "stage": stage, "tags": [], "total": 1, "task": stage,
               "index": 1, "state": state, "progress": progress})
    )
}

/// `JobRunner#truncate`: strip, keep 129 characters, and if that is more
/// than 128 cut the last (partial) word and append `...`.
pub(crate) fn truncate(s: &str) -> String {
    const LEN: usize = 128;
    let stripped: String = s.trim().chars().take(LEN + 1).collect();
    if stripped.chars().count() <= LEN {
        return stripped;
    }
    let cut = if stripped.ends_with(char::is_whitespace) {
        stripped.trim_end().len()
    } else {
        // Start of the whitespace run before the final word, if any.
        let word_start = stripped
            .rfind(char::is_whitespace)
            .map(|i| i + stripped[i..].chars().next().map_or(1, char::len_utf8));
        match word_start {
            Some(ws) => stripped[..ws].trim_end().len(),
            None => stripped.len(),
        }
    };
    format!("{}...", &stripped[..cut])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_like_the_job_runner() {
        assert_eq!(truncate("  short  "), "short");
        let long = format!("{} tail-word", "a".repeat(125));
        let t = truncate(&long);
        assert_eq!(t, format!("{}...", "a".repeat(125)));
        let no_space = "b".repeat(200);
        assert_eq!(truncate(&no_space), format!("{}...", "b".repeat(129)));
        assert_eq!(truncate(&"c".repeat(128)), "c".repeat(128));
    }
}
