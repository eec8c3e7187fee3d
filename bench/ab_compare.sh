#!/usr/bin/env bash
# ab_compare.sh: throughput of two shardgate builds side by side, in front of the same
# `shardgate demo` clusters, runs alternating, for the A/B a hot-path change must come with.
#
#   BEFORE=/path/to/old/shardgate AFTER=target/release/shardgate bench/ab_compare.sh
#
# The AFTER binary runs `shardgate demo` (2 shards, each a primary and a replica, pool 20);
# the BEFORE binary runs `shardgate run` with the same config on other ports. `pgbench -i`
# goes through the proxy, so pgbench's tables sit on the default shard and `-S` reads go to its
# replica. For each workload the two proxies take turns (old, new, new, old, …) R times; the
# report gives every run and the median ratio after/before. Everything listens on 127.0.0.1;
# every wait is bounded; the EXIT trap stops both proxies (the demo stops its clusters).
# SHARDED=1 hashes `pgbench_accounts` on `aid` over both shards first (single-key routing,
# and half the rows described by the shard that is not the default one).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BEFORE=${BEFORE:?set BEFORE to the old shardgate binary}
AFTER=${AFTER:-$REPO_ROOT/target/release/shardgate}
R=${R:-3}              # runs per binary and workload
T=${T:-8}              # seconds per pgbench run
C=${C:-16}             # pgbench clients
SCALE=${SCALE:-10}
PORT_AFTER=${PORT_AFTER:-6540}
PORT_BEFORE=${PORT_BEFORE:-6541}
WORKLOADS=${WORKLOADS:-"select-simple select-extended select-prepared tpcb-simple"}
BEFORE_WORKERS=${BEFORE_WORKERS:-} # runtime.worker_threads for BEFORE only (same binary twice: a config A/B)
SHARDED=${SHARDED:-}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"

"$AFTER" demo --port "$PORT_AFTER" --metrics-port 0 --dir "$dir/demo" >"$dir/after.log" 2>&1 &
pids+=($!)
wait_port "$PORT_AFTER"
sed -e "s/^listen: .*/listen: 127.0.0.1:$PORT_BEFORE/" -e '/^metrics:/,+1d' \
    "$dir/demo/shardgate.yaml" >"$dir/demo/before.yaml"
if [[ -n $BEFORE_WORKERS ]]; then
    printf 'runtime:\n  worker_threads: %s\n' "$BEFORE_WORKERS" >>"$dir/demo/before.yaml"
fi
"$BEFORE" run --config "$dir/demo/before.yaml" >"$dir/before.log" 2>&1 &
pids+=($!)
wait_port "$PORT_BEFORE"

export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1
if [[ -n $SHARDED ]]; then
    # Both proxies read the same map file.
    add_tables "$PORT_AFTER" pgbench_accounts \
        "pgbench_accounts: {strategy: hash, key: aid, key_type: integer}"
    for _ in $(seq 100); do
        admin "$PORT_BEFORE" 'SHOW MAP' | grep -q pgbench_accounts && break
        sleep 0.1
    done
fi
pgbench -i -q -s "$SCALE" -p "$PORT_AFTER" >/dev/null 2>&1
sleep 2 # let the replicas replay the load

# The proxy's CPU time so far (user + system), in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

run() { # port, proxy pid, pgbench args… -> "tps cpu_us_per_transaction"
    local port=$1 pid=$2
    shift 2
    local before out
    before=$(cpu_ticks "$pid")
    out=$(pgbench -n -c "$C" -j 2 -T "$T" -p "$port" "$@" 2>&1)
    awk -v ticks="$(($(cpu_ticks "$pid") - before))" -v hz="$(getconf CLK_TCK)" '
        /^number of transactions actually processed/ { split($0, f, ": "); split(f[2], n, "/") }
        /^tps = .* \(without initial connection time\)/ { tps = $3 }
        END { printf "%s %.1f\n", tps, ticks * 1e6 / hz / n[1] }' <<<"$out"
}

args_of() {
    case $1 in
    select-simple) echo "-S -M simple" ;;
    select-extended) echo "-S -M extended" ;;
    select-prepared) echo "-S -M prepared" ;;
    tpcb-simple) echo "-M simple" ;;
    esac
}

pid_after=${pids[0]} pid_before=${pids[1]}
echo "| workload | before tps (runs) | after tps (runs) | median tps after/before | proxy CPU µs/txn before → after (medians) |"
echo "|-|-|-|-|-|"
for workload in $WORKLOADS; do
    read -r -a args <<<"$(args_of "$workload")"
    before=() after=() cpu_before=() cpu_after=()
    for i in $(seq "$R"); do
        for side in $( ((i % 2)) && echo "before after" || echo "after before"); do
            if [[ $side == before ]]; then
                read -r tps cpu <<<"$(run "$PORT_BEFORE" "$pid_before" "${args[@]}")"
                before+=("$tps") cpu_before+=("$cpu")
            else
                read -r tps cpu <<<"$(run "$PORT_AFTER" "$pid_after" "${args[@]}")"
                after+=("$tps") cpu_after+=("$cpu")
            fi
        done
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    mb=$(median "${before[@]}")
    ma=$(median "${after[@]}")
    ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')
    join() { local IFS=,; echo "$*" | sed 's/,/, /g; s/\.[0-9]*//g'; }
    cpu="$(median "${cpu_before[@]}") → $(median "${cpu_after[@]}")"
    echo "| \`$workload\` | $(join "${before[@]}") | $(join "${after[@]}") | $ratio | $cpu |"
done
