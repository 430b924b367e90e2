//! The seed-004 autoscaling rules, driven with simulated time (a signal every 15 s).

use std::time::Duration;

use flotilla_fleet::{Autoscaler, Decision, PolicyError, ScalingPolicy, Signal};

const TICK: u64 = 15;

fn signal(at_s: u64, depth: u64) -> Signal {
    Signal {
        at: Duration::from_secs(at_s),
        depth,
        oldest_age: None,
    }
}

/// Feeds `depth` every 15 s over `[from_s, to_s]` at a fixed replica count; returns the
/// decisions with their times.
fn feed(
    scaler: &mut Autoscaler,
    from_s: u64,
    to_s: u64,
    depth: u64,
    replicas: u32,
) -> Vec<(u64, Decision)> {
    (from_s..=to_s)
        .step_by(TICK as usize)
        .map(|at| (at, scaler.observe(signal(at, depth), replicas)))
        .collect()
}

/// Feeds `depth` every 15 s from `from_s`, applying decisions, until `to_s`; returns the
/// scaling decisions with their times and the final replica count.
fn run(
    scaler: &mut Autoscaler,
    from_s: u64,
    to_s: u64,
    depth: u64,
    replicas: &mut u32,
) -> Vec<(u64, Decision)> {
    let mut scalings = Vec::new();
    for at in (from_s..=to_s).step_by(TICK as usize) {
        let decision = scaler.observe(signal(at, depth), *replicas);
        if let Some(to) = decision.target() {
            *replicas = to;
            scalings.push((at, decision));
        }
    }
    scalings
}

fn seed004() -> Autoscaler {
    Autoscaler::new(ScalingPolicy::default())
}

fn is_hold(decision: &Decision) -> bool {
    matches!(decision, Decision::Hold { .. })
}

#[test]
fn defaults_are_seed_004() {
    let policy = ScalingPolicy::default();
    assert_eq!((policy.min_replicas, policy.max_replicas), (1, 3));
    assert_eq!(policy.scale_out_depth, 10);
    assert_eq!(policy.scale_out_for, Duration::from_secs(180));
    assert_eq!(policy.scale_out_cooldown, Duration::from_secs(300));
    assert_eq!(policy.scale_in_depth, 3);
    assert_eq!(policy.scale_in_for, Duration::from_secs(300));
    assert_eq!(policy.scale_in_cooldown, Duration::from_secs(600));
    assert_eq!(policy.max_age, None);
    assert_eq!(policy.validate(), Ok(()));
}

#[test]
fn policy_reads_from_toml_with_defaults_for_missing_fields() {
    let policy: ScalingPolicy =
        toml::from_str("max_replicas = 5\nscale_out_for = \"1m 30s\"\nmax_age = \"2m\"\n").unwrap();
    assert_eq!(policy.max_replicas, 5);
    assert_eq!(policy.scale_out_for, Duration::from_secs(90));
    assert_eq!(policy.max_age, Some(Duration::from_secs(120)));
    assert_eq!(policy.scale_in_cooldown, Duration::from_secs(600));
    let round_trip: ScalingPolicy = toml::from_str(&toml::to_string(&policy).unwrap()).unwrap();
    assert_eq!(round_trip, policy);
    assert!(toml::from_str::<ScalingPolicy>("max_replica = 5").is_err());
}

#[test]
fn invalid_policies_are_refused_with_codes() {
    let cases = [
        (
            ScalingPolicy {
                min_replicas: 0,
                ..Default::default()
            },
            "policy_zero_min_replicas",
        ),
        (
            ScalingPolicy {
                min_replicas: 4,
                ..Default::default()
            },
            "policy_min_above_max",
        ),
        (
            ScalingPolicy {
                scale_in_for: Duration::ZERO,
                ..Default::default()
            },
            "policy_zero_window",
        ),
        (
            ScalingPolicy {
                scale_in_depth: 11,
                ..Default::default()
            },
            "policy_overlapping_thresholds",
        ),
    ];
    for (policy, code) in cases {
        let err: PolicyError = policy.validate().unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.is_retryable());
    }
}

