#!/usr/bin/env bash
# Creates .venv and installs mPanel into it; reinstalls only when pyproject.toml changes.
# Usage: scripts/venv.sh [test]
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
PYTHON=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi
spec="."
[ "$extra" = "test" ] && spec=".[test]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extra:-run}"
if [ ! -f "$stamp" ]; then
  echo "==> installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import django, rest_framework" # fail loudly if the install did not work
  touch "$stamp"
fi
