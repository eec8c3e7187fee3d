#!/usr/bin/env bash
# Python driver suites (psycopg 3, psycopg2, asyncpg); see tests/drivers/README.md.
#
# Installs the pinned drivers into a venv under $DRIVERS_CACHE (reused while requirements.txt
# is unchanged), then runs one suite per driver. Each prints its PASS/FAIL lines on stdout and
# its log on stderr. Exits non-zero only when the drivers cannot be installed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

cache=${DRIVERS_CACHE:-../../../target/drivers}
venv="$cache/python-venv"
stamp="$venv/.requirements.sha256"
want=$( (python3 --version; cat requirements.txt) | sha256sum | cut -d' ' -f1)

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "python: installing the drivers into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || { echo "python: cannot create a venv" >&2; exit 1; }
    "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt >&2 ||
        { echo "python: pip install -r requirements.txt failed" >&2; exit 1; }
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import psycopg, psycopg2, asyncpg' >&2 ||
    { echo "python: the installed drivers do not import" >&2; exit 1; }

for suite in psycopg3 psycopg2 asyncpg; do
    began=$SECONDS
    echo "python: running ${suite}_suite.py" >&2
    # -u: result lines reach the runner as they happen.
    "$venv/bin/python" -u "${suite}_suite.py" ||
        echo "FAIL $suite - | suite | ${suite}_suite.py exited with status $? (see its log)"
    echo "python: ${suite}_suite.py took $((SECONDS - began)) s" >&2
done
exit 0
