#!/usr/bin/env bash
# The main job, end to end, on the embedded default store (SQLite file, zero set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
cargo build --release --quiet -p flotilla-cli
exec ./target/release/flotilla demo "$@"
