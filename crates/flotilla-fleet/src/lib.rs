//! The autoscaling policy of a worker pool and a capacity simulator that replays a job trace
//! against it.
//!
//! Everything here is a pure function of its inputs, time included: the [`Autoscaler`] is fed
//! [`Signal`]s stamped with a time since an arbitrary epoch and answers a [`Decision`] with a
//! human reason; the simulator drives the same autoscaler with simulated time. The fleet
//! supervisor (processes, draining, restarts) lives elsewhere and only applies decisions, so
//! the policy can be tested to the second without sleeping and tuned offline on real traces.
//!
//! # Layout
//! - [`policy`]: [`ScalingPolicy`] (TOML-configurable, seed-004 defaults) and its validation.
//! - [`autoscaler`]: [`Autoscaler`], [`Signal`], [`Decision`]: the sustained-window rules.
//! - [`trace`]: [`read_trace`] parses an `at_s,duration_s` CSV of job arrivals.
//! - [`sim`]: [`simulate`], a discrete-event FIFO replay, plus [`summary`].
//! - [`plot`]: [`plot_svg`], depth, replicas and wait over time as hand-written SVG.
//! - [`alerts`]: [`AlertEngine`] and [`AlertPolicy`]: crash, memory, delay, dead-job and
//!   saturation alerts that fire and resolve with hysteresis.
//!
//! # Invariants
//! - A scaling decision never leaves `[min_replicas, max_replicas]`; a count outside the bounds
//!   is moved back to them at once.
//! - A condition is *sustained* only when every observation in its window satisfied it and the
//!   observations cover the whole window; a gap longer than the window restarts it.
//! - Each direction's cooldown counts from the last change of replicas in either direction.
//! - The simulator is deterministic: the same trace and config give the same result.

pub mod alerts;
pub mod autoscaler;
pub mod plot;
pub mod policy;
pub mod sim;
pub mod trace;

mod fmt;

pub use alerts::{
    Alert, AlertEngine, AlertEvent, AlertPolicy, AlertPolicyError, AlertRule, AlertStatus,
    PoolSnapshot, Severity,
};
pub use autoscaler::{Autoscaler, Decision, Signal};
pub use plot::plot_svg;
pub use policy::{PolicyError, ScalingPolicy};
pub use sim::{Sample, SimConfig, SimError, SimResult, simulate, summary};
pub use trace::{Arrival, TraceError, read_trace};
