#!/usr/bin/env bash
# Sets up and runs mPanel on this machine with the embedded default: SQLite under ./var,
# jobs run in-process, a local node under ./var/node. Idempotent: run it again to restart.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPANEL_VAR_DIR=${MPANEL_VAR_DIR:-$(pwd)/var}
# Plain HTTP on loopback: no secure-only cookies, no HTTPS redirect, the badge says so.
export MPANEL_ENVIRONMENT=${MPANEL_ENVIRONMENT:-development}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
mkdir -p "$MPANEL_VAR_DIR"
bash scripts/venv.sh
PY=.venv/bin/python
echo "==> migrating the database"
$PY manage.py migrate --noinput >/dev/null
bash scripts/static.sh
$PY manage.py collectstatic --noinput >/dev/null
$PY manage.py operator_groups
$PY manage.py seed_demo --if-empty
echo "==> mPanel is at http://$HOST:$PORT/  (API /api/v1/, docs /api/v1/docs/, admin /admin/)"
# The embedded default's beat: the job sweeper, billing run, node heartbeats… in-process.
$PY manage.py run_jobs &
JOBS_PID=$!
trap 'kill $JOBS_PID 2>/dev/null || true' EXIT
exec_status=0
.venv/bin/gunicorn mpanel.wsgi:application --bind "$HOST:$PORT" --workers 2 --access-logfile - || exec_status=$?
exit $exec_status
