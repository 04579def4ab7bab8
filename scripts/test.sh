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
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # Shield's `nginx -t` check
command -v python3.11 >/dev/null || command -v python3 >/dev/null || missing+=(python3 python3-venv)
# CloudPods run as real containers: runc, and Debian's static busybox for the image.
command -v runc >/dev/null || missing+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# Websites are served by a real nginx in the tests (its own config on loopback ports).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# PHP sites run in per-site PHP-FPM pools started by the node agent (Debian's php-fpm).
ls /usr/sbin/php-fpm[0-9]* >/dev/null 2>&1 || missing+=(php-fpm)
# DNS zones are served by a real PowerDNS authoritative server (SQLite backend) in the tests.
command -v pdns_server >/dev/null || missing+=(pdns-server)
dpkg -s pdns-backend-sqlite3 >/dev/null 2>&1 || missing+=(pdns-backend-sqlite3)
# BIND zone files (the other DNS backend, and every export) are checked with named-checkzone/named-checkconf.
command -v named-checkzone >/dev/null || missing+=(bind9-utils)
# ...and a real named serves them in the tests, told of each change by rndc.
command -v named >/dev/null || [ -x /usr/sbin/named ] || missing+=(bind9)
# Mail: postmap checks the rendered Postfix maps; a real Dovecot serves IMAP logins in the tests.
command -v postmap >/dev/null || missing+=(postfix)
command -v dovecot >/dev/null || missing+=(dovecot-core)
dpkg -s dovecot-imapd >/dev/null 2>&1 || missing+=(dovecot-imapd)
# Hosting databases: a real MariaDB server (started on a loopback port by the tests; PostgreSQL is above).
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
# Autoresponders are Sieve vacation scripts: sievec and sieve-test check them, dovecot-lda runs them.
command -v sievec >/dev/null || missing+=(dovecot-sieve)
# The operators' admin is tested in Debian's Chromium (Playwright); its charts come from npm.
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
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
"$PY" -m pytest "$@"
status=$?
set -e
exit $status
