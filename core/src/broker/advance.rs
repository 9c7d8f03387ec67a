//! Driving an operation forward by one backend step, exactly once at a time.
//!
//! A step is taken under a lease written with compare-and-swap, so concurrent polls (or
//! a poll racing a retried request) never call the backend twice for the same step; a
//! crashed holder's lease simply expires. The backend's answer is persisted with another
//! CAS before anyone is told about it.

use crate::backend::{BackendError, Step};
use crate::error::OsbError;
use crate::http::OsbResponse;
use crate::state::{
    read, Operation, OperationKind, OperationState, OperationSummary, Outcome, Record, Status,
    Stored,
};

use super::responses;
use super::{Broker, DEFAULT_RETRY_AFTER, LEASE_SECONDS};

/// How long a synchronous request waits for a concurrent identical one to finish.
const SYNC_WAIT_MS: u64 = 5_000;
const SYNC_POLL_MS: u64 = 50;

/// Why a step could not be taken.
pub(super) enum StepError {
    /// The backend's answer: a transient or permanent failure of the operation.
    Backend(BackendError),
    /// The broker cannot take the step at all (its catalog cannot be trusted): the
    /// operation is left as it was, lease released, and the request gets this error.
    Abort(OsbError),
}

impl From<BackendError> for StepError {
    fn from(error: BackendError) -> Self {
        StepError::Backend(error)
    }
}

/// A record whose operations the broker drives: a service instance or a binding.
pub(super) trait Driven: Record {
    /// What the request already read that the first step may reuse instead of reading it
    /// again (a binding's instance).
    type Known: Default;
    /// The operation that deletes such a record.
    const DELETION: OperationKind;

    /// Takes one backend step of the record's running operation.
    async fn step(&self, broker: &Broker<'_>, known: &mut Self::Known) -> Result<Step, StepError>;
}

/// How a deletion request asked to delete, and how long it may take.
pub(super) struct Deletion {
    /// The plan's backend deletes asynchronously.
    pub asynchronous_plan: bool,
    /// The request's `accepts_incomplete`.
    pub accepts_incomplete: bool,
    /// The operation's deadline, seconds from its start.
    pub deadline_after: Option<u64>,
}

/// `Retry-After` after `failures` transient failures in a row: 5, 10, 20, 40, 60, 60 … s.
fn transient_backoff(failures: u32) -> u64 {
    let exponent = failures.saturating_sub(1).min(6);
    (DEFAULT_RETRY_AFTER << exponent).min(MAX_TRANSIENT_RETRY_AFTER)
}

/// The longest interval suggested while a backend is unreachable.
const MAX_TRANSIENT_RETRY_AFTER: u64 = 60;

impl Broker<'_> {
    /// Advances the in-progress operation of the record at `key` by one backend step and
    /// returns the record as stored afterwards. Records without a running operation, or
    /// whose operation another caller is advancing, are returned unchanged.
    ///
    /// A step runs under a lease unless the record's backend touches nothing outside the
    /// record ([`crate::catalog::PlanBackend::steps_are_local`]): such a step is taken straight
    /// from what was read and written with one compare-and-swap, and a concurrent step of
    /// the same operation simply loses that swap.
    pub(super) async fn advance<R: Driven>(
        &self,
        key: &str,
        mut stored: Stored<R>,
        known: &mut R::Known,
    ) -> Result<Stored<R>, OsbError> {
        for _ in 0..5 {
            let operation = stored.value.operation();
            if !operation.in_progress() {
                return Ok(stored);
            }
            let now = self.env.now();
            if operation.deadline.is_some_and(|deadline| now >= deadline) {
                let limit = operation
                    .deadline
                    .unwrap_or(now)
                    .saturating_sub(operation.started_at);
                let mut next = stored.value.clone();
                next.conclude(Outcome::Failed(format!(
                    "the operation did not finish within the plan's maximum polling duration ({limit} s)"
                )));
                match self.write(key, &stored, &next)? {
                    Some(done) => return Ok(done),
                    None => {
                        stored = self.reread(key)?;
                        continue;
                    }
                }
            }
            if operation.lease_until.is_some_and(|until| until > now) {
                return Ok(stored);
            }
            let (service_id, plan_id) = stored.value.operation_plan();
            let leased = if self.steps_are_local(service_id, plan_id) {
                stored
            } else {
                let mut leased = stored.value.clone();
                leased.operation_mut().lease_until = Some(now + LEASE_SECONDS);
                match self.write(key, &stored, &leased)? {
                    Some(leased) => leased,
                    None => {
                        stored = self.reread(key)?;
                        continue;
                    }
                }
            };
            let result = match leased.value.step(self, known).await {
                Ok(step) => Ok(step),
                Err(StepError::Backend(error)) => {
                    self.count_backend_failure(&leased.value, &error);
                    Err(error)
                }
                Err(StepError::Abort(error)) => {
                    if leased.value.operation().lease_until.is_some() {
                        let mut released = leased.value.clone();
                        released.operation_mut().lease_until = None;
                        // Best effort: if it fails, the lease simply expires.
                        let _ = self.write(key, &leased, &released);
                    }
                    return Err(error);
                }
            };
            let mut next = leased.value.clone();
            take_step(&mut next, result);
            // If this CAS fails, a newer operation (e.g. a deprovision during provisioning)
            // replaced ours while we held the lease, or a concurrent local step landed
            // first: what is stored wins, and we report it.
            return match self.write(key, &leased, &next)? {
                Some(written) => Ok(written),
                None => self.reread(key),
            };
        }
        Ok(stored)
    }

