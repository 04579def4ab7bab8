#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs what is missing (Debian's PostgreSQL and
# Redis, the virtualenv), starts throwaway instances on free loopback ports, runs ruff and pytest
# against them, and stops them afterwards. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- system packages --------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
missing=()
[ -n "$(pg_bin)" ] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3.11 >/dev/null || command -v python3 >/dev/null || missing+=(python3 python3-venv)
# The operators' admin is tested in Debian's Chromium (Playwright); its charts come from npm.
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
# What the local node's operations need (runc, busybox, nginx, PHP-FPM, PowerDNS, BIND, Postfix,
# Dovecot, MariaDB): one list with `make run`, in scripts/local-node-packages.sh.
# shellcheck source=scripts/local-node-packages.sh
. scripts/local-node-packages.sh
local_node_install "${missing[@]}"
PG_BIN=$(pg_bin)

# --- python environment -----------------------------------------------------------------------
bash scripts/venv.sh test
bash scripts/static.sh
PY="$ROOT/.venv/bin/python"

# --- throwaway PostgreSQL and Redis -----------------------------------------------------------
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
WORK=$(mktemp -d /tmp/mpanel-test.XXXXXX)
chmod 755 "$WORK"
PG_DIR="$WORK/pg"
mkdir -p "$PG_DIR" "$WORK/redis"
PG_PID=""
REDIS_PID=""
cleanup() {
  set +e
  if [ -f "$PG_DIR/postmaster.pid" ]; then
    kill -INT "$(head -n1 "$PG_DIR/postmaster.pid")" 2>/dev/null
  fi
  [ -f "$WORK/redis/redis.pid" ] && kill -TERM "$(cat "$WORK/redis/redis.pid")" 2>/dev/null
  sleep 1
  # Pods' overlay roots left mounted under the work folder (a node root of the tests): rm cannot remove a
  # mount point, and a mount must not outlive its folder.
  awk -v w="$WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
chown postgres:postgres "$PG_DIR"
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >> "$PG_DIR/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w start >/dev/null
runuser -u postgres -- "$PG_BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" mpanel
log "starting Redis on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$WORK/redis" \
  --pidfile "$WORK/redis/redis.pid" --logfile "$WORK/redis/redis.log" --save '' --appendonly no

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/mpanel"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export MPANEL_VAR_DIR="$WORK/var"
export SECRET_KEY="test-only-$(date +%s)"
export MPANEL_TEST_WORK="$WORK"
# Test servers (live server, gunicorn in benchmarks) speak plain HTTP on loopback.
export MPANEL_ENVIRONMENT=${MPANEL_ENVIRONMENT:-test}

# --- benchmarks instead of checks (make bench) ------------------------------------------------
if [ "${MPANEL_BENCH:-}" = "1" ]; then
  log "benchmarks on PostgreSQL and Redis"
  "$PY" bench/suite.py
  exit $?
fi
if [ "${MPANEL_LOAD:-}" = "1" ]; then
  log "load and soak on PostgreSQL and Redis"
  "$PY" bench/load.py
  exit $?
fi

# --- checks -----------------------------------------------------------------------------------
log "ruff"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check . >/dev/null || { "$ROOT/.venv/bin/ruff" format --diff . | head -50; exit 1; }
log "import layers (lint-imports)"
"$ROOT/.venv/bin/lint-imports" --no-cache >/dev/null || "$ROOT/.venv/bin/lint-imports" --no-cache
log "migrations are up to date"
DJANGO_SETTINGS_MODULE=mpanel.settings_test "$PY" manage.py makemigrations --check --dry-run >/dev/null
log "pytest"
set +e
if [ "$#" -eq 0 ]; then
  # The whole suite runs on one pytest-xdist worker per core (at most 4; MPANEL_TEST_PROCESSES=N to
  # choose, 1 for one process). A test file stays on one worker, so its module fixtures are made once.
  cores=$(nproc 2>/dev/null || echo 1)
  procs=${MPANEL_TEST_PROCESSES:-$((cores > 4 ? 4 : cores))}
  set -- --durations=25  # the slowest tests in every full run's log, where the suite's time goes
  if [ "$procs" -gt 1 ]; then set -- "$@" -n "$procs" --dist loadfile; fi
fi
"$PY" -m pytest "$@"
status=$?
set -e
exit $status
