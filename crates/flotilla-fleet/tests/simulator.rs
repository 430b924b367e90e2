//! The capacity simulator, the trace reader and the SVG plot.

use std::time::Duration;

use flotilla_fleet::{
    Arrival, Decision, ScalingPolicy, SimConfig, plot_svg, read_trace, simulate, summary,
};

const SEED_TRACE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed004-trace.csv");

/// A small deterministic xorshift generator, so the trace needs no `rand` and never changes.
struct XorShift(u64);

impl XorShift {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_unit()
    }
}

/// Seed 004's load shape: 15 quiet minutes, a 25-minute burst (a job every 5–9 s, more than one
/// replica of two 30 s slots can take), then 30 minutes of decline (a job every 45–90 s).
fn seed004_trace_csv() -> String {
    // (phase end in s, inter-arrival range in s, duration range in s)
    let phases = [
        (900.0, (30.0, 60.0), (20.0, 40.0)),
        (2400.0, (5.0, 9.0), (25.0, 35.0)),
        (4200.0, (45.0, 90.0), (20.0, 40.0)),
    ];
    let mut rng = XorShift(0x5EED_0004);
    let mut csv = String::from("at_s,duration_s\n");
    let mut at = 0.0;
    for (end, gap, duration) in phases {
        loop {
            at += rng.between(gap.0, gap.1);
            if at >= end {
                at = end;
                break;
            }
            let duration = rng.between(duration.0, duration.1);
            csv.push_str(&format!("{at:.1},{duration:.1}\n"));
        }
    }
    csv
}

fn seed_trace() -> Vec<Arrival> {
    read_trace(&std::fs::read_to_string(SEED_TRACE_PATH).unwrap()).unwrap()
}

fn job(at_s: f64, duration_s: f64) -> Arrival {
    Arrival { at_s, duration_s }
}

