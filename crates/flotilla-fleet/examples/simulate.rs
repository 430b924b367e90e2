//! Replays a trace through the seed-004 policy and prints a summary:
//! `cargo run -p flotilla-fleet --example simulate -- [trace.csv] [out.svg]`
//! (defaults to the bundled `seed004-trace.csv`; writes the plot only when `out.svg` is given).

use std::process::ExitCode;

use flotilla_fleet::{SimConfig, plot_svg, read_trace, simulate, summary};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let trace_path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed004-trace.csv").to_owned()
    });
    let result = std::fs::read_to_string(&trace_path)
        .map_err(|err| format!("{trace_path}: {err}"))
        .and_then(|text| read_trace(&text).map_err(|err| format!("{trace_path}: {err}")))
        .and_then(|trace| simulate(&trace, &SimConfig::default()).map_err(|e| e.to_string()));
    let result = match result {
        Ok(result) => result,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary(&result));
    for (at_s, decision) in &result.decisions {
        println!("  at {:.0}s: {}", at_s, decision.reason());
    }
    if let Some(svg_path) = args.next()
        && let Err(err) = std::fs::write(&svg_path, plot_svg(&result))
    {
        eprintln!("error: {svg_path}: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
