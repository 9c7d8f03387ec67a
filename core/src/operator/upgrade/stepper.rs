//! One step of a fleet upgrade run: poll what is in flight, retry what waited long
//! enough, and scan the next slice of the instance index for outdated instances, within a
//! time budget.

use super::{Event, Failure, Phase, Run, Tracked, Waiting};
use crate::broker::{Broker, Maintenance, Started};
use crate::error::OsbError;
use crate::index::Index;
use crate::state::{instance_index, instance_key, read, InstanceRecord, OperationState};

/// A step starts no backend call after this long.
const STEP_MILLIS: u64 = 10_000;
/// Index slots one step examines at most.
const SCAN_PER_STEP: u64 = 500;
/// Seconds before a failed attempt is tried again, or a busy instance looked at again.
const RETRY_SECONDS: u64 = 10;
/// How often an instance busy with another operation is looked at before it counts as a
/// failed attempt.
const MAX_WAITS: u32 = 30;
/// Failures kept with their descriptions (all are counted).
const MAX_FAILURES_KEPT: usize = 1_000;

/// One step's work on a run.
pub(super) struct Stepper<'b, 'a> {
    broker: &'b Broker<'a>,
    run: Run,
    events: Vec<Event>,
    began_ms: u64,
}

impl<'b, 'a> Stepper<'b, 'a> {
    pub(super) fn new(broker: &'b Broker<'a>, run: Run) -> Self {
        Stepper {
            broker,
            run,
            events: Vec::new(),
            began_ms: broker.env.monotonic_ms(),
        }
    }

    /// The run as the step left it, and what happened.
    pub(super) fn into_parts(self) -> (Run, Vec<Event>) {
        (self.run, self.events)
    }

    fn out_of_time(&self) -> bool {
        self.broker.env.monotonic_ms().saturating_sub(self.began_ms) > STEP_MILLIS
    }

    fn event(
        &mut self,
        instance_id: &str,
        event: &'static str,
        canary: bool,
        description: Option<String>,
    ) {
        self.events.push(Event {
            instance_id: instance_id.to_string(),
            event,
            canary,
            description,
        });
    }

    pub(super) async fn take(&mut self) -> Result<(), OsbError> {
        self.poll_in_flight().await?;
        if self.run.stop_reason.is_none() {
            self.retry_waiting().await?;
            self.scan().await?;
        }
        self.advance_phase()
    }

    /// Polls every upgrade in flight once.
    async fn poll_in_flight(&mut self) -> Result<(), OsbError> {
        let in_flight = std::mem::take(&mut self.run.in_flight);
        let mut still = Vec::new();
        for tracked in in_flight {
            if self.out_of_time() {
                still.push(tracked);
                continue;
            }
            match self
                .broker
                .poll_instance(&tracked.instance_id, Some(&tracked.operation))
                .await
            {
                Ok((OperationState::InProgress, _)) => still.push(tracked),
                Ok((OperationState::Succeeded, _)) => {
                    self.succeeded(&tracked.instance_id, tracked.canary)
                }
                Ok((OperationState::Failed, description)) => self.attempt_failed(
                    &tracked.instance_id,
                    tracked.attempt,
                    tracked.canary,
                    description.unwrap_or_else(|| "the update failed".into()),
                ),
                Err(error) if matches!(error.status, 404 | 410) => {
                    self.run.skipped += 1;
                    self.event(
                        &tracked.instance_id,
                        "gone",
                        tracked.canary,
                        Some(error.description),
                    );
                }
                Err(error) => {
                    self.run.in_flight = still;
                    self.run.in_flight.push(tracked);
                    return Err(error);
                }
            }
        }
        self.run.in_flight.extend(still);
        Ok(())
    }

    /// How many more upgrades this step may start.
    fn capacity(&self) -> usize {
        if self.run.stop_reason.is_some() || !self.run.active() || self.out_of_time() {
            return 0;
        }
        let settings = &self.run.settings;
        let free = (settings.max_in_flight as usize).saturating_sub(self.run.in_flight.len());
        if self.run.phase == Phase::Canaries {
            let running = self.run.in_flight.len() + self.run.waiting.len();
            let wanted = (settings.canaries as usize)
                .saturating_sub(self.run.canaries_succeeded as usize + running);
            free.min(wanted)
        } else {
            free
        }
    }

    /// Tries again the instances whose time came.
    async fn retry_waiting(&mut self) -> Result<(), OsbError> {
        let now = self.broker.env.now();
        let waiting = std::mem::take(&mut self.run.waiting);
        let mut later = Vec::new();
        for entry in waiting {
            if entry.not_before > now
                || self.run.in_flight.len() >= self.run.settings.max_in_flight as usize
                || self.out_of_time()
            {
                later.push(entry);
                continue;
            }
            match read::<InstanceRecord>(self.broker.kv, &instance_key(&entry.instance_id))? {
                Some(stored) => self.consider(&stored.value, entry).await?,
                None => {
                    self.run.skipped += 1;
                    self.event(&entry.instance_id, "gone", entry.canary, None);
                }
            }
        }
        self.run.waiting.extend(later);
        Ok(())
    }

