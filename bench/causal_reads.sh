#!/usr/bin/env bash
# causal_reads.sh: what each `reads` setting costs and how many reads the replicas serve, on
# a read-mostly mix (95% single-key reads, 5% single-key writes) and on a cross-shard mix (95%
# range counts over both shards, 5% writes).
#
#   bench/causal_reads.sh            # release build at target/release/shardgate
#
# Starts one `shardgate demo` (2 shards, each a primary and a streaming replica) and, beside it,
# one proxy per setting (`shardgate run`) over the same servers, each with the demo's map and
# its own `reads`: causal, global, session, eventual, and `from: primary`. Loads ROWS users through the
# proxy, then runs each mix through each proxy in turn (pgbench, C clients, T seconds, simple
# protocol). Reports tps, mean latency, and the share of replica-safe reads that replicas
# served (from SHOW STATS). Everything listens on 127.0.0.1; every wait is bounded; the EXIT
# trap stops everything (the demo stops its servers).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
T=${T:-10}        # seconds per pgbench run
C=${C:-16}        # pgbench clients
ROWS=${ROWS:-10000}
BASE_PORT=${BASE_PORT:-6560}
MODES=${MODES:-"causal global session eventual primary"}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

reads_of() {
    case $1 in
    primary) echo "reads: {from: primary}" ;;
    *) echo "reads: {from: replica, consistency: $1, causal_wait: ${CAUSAL_WAIT:-50ms}}" ;;
    esac
}

"$BIN" demo --port "$BASE_PORT" --metrics-port 0 --dir "$dir/demo" >"$dir/demo.log" 2>&1 &
pids+=($!)
wait_port "$BASE_PORT"

port=$BASE_PORT
declare -A port_of
for mode in $MODES; do
    port=$((port + 1))
    port_of[$mode]=$port
    mkdir -p "$dir/$mode"
    grep -v '^reads:' "$dir/demo/shard-map.yaml" >"$dir/$mode/shard-map.yaml"
    reads_of "$mode" >>"$dir/$mode/shard-map.yaml"
    sed -e "s/^listen: .*/listen: 127.0.0.1:$port/" -e '/^metrics:/,+1d' \
        "$dir/demo/shardgate.yaml" >"$dir/$mode/shardgate.yaml"
    "$BIN" run --config "$dir/$mode/shardgate.yaml" >"$dir/$mode.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
done

export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
for start in $(seq 1 1000 "$ROWS"); do
    end=$((start + 999 < ROWS ? start + 999 : ROWS))
    values=$(seq "$start" "$end" | sed 's/.*/(&, '"'"'u'"'"')/' | paste -sd,)
    psql -q -p "$BASE_PORT" -c "DELETE FROM users WHERE user_id BETWEEN $start AND $end" \
        >/dev/null 2>&1 || true
    psql -q -p "$BASE_PORT" -c "INSERT INTO users (user_id, name) VALUES $values" >/dev/null
done
sleep 2 # let the replicas replay the load

cat >"$dir/read_one.sql" <<'EOF'
\set id random(1, :rows)
SELECT name FROM users WHERE user_id = :id;
EOF
cat >"$dir/read_range.sql" <<'EOF'
\set id random(1, :rows - 100)
SELECT count(*) FROM users WHERE user_id BETWEEN :id AND :id + 100;
EOF
cat >"$dir/write_one.sql" <<'EOF'
\set id random(1, :rows)
UPDATE users SET name = 'w' WHERE user_id = :id;
EOF

# replica_reads primary_reads causal_waits causal_fallbacks of the proxy on port $1.
stats() {
    PGUSER=admin PGPASSWORD=admin psql -At -F'|' -p "$1" -d shardgate -c 'SHOW STATS' |
        awk -F'|' '{print $12, $13, $15, $16}'
}

# Milliseconds causal reads of the proxy on port $1 waited in all (SHOW POOLS).
waited_ms() {
    PGUSER=admin PGPASSWORD=admin psql -At -F'|' -p "$1" -d shardgate -c 'SHOW POOLS' |
        awk -F'|' '{ms += $14} END {printf "%.3f", ms}'
}

echo "| mix | reads | tps | latency ms | reads on replicas | causal waits | mean wait ms | fell back to primary |"
echo "|-|-|-:|-:|-:|-:|-:|-:|"
for mix in read_one read_range; do
    for mode in $MODES; do
        p=${port_of[$mode]}
        read -r r0 p0 w0 f0 <<<"$(stats "$p")"
        ms0=$(waited_ms "$p")
        out=$(pgbench -n -M simple -c "$C" -j 2 -T "$T" -p "$p" -D rows="$ROWS" \
            -f "$dir/$mix.sql@95" -f "$dir/write_one.sql@5" 2>&1)
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
        lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
        read -r r1 p1 w1 f1 <<<"$(stats "$p")"
        ms1=$(waited_ms "$p")
        mean=$(awk -v ms="$(awk -v a="$ms0" -v b="$ms1" 'BEGIN {print b - a}')" -v n="$((w1 - w0))" \
            'BEGIN { if (n) printf "%.2f", ms / n; else print "-" }')
        replica=$((r1 - r0)) primary=$((p1 - p0))
        share=$(awk -v r="$replica" -v p="$primary" 'BEGIN { t = r + p; printf "%.0f%%", t ? 100 * r / t : 0 }')
        printf '| %s | %s | %.0f | %s | %s (%d of %d) | %d | %s | %d |\n' "$mix" "$mode" "$tps" \
            "$lat" "$share" "$replica" "$((replica + primary))" "$((w1 - w0))" "$mean" "$((f1 - f0))"
    done
done
