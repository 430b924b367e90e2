//! Each rule with simulated time: fires, stays firing while the condition holds, does not
//! flap on a value hovering around its threshold, resolves only after its clear period and
//! fires again later.

use std::time::Duration;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A healthy pool of 3 replicas out of at most 5.
fn pool(name: &str) -> PoolSnapshot {
    PoolSnapshot {
        pool: name.into(),
        replicas: 3,
        max_replicas: 5,
        memory_limit: Some(1000 << 20),
        memory_bytes: Some(100 << 20),
        ..PoolSnapshot::default()
    }
}

struct Harness {
    engine: AlertEngine,
}

impl Harness {
    fn new() -> Self {
        Self {
            engine: AlertEngine::new(AlertPolicy::default()),
        }
    }

    /// Observes one pool at `at` seconds; returns `(status, rule)` of each event.
    fn step(&mut self, at: u64, snap: &PoolSnapshot) -> Vec<(AlertStatus, AlertRule)> {
        let events = self.engine.observe(secs(at), std::slice::from_ref(snap));
        events.iter().map(|e| (e.status, e.alert.rule)).collect()
    }

    fn firing_rules(&self) -> Vec<AlertRule> {
        self.engine.firing().iter().map(|a| a.rule).collect()
    }
}

const FIRING: AlertStatus = AlertStatus::Firing;
const RESOLVED: AlertStatus = AlertStatus::Resolved;

#[test]
fn a_healthy_pool_raises_nothing() {
    let mut h = Harness::new();
    for t in (0..3600).step_by(10) {
        assert_eq!(h.step(t, &pool("p")), vec![]);
    }
    assert!(h.engine.firing().is_empty());
}

#[test]
fn crash_rate_fires_with_a_human_message_and_resolves_after_the_window() {
    let mut h = Harness::new();
    let mut snap = pool("transcode");
    h.step(0, &snap);
    snap.crashes_total = 3;
    assert_eq!(h.step(10, &snap), vec![(FIRING, AlertRule::CrashRate)]);
    let alert = &h.engine.firing()[0];
    assert_eq!(
        alert.message,
        "pool transcode: 3 crashes in the last 10m0s (100% of 3 replicas)"
    );
    assert_eq!(
        (alert.severity, alert.value, alert.since),
        (Severity::High, 1.0, secs(10))
    );
    for t in (20..=600).step_by(10) {
        assert_eq!(h.step(t, &snap), vec![], "still firing at {t}s");
    }
    // The crashes leave the 10-minute window at 610 s; resolved 60 s of clear later.
    for t in (610..670).step_by(10) {
        assert_eq!(h.step(t, &snap), vec![], "resolved early at {t}s");
    }
    assert_eq!(h.step(670, &snap), vec![(RESOLVED, AlertRule::CrashRate)]);
    snap.crashes_total = 5;
    assert_eq!(h.step(680, &snap), vec![(FIRING, AlertRule::CrashRate)]);
}

#[test]
fn crash_rate_at_or_below_the_threshold_does_not_fire() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.replicas = 10;
    snap.crashes_total = 1; // 1 of 10 = 10 %, not above 10 %
    assert_eq!(h.step(0, &snap), vec![]);
    snap.crashes_total = 2;
    assert_eq!(h.step(10, &snap), vec![(FIRING, AlertRule::CrashRate)]);
}

#[test]
fn crashes_before_the_first_observation_count_from_time_zero() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.crashes_total = 2;
    assert_eq!(h.step(30, &snap), vec![(FIRING, AlertRule::CrashRate)]);
}

#[test]
fn crash_loop_fires_while_flagged_and_a_short_gap_does_not_resolve_it() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.crash_loop = true;
    snap.crashes_total = 9;
    let mut events = h.step(0, &snap);
    events.retain(|(_, rule)| *rule == AlertRule::CrashLoop);
    assert_eq!(events, vec![(FIRING, AlertRule::CrashLoop)]);
    snap.crash_loop = false;
    h.step(30, &snap);
    snap.crash_loop = true;
    h.step(50, &snap);
    snap.crash_loop = false;
    assert!(h.firing_rules().contains(&AlertRule::CrashLoop));
    let resolved_at = (60..=200).step_by(10).find(|t| {
        h.step(*t, &snap)
            .contains(&(RESOLVED, AlertRule::CrashLoop))
    });
    assert_eq!(
        resolved_at,
        Some(120),
        "60 s after the first clear observation following the last flagged one"
    );
}

