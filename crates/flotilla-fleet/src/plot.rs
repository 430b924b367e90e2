//! [`plot_svg`]: a simulation as three stacked, time-aligned panels of hand-written SVG:
//! queue depth (jobs), replicas (count) and the oldest waiting job's wait (seconds).

use std::fmt::Write as _;

use crate::sim::{Sample, SimResult};

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 150.0;
const PANEL_GAP: f64 = 40.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;

/// One panel: which series it draws and how its y axis is labelled.
struct Panel {
    id: &'static str,
    label: &'static str,
    colour: &'static str,
    value: fn(&Sample) -> f64,
}

const PANELS: [Panel; 3] = [
    Panel {
        id: "depth",
        label: "queue depth (jobs)",
        colour: "#1f77b4",
        value: |s| s.depth as f64,
    },
    Panel {
        id: "replicas",
        label: "replicas (count)",
        colour: "#2ca02c",
        value: |s| f64::from(s.replicas),
    },
    Panel {
        id: "wait",
        label: "oldest wait (s)",
        colour: "#d62728",
        value: |s| s.oldest_wait_s,
    },
];

/// Renders the samples of `result` as an SVG document. Each series is a `<polyline>` whose `id`
/// is `series-depth`, `series-replicas` or `series-wait`; the x axis is time in minutes.
pub fn plot_svg(result: &SimResult) -> String {
    let height = TOP + 3.0 * PANEL_HEIGHT + 2.0 * PANEL_GAP + BOTTOM;
    let t_max_s = result.samples.last().map_or(1.0, |s| s.t_s).max(1.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<title>Simulated queue depth, replicas and wait over time</title>"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    for (index, panel) in PANELS.iter().enumerate() {
        let top = TOP + index as f64 * (PANEL_HEIGHT + PANEL_GAP);
        draw_panel(&mut svg, panel, top, &result.samples, t_max_s);
    }
    draw_time_axis(&mut svg, height - BOTTOM, t_max_s);
    svg.push_str("</svg>\n");
    svg
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn draw_panel(svg: &mut String, panel: &Panel, top: f64, samples: &[Sample], t_max_s: f64) {
    let y_max = samples
        .iter()
        .map(panel.value)
        .fold(0.0, f64::max)
        .max(1.0)
        .ceil();
    let bottom = top + PANEL_HEIGHT;
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##,
        plot_width()
    );
    let label_y = top + PANEL_HEIGHT / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{label_y}" text-anchor="middle" transform="rotate(-90 20 {label_y})">{}</text>"#,
        panel.label
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{y_max}</text>"#,
        LEFT - 6.0,
        top + 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{bottom}" text-anchor="end">0</text>"#,
        LEFT - 6.0
    );
    let points: Vec<String> = samples
        .iter()
        .map(|s| {
            let x = LEFT + s.t_s / t_max_s * plot_width();
            let y = bottom - (panel.value)(s) / y_max * PANEL_HEIGHT;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline id="series-{}" fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
        panel.id,
        panel.colour,
        points.join(" "),
        panel.label
    );
}

fn draw_time_axis(svg: &mut String, y: f64, t_max_s: f64) {
    let t_max_min = t_max_s / 60.0;
    let step_min = nice_step(t_max_min / 8.0);
    let decimals = usize::from(step_min < 1.0);
    let mut index = 0u32;
    loop {
        let minute = f64::from(index) * step_min;
        if minute > t_max_min + 1e-9 {
            break;
        }
        let x = LEFT + minute / t_max_min * plot_width();
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{minute:.decimals$}</text>"#,
            y + 16.0
        );
        index += 1;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">time (min)</text>"#,
        LEFT + plot_width() / 2.0,
        y + 36.0
    );
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}
