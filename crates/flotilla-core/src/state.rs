//! Job states and the state machine.
//!
//! ```text
//!  enqueue ─► scheduled ──(run_at reached)──► available ──(claim)──► running
//!                  ▲                              ▲                    │
//!                  │ retry with backoff           │ replay / run now    ├─► succeeded
//!                  └───────────── failed attempt ◄┘ (dead, cancelled)  ├─► dead
//!  cancel ─► cancelled (scheduled/available at once; running: requested) └─► cancelled
//! ```
//! [`transition`] is the only definition of which moves are legal; stores call it before
//! writing, so an illegal request is refused with [`Error::InvalidTransition`].

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where a job is in its life.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for `run_at`: enqueued with a delay, or a failed attempt waiting to retry.
    /// Leaves by promotion to `available` when `run_at` is reached, or by cancel.
    Scheduled,
    /// Ready to be claimed. Entered at enqueue (no delay), by promotion, replay or run-now.
    /// Leaves when a worker claims it, or by cancel.
    Available,
    /// Held by a worker under a lease. Leaves by completion, by failure (retry, dead or,
    /// when cancellation was requested, cancelled) or when the lease expires unreaped.
    Running,
    /// Finished successfully. Terminal; pruned after the queue's retention.
    Succeeded,
    /// Cancelled before or while running. Terminal; may be replayed.
    Cancelled,
    /// Failed on its last allowed attempt, or with a non-retryable error. Terminal (the
    /// dead-letter state); may be replayed, which resets its attempts.
    Dead,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        Self::Scheduled,
        Self::Available,
        Self::Running,
        Self::Succeeded,
        Self::Cancelled,
        Self::Dead,
    ];

    /// The state's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    /// The compact number stores keep in their rows.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// The state kept as `n` by [`JobState::as_i64`].
    pub fn from_i64(n: i64) -> Option<Self> {
        Self::ALL.get(usize::try_from(n).ok()?).copied()
    }

    /// Whether the job is finished (succeeded, cancelled or dead).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Cancelled | Self::Dead)
    }

    /// Whether the job still has work ahead (scheduled, available or running).
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::InvalidArgument {
                field: "state",
                reason: format!(
                    "unknown state {s:?}; expected one of scheduled, available, running, succeeded, cancelled, dead"
                ),
            })
    }
}

/// Something that happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `run_at` was reached, or an operator asked to run a scheduled job now.
    Promote,
    /// A worker claimed the job under a lease.
    Claim,
    /// The holder of the lease reported success.
    Complete,
    /// A failed attempt (reported, or a lost lease) that will be retried.
    Retry,
    /// A failed attempt that will not be retried: attempts exhausted or non-retryable.
    Discard,
    /// Cancel a job that is not running.
    Cancel,
    /// Ask a running job to stop; delivered to its worker on the next heartbeat.
    RequestCancel,
    /// A running job whose cancellation was requested stopped (failed or lost its lease).
    AcknowledgeCancel,
    /// Put a dead or cancelled job back to work with its attempts reset.
    Replay,
    /// The lease holder hands the job back unrun (a worker shutting down): the attempt does
    /// not count.
    Release,
}

impl Event {
    fn describe(self) -> &'static str {
        match self {
            Self::Promote => "be promoted",
            Self::Claim => "be claimed",
            Self::Complete => "be completed",
            Self::Retry => "be retried",
            Self::Discard => "be discarded",
            Self::Cancel => "be cancelled",
            Self::RequestCancel => "be asked to cancel",
            Self::AcknowledgeCancel => "acknowledge a cancel",
            Self::Replay => "be replayed",
            Self::Release => "be released",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// The state a job in `from` moves to on `event`, or the refusal of an illegal move.
///
/// `Retry` lands in `scheduled`; a store may place the job straight in `available` when its
/// retry time has already come (the promotion is then immediate).
pub fn transition(from: JobState, event: Event) -> Result<JobState, Error> {
    use Event as E;
    use JobState as S;
    let to = match (from, event) {
        (S::Scheduled, E::Promote) => S::Available,
        (S::Available, E::Claim) => S::Running,
        (S::Running, E::Complete) => S::Succeeded,
        (S::Running, E::Retry) => S::Scheduled,
        (S::Running, E::Discard) => S::Dead,
        (S::Scheduled | S::Available, E::Cancel) => S::Cancelled,
        (S::Running, E::RequestCancel) => S::Running,
        (S::Running, E::AcknowledgeCancel) => S::Cancelled,
        (S::Dead | S::Cancelled, E::Replay) => S::Available,
        (S::Running, E::Release) => S::Available,
        _ => return Err(Error::InvalidTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 10] = [
        Event::Promote,
        Event::Claim,
        Event::Complete,
        Event::Retry,
        Event::Discard,
        Event::Cancel,
        Event::RequestCancel,
        Event::AcknowledgeCancel,
        Event::Replay,
        Event::Release,
    ];

    #[test]
    fn exactly_the_designed_moves_are_legal() {
        let legal: Vec<(JobState, Event)> = JobState::ALL
            .into_iter()
            .flat_map(|s| EVENTS.into_iter().map(move |e| (s, e)))
            .filter(|(s, e)| transition(*s, *e).is_ok())
            .collect();
        assert_eq!(legal.len(), 12, "{legal:?}");
    }

    #[test]
    fn terminal_states_only_leave_by_replay() {
        for state in [JobState::Succeeded, JobState::Cancelled, JobState::Dead] {
            for event in EVENTS {
                let result = transition(state, event);
                let replayable = state != JobState::Succeeded && event == Event::Replay;
                assert_eq!(result.is_ok(), replayable, "{state} on {event:?}");
            }
        }
    }

    #[test]
    fn illegal_move_names_state_and_event() {
        let err = transition(JobState::Succeeded, Event::Cancel).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidTransition);
        assert_eq!(
            err.to_string(),
            "a job that is succeeded cannot be cancelled"
        );
    }

    #[test]
    fn states_round_trip_through_numbers_and_names() {
        for state in JobState::ALL {
            assert_eq!(JobState::from_i64(state.as_i64()), Some(state));
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        assert_eq!(JobState::from_i64(6), None);
        assert!("done".parse::<JobState>().is_err());
    }
}
