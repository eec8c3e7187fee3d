#!/usr/bin/env bash
# node-postgres (`pg`) and postgres.js checks against a running shardgate, per the contract of
# tests/drivers/run: env SHARDGATE_* and DRIVERS_CACHE; one PASS/FAIL line per check on stdout;
# exit non-zero only when a suite could not run at all.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DRIVERS_CACHE:?DRIVERS_CACHE must be set}/js

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "js: installing nodejs and npm" >&2
  (apt-get update -qq && apt-get install -y -qq nodejs npm) >&2 || { echo "js: cannot install node" >&2; exit 1; }
fi

# node_modules live in the cache, installed from the committed lock file; reinstalled only
# when the lock file changed.
mkdir -p "$cache"
if ! cmp -s "$here/package-lock.json" "$cache/package-lock.json" || [ ! -d "$cache/node_modules" ]; then
  rm -rf "$cache/node_modules"
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
    rm -f "$cache/package-lock.json"; echo "js: npm ci failed" >&2; exit 1; }
fi
export NODE_PATH="$cache/node_modules"

status=0
for suite in pg_checks.js postgresjs_checks.js; do
  # Every check has its own timeout; this bounds a suite that wedges node itself.
  timeout 300 node --no-deprecation "$here/$suite" || { echo "js: $suite did not finish (exit $?)" >&2; status=1; }
done
exit $status