#[test]
fn depth_of_exactly_10_never_scales_out() {
    let mut scaler = seed004();
    let decisions = feed(&mut scaler, 0, 3600, 10, 1);
    assert!(decisions.iter().all(|(_, d)| is_hold(d)), "{decisions:?}");
}

#[test]
fn depth_11_for_2m59s_does_not_scale_out() {
    let mut scaler = seed004();
    // Signals every second so the run is exactly 2m59s long.
    for at in 0..=179 {
        let decision = scaler.observe(signal(at, 11), 1);
        assert!(is_hold(&decision), "at {at}s: {decision:?}");
    }
    let decision = scaler.observe(signal(180, 2), 1);
    assert!(is_hold(&decision), "{decision:?}");
}

#[test]
fn depth_11_for_3m_scales_out_by_one() {
    let mut scaler = seed004();
    let decisions = feed(&mut scaler, 0, 165, 11, 1);
    assert!(decisions.iter().all(|(_, d)| is_hold(d)));
    let decision = scaler.observe(signal(180, 11), 1);
    assert_eq!(
        decision,
        Decision::ScaleOut {
            to: 2,
            reason: "depth 11 > 10 for 3m0s; 1 → 2 replicas".to_owned()
        }
    );
}

#[test]
fn one_dip_in_the_window_restarts_it() {
    let mut scaler = seed004();
    feed(&mut scaler, 0, 120, 14, 1);
    assert!(is_hold(&scaler.observe(signal(135, 10), 1)));
    // The run restarts at 150 s, so it is sustained only at 330 s.
    let decisions = feed(&mut scaler, 150, 315, 14, 1);
    assert!(decisions.iter().all(|(_, d)| is_hold(d)));
    assert_eq!(scaler.observe(signal(330, 14), 1).target(), Some(2));
}

#[test]
fn hold_reasons_say_how_long_of_how_long() {
    let mut scaler = seed004();
    feed(&mut scaler, 0, 45, 14, 1);
    let decision = scaler.observe(signal(60, 14), 1);
    assert_eq!(
        decision.reason(),
        "depth 14 > 10 for 1m0s of 3m0s; holding 1 replica"
    );
    let decision = scaler.observe(signal(75, 5), 1);
    assert_eq!(
        decision.reason(),
        "depth 5 within [3, 10]; holding 1 replica"
    );
}

#[test]
fn scale_out_cooldown_is_300s_from_the_last_scaling() {
    let mut scaler = seed004();
    let mut replicas = 1;
    let scalings = run(&mut scaler, 0, 900, 20, &mut replicas);
    let times: Vec<u64> = scalings.iter().map(|(at, _)| *at).collect();
    // Sustained from 180 s on; the second step waits for the 300 s cooldown.
    assert_eq!(times, [180, 480]);
    assert_eq!(replicas, 3);
}

#[test]
fn a_hold_in_cooldown_says_how_long_is_left() {
    let mut scaler = seed004();
    let mut replicas = 1;
    run(&mut scaler, 0, 180, 20, &mut replicas);
    feed(&mut scaler, 195, 390, 20, replicas);
    let in_cooldown = scaler.observe(signal(405, 20), replicas);
    assert_eq!(
        in_cooldown.reason(),
        "depth 20 > 10 for 6m45s but in scale-out cooldown since the last scaling at 3m0s; 1m15s left"
    );
}

#[test]
fn at_max_holds_with_a_reason_saying_so() {
    let mut scaler = seed004();
    feed(&mut scaler, 0, 165, 25, 3);
    let decision = scaler.observe(signal(180, 25), 3);
    assert_eq!(
        decision,
        Decision::Hold {
            reason: "depth 25 > 10 for 3m0s but already at max 3 replicas".to_owned()
        }
    );
}

#[test]
fn scale_in_needs_depth_below_3_for_5_minutes() {
    let mut scaler = seed004();
    // Depth 3 is not below 3.
    assert!(
        feed(&mut scaler, 0, 1800, 3, 3)
            .iter()
            .all(|(_, d)| is_hold(d))
    );
    let mut scaler = seed004();
    assert!(
        feed(&mut scaler, 0, 285, 2, 3)
            .iter()
            .all(|(_, d)| is_hold(d))
    );
    assert_eq!(
        scaler.observe(signal(300, 2), 3),
        Decision::ScaleIn {
            to: 2,
            reason: "depth 2 < 3 for 5m0s; 3 → 2 replicas".to_owned()
        }
    );
}

