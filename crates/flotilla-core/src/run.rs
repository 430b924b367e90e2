//! Pipeline runs: named steps, each a job, with dependencies between them (fan-out and
//! fan-in). A run is created whole; its steps without dependencies are enqueued at once,
//! and each completion enqueues, in the same transaction, the steps whose dependencies
//! have now all succeeded. A step's job receives its dependencies' results.
//!
//! What a store keeps per step is only what it cannot read from the step's job: whether it
//! was enqueued yet (its job id) and its result once it succeeded (jobs are pruned, results
//! stay). Step and run states are derived from the jobs' states on read ([`step_state`],
//! [`run_state`]), so replaying a dead step's job puts its run back to `running` with no
//! extra bookkeeping.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;
use crate::error::Error;
use crate::job::{JobId, NewJob};
use crate::state::JobState;

/// The most steps a run may have.
pub const MAX_STEPS: usize = 64;

/// The key of a step job's payload under which the store puts the run's details:
/// `{"run": {"id": 7, "step": "transcode", "inputs": {"ingest": <its result>}}}`.
pub const RUN_PAYLOAD_KEY: &str = "run";

/// A run's id: assigned by the store.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One step of a new run.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStep {
    /// Unique within the run.
    pub name: String,
    /// The steps that must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
    /// The job to enqueue when they have (its payload must be a JSON object).
    pub job: NewJob,
}

/// A run to create.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The pipeline it runs (a name, for display and filtering).
    pub pipeline: String,
    /// What the run is about (for an asset: its file name, size, object key…).
    #[serde(default)]
    pub meta: Value,
    /// Its steps.
    pub steps: Vec<NewStep>,
}

/// Where a step is.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Its dependencies have not all succeeded yet.
    Waiting,
    /// Its job is enqueued, scheduled for a retry, or running.
    Queued,
    /// Its job is running.
    Running,
    /// Its job succeeded.
    Succeeded,
    /// Its job is dead.
    Failed,
    /// Its job was cancelled.
    Cancelled,
}

/// Where a run is.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Some step is still to run.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step's job is dead (replaying it resumes the run).
    Failed,
    /// A step's job was cancelled.
    Cancelled,
}

/// A step as read back.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// The steps it waits for.
    pub after: Vec<String>,
    /// Where it is.
    pub state: StepState,
    /// Its job, once enqueued.
    pub job_id: Option<JobId>,
    /// Its job's attempts so far.
    pub attempt: u32,
    /// Its result, once it succeeded.
    pub result: Option<Value>,
    /// The last error of its job, if any.
    pub error: Option<String>,
}

/// A run as read back.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// Its pipeline.
    pub pipeline: String,
    /// Where it is, derived from its steps.
    pub state: RunState,
    /// What it is about.
    pub meta: Value,
    /// Its steps, in the order they were given.
    pub steps: Vec<Step>,
    /// When it was created.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Checks a new run: 1 to [`MAX_STEPS`] steps with unique names, dependencies on steps of
/// the run only, no cycle, and object payloads (the store adds the run's details to them).
pub fn validate_run(run: &NewRun) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidArgument {
        field: "steps",
        reason,
    };
    if run.steps.is_empty() || run.steps.len() > MAX_STEPS {
        return Err(invalid(format!("a run has 1 to {MAX_STEPS} steps")));
    }
    let mut names = HashSet::new();
    for step in &run.steps {
        if step.name.is_empty() || !names.insert(step.name.as_str()) {
            return Err(invalid(format!(
                "step names must be unique and non-empty: {:?}",
                step.name
            )));
        }
        if !(step.job.payload.is_object() || step.job.payload.is_null()) {
            return Err(invalid(format!(
                "step {:?}: the payload must be a JSON object",
                step.name
            )));
        }
    }
    for step in &run.steps {
        let distinct: HashSet<&str> = step.after.iter().map(String::as_str).collect();
        if distinct.len() != step.after.len() {
            return Err(invalid(format!(
                "step {:?} lists a dependency twice",
                step.name
            )));
        }
        if let Some(unknown) = step.after.iter().find(|d| !names.contains(d.as_str())) {
            return Err(invalid(format!(
                "step {:?} waits for {unknown:?}, which is not a step of the run",
                step.name
            )));
        }
    }
    if let Some(step) = first_in_cycle(&run.steps) {
        return Err(invalid(format!(
            "step {step:?} depends on itself through its dependencies"
        )));
    }
    Ok(())
}

/// A step on a dependency cycle, if there is one (Kahn's algorithm: what cannot be
/// ordered is on or behind a cycle).
fn first_in_cycle(steps: &[NewStep]) -> Option<&str> {
    let mut waiting: HashMap<&str, usize> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.after.len()))
        .collect();
    let mut ready: Vec<&str> = steps
        .iter()
        .filter(|s| s.after.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    while let Some(done) = ready.pop() {
        waiting.remove(done);
        for step in steps.iter().filter(|s| s.after.iter().any(|d| d == done)) {
            if let Some(n) = waiting.get_mut(step.name.as_str()) {
                *n -= 1;
                if *n == 0 {
                    ready.push(step.name.as_str());
                }
            }
        }
    }
    steps
        .iter()
        .map(|s| s.name.as_str())
        .find(|n| waiting.contains_key(n))
}

