#!/usr/bin/env bash
# The Debian packages the local node's operations need (sourced by scripts/run.sh and scripts/test.sh,
# so `make run` and `make test` install the same ones): `local_node_missing` prints those missing.
# CloudPods run as real containers: runc, and Debian's static busybox for the image.
# Websites are served by nginx (also Shield's `nginx -t` check); PHP sites by per-site PHP-FPM pools.
# DNS zones: PowerDNS (SQLite backend) or BIND (named, named-checkzone, rndc).
# Mail: Postfix maps (postmap), Dovecot for IMAP, Sieve (sievec, dovecot-lda) for autoresponders.
# Hosting databases: MariaDB (PostgreSQL is installed by test.sh for the panel itself).
# SSL: pebble, Let's Encrypt's ACME test CA (the tests issue real certificates from it).
# Backups: restic (driven by agent/backups.py); OpenSSH for the SFTP backend.
local_node_missing() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  ls /usr/sbin/php-fpm[0-9]* >/dev/null 2>&1 || missing+=(php-fpm)
  command -v pdns_server >/dev/null || [ -x /usr/sbin/pdns_server ] || missing+=(pdns-server)
  dpkg -s pdns-backend-sqlite3 >/dev/null 2>&1 || missing+=(pdns-backend-sqlite3)
  command -v named-checkzone >/dev/null || [ -x /usr/bin/named-checkzone ] || missing+=(bind9-utils)
  command -v named >/dev/null || [ -x /usr/sbin/named ] || missing+=(bind9)
  command -v postmap >/dev/null || [ -x /usr/sbin/postmap ] || missing+=(postfix)
  command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
  dpkg -s dovecot-imapd >/dev/null 2>&1 || missing+=(dovecot-imapd)
  command -v sievec >/dev/null || [ -x /usr/bin/sievec ] || missing+=(dovecot-sieve)
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  command -v pebble >/dev/null || [ -x /usr/bin/pebble ] || missing+=(pebble)
  command -v restic >/dev/null || missing+=(restic)
  command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  echo "${missing[@]}"
}

# Installs what is missing (apt, non-interactive); extra package names may be given too.
local_node_install() {
  local missing
  read -r -a missing <<<"$(local_node_missing) $*"
  if [ ${#missing[@]} -gt 0 ]; then
    printf '\033[1m==> installing %s\033[0m\n' "${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postfix asks where mail goes; a local-only node delivers nothing outside.
    echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