#[test]
fn seed_trace_file_matches_its_generator() {
    let generated = seed004_trace_csv();
    if std::env::var_os("FLOTILLA_REGENERATE_TRACE").is_some() {
        std::fs::write(SEED_TRACE_PATH, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(SEED_TRACE_PATH).unwrap();
    assert_eq!(
        stored, generated,
        "regenerate with FLOTILLA_REGENERATE_TRACE=1 cargo test -p flotilla-fleet"
    );
    let rows = read_trace(&stored).unwrap().len();
    assert!((200..=400).contains(&rows), "{rows} rows");
}

#[test]
fn three_jobs_on_one_slot_wait_exactly_in_fifo_order() {
    let config = SimConfig {
        concurrency_per_replica: 1,
        startup: Duration::ZERO,
        ..Default::default()
    };
    // Out of order on purpose: the simulator sorts by arrival.
    let trace = [job(2.0, 5.0), job(0.0, 10.0), job(3.0, 1.0)];
    let result = simulate(&trace, &config).unwrap();
    // Starts at 0, 10 and 15: waits 0, 8 and 12.
    assert_eq!(result.jobs, 3);
    assert_eq!(result.max_wait_s, 12.0);
    assert_eq!(result.mean_wait_s, 20.0 / 3.0);
    assert_eq!(result.p95_wait_s, 12.0);
    // Ticks at 0, 15 and 30 s; the last job ends at 16 s, so the pool runs for 30 s.
    assert_eq!(result.replica_minutes, 0.5);
    assert!(result.decisions.is_empty());
    let depths: Vec<u64> = result.samples.iter().map(|s| s.depth).collect();
    assert_eq!(depths, [0, 0, 0]);
    let busy: Vec<u32> = result.samples.iter().map(|s| s.busy).collect();
    assert_eq!(busy, [1, 1, 0]);
    assert_eq!(result.samples[1].max_wait_s_so_far, 12.0);
}

#[test]
fn two_slots_run_two_jobs_at_once() {
    let config = SimConfig {
        concurrency_per_replica: 2,
        startup: Duration::ZERO,
        ..Default::default()
    };
    let trace = [job(0.0, 10.0), job(0.0, 10.0), job(1.0, 1.0)];
    let result = simulate(&trace, &config).unwrap();
    assert_eq!(result.max_wait_s, 9.0);
    assert_eq!(result.mean_wait_s, 3.0);
}

#[test]
fn an_empty_trace_gives_an_empty_result() {
    let result = simulate(&[], &SimConfig::default()).unwrap();
    assert_eq!(result.jobs, 0);
    assert_eq!((result.max_wait_s, result.mean_wait_s), (0.0, 0.0));
    assert_eq!(result.samples.len(), 1);
    assert!(plot_svg(&result).contains("series-depth"));
}

#[test]
fn the_seed_trace_scales_out_to_3_and_back_to_1() {
    let trace = seed_trace();
    let config = SimConfig::default();
    let result = simulate(&trace, &config).unwrap();
    let targets: Vec<u32> = result
        .decisions
        .iter()
        .filter_map(|(_, d)| d.target())
        .collect();
    assert_eq!(targets, [2, 3, 2, 1], "{:#?}", result.decisions);
    assert!(matches!(result.decisions[0].1, Decision::ScaleOut { .. }));
    assert!(result.decisions[0].1.reason().contains("> 10 for 3m0s"));
    assert_eq!(result.samples.last().unwrap().replicas, 1);
    assert_eq!(result.jobs, trace.len());

    let span_min = result.samples.last().unwrap().t_s / 60.0;
    assert!(result.replica_minutes > span_min * 1.0 + 1.0);
    assert!(result.replica_minutes < span_min * 3.0);
    assert!(result.max_wait_s >= result.p95_wait_s);
    assert!(result.p95_wait_s >= result.mean_wait_s);
    assert!(result.mean_wait_s > 0.0);

    let text = summary(&result);
    assert!(text.contains(&format!("jobs: {}", trace.len())), "{text}");
    assert!(text.contains("scale decisions: 4 (2 out, 2 in)"), "{text}");
}

#[test]
fn autoscaling_cuts_the_worst_wait_of_the_seed_trace() {
    let trace = seed_trace();
    let fixed = SimConfig {
        policy: ScalingPolicy {
            max_replicas: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let scaled = simulate(&trace, &SimConfig::default()).unwrap();
    let fixed = simulate(&trace, &fixed).unwrap();
    assert!(fixed.decisions.is_empty());
    assert!(
        scaled.max_wait_s * 2.0 < fixed.max_wait_s,
        "scaled {} vs fixed {}",
        scaled.max_wait_s,
        fixed.max_wait_s
    );
    assert!(scaled.replica_minutes > fixed.replica_minutes);
}

#[test]
fn simulation_is_deterministic() {
    let trace = seed_trace();
    let config = SimConfig::default();
    assert_eq!(
        simulate(&trace, &config).unwrap(),
        simulate(&trace, &config).unwrap()
    );
}

#[test]
fn new_replicas_serve_only_after_startup() {
    let config = SimConfig {
        policy: ScalingPolicy {
            min_replicas: 2,
            ..Default::default()
        },
        concurrency_per_replica: 1,
        start_replicas: 1,
        startup: Duration::from_secs(30),
        ..Default::default()
    };
    // Tick 0 brings the pool up to its minimum of 2; the second replica is ready at 30 s.
    let trace = [job(0.0, 100.0), job(0.0, 100.0)];
    let result = simulate(&trace, &config).unwrap();
    assert_eq!(result.max_wait_s, 30.0);
    assert_eq!(result.decisions.len(), 1);
    assert!(result.decisions[0].1.reason().contains("below min 2"));
}

#[test]
fn invalid_configs_are_refused_with_codes() {
    let zero_slots = SimConfig {
        concurrency_per_replica: 0,
        ..Default::default()
    };
    let fast_tick = SimConfig {
        tick: Duration::from_millis(10),
        ..Default::default()
    };
    let bad_policy = SimConfig {
        policy: ScalingPolicy {
            min_replicas: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let huge_cooldown = SimConfig {
        policy: ScalingPolicy {
            scale_in_cooldown: Duration::from_secs(u64::MAX / 4),
            ..Default::default()
        },
        ..Default::default()
    };
    for (config, code) in [
        (huge_cooldown, "sim_too_long"),
        (zero_slots, "sim_zero_concurrency"),
        (fast_tick, "sim_tick_too_short"),
        (bad_policy, "policy_zero_min_replicas"),
    ] {
        let err = simulate(&[job(0.0, 1.0)], &config).unwrap_err();
        assert_eq!(err.code(), code);
        assert!(!err.is_retryable());
    }
}

#[test]
fn a_trace_with_too_much_work_is_refused_before_running() {
    let trace: Vec<Arrival> = (0..2000).map(|_| job(0.0, 1e7)).collect();
    let config = SimConfig {
        tick: Duration::from_secs(1),
        ..Default::default()
    };
    let err = simulate(&trace, &config).unwrap_err();
    assert_eq!(err.code(), "sim_too_long");
    assert!(err.to_string().contains("more than the limit"), "{err}");
}

#[test]
fn the_plot_is_xml_with_three_aligned_series_and_labelled_axes() {
    let result = simulate(&seed_trace(), &SimConfig::default()).unwrap();
    let svg = plot_svg(&result);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let mut first_xs = Vec::new();
    for id in ["series-depth", "series-replicas", "series-wait"] {
        let line = doc
            .descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no {id}"));
        assert_eq!(line.tag_name().name(), "polyline");
        let points: Vec<&str> = line.attribute("points").unwrap().split(' ').collect();
        assert_eq!(points.len(), result.samples.len());
        let xs: Vec<&str> = points
            .iter()
            .map(|p| p.split(',').next().unwrap())
            .collect();
        if first_xs.is_empty() {
            first_xs = xs;
        } else {
            assert_eq!(xs, first_xs, "{id} is not aligned in time");
        }
    }
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for label in [
        "time (min)",
        "queue depth (jobs)",
        "replicas (count)",
        "oldest wait (s)",
    ] {
        assert!(texts.contains(&label), "missing axis label {label}");
    }
}

#[test]
fn read_trace_reports_the_bad_line() {
    let err = read_trace("at_s,duration_s\n0,10\n5,abc\n").unwrap_err();
    assert_eq!(err.line(), 3);
    assert_eq!(err.code(), "trace_not_a_number");
    assert_eq!(
        err.to_string(),
        "line 3: duration_s \"abc\" is not a number"
    );
    assert!(!err.is_retryable());

    let err = read_trace("at_s,duration_s\n0,10\n1,2\n7\n").unwrap_err();
    assert_eq!((err.line(), err.code()), (4, "trace_bad_record"));
    assert!(err.to_string().contains("expected 2 fields"), "{err}");

    for bad in ["-1", "NaN", "inf", "1e12"] {
        let err = read_trace(&format!("at_s,duration_s\n{bad},1\n")).unwrap_err();
        assert_eq!((err.line(), err.code()), (2, "trace_out_of_range"), "{bad}");
    }

    let err = read_trace("time,duration\n0,1\n").unwrap_err();
    assert_eq!((err.line(), err.code()), (1, "trace_bad_header"));
    let err = read_trace("").unwrap_err();
    assert_eq!(err.code(), "trace_bad_header");
}

#[test]
fn read_trace_accepts_spaces_and_an_empty_body() {
    assert_eq!(read_trace("at_s,duration_s\n").unwrap(), []);
    assert_eq!(
        read_trace("at_s, duration_s\n 1.5 , 2\n").unwrap(),
        [job(1.5, 2.0)]
    );
}
