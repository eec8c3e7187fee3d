#!/usr/bin/env bash
# tpcb_sharded.sh: pgbench's TPC-B-like transaction through the proxy over sharded tables,
# and what its atomicity costs. `pgbench_accounts` is hashed on `aid` over the demo's two
# shards, `pgbench_history` co-located with it, `pgbench_branches` and `pgbench_tellers`
# reference tables (a copy on every shard). Every transaction then writes on both shards (its
# account and history row on one, the teller and branch copies on both), so every COMMIT is
# a two-phase commit.
#
#   bench/tpcb_sharded.sh            # release build at target/release/shardgate
#
# Starts one `shardgate demo` (2 shards, no replicas), adds the pgbench tables to its shard
# map (the proxy reloads it), creates them through the proxy (`pgbench -i -I dt`: DDL runs on
# every shard), loads SCALE × 100,000 accounts through the proxy as multi-row INSERTs (split
# by shard), adds the primary keys through the proxy (`-I p`), and starts a second
# `shardgate run` over the same servers and map with `transactions.atomic: false`. Then runs
# pgbench's default script (`-M simple` and `-M extended`, C clients, T seconds) through each
# proxy, R rounds, proxies in turn. Reports tps, mean latency and failed transactions, and
# where the accounts landed. Everything listens on 127.0.0.1; every wait is bounded; the EXIT
# trap stops everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
T=${T:-8}         # seconds per pgbench run
C=${C:-16}        # pgbench clients
R=${R:-3}         # rounds
SCALE=${SCALE:-10}
MODES=${MODES:-"simple extended"}  # pgbench -M modes
PORT=${PORT:-6580}
PORT_TORN=$((PORT + 1))

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

start_demo "$BIN" "$PORT"
export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1

map=$dir/demo/shard-map.yaml
add_tables "$PORT" pgbench_accounts \
    "pgbench_accounts: {strategy: hash, key: aid, key_type: integer}" \
    "pgbench_history: {colocated_with: pgbench_accounts, key: aid}" \
    "pgbench_branches: {strategy: reference}" \
    "pgbench_tellers: {strategy: reference}"

# insert TABLE COLUMNS COUNT PER_BRANCH: rows (id, its branch, 0) in INSERTs of 1,000 rows.
insert() {
    for start in $(seq 1 1000 "$3"); do
        end=$((start + 999 < $3 ? start + 999 : $3))
        values=$(seq "$start" "$end" |
            awk -v per="$4" '{printf "%s(%d, %d, 0)", (NR > 1 ? "," : ""), $1, int(($1 - 1) / per) + 1}')
        psql -q -p "$PORT" -c "INSERT INTO $1 ($2) VALUES $values" >/dev/null
    done
}
started=$SECONDS
pgbench -q -i -I dt -s "$SCALE" -p "$PORT" >/dev/null
branches=$(seq "$SCALE" | awk '{printf "%s(%d, 0)", (NR > 1 ? "," : ""), $1}')
psql -q -p "$PORT" -c "INSERT INTO pgbench_branches (bid, bbalance) VALUES $branches" >/dev/null
insert pgbench_tellers "tid, bid, tbalance" $((SCALE * 10)) 10
insert pgbench_accounts "aid, bid, abalance" $((SCALE * 100000)) 100000
pgbench -q -i -I pv -s "$SCALE" -p "$PORT" >/dev/null
echo "loaded scale $SCALE through the proxy in $((SECONDS - started)) s"

start_not_atomic "$BIN" "$PORT_TORN"

echo "accounts per shard (through each primary directly):"
for uri in $(grep -o "postgres://[^ '\"]*" "$map" | sort -u); do
    echo "  $uri: $(psql -At "$uri" -c 'SELECT count(*) FROM pgbench_accounts')"
done

run() { # run PORT MODE -> "tps latency failed"
    if ! out=$(pgbench -n -M "$2" -c "$C" -j 2 -T "$T" -s "$SCALE" -p "$1" 2>&1); then
        echo "$out" | tail -20 >&2
        kill -TERM $$
    fi
    pgbench_numbers "$out"
}

echo "| case | round | tps | latency ms | failed |"
echo "|-|-:|-:|-:|-:|"
for round in $(seq 1 "$R"); do
    for mode in $MODES; do
        for case in "atomic:$PORT" "not atomic:$PORT_TORN"; do
            IFS=: read -r name port <<<"$case"
            result=$(run "$port" "$mode")
            read -r tps lat failed <<<"$result"
            printf '| %s, %s | %d | %.0f | %s | %s |\n' "$name" "$mode" "$round" "$tps" "$lat" "$failed"
        done
    done
done
admin "$PORT" 'SHOW STATS' | awk -F'|' '{print "atomic commits through the atomic proxy:", $17}'