#[test]
fn memory_fires_at_the_fraction_and_holds_in_the_band() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.memory_bytes = Some(800 << 20);
    assert_eq!(h.step(0, &snap), vec![(FIRING, AlertRule::Memory)]);
    assert_eq!(
        h.engine.firing()[0].message,
        "pool p: a worker uses 800 MiB, 80% of its 1000 MiB ceiling"
    );
    // Hovering between 70 % and 80 % for ten minutes never resolves it.
    for t in (10..600).step_by(10) {
        snap.memory_bytes = Some(if t % 20 == 0 { 790 << 20 } else { 710 << 20 });
        assert_eq!(h.step(t, &snap), vec![], "flapped at {t}s");
    }
    snap.memory_bytes = Some(600 << 20);
    assert_eq!(h.step(600, &snap), vec![]);
    assert_eq!(h.step(650, &snap), vec![]);
    assert_eq!(h.step(660, &snap), vec![(RESOLVED, AlertRule::Memory)]);
    // In the band again: not firing, so nothing fires either.
    snap.memory_bytes = Some(750 << 20);
    assert_eq!(h.step(670, &snap), vec![]);
    snap.memory_bytes = Some(900 << 20);
    assert_eq!(h.step(680, &snap), vec![(FIRING, AlertRule::Memory)]);
}

#[test]
fn memory_without_a_ceiling_never_fires() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.memory_limit = None;
    snap.memory_bytes = Some(u64::MAX);
    assert_eq!(h.step(0, &snap), vec![]);
}

#[test]
fn processing_delay_fires_above_the_age_and_resolves_below_the_lower_age() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.oldest_available_age = Some(secs(300));
    assert_eq!(
        h.step(0, &snap),
        vec![],
        "exactly 5 minutes is not older than 5 minutes"
    );
    snap.oldest_available_age = Some(secs(301));
    assert_eq!(
        h.step(10, &snap),
        vec![(FIRING, AlertRule::ProcessingDelay)]
    );
    let alert = &h.engine.firing()[0];
    assert_eq!(alert.severity, Severity::Low);
    assert_eq!(
        alert.message,
        "pool p: the oldest available job has waited 5m1s (threshold 5m0s)"
    );
    for t in (20..300).step_by(10) {
        snap.oldest_available_age = Some(secs(if t % 20 == 0 { 290 } else { 310 }));
        assert_eq!(h.step(t, &snap), vec![], "flapped at {t}s");
    }
    snap.oldest_available_age = None;
    assert_eq!(h.step(300, &snap), vec![]);
    assert_eq!(
        h.step(360, &snap),
        vec![(RESOLVED, AlertRule::ProcessingDelay)]
    );
    snap.oldest_available_age = Some(secs(400));
    assert_eq!(
        h.step(1000, &snap),
        vec![(FIRING, AlertRule::ProcessingDelay)]
    );
}

#[test]
fn dead_jobs_fire_on_a_rise_not_a_fall_and_resolve_after_the_dead_window() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.dead_total = 5;
    assert_eq!(h.step(0, &snap), vec![], "the first total is the baseline");
    snap.dead_total = 7;
    assert_eq!(h.step(10, &snap), vec![(FIRING, AlertRule::DeadJobs)]);
    assert_eq!(
        h.engine.firing()[0].message,
        "pool p: 2 new dead jobs (7 in total)"
    );
    snap.dead_total = 8;
    assert_eq!(h.step(300, &snap), vec![], "another rise keeps it firing");
    snap.dead_total = 0;
    assert_eq!(h.step(310, &snap), vec![], "a purge is not an alert");
    assert_eq!(h.step(900, &snap), vec![]);
    assert_eq!(h.step(910, &snap), vec![(RESOLVED, AlertRule::DeadJobs)]);
    snap.dead_total = 1;
    assert_eq!(h.step(920, &snap), vec![(FIRING, AlertRule::DeadJobs)]);
}

#[test]
fn saturated_needs_max_replicas_and_a_rising_depth() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.replicas = 5;
    for (t, depth) in [(0, 40), (60, 45), (120, 50)] {
        snap.depth = depth;
        assert_eq!(
            h.step(t, &snap),
            vec![],
            "no history 3 minutes back at {t}s"
        );
    }
    snap.depth = 55;
    assert_eq!(h.step(180, &snap), vec![(FIRING, AlertRule::Saturated)]);
    assert_eq!(
        h.engine.firing()[0].message,
        "pool p: at max 5 replicas and depth rose from 40 to 55 in the last 3m0s"
    );
    // Depth flat for 3 minutes: clear from 360 s, resolved at 420 s.
    let resolved_at = (190..=600).step_by(10).find(|t| {
        h.step(*t, &snap)
            .contains(&(RESOLVED, AlertRule::Saturated))
    });
    assert_eq!(resolved_at, Some(420));
}

