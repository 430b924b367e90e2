#!/usr/bin/env bash
# Validates the Kubernetes manifests (deploy/k8s) and the Prometheus rules
# (deploy/prometheus) offline: schemas of Kubernetes, KEDA and the Prometheus Operator,
# the rendered kustomizations, cross-checks between workers and their autoscalers, and
# PromQL syntax. See deploy/validate/validate.mjs for what is checked.
#
#   scripts/k8s-validate.sh [K8S_DIR] [--rules FILE] [--adapter FILE] [--dump FILE]
#
# Needs node and npm. The validator's packages, pinned by deploy/validate/package-lock.json,
# are installed once into deploy/validate/node_modules (not committed) and reused.
# When promtool is on the PATH, the rules also go through `promtool check rules`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VALIDATE="$ROOT/deploy/validate"

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "k8s-validate: error: $tool is not installed" >&2; exit 2; }
done

# One install at a time (tests run this in parallel); again only when the lock file changed.
mkdir -p "$ROOT/target"
(
  flock 9
  if [ ! -f "$VALIDATE/node_modules/.package-lock.json" ] ||
     [ "$VALIDATE/package-lock.json" -nt "$VALIDATE/node_modules/.package-lock.json" ]; then
    echo "k8s-validate: installing the validator's packages (npm ci)" >&2
    (cd "$VALIDATE" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
) 9>"$ROOT/target/k8s-validate.lock"

node "$VALIDATE/validate.mjs" "$@"

if command -v promtool >/dev/null 2>&1; then
  promtool check rules "$ROOT/deploy/prometheus/flotilla-alerts.yml" >&2
  echo "k8s-validate: promtool check rules: OK" >&2
fi
