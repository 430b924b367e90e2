#!/usr/bin/env bash
# Installs the Python services the media tests start on loopback: moto's S3 server (flotilla-objects,
# flotilla-distribute) and pyftpdlib (FTP deliveries). Installs only what is missing, quietly, with
# `python3 -m pip`. Safe to run again or to source (it leaves the caller's shell options alone).

flotilla_media_services() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "media-services: python3 is required (apt-get install python3 python3-pip)" >&2
    return 1
  fi
  local missing=()
  python3 -c 'import moto.server, flask, werkzeug' >/dev/null 2>&1 || missing+=('moto[server]')
  python3 -c 'import pyftpdlib' >/dev/null 2>&1 || missing+=('pyftpdlib')
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "media-services: installing ${missing[*]}"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}" || return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  flotilla_media_services
else
  flotilla_media_services
fi