    /// Examines the next slice of the instance index for outdated instances.
    async fn scan(&mut self) -> Result<(), OsbError> {
        let index = instance_index();
        let len = index.len(self.broker.kv)?;
        let stop = self.run.cursor.saturating_add(SCAN_PER_STEP).min(len);
        while self.run.cursor < stop && self.capacity() > 0 {
            let slot = self.run.cursor + 1;
            self.run.cursor = slot;
            let Some(id) = index.get(self.broker.kv, slot)? else {
                continue;
            };
            let Some(stored) = read::<InstanceRecord>(self.broker.kv, &instance_key(&id))? else {
                continue;
            };
            let record = stored.value;
            let canary = self.run.phase == Phase::Canaries;
            if !Index::live(slot, record.index_slot)
                || self.run.tracks(&record.instance_id)
                || (canary && !self.run.settings.canary_filter.keeps(&record))
            {
                continue;
            }
            let entry = Waiting {
                instance_id: record.instance_id.clone(),
                attempts: 0,
                waits: 0,
                canary,
                not_before: 0,
                reason: None,
            };
            self.consider(&record, entry).await?;
        }
        Ok(())
    }

    /// Starts, adopts, defers or skips one instance.
    async fn consider(
        &mut self,
        record: &InstanceRecord,
        mut entry: Waiting,
    ) -> Result<(), OsbError> {
        let id = record.instance_id.as_str();
        match self.broker.maintenance(record)? {
            Maintenance::Current => {
                // Upgraded since it was found (by a user, or by this run's last attempt).
                if entry.attempts > 0 || entry.waits > 0 {
                    self.succeeded(id, entry.canary);
                }
            }
            Maintenance::Upgrading(operation) => {
                self.event(id, "adopted", entry.canary, None);
                self.run.in_flight.push(Tracked {
                    instance_id: id.to_string(),
                    operation,
                    attempt: entry.attempts.max(1),
                    canary: entry.canary,
                });
            }
            Maintenance::Blocked(reason) if record.status == crate::state::Status::Ready => {
                entry.waits += 1;
                if entry.waits > MAX_WAITS {
                    let attempt = entry.attempts + 1;
                    self.attempt_failed(id, attempt, entry.canary, format!("kept busy: {reason}"));
                } else {
                    entry.not_before = self.broker.env.now() + RETRY_SECONDS;
                    entry.reason = Some(reason);
                    self.run.waiting.push(entry);
                }
            }
            Maintenance::Blocked(reason) => {
                self.run.skipped += 1;
                self.event(id, "skipped", entry.canary, Some(reason));
            }
            Maintenance::Outdated(version) => {
                let attempt = entry.attempts + 1;
                match self.broker.upgrade(record, &version).await {
                    Ok(Started::Running(operation)) => {
                        self.event(id, "started", entry.canary, None);
                        self.run.in_flight.push(Tracked {
                            instance_id: id.to_string(),
                            operation,
                            attempt,
                            canary: entry.canary,
                        });
                    }
                    Ok(Started::Finished) => self.succeeded(id, entry.canary),
                    Err(error) if error.code == Some("ConcurrencyError") => {
                        entry.waits += 1;
                        entry.not_before = self.broker.env.now() + RETRY_SECONDS;
                        entry.reason = Some(error.description);
                        self.run.waiting.push(entry);
                    }
                    Err(error) if error.status == 503 => return Err(error),
                    Err(error) => self.attempt_failed(id, attempt, entry.canary, error.description),
                }
            }
        }
        Ok(())
    }

    fn succeeded(&mut self, instance_id: &str, canary: bool) {
        self.run.succeeded += 1;
        if canary {
            self.run.canaries_succeeded += 1;
        }
        self.event(instance_id, "succeeded", canary, None);
    }

    fn attempt_failed(
        &mut self,
        instance_id: &str,
        attempt: u32,
        canary: bool,
        description: String,
    ) {
        if attempt < self.run.settings.attempts {
            self.event(instance_id, "retrying", canary, Some(description.clone()));
            self.run.waiting.push(Waiting {
                instance_id: instance_id.to_string(),
                attempts: attempt,
                waits: 0,
                canary,
                not_before: self.broker.env.now() + RETRY_SECONDS,
                reason: Some(description),
            });
            return;
        }
        self.event(instance_id, "failed", canary, Some(description.clone()));
        self.run.failed_total += 1;
        if self.run.failed.len() < MAX_FAILURES_KEPT {
            self.run.failed.push(Failure {
                instance_id: instance_id.to_string(),
                canary,
                description: description.clone(),
            });
        }
        if canary && self.run.stop_reason.is_none() {
            self.run.stop_reason = Some(format!(
                "canary {instance_id} failed: {description}; the other instances were left as they are"
            ));
        }
    }

    /// Canaries → rest → done, or stopped once nothing started is still running.
    fn advance_phase(&mut self) -> Result<(), OsbError> {
        let len = instance_index().len(self.broker.kv)?;
        let now = self.broker.env.now();
        let run = &mut self.run;
        if run.stop_reason.is_some() {
            if run.in_flight.is_empty() {
                run.phase = Phase::Stopped;
                run.finished_at = Some(now);
                run.waiting.clear();
            }
            return Ok(());
        }
        let idle = run.in_flight.is_empty() && run.waiting.is_empty();
        let scanned = run.cursor >= len;
        if run.phase == Phase::Canaries
            && idle
            && (scanned || run.canaries_succeeded >= run.settings.canaries)
        {
            run.phase = Phase::Rest;
            run.cursor = 0;
        } else if run.phase == Phase::Rest && idle && scanned {
            run.phase = Phase::Done;
            run.finished_at = Some(now);
        }
        Ok(())
    }
}
