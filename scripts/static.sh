#!/usr/bin/env bash
# Installs the admin dashboard's charting library (Chart.js, from the npm registry with npm itself)
# into static/vendor/, which git ignores: no third-party file is committed, none comes from a CDN.
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
CHARTJS_VERSION=4.6.1
dest=static/vendor/chartjs
[ -f "$dest/chart.umd.min.js" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$CHARTJS_VERSION" ] && exit 0
if ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `npm pack` fetches the published tarball and checks it against the registry's integrity hash.
(cd "$tmp" && npm pack --silent "chart.js@$CHARTJS_VERSION" >/dev/null && tar xzf chart.js-*.tgz)
mkdir -p "$dest"
cp "$tmp/package/dist/chart.umd.min.js" "$tmp/package/LICENSE.md" "$dest/"
echo "$CHARTJS_VERSION" >"$dest/VERSION"