#[test]
fn a_rising_depth_below_max_replicas_is_not_saturation() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    for t in (0..=600).step_by(10) {
        snap.depth = t;
        assert_eq!(h.step(t, &snap), vec![]);
    }
}

#[test]
fn a_pool_that_disappears_resolves_its_alerts() {
    let mut h = Harness::new();
    let mut sick = pool("a");
    sick.crash_loop = true;
    let healthy = pool("b");
    h.engine.observe(secs(0), &[sick, healthy.clone()]);
    let events = h.engine.observe(secs(10), &[healthy]);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].status, events[0].alert.rule, events[0].at),
        (RESOLVED, AlertRule::CrashLoop, secs(10))
    );
    assert!(h.engine.firing().is_empty());
}

#[test]
fn firing_is_ordered_by_pool_then_rule() {
    let mut h = Harness::new();
    let mut b = pool("b");
    b.crash_loop = true;
    b.oldest_available_age = Some(secs(600));
    let mut a = pool("a");
    a.memory_bytes = Some(999 << 20);
    h.engine.observe(secs(0), &[b, a]);
    let firing: Vec<(String, AlertRule)> = h
        .engine
        .firing()
        .into_iter()
        .map(|x| (x.pool, x.rule))
        .collect();
    assert_eq!(
        firing,
        vec![
            ("a".into(), AlertRule::Memory),
            ("b".into(), AlertRule::CrashLoop),
            ("b".into(), AlertRule::ProcessingDelay),
        ]
    );
}

#[test]
fn an_observation_from_the_past_is_ignored() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    h.step(100, &snap);
    snap.crash_loop = true;
    assert_eq!(h.step(50, &snap), vec![]);
    assert!(h.engine.firing().is_empty());
}

#[test]
fn history_stays_bounded_under_frequent_observations() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    for ms in (0..3_600_000u64).step_by(100) {
        snap.depth = ms % 97;
        snap.crashes_total = ms / 60_000;
        h.engine
            .observe(Duration::from_millis(ms), std::slice::from_ref(&snap));
    }
    let state = &h.engine.pools["p"];
    assert!(
        state.history_len() <= 2 * 66,
        "{} samples kept",
        state.history_len()
    );
}

#[test]
fn events_round_trip_through_json_with_snake_case_names() {
    let mut h = Harness::new();
    let mut snap = pool("p");
    snap.crash_loop = true;
    let event = h.engine.observe(secs(5), &[snap]).remove(0);
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["status"], "firing");
    assert_eq!(json["alert"]["rule"], "crash_loop");
    assert_eq!(json["alert"]["severity"], "high");
    assert_eq!(serde_json::from_value::<AlertEvent>(json).unwrap(), event);
    for rule in AlertRule::ALL {
        assert_eq!(serde_json::to_value(rule).unwrap(), rule.to_string());
        assert_eq!(
            serde_json::to_value(rule.severity()).unwrap(),
            rule.severity().as_str()
        );
    }
}

#[test]
fn validate_names_the_field() {
    let bad = |f: fn(&mut AlertPolicy)| {
        let mut policy = AlertPolicy::default();
        f(&mut policy);
        policy.validate().unwrap_err()
    };
    assert_eq!(
        bad(|p| p.memory_fraction = 1.5).to_string(),
        "memory_fraction 1.5 is out of range"
    );
    assert_eq!(
        bad(|p| p.memory_resolve_fraction = 0.9).to_string(),
        "memory_resolve_fraction cannot be above memory_fraction"
    );
    assert_eq!(
        bad(|p| p.oldest_age_resolve = secs(600)).code(),
        "alerts_resolve_above_fire"
    );
    assert_eq!(
        bad(|p| p.rising_window = Duration::ZERO).to_string(),
        "rising_window must be longer than zero"
    );
    assert_eq!(
        bad(|p| p.crash_rate = f64::NAN).code(),
        "alerts_fraction_out_of_range"
    );
    assert_eq!(
        bad(|p| p.webhooks = vec!["ftp://x".into()]).to_string(),
        "webhook \"ftp://x\" is not an http:// or https:// URL"
    );
    assert!(bad(|p| p.webhooks = vec!["http:///path".into()]).code() == "alerts_invalid_webhook");
    AlertPolicy::default().validate().unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<AlertPolicy>("crash_rat = 0.2").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `crash_rat`"),
        "{err}"
    );
}