/// The payload a step's job is enqueued with: its own, plus under [`RUN_PAYLOAD_KEY`]
/// the run's id, the step's name and its dependencies' results by step name.
pub fn step_payload(
    payload: &Value,
    run: RunId,
    step: &str,
    inputs: BTreeMap<String, Value>,
) -> Value {
    let mut object = match payload {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let details = serde_json::json!({ "id": run, "step": step, "inputs": inputs });
    object.insert(RUN_PAYLOAD_KEY.to_owned(), details);
    Value::Object(object)
}

/// A step's state from its job's state (`None`: not enqueued yet).
pub fn step_state(job: Option<JobState>) -> StepState {
    match job {
        None => StepState::Waiting,
        Some(JobState::Scheduled | JobState::Available) => StepState::Queued,
        Some(JobState::Running) => StepState::Running,
        Some(JobState::Succeeded) => StepState::Succeeded,
        Some(JobState::Dead) => StepState::Failed,
        Some(JobState::Cancelled) => StepState::Cancelled,
    }
}

/// A stored step's state and last error: `enqueued` when the step has a job id, `job` the
/// state of that job if it still exists, `result_kept` when the step's result was stored.
/// A step whose job was pruned counts as succeeded when its result was kept, else as
/// failed.
pub fn stored_step_state(
    enqueued: bool,
    job: Option<JobState>,
    result_kept: bool,
    last_error: Option<String>,
) -> (StepState, Option<String>) {
    match (enqueued, job, result_kept) {
        (true, None, true) => (StepState::Succeeded, last_error),
        (true, None, false) => (
            StepState::Failed,
            Some("the step's job was pruned before it succeeded".into()),
        ),
        (_, job, _) => (step_state(job), last_error),
    }
}

/// A run's state from its steps': failed if any failed, else cancelled if any was
/// cancelled, else succeeded if all succeeded, else running.
pub fn run_state(steps: impl IntoIterator<Item = StepState>) -> RunState {
    let (mut all_done, mut cancelled) = (true, false);
    for state in steps {
        match state {
            StepState::Failed => return RunState::Failed,
            StepState::Cancelled => cancelled = true,
            StepState::Succeeded => {}
            _ => all_done = false,
        }
    }
    match (cancelled, all_done) {
        (true, _) => RunState::Cancelled,
        (false, true) => RunState::Succeeded,
        (false, false) => RunState::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, after: &[&str]) -> NewStep {
        NewStep {
            name: name.into(),
            after: after.iter().map(|s| (*s).into()).collect(),
            job: NewJob::new("q", "k", json!({})),
        }
    }

    fn run(steps: Vec<NewStep>) -> NewRun {
        NewRun {
            pipeline: "p".into(),
            meta: Value::Null,
            steps,
        }
    }

    #[test]
    fn a_fan_out_and_fan_in_is_valid() {
        let steps = vec![
            step("ingest", &[]),
            step("small", &["ingest"]),
            step("large", &["ingest"]),
            step("deliver", &["small", "large"]),
        ];
        assert_eq!(validate_run(&run(steps)), Ok(()));
    }

    #[test]
    fn bad_runs_are_refused_with_the_reason() {
        let cases = [
            (vec![], "1 to"),
            (vec![step("a", &[]), step("a", &[])], "unique"),
            (vec![step("a", &["b"])], "not a step"),
            (
                vec![step("a", &[]), step("b", &["c"]), step("c", &["b"])],
                "depends on itself",
            ),
            (vec![step("a", &["a"])], "depends on itself"),
            (vec![step("a", &[]), step("b", &["a", "a"])], "twice"),
        ];
        for (steps, why) in cases {
            let err = validate_run(&run(steps.clone())).unwrap_err();
            assert!(err.to_string().contains(why), "{steps:?}: {err}");
        }
        let mut scalar = step("a", &[]);
        scalar.job.payload = json!(3);
        assert!(validate_run(&run(vec![scalar])).is_err());
    }

    #[test]
    fn the_step_payload_carries_the_run_and_the_inputs() {
        let inputs = BTreeMap::from([("ingest".to_owned(), json!({"sha256": "ab"}))]);
        let payload = step_payload(&json!({"width": 320}), RunId(7), "thumb", inputs);
        assert_eq!(
            payload,
            json!({"width": 320, "run": {"id": 7, "step": "thumb", "inputs": {"ingest": {"sha256": "ab"}}}})
        );
    }

    #[test]
    fn run_state_follows_the_steps() {
        use StepState::*;
        assert_eq!(run_state([Succeeded, Succeeded]), RunState::Succeeded);
        assert_eq!(run_state([Succeeded, Waiting]), RunState::Running);
        assert_eq!(run_state([Cancelled, Running]), RunState::Cancelled);
        assert_eq!(run_state([Cancelled, Failed]), RunState::Failed);
        assert_eq!(step_state(None), Waiting);
        assert_eq!(step_state(Some(JobState::Dead)), Failed);
    }
}
