//! `flotilla assets list|get|release`: uploaded assets, their steps' results (checksums,
//! renditions, detections, transcripts) and outputs, and releasing one held by moderation.

use clap::Subcommand;
use flotilla_core::StepState;
use flotilla_proto::{AssetView, RunId, RunListQuery};
use serde_json::Value;

use crate::remote::{Remote, table};

/// `flotilla assets` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum AssetsCommand {
    /// Lists assets, newest first.
    List {
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Shows one asset: status, each step with its result in short, and the outputs
    /// (`--json` for everything, e.g. every detection box or transcript segment).
    Get {
        /// The asset's id.
        id: i64,
    },
    /// Releases an asset held by moderation: its failed step runs again and passes (admin).
    Release {
        /// The asset's id.
        id: i64,
    },
}

pub(crate) async fn run(remote: &Remote, command: AssetsCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        AssetsCommand::List { pipeline, limit } => {
            let query = RunListQuery {
                pipeline,
                cursor: None,
                limit: Some(limit),
            };
            let page = client.assets(&query).await?;
            remote.print(&page.assets, |assets| list_table(assets))
        }
        AssetsCommand::Get { id } => {
            let asset = client.asset(RunId(id)).await?;
            remote.print(&asset, describe)
        }
        AssetsCommand::Release { id } => {
            let asset = client.release_asset(RunId(id)).await?;
            remote.print(&asset, describe)
        }
    }
}

fn list_table(assets: &[AssetView]) -> String {
    let rows = assets.iter().map(|a| {
        vec![
            a.id.to_string(),
            a.name.clone(),
            a.pipeline.clone(),
            status(a),
            a.size.to_string(),
            a.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]
    });
    table(
        &["ASSET", "NAME", "PIPELINE", "STATUS", "BYTES", "CREATED"],
        rows,
    )
}

fn status(asset: &AssetView) -> String {
    serde_json::to_value(asset.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An asset in tables: header, steps with a one-line summary of each result, outputs.
fn describe(asset: &AssetView) -> String {
    let mut out = format!(
        "asset {} {:?} ({} bytes, pipeline {}): {}\n\n",
        asset.id,
        asset.name,
        asset.size,
        asset.pipeline,
        status(asset)
    );
    let steps = asset.steps.iter().map(|s| {
        let state = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let summary = match (&s.result, s.state) {
            (Some(result), _) => summarize(result),
            (None, StepState::Failed) => s.error.clone().unwrap_or_default(),
            _ => String::new(),
        };
        vec![s.name.clone(), state, s.attempt.to_string(), summary]
    });
    out += &table(&["STEP", "STATE", "ATTEMPTS", "RESULT"], steps);
    if !asset.outputs.is_empty() {
        let outputs = asset.outputs.iter().map(|o| {
            vec![
                o.step.clone(),
                o.name.clone(),
                o.size.map_or("-".into(), |s| s.to_string()),
                o.key.clone(),
            ]
        });
        out += "\n";
        out += &table(&["STEP", "OUTPUT", "BYTES", "KEY"], outputs);
    }
    out
}

/// One line for a step's result: what a person looks for first.
pub(crate) fn summarize(result: &Value) -> String {
    if let Some(labels) = result.get("labels").and_then(Value::as_array) {
        let labels: Vec<String> = labels
            .iter()
            .take(8)
            .filter_map(|l| {
                let score = l.get("best_score").and_then(Value::as_f64).unwrap_or(0.0);
                let count = l.get("count").and_then(Value::as_u64).unwrap_or(1);
                Some(format!(
                    "{} ×{count} ({score:.2})",
                    l.get("label")?.as_str()?
                ))
            })
            .collect();
        if labels.is_empty() {
            return "nothing detected".into();
        }
        return format!("labels: {}", labels.join(", "));
    }
    if let Some(flagged) = result.get("flagged").and_then(Value::as_bool) {
        let released = result.get("released").and_then(Value::as_bool) == Some(true);
        return match (flagged, released) {
            (true, true) => "flagged, released by an admin".into(),
            (true, false) => "flagged".into(),
            (false, _) => "not flagged".into(),
        };
    }
    let text = result.pointer("/transcript/text").and_then(Value::as_str);
    if let Some(first_line) = text.and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty())) {
        return format!("transcript: {}", shorten(first_line, 80));
    }
    if let Some(note) = result.pointer("/transcript/note").and_then(Value::as_str) {
        return format!("transcript: ({note})");
    }
    if let Some(outputs) = result.get("outputs").and_then(Value::as_array) {
        return format!("{} output(s)", outputs.len());
    }
    if let Some(kind) = result.get("type").and_then(Value::as_str) {
        return format!("type {kind}");
    }
    shorten(&result.to_string(), 80)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}
