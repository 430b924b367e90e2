#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
source scripts/postgres.sh
# moto (S3) and pyftpdlib (FTP), which the object-storage and delivery tests start.
source scripts/media-services.sh

# A one-off build gains nothing from incremental caches, which double the target's size.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so its summary closes the output.
  cargo test --workspace --doc --quiet
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
