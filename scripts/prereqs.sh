#!/usr/bin/env bash
# Installs what building and testing Flotilla needs on a Debian machine, by package name.
# Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A C compiler for the bundled SQLite.
command -v cc >/dev/null 2>&1 || apt_install build-essential
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
# FFmpeg and ffprobe for the video handlers (flotilla-video) and their tests.
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || apt_install ffmpeg
# Node.js and npm for the offline validation of deploy/ (scripts/k8s-validate.sh).
command -v node >/dev/null 2>&1 || apt_install nodejs
command -v npm >/dev/null 2>&1 || apt_install npm
# espeak-ng speaks the sentences the speech-to-text tests transcribe.
command -v espeak-ng >/dev/null 2>&1 || apt_install espeak-ng

# Rust (1.92 or newer, for ort): Debian's packaged toolchain is too old, so rustup is the way.
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt -c clippy
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
