# lib.sh: what the bench scripts that start proxies share. Sourced, not run.
#
# Sets `dir` (a scratch directory, readable by the `postgres` user the demo runs its servers
# as when started by root) and `pids` (processes to stop), and an EXIT trap that stops them
# with SIGINT (the demo stops its servers), waits up to 10 s for each, and removes `dir`.

dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT

# start_demo BIN PORT: `shardgate demo` with $SHARDS shards (default 2) and no replicas on
# PORT (files in $dir/demo, log in $dir/demo.log), once it listens.
start_demo() {
    "$1" demo --port "$2" --metrics-port 0 --shards "${SHARDS:-2}" --replicas 0 \
        --dir "$dir/demo" >"$dir/demo.log" 2>&1 &
    pids+=($!)
    wait_port "$2"
}

# start_not_atomic BIN PORT: `shardgate run` on PORT over the demo's servers and its current
# shard map, with `transactions.atomic: false` (files in $dir/torn), once it listens.
start_not_atomic() {
    mkdir -p "$dir/torn"
    sed -e "s/^listen: .*/listen: 127.0.0.1:$2/" -e '/^metrics:/,+1d' \
        "$dir/demo/shardgate.yaml" >"$dir/torn/shardgate.yaml"
    printf 'transactions:\n  atomic: false\n' >>"$dir/torn/shardgate.yaml"
    cp "$dir/demo/shard-map.yaml" "$dir/torn/"
    "$1" run --config "$dir/torn/shardgate.yaml" >"$dir/torn.log" 2>&1 &
    pids+=($!)
    wait_port "$2"
}

# add_tables PORT TABLE ENTRY...: adds each ENTRY (a shard-map line, `name: {…}`) under
# `tables:` of the demo's map and waits until the proxy on PORT shows TABLE in `SHOW MAP`
# (the reload applied); exits after 10 s.
add_tables() {
    local port=$1 table=$2 map=$dir/demo/shard-map.yaml
    shift 2
    for entry in "$@"; do
        sed "/^tables:/a\\
  $entry" "$map" >"$map.new"
        mv "$map.new" "$map"
    done
    for _ in $(seq 100); do
        admin "$port" 'SHOW MAP' | grep -q "$table" && return 0
        sleep 0.1
    done
    echo "the map edit was not applied" >&2
    exit 1
}

# admin PORT SQL: SQL on the demo's admin console behind PORT.
admin() { PGUSER=admin PGPASSWORD=admin psql -At -p "$1" -d shardgate -c "$2"; }

# pgbench_numbers OUTPUT: "tps latency_ms failed" from a pgbench run's output.
pgbench_numbers() {
    local tps lat failed
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$1")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$1")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$1")
    echo "$tps $lat ${failed:-0}"
}

# wait_port PORT: returns once something listens on 127.0.0.1:PORT; exits after 30 s.
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
