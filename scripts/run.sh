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
#
# The demo's hosting databases live on a MariaDB of their own that this script starts (as
# tests/databases_support.py does for the tests): data under var/demo-mariadb/, listening on
# 127.0.0.1 only, port MPANEL_DEMO_DB_PORT (default 3307, fixed: the demo's server row keeps it),
# an admin account `mpanel_admin` whose password is made once (var/demo-mariadb/admin-password, 0600).
# It exports MPANEL_DEMO_DB_ENGINE/HOST/PORT/USER/PASSWORD for `seed_demo`, and stops it on exit.
# With MPANEL_LOCAL_NODE_PACKAGES=0 (or no mariadbd) none is started and the seed makes no database
# server (it says so). MPANEL_DEMO_DB_PORT=… with a server of your own: set all five and it is used.
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

# --- the demo's MariaDB ------------------------------------------------------------------------
DEMO_DB_DIR="$MPANEL_VAR_DIR/demo-mariadb"
DEMO_DB_STARTED=""
demo_db_start() {
  local mariadbd data sock pidfile me user_opt=()
  mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  data="$DEMO_DB_DIR/data" sock="$DEMO_DB_DIR/mariadbd.sock" pidfile="$DEMO_DB_DIR/mariadbd.pid"
  export MPANEL_DEMO_DB_PORT=${MPANEL_DEMO_DB_PORT:-3307}
  me=$(id -un)
  # As root the daemon runs as Debian's `mysql` user (it refuses root); otherwise as this user.
  [ "$(id -u)" = "0" ] && user_opt=(--user=mysql)
  mkdir -p "$DEMO_DB_DIR"
  if [ ! -d "$data/mysql" ]; then
    echo "==> creating the demo's MariaDB under $DEMO_DB_DIR"
    mkdir -p "$data"
    [ "$(id -u)" = "0" ] && chown mysql:mysql "$DEMO_DB_DIR" "$data"
    # Accounts: root and the unix user running it, both by socket only (no password); the panel's
    # admin is made below, with a password, for TCP on loopback.
    mariadb-install-db --no-defaults --datadir="$data" "${user_opt[@]}" \
      --auth-root-authentication-method=socket --skip-test-db >"$DEMO_DB_DIR/install.log" 2>&1 ||
      { echo "==> mariadb-install-db failed: see $DEMO_DB_DIR/install.log"; rm -rf "$data"; return 1; }
  fi
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "==> the demo's MariaDB is running already (127.0.0.1:$MPANEL_DEMO_DB_PORT)"
  else
    echo "==> starting the demo's MariaDB on 127.0.0.1:$MPANEL_DEMO_DB_PORT"
    "$mariadbd" --no-defaults --datadir="$data" --socket="$sock" --port="$MPANEL_DEMO_DB_PORT" \
      --bind-address=127.0.0.1 --pid-file="$pidfile" --log-error="$DEMO_DB_DIR/error.log" "${user_opt[@]}" \
      --skip-log-bin --innodb-buffer-pool-size=32M --skip-name-resolve >/dev/null 2>&1 &
    DEMO_DB_STARTED=1
    local i
    for i in $(seq 1 60); do
      mariadb --no-defaults --socket="$sock" -u "$me" -e "SELECT 1" >/dev/null 2>&1 && break
      [ "$i" = 60 ] && { echo "==> the demo's MariaDB did not start: see $DEMO_DB_DIR/error.log"; return 1; }
      sleep 0.5
    done
  fi
  local pwfile="$DEMO_DB_DIR/admin-password"
  if [ ! -s "$pwfile" ]; then
    (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))' >"$pwfile")
  fi
  MPANEL_DEMO_DB_PASSWORD=$(cat "$pwfile")
  # Idempotent: the account is made once and its password kept in step with the file.
  # (Called in an `||` list, where `set -e` does not apply: each failure returns by itself.)
  mariadb --no-defaults --socket="$sock" -u "$me" <<SQL || return 1
CREATE USER IF NOT EXISTS 'mpanel_admin'@'127.0.0.1' IDENTIFIED BY '$MPANEL_DEMO_DB_PASSWORD';
ALTER USER 'mpanel_admin'@'127.0.0.1' IDENTIFIED BY '$MPANEL_DEMO_DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'mpanel_admin'@'127.0.0.1' WITH GRANT OPTION;
SQL
  export MPANEL_DEMO_DB_ENGINE=mariadb MPANEL_DEMO_DB_HOST=127.0.0.1 MPANEL_DEMO_DB_USER=mpanel_admin
  export MPANEL_DEMO_DB_PASSWORD
}
demo_db_stop() {
  [ -n "$DEMO_DB_STARTED" ] && [ -f "$DEMO_DB_DIR/mariadbd.pid" ] && kill -TERM "$(cat "$DEMO_DB_DIR/mariadbd.pid")" 2>/dev/null
  return 0
}

bash scripts/venv.sh
PY=.venv/bin/python
if [ -n "${MPANEL_DEMO_DB_PASSWORD:-}" ] && [ -n "${MPANEL_DEMO_DB_PORT:-}" ]; then
  export MPANEL_DEMO_DB_HOST=${MPANEL_DEMO_DB_HOST:-127.0.0.1}
  echo "==> the demo's databases: the server given by MPANEL_DEMO_DB_* ($MPANEL_DEMO_DB_HOST:$MPANEL_DEMO_DB_PORT)"
elif [ "${MPANEL_LOCAL_NODE_PACKAGES:-1}" != "0" ] && { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; }; then
  demo_db_start || { demo_db_stop; unset MPANEL_DEMO_DB_PORT MPANEL_DEMO_DB_PASSWORD; }
else
  unset MPANEL_DEMO_DB_PORT MPANEL_DEMO_DB_PASSWORD
  echo "==> no MariaDB for the demo's databases (MPANEL_LOCAL_NODE_PACKAGES=0 or mariadb-server missing)"
fi
trap demo_db_stop EXIT
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
trap 'kill $JOBS_PID 2>/dev/null || true; demo_db_stop' EXIT
exec_status=0
.venv/bin/gunicorn mpanel.wsgi:application --bind "$HOST:$PORT" --workers 2 --access-logfile - || exec_status=$?
exit $exec_status