    /// Deprovision/unbind once the record is known to exist: a repeat of the running deletion
    /// answers with it (or, synchronously, finishes it); otherwise the deletion replaces
    /// whatever runs and is driven like any other operation.
    ///
    /// Of N identical synchronous deletions at once exactly one answers 200: the one whose
    /// deletion happened. The others find the record deleted (410) or, while the deletion
    /// is still running in another request, answer 410 once it finished (or 422 if it has
    /// not yet). A deletion whose request died is finished by the next one, which answers 200.
    pub(super) async fn delete<R: Driven>(
        &self,
        key: &str,
        stored: Stored<R>,
        request: Deletion,
        known: R::Known,
    ) -> Result<OsbResponse, OsbError> {
        let Deletion {
            asynchronous_plan,
            accepts_incomplete,
            deadline_after,
        } = request;
        let kind = R::DELETION;
        let asynchronous = asynchronous_plan && accepts_incomplete;
        let running = stored.value.operation();
        if running.in_progress() && running.kind == kind {
            return self.delete_again(key, stored, asynchronous, known).await;
        }
        if asynchronous_plan && !accepts_incomplete {
            return Err(OsbError::async_required());
        }
        // A step of the running operation is talking to the backend right now: deleting
        // under it would miss what that step is still creating. Platforms retry a 422.
        if running.in_progress() && running.lease_until.is_some_and(|u| u > self.env.now()) {
            return Err(OsbError::concurrency(format!(
                "a step of the {} of {} is running; retry in a few seconds",
                running.kind.prefix(),
                stored.value.label()
            )));
        }
        let deletion = self.deletion_of(&stored.value, kind, deadline_after)?;
        // Into the expiry ledger before the tombstone can exist: a ledger entry without a
        // tombstone is skipped by the sweep, a tombstone without one would stay forever.
        let sweep = crate::expiry::note_deletion(self.kv, self.env, key)?;
        let (service_id, plan_id) = deletion.operation_plan();
        let started = if !asynchronous && self.steps_are_local(service_id, plan_id) {
            // Nothing outside the record to delete: the deletion and its outcome are one write.
            stored.unwritten(deletion)
        } else {
            match self.write(key, &stored, &deletion)? {
                Some(started) => started,
                None => {
                    let current: Stored<R> = self.reread(key)?;
                    return self.lost_deletion(key, current, asynchronous, known).await;
                }
            }
        };
        let ours = started.value.operation().id.clone();
        let stored = self.drive(key, started, asynchronous, known).await?;
        if sweep {
            self.expire_tombstones();
        }
        if stored.value.operation().id != ours {
            return self
                .lost_deletion(key, stored, asynchronous, R::Known::default())
                .await;
        }
        deletion_response(stored.value.operation(), asynchronous)
    }

    /// One batch of [`crate::expiry::sweep`]; its failure is only logged (the next sweep
    /// goes on), never the deletion's.
    fn expire_tombstones(&self) {
        if let Err(error) = crate::expiry::sweep(self.kv, self.env, &self.metrics()) {
            self.env
                .log(&format!("tombstone expiry: {}", error.description));
        }
    }