#[test]
fn scale_in_cooldown_is_600s_and_stops_at_min() {
    let mut scaler = seed004();
    let mut replicas = 3;
    let scalings = run(&mut scaler, 0, 3600, 0, &mut replicas);
    let times: Vec<u64> = scalings.iter().map(|(at, _)| *at).collect();
    assert_eq!(times, [300, 900]);
    assert_eq!(replicas, 1);
    let at_min = scaler.observe(signal(3615, 0), 1);
    assert_eq!(
        at_min.reason(),
        "depth 0 < 3 for 1h0m15s but already at min 1 replica"
    );
}

#[test]
fn scale_out_blocks_scale_in_for_the_scale_in_cooldown() {
    let mut scaler = seed004();
    let mut replicas = 1;
    let scalings = run(&mut scaler, 0, 180, 20, &mut replicas);
    assert_eq!(scalings.len(), 1);
    // The queue empties at once; scale-in would be sustained at 495 s but the 600 s
    // cooldown from the scale-out at 180 s holds it until 780 s.
    let scalings = run(&mut scaler, 195, 1200, 0, &mut replicas);
    let times: Vec<u64> = scalings.iter().map(|(at, _)| *at).collect();
    assert_eq!(times, [780]);
    assert_eq!(replicas, 1);
}

#[test]
fn replicas_outside_bounds_move_back_at_once() {
    let mut scaler = seed004();
    assert_eq!(
        scaler.observe(signal(0, 5), 5),
        Decision::ScaleIn {
            to: 3,
            reason: "5 replicas above max 3; 5 → 3 replicas".to_owned()
        }
    );
    let mut scaler = Autoscaler::new(ScalingPolicy {
        min_replicas: 2,
        ..Default::default()
    });
    assert_eq!(
        scaler.observe(signal(0, 5), 0),
        Decision::ScaleOut {
            to: 2,
            reason: "0 replicas below min 2; 0 → 2 replicas".to_owned()
        }
    );
}

#[test]
fn a_gap_longer_than_the_window_restarts_it() {
    let mut scaler = seed004();
    feed(&mut scaler, 0, 150, 14, 1);
    // No signal for 3m15s (> 3m window): the run restarts at 390 s.
    let decisions = feed(&mut scaler, 390, 555, 14, 1);
    assert!(decisions.iter().all(|(_, d)| is_hold(d)), "{decisions:?}");
    assert_eq!(scaler.observe(signal(570, 14), 1).target(), Some(2));
}

#[test]
fn a_gap_within_the_window_keeps_it() {
    let mut scaler = seed004();
    scaler.observe(signal(0, 14), 1);
    assert!(is_hold(&scaler.observe(signal(120, 14), 1)));
    assert_eq!(scaler.observe(signal(180, 14), 1).target(), Some(2));
}

#[test]
fn an_out_of_order_signal_is_ignored() {
    let mut scaler = seed004();
    feed(&mut scaler, 0, 165, 14, 1);
    let decision = scaler.observe(signal(100, 0), 1);
    assert_eq!(
        decision.reason(),
        "signal at 1m40s is older than the previous one at 2m45s; ignored"
    );
    assert_eq!(scaler.observe(signal(180, 14), 1).target(), Some(2));
}

#[test]
fn an_old_job_scales_out_when_max_age_is_set() {
    let mut scaler = Autoscaler::new(ScalingPolicy {
        max_age: Some(Duration::from_secs(120)),
        ..Default::default()
    });
    let aged = |at_s: u64| Signal {
        at: Duration::from_secs(at_s),
        depth: 4,
        oldest_age: Some(Duration::from_secs(121 + at_s)),
    };
    for at in (0..180).step_by(15) {
        assert!(is_hold(&scaler.observe(aged(at), 1)));
    }
    assert_eq!(
        scaler.observe(aged(180), 1),
        Decision::ScaleOut {
            to: 2,
            reason: "oldest job 5m1s > max age 2m0s for 3m0s; 1 → 2 replicas".to_owned()
        }
    );
}
