//! Cron schedules and the pure decision of whether a tick fires.
//!
//! A schedule remembers the last tick it fired. When the scheduler looks at it, only the
//! latest tick due at or before `now` counts: it fires if it is no older than the
//! schedule's backfill window, and is otherwise skipped and reported (never silently). Ticks
//! missed in between are not run one by one; a restart runs a missed tick at most once.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Timestamp, validate_kind, validate_queue_name};

/// A parsed cron expression: 5 fields (minute granularity) or 6 with seconds first, in UTC.
#[derive(Debug, Clone)]
pub struct CronSpec {
    expr: String,
    parsed: croner::Cron,
}

impl CronSpec {
    /// Parses `expr`, e.g. `*/5 * * * *` or `@hourly`.
    pub fn parse(expr: &str) -> Result<Self, Error> {
        let parsed = croner::Cron::from_str(expr).map_err(|e| Error::InvalidCron {
            expr: expr.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            expr: expr.into(),
            parsed,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.parsed.find_previous_occurrence(&t, true).ok()
    }

    /// The first tick after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.parsed.find_next_occurrence(&t, false).ok()
    }
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Serialize for CronSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expr)
    }
}

impl<'de> Deserialize<'de> for CronSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expr = String::deserialize(d)?;
        Self::parse(&expr).map_err(serde::de::Error::custom)
    }
}

/// A periodic job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSchedule {
    /// Unique name of the schedule.
    pub name: String,
    /// When it fires.
    pub spec: CronSpec,
    /// The queue of the jobs it enqueues.
    pub queue: String,
    /// The kind of the jobs it enqueues.
    pub kind: String,
    /// Their payload.
    #[serde(default)]
    pub payload: Value,
    /// Their priority.
    #[serde(default)]
    pub priority: i32,
    /// How late a tick may still be run, e.g. after a restart; older ticks are skipped.
    #[serde(with = "humantime_serde", default = "CronSchedule::default_backfill")]
    pub backfill: Duration,
}

impl CronSchedule {
    /// One minute: a restart within a minute of a tick still runs it.
    pub const DEFAULT_BACKFILL: Duration = Duration::from_secs(60);
    /// The shortest window, so that an ordinary scheduler delay never skips a tick.
    pub const MIN_BACKFILL: Duration = Duration::from_secs(5);

    fn default_backfill() -> Duration {
        Self::DEFAULT_BACKFILL
    }

    /// A schedule with the default backfill window and priority.
    pub fn new(
        name: impl Into<String>,
        spec: CronSpec,
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            name: name.into(),
            spec,
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            backfill: Self::DEFAULT_BACKFILL,
        }
    }

    /// Checks the schedule.
    pub fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.len() > 128 {
            return Err(Error::InvalidConfig {
                field: "name",
                reason: "must be 1 to 128 characters".into(),
            });
        }
        validate_queue_name(&self.queue)?;
        validate_kind(&self.kind)?;
        if !(0..=crate::MAX_PRIORITY).contains(&self.priority) {
            return Err(Error::InvalidPriority(self.priority.into()));
        }
        if self.backfill < Self::MIN_BACKFILL {
            return Err(Error::InvalidConfig {
                field: "backfill",
                reason: "must be at least 5s".into(),
            });
        }
        Ok(())
    }

    /// The unique key of the job fired for `tick`, which makes firing idempotent.
    pub fn unique_key(&self, tick: Timestamp) -> String {
        format!("cron:{}:{}", self.name, tick.timestamp())
    }
}

/// What to do with a schedule now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronDecision {
    /// Nothing is due.
    Wait,
    /// Enqueue the job of `tick` and remember `tick` as fired.
    Fire {
        /// The tick being run.
        tick: Timestamp,
    },
    /// `tick` is older than the backfill window: remember it as passed, enqueue nothing.
    Skip {
        /// The tick being passed over.
        tick: Timestamp,
    },
}

/// Decides whether the schedule fires at `now`, given the last tick it fired.
pub fn cron_decision(
    spec: &CronSpec,
    last_fired: Timestamp,
    now: Timestamp,
    backfill: Duration,
) -> CronDecision {
    let Some(tick) = spec.latest_at_or_before(now) else {
        return CronDecision::Wait;
    };
    if tick <= last_fired {
        return CronDecision::Wait;
    }
    let late = (now - tick).to_std().unwrap_or(Duration::ZERO);
    if late <= backfill {
        CronDecision::Fire { tick }
    } else {
        CronDecision::Skip { tick }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn at(h: u32, m: u32, s: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2030, 1, 1, h, m, s).unwrap()
    }

    #[test]
    fn fires_each_tick_once() {
        let spec = CronSpec::parse("*/5 * * * *").unwrap();
        let backfill = Duration::from_secs(60);
        assert_eq!(
            cron_decision(&spec, at(0, 0, 0), at(0, 4, 59), backfill),
            CronDecision::Wait
        );
        assert_eq!(
            cron_decision(&spec, at(0, 0, 0), at(0, 5, 1), backfill),
            CronDecision::Fire { tick: at(0, 5, 0) }
        );
        assert_eq!(
            cron_decision(&spec, at(0, 5, 0), at(0, 5, 2), backfill),
            CronDecision::Wait
        );
    }

    #[test]
    fn a_missed_tick_runs_once_within_backfill_and_is_skipped_beyond() {
        let spec = CronSpec::parse("0 * * * *").unwrap();
        let backfill = Duration::from_secs(600);
        // Down from 00:30 to 01:09: the 01:00 tick is 9 minutes late, within the window.
        assert_eq!(
            cron_decision(&spec, at(0, 0, 0), at(1, 9, 0), backfill),
            CronDecision::Fire { tick: at(1, 0, 0) }
        );
        // Down until 01:11: too late, reported as skipped.
        assert_eq!(
            cron_decision(&spec, at(0, 0, 0), at(1, 11, 0), backfill),
            CronDecision::Skip { tick: at(1, 0, 0) }
        );
    }

    #[test]
    fn seconds_field_and_aliases_parse_and_garbage_does_not() {
        assert!(CronSpec::parse("*/10 * * * * *").is_ok());
        assert!(CronSpec::parse("@hourly").is_ok());
        let err = CronSpec::parse("every minute").unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidCron);
    }
}
