//! Streams a generated body into a store and back, printing throughput and the process's peak memory.
//!
//! `cargo run --release -p flotilla-objects --example throughput -- [STORE_URL] [MIB]`
//! (default: a temporary local directory, 256 MiB). S3 URLs take credentials from `AWS_*` variables.

use std::time::Instant;

use bytes::Bytes;
use flotilla_objects::{ObjectKey, Objects};

const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let scratch = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| scratch.path().join("store").display().to_string());
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let objects = Objects::open(&url)?;
    let key = ObjectKey::upload("throughput", "body.bin");

    // A fresh allocation per chunk, as a network body would be, so buffering shows in the peak RSS.
    let chunks = mib * 1024 * 1024 / CHUNK;
    let body = futures::stream::iter((0..chunks).map(|i| Ok(Bytes::from(vec![i as u8; CHUNK]))));
    let started = Instant::now();
    let info = objects.put_stream(&key, body, None).await?;
    report("put_stream", info.size, started);

    let started = Instant::now();
    let info = objects
        .get_to_file(&key, &scratch.path().join("back.bin"))
        .await?;
    report("get_to_file", info.size, started);
    objects.delete(&key).await?;
    println!("store: {}", objects.description());
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

fn report(what: &str, bytes: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what}: {} MiB in {secs:.2} s = {:.0} MiB/s (sha256 included)",
        bytes >> 20,
        (bytes >> 20) as f64 / secs
    );
}

/// `VmHWM` from /proc/self/status (Linux), in KiB; 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
