//! `flotilla fleet simulate` on the shipped seed-004 trace writes a plot and a summary.

use std::process::Command;

#[test]
fn simulate_writes_a_plot_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plot.svg");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "max_replicas = 3\nscale_out_for = \"3m\"\n").unwrap();
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../flotilla-fleet/examples/seed004-trace.csv"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["fleet", "simulate", "--arrivals", trace, "--policy"])
        .arg(&policy)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("jobs: 260"), "{stdout}");
    assert!(stdout.contains("peak 3 replicas"), "{stdout}");
    assert!(stdout.contains("2 out, 2 in"), "{stdout}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..40]
    );
    for series in ["series-depth", "series-replicas", "series-wait"] {
        assert!(svg.contains(series), "{series}");
    }
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "at_s,duration_s\n1,2\n3,abc\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["fleet", "simulate", "--arrivals"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
}
