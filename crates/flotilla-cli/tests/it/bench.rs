//! `flotilla bench e2e` runs end to end (small counts): every figure is printed and the
//! crash run loses nothing. Its figures are not judged here.

use std::process::Command;

#[test]
fn bench_e2e_prints_every_figure_and_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["bench", "e2e", "--jobs", "300", "--latency-secs", "1"])
        .args(["--rate", "50", "--crash-jobs", "100"])
        .output()
        .expect("run flotilla bench e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in [
        "relaxed, minimal producer",
        "relaxed, flotilla-client",
        "durable, minimal producer",
        "durable, flotilla-client",
        "batches of 1,000",
        "drain by 1 worker process",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(figure))
            .unwrap_or_else(|| panic!("no {figure:?} line in\n{stdout}"));
        assert!(
            line.contains("300 jobs in") && line.ends_with("jobs/s"),
            "{line}"
        );
    }
    assert!(stdout.contains("p99"), "{stdout}");
    let crash = stdout
        .lines()
        .find(|l| l.contains("crash run: 100 jobs"))
        .unwrap_or_else(|| panic!("no crash line in\n{stdout}"));
    assert!(crash.contains("lost 0,"), "{crash}");
}
