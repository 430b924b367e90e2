#!/usr/bin/env bash
# PostgreSQL for the store tests (they are not optional). Uses the server on
# FLOTILLA_TEST_PG (default postgres://postgres@127.0.0.1:5432/test) when it answers;
# otherwise installs Debian's postgresql, starts its cluster, lets local TCP connections in
# without a password (a test machine only) and creates the database `test`.
# Sourced by test.sh after prereqs.sh; safe to run again.
set -euo pipefail

export FLOTILLA_TEST_PG="${FLOTILLA_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"

pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! pg_answers; then
  echo "PostgreSQL is not running on 127.0.0.1:5432: installing and starting Debian's"
  apt_install postgresql
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! as_root grep -q "flotilla tests" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # flotilla tests' "$hba"
  fi
  as_root pg_ctlcluster "$version" main start || as_root pg_ctlcluster "$version" main reload
  for _ in $(seq 1 50); do pg_answers && break; sleep 0.2; done
  pg_answers || { echo "PostgreSQL did not start" >&2; exit 1; }
  as_root runuser -u postgres -- psql -qc "CREATE DATABASE test" 2>/dev/null || true
fi
