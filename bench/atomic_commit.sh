#!/usr/bin/env bash
# atomic_commit.sh: what atomic commit across shards costs. A transaction updates one row on
# each of two shards (the demo's `documents`, tenant 1 on s0 and tenant 2 on s1) and commits:
# with `transactions.atomic: true` (two-phase commit, the default) and `false` (shard by
# shard, not atomic); as a baseline, the same two updates on one shard (one phase).
#
#   bench/atomic_commit.sh            # release build at target/release/shardgate
#
# Starts one `shardgate demo` (2 shards, no replicas, so only commits differ) and, beside it,
# one `shardgate run` with `atomic: false` over the same servers. Loads ROWS documents per
# tenant, then runs each case through its proxy (pgbench, C clients, T seconds, simple
# protocol), R rounds, cases in turn. Reports tps and mean latency. Everything listens on
# 127.0.0.1; every wait is bounded; the EXIT trap stops everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
T=${T:-8}         # seconds per pgbench run
C=${C:-16}        # pgbench clients
R=${R:-3}         # rounds
ROWS=${ROWS:-10000}
PORT=${PORT:-6570}
PORT_TORN=$((PORT + 1))

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

start_demo "$BIN" "$PORT"
start_not_atomic "$BIN" "$PORT_TORN"

export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
for tenant in 1 2; do
    psql -q -p "$PORT" -c "DELETE FROM documents WHERE tenant_id = $tenant" >/dev/null
    for start in $(seq 1 1000 "$ROWS"); do
        end=$((start + 999 < ROWS ? start + 999 : ROWS))
        values=$(seq "$start" "$end" | sed "s/.*/($tenant, &, 'd')/" | paste -sd,)
        psql -q -p "$PORT" -c "INSERT INTO documents (tenant_id, doc_id, title) VALUES $values" \
            >/dev/null
    done
done

script() { # script NAME SECOND_TENANT
    cat >"$dir/$1.sql" <<EOF
\\set d random(1, :rows)
BEGIN;
UPDATE documents SET title = 'a' WHERE tenant_id = 1 AND doc_id = :d;
UPDATE documents SET title = 'b' WHERE tenant_id = $2 AND doc_id = :d;
COMMIT;
EOF
}
script two_shards 2
script one_shard 1

run() { # run PORT SCRIPT -> "tps latency"
    out=$(pgbench -n -M simple -c "$C" -j 2 -T "$T" -p "$1" -D rows="$ROWS" -f "$dir/$2.sql" 2>&1)
    pgbench_numbers "$out"
}

echo "| case | round | tps | latency ms | failed |"
echo "|-|-:|-:|-:|-:|"
for round in $(seq 1 "$R"); do
    for case in "two shards, atomic:$PORT:two_shards" "two shards, not atomic:$PORT_TORN:two_shards" \
        "one shard:$PORT:one_shard"; do
        IFS=: read -r name port file <<<"$case"
        read -r tps lat failed <<<"$(run "$port" "$file")"
        printf '| %s | %d | %.0f | %s | %s |\n' "$name" "$round" "$tps" "$lat" "$failed"
    done
done
PGUSER=admin PGPASSWORD=admin psql -At -p "$PORT" -d shardgate -c 'SHOW STATS' |
    awk -F'|' '{print "atomic commits through the demo proxy:", $17}'