    /// A deletion request that found the same deletion already running.
    async fn delete_again<R: Driven>(
        &self,
        key: &str,
        stored: Stored<R>,
        asynchronous: bool,
        known: R::Known,
    ) -> Result<OsbResponse, OsbError> {
        let running = stored.value.operation();
        if asynchronous {
            return Ok(responses::accepted(running));
        }
        // If the request that started it died, this is the platform's retry and finishes
        // the deletion (200); if it is still running, this one is a duplicate, and what it
        // finds deleted was not deleted as a result of it (410).
        let crashed = super::instance::creator_is_gone(running, self.env.now());
        let label = stored.value.label();
        let stored = self.drive(key, stored, false, known).await?;
        let response = deletion_response(stored.value.operation(), false)?;
        if crashed {
            Ok(response)
        } else {
            Err(deleted_concurrently(&label))
        }
    }

    /// A deletion request whose write lost to another request's: it answers for what that
    /// request did.
    async fn lost_deletion<R: Driven>(
        &self,
        key: &str,
        current: Stored<R>,
        asynchronous: bool,
        known: R::Known,
    ) -> Result<OsbResponse, OsbError> {
        let label = current.value.label();
        let operation = current.value.operation();
        if operation.kind == R::DELETION && operation.in_progress() {
            return Box::pin(self.delete_again(key, current, asynchronous, known)).await;
        }
        if current.value.status() == Status::Deleted {
            return Err(deleted_concurrently(&label));
        }
        Err(OsbError::concurrency(format!(
            "{label} changed concurrently; retry"
        )))
    }

    /// The record with whatever runs on it replaced by a deletion (`kind`): an unfinished
    /// creation is cancelled (its id then polls as failed).
    fn deletion_of<R: Record>(
        &self,
        current: &R,
        kind: OperationKind,
        deadline_after: Option<u64>,
    ) -> Result<R, OsbError> {
        let mut next = current.clone();
        if next.operation().in_progress() {
            let op = next.operation_mut();
            op.state = OperationState::Failed;
            op.description = Some(format!("cancelled by a {} request", kind.prefix()));
        }
        next.begin(Operation::start(kind, self.env, deadline_after)?);
        Ok(next)
    }

    /// `last_operation` for the record at `key`: 410 once deleted (or when a deletion's
    /// id is polled after the record is gone), the history for superseded operation ids,
    /// otherwise one step forward with `advance` and the current state.
    pub(super) async fn poll<R: Driven>(
        &self,
        key: &str,
        label: &str,
        operation_id: Option<&str>,
    ) -> Result<OsbResponse, OsbError> {
        let polls_deletion = |op: &str| op.starts_with(R::DELETION.prefix());
        let Some(stored) = read::<R>(self.kv, key)? else {
            if operation_id.is_some_and(polls_deletion) {
                return Err(OsbError::gone(format!("{label} is gone")));
            }
            return Err(OsbError::not_found(format!("{label} does not exist")));
        };
        let current_id = stored.value.operation().id.clone();
        if stored.value.status() == Status::Deleted
            && operation_id.is_none_or(|op| op == current_id || polls_deletion(op))
        {
            return Err(OsbError::gone(format!("{label} is gone")));
        }
        if let Some(op) = operation_id.filter(|op| *op != current_id) {
            return history_response(stored.value.history(), op, label);
        }
        let stored = self.advance(key, stored, &mut R::Known::default()).await?;
        Ok(responses::last_operation(stored.value.operation()))
    }

    /// A new record whose first step touches nothing outside it (a synchronous request on a
    /// plan whose steps are local), with that step already taken: creating the record and
    /// finishing its operation are then one write. Any other record is returned as it is.
    pub(super) async fn finish_locally<R: Driven>(
        &self,
        mut record: R,
        asynchronous: bool,
        known: &mut R::Known,
    ) -> Result<R, OsbError> {
        let (service_id, plan_id) = record.operation_plan();
        if asynchronous || !self.steps_are_local(service_id, plan_id) {
            return Ok(record);
        }
        let result = match record.step(self, known).await {
            Ok(step) => Ok(step),
            Err(StepError::Backend(error)) => {
                self.count_backend_failure(&record, &error);
                Err(error)
            }
            Err(StepError::Abort(error)) => return Err(error),
        };
        take_step(&mut record, result);
        Ok(record)
    }

