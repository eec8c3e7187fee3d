#!/usr/bin/env bash
# reshard.sh: what RESHARD costs. ROWS rows of a table hashed on `id` over s0 and s1 move to
# a ring of s0, s1 and s2 while pgbench reads (R_C clients) and writes (W_C clients) random
# ids through the proxy.
#
#   bench/reshard.sh            # release build at target/release/shardgate, 1M rows
#
# Starts `shardgate demo --shards 3` (no replicas), creates `bench_items` on every shard and
# adds it to the map on s0 and s1, loads ROWS rows through the proxy (COPY), runs the load
# alone for LOAD_S seconds (the baseline), then again with RESHARD started 2 s in. Reports the
# move's duration and rows per second, how long the fence on the moving keys was up (and the
# latency percentiles of the writes that ran while the move did: those that hit the fence
# waited), and reads' and writes' tps before and during the move. Everything listens on 127.0.0.1; every wait is
# bounded; the EXIT trap stops everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
ROWS=${ROWS:-1000000}
R_C=${R_C:-4}          # reading clients
W_C=${W_C:-4}          # writing clients
LOAD_S=${LOAD_S:-10}   # seconds of the baseline run
MOVE_S=${MOVE_S:-90}   # seconds of the run during the move (must outlast it)
PORT=${PORT:-6580}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

SHARDS=3 start_demo "$BIN" "$PORT"
export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
map=$dir/demo/shard-map.yaml
mapfile -t primaries < <(sed -n 's/^ *primary: //p' "$map")
for uri in "${primaries[@]}"; do
    psql -q -d "$uri" -c "CREATE TABLE bench_items (id bigint PRIMARY KEY, payload text)"
done
add_tables "$PORT" bench_items \
    "bench_items: {strategy: hash, key: id, key_type: bigint, shards: [s0, s1]}"

start=$(date +%s.%N)
seq 1 "$ROWS" | awk '{print $1 "\tpayload-" $1}' |
    psql -q -p "$PORT" -c "COPY bench_items FROM STDIN"
load_s=$(echo "$(date +%s.%N) - $start" | bc)

echo '\set id random(1, :rows)
SELECT payload FROM bench_items WHERE id = :id;' >"$dir/read.sql"
echo '\set id random(1, :rows)
UPDATE bench_items SET payload = md5(random()::text) WHERE id = :id;' >"$dir/write.sql"

# load SECONDS TAG: readers and writers side by side, each logging every transaction; sets
# `readers` and `writers` to their pids.
load() {
    (cd "$dir" && pgbench -n -M prepared -c "$R_C" -j 1 -T "$1" -p "$PORT" -D rows="$ROWS" \
        -f read.sql -l --log-prefix="$2-read" >"$2-read.out" 2>&1) &
    readers=$!
    (cd "$dir" && pgbench -n -M prepared -c "$W_C" -j 1 -T "$1" -p "$PORT" -D rows="$ROWS" \
        -f write.sql -l --log-prefix="$2-write" >"$2-write.out" 2>&1) &
    writers=$!
}

# stats TAG KIND FROM TO: "tps p50_ms p99_ms max_ms" of the transactions of that run that
# started between epoch seconds FROM and TO (a write that waited at the fence counts from
# when it was sent).
stats() {
    cat "$dir/$1-$2".* | awk -v from="$3" -v to="$4" '
        { t = $5 + $6 / 1e6 - $3 / 1e6; if (t >= from && t < to) print $3 / 1000 }' | sort -n |
        awk -v span="$(echo "$4 - $3" | bc)" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "0 - - -"; exit }
            printf "%.0f %.2f %.2f %.2f\n", NR / span, v[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))],
                v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))], v[NR]
        }'
}

load "$LOAD_S" base
base_from=$(date +%s.%N)
wait "$readers" "$writers"
base_to=$(date +%s.%N)

load "$MOVE_S" move
sleep 2
sed -i 's/shards: \[s0, s1\]/shards: [s0, s1, s2]/' "$map"
admin "$PORT" 'RELOAD' >/dev/null 2>&1 || true
move_from=$(date +%s.%N)
admin "$PORT" 'RESHARD'
move_to=$(date +%s.%N)
admin "$PORT" 'SHOW RESHARD' | tee "$dir/status"
wait "$readers" "$writers"

# SHOW RESHARD: database|table|source|target|phase|method|rows_copied|bytes_behind|fence_ms|…
moved=$(awk -F'|' '{ s += $7 } END { print s }' "$dir/status")
method=$(awk -F'|' 'NR == 1 { print $6 }' "$dir/status")
fence_ms=$(awk -F'|' 'NR == 1 { print $9 }' "$dir/status")
move_s=$(echo "$move_to - $move_from" | bc)

echo
echo "rows: $ROWS loaded through the proxy (COPY) in $(printf %.1f "$load_s") s; $moved moved to s2"
echo "RESHARD ($method): $(printf %.2f "$move_s") s from the command to its answer, $(echo "$moved / $move_s" | bc) rows/s; writes to the moving keys fenced for $fence_ms ms"
grep -o 'RESHARD: behind the fence.*' "$dir/demo.log" | sed 's/\x1b\[[0-9;]*m//g' || true
echo
echo "| load | tps | p50 ms | p99 ms | max ms |"
echo "|-|-:|-:|-:|-:|"
for kind in read write; do
    read -r tps p50 p99 max < <(stats base "$kind" "$base_from" "$base_to")
    echo "| $kind, before (${LOAD_S} s alone) | $tps | $p50 | $p99 | $max |"
    read -r tps p50 p99 max < <(stats move "$kind" "$move_from" "$move_to")
    echo "| $kind, during the move | $tps | $p50 | $p99 | $max |"
done
for out in "$dir"/move-*.out; do
    grep -q 'number of failed transactions: 0' "$out" || { echo "errors in $out:"; cat "$out"; }
done
