#!/usr/bin/env bash
# Sets up and runs mPanel on this machine with the embedded default: SQLite under ./var,
# jobs run in-process, a local node under ./var/node. Idempotent: run it again to restart.
#
# On its first run it installs (apt) what the local node's operations need, the same list as
# `make test` (scripts/local-node-packages.sh: runc, busybox-static, nginx, PHP-FPM, PowerDNS, BIND,
# Postfix, Dovecot, MariaDB), so the demo's CloudPod really runs. MPANEL_LOCAL_NODE_PACKAGES=0 skips
# that (then the demo's pod, website, zone… jobs fail and say what is missing).
# The environment badge says `development` (MPANEL_ENVIRONMENT); the local node serves DNS zones
# with BIND's zone files unless MPANEL_DNS_BACKEND says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPANEL_VAR_DIR=${MPANEL_VAR_DIR:-$(pwd)/var}
# Plain HTTP on loopback: no secure-only cookies, no HTTPS redirect, the badge says so.
export MPANEL_ENVIRONMENT=${MPANEL_ENVIRONMENT:-development}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# The local node has no PowerDNS API configured: its zones are BIND zone files under ./var/node.
export MPANEL_DNS_BACKEND=${MPANEL_DNS_BACKEND:-bind}
mkdir -p "$MPANEL_VAR_DIR"
if [ "${MPANEL_LOCAL_NODE_PACKAGES:-1}" != "0" ]; then
  # shellcheck source=scripts/local-node-packages.sh
  . scripts/local-node-packages.sh
  if [ "$(id -u)" = "0" ]; then
    local_node_install
  elif [ -n "$(local_node_missing)" ]; then
    echo "==> the local node lacks: $(local_node_missing) (install them as root, or MPANEL_LOCAL_NODE_PACKAGES=0)"
  fi
fi
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