    /// Asynchronous requests take one step and answer. Synchronous ones see the operation
    /// through and, while a concurrent request holds it, wait for that request to finish
    /// (synchronous steps are short), so identical concurrent requests all get the final
    /// answer instead of a ConcurrencyError.
    pub(super) async fn drive<R: Driven>(
        &self,
        key: &str,
        mut stored: Stored<R>,
        asynchronous: bool,
        mut known: R::Known,
    ) -> Result<Stored<R>, OsbError> {
        if asynchronous {
            return self.advance(key, stored, &mut known).await;
        }
        let mut waited = 0;
        loop {
            stored = self.advance(key, stored, &mut known).await?;
            if !stored.value.operation().in_progress() || waited >= SYNC_WAIT_MS {
                return Ok(stored);
            }
            self.env.sleep_ms(SYNC_POLL_MS);
            waited += SYNC_POLL_MS;
            stored = self.reread(key)?;
        }
    }

    /// Counts a failed backend call of `record`'s operation, by its plan's backend.
    fn count_backend_failure<R: Record>(&self, record: &R, error: &BackendError) {
        let (service_id, plan_id) = record.operation_plan();
        let backend = match self.known_plan(service_id, plan_id) {
            Ok(Some(plan)) => plan.backend.type_name(),
            _ => "unknown",
        };
        let transient = matches!(error, BackendError::Transient(_));
        self.metrics()
            .backend_failure(backend, record.operation().kind, transient);
    }

    fn reread<R: Record>(&self, key: &str) -> Result<Stored<R>, OsbError> {
        read(self.kv, key)?.ok_or_else(|| OsbError::internal(format!("record {key} disappeared")))
    }
}

/// Applies the outcome of one backend step to the record (lease released).
fn take_step<R: Record>(next: &mut R, result: Result<Step, BackendError>) {
    next.operation_mut().lease_until = None;
    let failures = next.operation().transient_failures;
    next.operation_mut().transient_failures = 0;
    match result {
        Ok(Step::Done(done)) => next.conclude(Outcome::Done(done)),
        Ok(Step::InProgress {
            state,
            description,
            retry_after,
        }) => {
            let op = next.operation_mut();
            op.backend = state;
            op.description = description;
            op.retry_after = retry_after;
        }
        Ok(Step::Failed { description }) | Err(BackendError::Permanent(description)) => {
            next.conclude(Outcome::Failed(description))
        }
        Err(BackendError::Transient(message)) => {
            // Never fails the operation (only its deadline does); the suggested
            // interval doubles up to a minute while the backend stays away.
            let op = next.operation_mut();
            op.transient_failures = failures.saturating_add(1);
            op.description = Some(format!("waiting for the backend: {message}"));
            op.retry_after = Some(transient_backoff(op.transient_failures));
        }
    }
}

/// `last_operation` for an operation that was superseded by a newer one.
fn history_response(
    history: &[OperationSummary],
    operation_id: &str,
    label: &str,
) -> Result<OsbResponse, OsbError> {
    let Some(summary) = history.iter().rev().find(|s| s.id == operation_id) else {
        return Err(OsbError::bad_request(format!(
            "unknown operation {operation_id:?} for {label}"
        )));
    };
    Ok(responses::finished_operation(
        summary.state,
        summary.description.as_deref(),
    ))
}

/// The 410 of a deletion request that found its work done by another request.
fn deleted_concurrently(label: &str) -> OsbError {
    OsbError::gone(format!("{label} was deleted by a concurrent request"))
}

/// The answer to deprovision/unbind once the deletion was started (or repeated).
fn deletion_response(operation: &Operation, asynchronous: bool) -> Result<OsbResponse, OsbError> {
    if asynchronous {
        return Ok(responses::accepted(operation));
    }
    match operation.state {
        OperationState::Succeeded => Ok(responses::empty(200)),
        OperationState::InProgress => Err(OsbError::concurrency(
            "the deletion is being carried out by a concurrent request",
        )),
        OperationState::Failed => {
            let mut error = OsbError::internal(format!(
                "the deletion failed: {}",
                operation.description.as_deref().unwrap_or("no details")
            ));
            error.instance_usable = operation.instance_usable;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transient_failures_back_off_to_a_minute() {
        let intervals: Vec<u64> = (1..=7).map(super::transient_backoff).collect();
        assert_eq!(intervals, [5, 10, 20, 40, 60, 60, 60]);
    }
}
