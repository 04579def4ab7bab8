#!/usr/bin/env bash
# Creates .venv and installs mPanel into it; reinstalls only when pyproject.toml changes.
# Usage: scripts/venv.sh [test]
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
PYTHON=$(command -v python3.11 || command -v python3)
# WeasyPrint (invoice PDFs) needs Debian's Pango at run time.
if ! ldconfig -p | grep -q libpangoft2-1.0 || ! ldconfig -p | grep -q libharfbuzz-subset; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core >/dev/null 2>&1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi
spec="."
[ "$extra" = "test" ] && spec=".[test]"
hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp=".venv/.installed-$hash-${extra:-run}"
# The test install is a superset of the run install: either satisfies `make run`.
if [ ! -f "$stamp" ] && ! { [ -z "$extra" ] && [ -f ".venv/.installed-$hash-test" ]; }; then
  echo "==> installing Python packages into .venv"
  log=$(mktemp)
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e "$spec"; } >"$log" 2>&1; then
    cat "$log"
    exit 1
  fi
  rm -f "$log"
  touch "$stamp"
fi
