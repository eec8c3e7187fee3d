#!/usr/bin/env bash
# copy_compare.sh: COPY FROM STDIN of N rows through the proxy into a table hashed over the
# demo's two shards, against the same COPY into one plain server directly (the demo's s0
# primary), in text and binary format; then COPY TO STDOUT of those N rows both ways.
# Reports rows/s, the ratio to direct, the proxy's CPU time per row (user + system, from
# /proc) and its peak RSS before and after.
#
#   bench/copy_compare.sh            # release build at target/release/shardgate
#   N=200000 R=1 bench/copy_compare.sh
#
# Starts one `shardgate demo` (2 shards, no replicas), adds `bench_copy` (hashed on `id`) to
# its shard map (the proxy reloads it), creates it through the proxy, and `bench_copy_plain`
# on s0 directly. Each COPY FROM round TRUNCATEs both, then times psql's `\copy … FROM` of
# the same file into each; each COPY TO round times `\copy … TO '/dev/null'` of each. Everything listens on 127.0.0.1; every wait is bounded; the EXIT trap stops
# everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
N=${N:-1000000}   # rows
R=${R:-3}         # rounds per format
PORT=${PORT:-6590}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

start_demo "$BIN" "$PORT"
export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
proxy_pid=${pids[0]}
map=$dir/demo/shard-map.yaml
s0_port=$(grep -m1 'primary:' "$map" | sed 's/.*:\([0-9]*\)\/.*/\1/')

add_tables "$PORT" bench_copy "bench_copy: {strategy: hash, key: id, key_type: bigint}"
create="DROP TABLE IF EXISTS TABLE_NAME; CREATE TABLE TABLE_NAME (id bigint PRIMARY KEY, n int, note text)"
psql -p "$PORT" -Atqc "${create//TABLE_NAME/bench_copy}" >/dev/null
psql -p "$s0_port" -Atqc "${create//TABLE_NAME/bench_copy_plain}" >/dev/null

echo "generating $N rows" >&2
psql -p "$s0_port" -Atqc "COPY (SELECT g, g % 1000, 'row number ' || g FROM generate_series(1, $N) g) TO STDOUT" >"$dir/rows.txt"
psql -p "$s0_port" -Atqc "COPY (SELECT g::bigint, (g % 1000)::int, 'row number ' || g FROM generate_series(1, $N) g) TO STDOUT (FORMAT binary)" >"$dir/rows.bin"

# cpu_ticks: the proxy's user + system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy_pid/stat"; }
peak_rss_kib() { awk '/^VmHWM/ {print $2}' "/proc/$proxy_pid/status"; }
ticks_per_s=$(getconf CLK_TCK)

# timed PORT TABLE FILE OPTIONS: seconds to \copy FILE into TABLE through PORT.
timed() {
    psql -p "$1" -Atqc "TRUNCATE $2" >/dev/null
    seconds psql -p "$1" -Atqc "\\copy $2 FROM '$3' $4"
}

# timed_out PORT TABLE OPTIONS: seconds to \copy TABLE to /dev/null through PORT.
timed_out() { seconds psql -p "$1" -Atqc "\\copy $2 TO '/dev/null' $3"; }

# seconds COMMAND...: wall seconds COMMAND takes (its output dropped).
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

rate() { echo "$N / $1" | bc -l | xargs printf '%.0f\n'; }

# report FORMAT: one table row from the runs in direct, proxied and cpu.
report() {
    local d_runs p_runs d_med p_med c_med ratio us_per_row
    d_runs=$(for s in "${direct[@]}"; do rate "$s"; done | paste -sd, -)
    p_runs=$(for s in "${proxied[@]}"; do rate "$s"; done | paste -sd, -)
    d_med=$(printf '%s\n' "${direct[@]}" | median)
    p_med=$(printf '%s\n' "${proxied[@]}" | median)
    c_med=$(printf '%s\n' "${cpu[@]}" | median)
    ratio=$(echo "$d_med / $p_med" | bc -l | xargs printf '%.2f')
    us_per_row=$(echo "$c_med * 1000000 / $ticks_per_s / $N" | bc -l | xargs printf '%.2f')
    echo "| $1 | $(rate "$d_med") ($d_runs) | $(rate "$p_med") ($p_runs) | $ratio | $us_per_row |"
}

rss_before=$(peak_rss_kib)
echo "| COPY | direct rows/s (runs) | proxy rows/s (runs) | proxy / direct | proxy CPU µs/row |"
echo "|-|-|-|-:|-:|"
for format in text binary; do
    file=$dir/rows.txt options=""
    if [ "$format" = binary ]; then file=$dir/rows.bin options="(FORMAT binary)"; fi
    direct=() proxied=() cpu=()
    for _ in $(seq "$R"); do
        direct+=("$(timed "$s0_port" bench_copy_plain "$file" "$options")")
        before=$(cpu_ticks)
        proxied+=("$(timed "$PORT" bench_copy "$file" "$options")")
        cpu+=("$(( $(cpu_ticks) - before ))")
    done
    report "FROM, $format"
done
for format in text binary; do
    options=""
    if [ "$format" = binary ]; then options="(FORMAT binary)"; fi
    direct=() proxied=() cpu=()
    for _ in $(seq "$R"); do
        direct+=("$(timed_out "$s0_port" bench_copy_plain "$options")")
        before=$(cpu_ticks)
        proxied+=("$(timed_out "$PORT" bench_copy "$options")")
        cpu+=("$(( $(cpu_ticks) - before ))")
    done
    report "TO, $format"
done
counts=$(for port in $(grep 'primary:' "$map" | sed 's/.*:\([0-9]*\)\/.*/\1/'); do
    psql -p "$port" -Atqc "SELECT count(*) FROM bench_copy"; done | paste -sd/ -)
echo
echo "rows per shard after the last run: $counts"
echo "proxy peak RSS: $rss_before KiB before the COPYs, $(peak_rss_kib) KiB after"
