#!/usr/bin/env bash
# reshard_fences.sh: how long RESHARD fences writes, over many moves. ROWS rows of a table
# hashed on `id` move back and forth between a ring of s0, s1 and one of s0, s1, s2 (a third
# of them each time) while pgbench writes (W_C clients) and reads (R_C clients) random ids,
# until LOAD_S seconds of load are over. With PROXIES=2 a second proxy of the same fleet
# (`shardgate run` on the demo's config and its own copy of the map) carries the load and
# follows each move; the first one runs RESHARD.
#
#   bench/reshard_fences.sh                 # release build, 100k rows, one proxy
#   PROXIES=2 bench/reshard_fences.sh       # the load through a second proxy of the fleet
#
# Reports the moves made, the fence's duration (`fence_ms` of SHOW RESHARD) at p50, p99 and
# max, RESHARD's duration, and the load's failed transactions (must be 0). Everything listens
# on 127.0.0.1; every wait is bounded; the EXIT trap stops everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
ROWS=${ROWS:-100000}
R_C=${R_C:-2}          # reading clients
W_C=${W_C:-4}          # writing clients
LOAD_S=${LOAD_S:-120}  # seconds of load; moves run until it ends
PROXIES=${PROXIES:-1}
PORT=${PORT:-6590}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

SHARDS=3 start_demo "$BIN" "$PORT"
export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
maps=("$dir/demo/shard-map.yaml")
mapfile -t primaries < <(sed -n 's/^ *primary: //p' "${maps[0]}")
for uri in "${primaries[@]}"; do
    psql -q -d "$uri" -c "CREATE TABLE bench_items (id bigint PRIMARY KEY, payload text)"
done
add_tables "$PORT" bench_items \
    "bench_items: {strategy: hash, key: id, key_type: bigint, shards: [s0, s1]}"
load_port=$PORT
if [ "$PROXIES" = 2 ]; then
    load_port=$((PORT + 1))
    mkdir -p "$dir/second"
    sed -e "s/^listen: .*/listen: 127.0.0.1:$load_port/" -e '/^metrics:/,+1d' \
        "$dir/demo/shardgate.yaml" >"$dir/second/shardgate.yaml"
    cp "${maps[0]}" "$dir/second/"
    maps+=("$dir/second/shard-map.yaml")
    "$BIN" run --config "$dir/second/shardgate.yaml" >"$dir/second.log" 2>&1 &
    pids+=($!)
    wait_port "$load_port"
fi

seq 1 "$ROWS" | awk '{print $1 "\tpayload-" $1}' |
    psql -q -p "$PORT" -c "COPY bench_items FROM STDIN"
echo '\set id random(1, :rows)
SELECT payload FROM bench_items WHERE id = :id;' >"$dir/read.sql"
echo '\set id random(1, :rows)
UPDATE bench_items SET payload = md5(random()::text) WHERE id = :id;' >"$dir/write.sql"

(cd "$dir" && pgbench -n -M prepared -c "$R_C" -j 1 -T "$LOAD_S" -p "$load_port" \
    -D rows="$ROWS" -f read.sql >read.out 2>&1) &
readers=$!
(cd "$dir" && pgbench -n -M prepared -c "$W_C" -j 1 -T "$LOAD_S" -p "$load_port" \
    -D rows="$ROWS" -f write.sql >write.out 2>&1) &
writers=$!
sleep 2

# Moves until the load ends, alternating the third shard in and out of the ring.
rings=("s0, s1" "s0, s1, s2")
now=0 moves=0
: >"$dir/fences"
while kill -0 "$writers" 2>/dev/null; do
    next=$((1 - now))
    for map in "${maps[@]}"; do
        sed -i "s/shards: \\[${rings[$now]}\\]/shards: [${rings[$next]}]/" "$map"
    done
    if [ "$PROXIES" = 2 ]; then admin "$load_port" 'RELOAD' >/dev/null 2>&1 || true; fi
    admin "$PORT" 'RELOAD' >/dev/null 2>&1 || true
    from=$(date +%s.%N)
    admin "$PORT" 'RESHARD' >/dev/null
    took=$(echo "$(date +%s.%N) - $from" | bc)
    fence=$(admin "$PORT" 'SHOW RESHARD' | awk -F'|' 'NR == 1 { print $9 }')
    echo "$fence $took" >>"$dir/fences"
    now=$next moves=$((moves + 1))
done
wait "$readers" "$writers" || true

pct() { sort -n | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p); if (i < NR * p) i++; if (i < 1) i = 1; print v[i] }'; }
echo
echo "$moves moves of $ROWS rows (a third each), $PROXIES proxies, load through port $load_port"
echo "| | p50 | p99 | max |"
echo "|-|-:|-:|-:|"
echo "| fence_ms | $(cut -d' ' -f1 "$dir/fences" | pct 0.5) | $(cut -d' ' -f1 "$dir/fences" | pct 0.99) | $(cut -d' ' -f1 "$dir/fences" | sort -n | tail -1) |"
echo "| RESHARD s | $(cut -d' ' -f2 "$dir/fences" | pct 0.5) | $(cut -d' ' -f2 "$dir/fences" | pct 0.99) | $(cut -d' ' -f2 "$dir/fences" | sort -n | tail -1) |"
for kind in read write; do
    read -r tps lat failed < <(pgbench_numbers "$(cat "$dir/$kind.out")")
    echo "$kind: $tps tps, $lat ms average, $failed failed"
done
echo
echo "each move: fence_ms RESHARD_s"
cat "$dir/fences"
echo "warnings and errors of the proxies:"
for log in "$dir/demo.log" "$dir"/second.log; do
    [ -f "$log" ] || continue
    grep -E 'WARN|ERROR|behind the fence' "$log" | sed 's/\x1b\[[0-9;]*m//g' | grep -v 'shard-map edit held' | tail -30 || true
done
