#!/usr/bin/env bash
# federation_compare.sh: reads the streaming merge cannot compute, which shardgate answers in
# its federation database (PostgreSQL over every shard through postgres_fdw), against the same
# reads on one plain server holding all the rows. One selective and one full-scan query of
# each class: subquery, CTE, window, UNION, DISTINCT aggregate, join off the shard key.
#
#   bench/federation_compare.sh                  # 2 and 4 shards, 1M rows, release build
#   SHARD_COUNTS=2 ROWS=200000 T=3 bench/federation_compare.sh
#   FDW_SERVER_OPTIONS="use_remote_estimate 'true'" bench/federation_compare.sh   # an experiment
#   FDW_ANALYZE=1 bench/federation_compare.sh     # ANALYZE the federation's foreign tables first
#
# For each shard count: one `shardgate demo` (no replicas); `fed_t` (id bigint, grp int,
# amount numeric, note text; ROWS rows) hashed on id and `fed_c` (cid int, region text; 10,000
# rows) hashed on cid are created and loaded through the proxy (COPY), and the same rows go
# into `plain_t`/`plain_c` on the demo's s0 primary, which is the plain server. Each query runs
# with pgbench (-n, one client, T seconds; selective queries take a random :a) through the
# proxy on the sharded tables and directly on the plain ones. Reported: transactions per
# second, mean latency, the proxy / plain latency ratio, the same query's latency run straight
# in the federation database (no proxy: the rest is the proxy's share), its planning and
# execution time there and the rows it pulled from the shards with their estimated bytes
# (EXPLAIN ANALYZE VERBOSE in the federation database: rows × width of every foreign scan),
# and the proxy's peak RSS.
# Everything listens on 127.0.0.1; every wait is bounded; the EXIT trap stops everything.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO_ROOT/target/release/shardgate}
ROWS=${ROWS:-1000000}
T=${T:-5}
SHARD_COUNTS=${SHARD_COUNTS:-"2 4"}
PORT=${PORT:-6591}

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
export PGPASSWORD=app PGUSER=app PGDATABASE=app PGHOST=127.0.0.1

# name|selective or full|query (TABLE_T and TABLE_C stand for the tables)
QUERIES=(
    "subquery|selective|SELECT id, amount FROM TABLE_T WHERE id IN (SELECT id FROM TABLE_T WHERE id BETWEEN :a AND :a + 20)"
    "subquery|full|SELECT count(*) FROM TABLE_T WHERE amount > (SELECT avg(amount) FROM TABLE_T)"
    "cte|selective|WITH x AS (SELECT * FROM TABLE_T WHERE id BETWEEN :a AND :a + 100) SELECT grp, count(*) FROM x GROUP BY grp ORDER BY grp"
    "cte|full|WITH x AS (SELECT grp, sum(amount) AS s FROM TABLE_T GROUP BY grp) SELECT max(s) FROM x"
    "window|selective|SELECT id, rank() OVER (ORDER BY amount) FROM TABLE_T WHERE id BETWEEN :a AND :a + 100"
    "window|full|SELECT max(r) FROM (SELECT row_number() OVER (PARTITION BY grp ORDER BY id) AS r FROM TABLE_T) s"
    "union|selective|SELECT id FROM TABLE_T WHERE id BETWEEN :a AND :a + 50 UNION SELECT id FROM TABLE_T WHERE id BETWEEN :a + 25 AND :a + 75"
    "union|full|SELECT count(*) FROM (SELECT grp FROM TABLE_T UNION SELECT cid FROM TABLE_C) u"
    "distinct_agg|selective|SELECT count(DISTINCT grp) FROM TABLE_T WHERE id BETWEEN :a AND :a + 1000"
    "distinct_agg|full|SELECT count(DISTINCT grp) FROM TABLE_T"
    "join_off_key|selective|SELECT t.id, c.region FROM TABLE_T t JOIN TABLE_C c ON c.cid = t.grp WHERE t.id BETWEEN :a AND :a + 100"
    "join_off_key|full|SELECT c.region, count(*) FROM TABLE_T t JOIN TABLE_C c ON c.cid = t.grp GROUP BY c.region"
)

# run_pgbench PORT SQL [DB]: "tps latency_ms" of one client running SQL for T seconds.
run_pgbench() {
    local script=$dir/q.sql out tps lat
    printf '\\set a random(1, %d)\n%s;\n' "$((ROWS - 1100))" "$2" >"$script"
    out=$(timeout $((T + 120)) pgbench -n -c 1 -T "$T" -f "$script" -p "$1" "${3:-app}" 2>&1) ||
        { echo "$out" >&2; exit 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    echo "$tps $lat"
}

# pulled FED_PORT FED_DB SQL: "rows bytes planning_ms execution_ms": what the federation's
# foreign scans fetched for SQL, and where its time went (one EXPLAIN ANALYZE).
pulled() {
    local sql=${3//:a/500000}
    # Twice in one session: the second runs warm (shard connections open, caches loaded),
    # as the proxy's pooled connections to the federation do; psql prints the last result.
    psql -p "$1" -d "$2" -Atqc "EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) $sql; EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) $sql" |
        python3 -c '
import json, sys
text, decoder, docs = sys.stdin.read().strip(), json.JSONDecoder(), []
while text:
    doc, end = decoder.raw_decode(text)
    docs.append(doc)
    text = text[end:].strip()
explained = docs[-1][0]
plan = explained["Plan"]
rows = bytes_ = 0
def walk(node):
    global rows, bytes_
    if node.get("Node Type") == "Foreign Scan":
        n = node["Actual Rows"] * node.get("Actual Loops", 1)
        rows += n
        bytes_ += n * node["Plan Width"]
    for child in node.get("Plans", []):
        walk(child)
walk(plan)
print(rows, bytes_, round(explained["Planning Time"], 2), round(explained["Execution Time"], 2))'
}

for shards in $SHARD_COUNTS; do
    SHARDS=$shards start_demo "$BIN" "$PORT"
    proxy_pid=${pids[-1]}
    map=$dir/demo/shard-map.yaml
    s0_port=$(grep -m1 'primary:' "$map" | sed 's/.*:\([0-9]*\)\/.*/\1/')
    add_tables "$PORT" fed_c "fed_t: {strategy: hash, key: id, key_type: bigint}" \
        "fed_c: {strategy: hash, key: cid, key_type: integer}"
    echo "loading $ROWS rows over $shards shards" >&2
    for pair in "$PORT fed" "$s0_port plain"; do
        read -r port prefix <<<"$pair"
        psql -p "$port" -Atqc "DROP TABLE IF EXISTS ${prefix}_t, ${prefix}_c" >/dev/null
        psql -p "$port" -Atqc "CREATE TABLE ${prefix}_t (id bigint PRIMARY KEY, grp int NOT NULL, amount numeric(12, 2) NOT NULL, note text)" >/dev/null
        psql -p "$port" -Atqc "CREATE TABLE ${prefix}_c (cid int PRIMARY KEY, region text NOT NULL)" >/dev/null
    done
    psql -p "$s0_port" -Atqc "COPY (SELECT g, g % 10000, (g % 99991) / 100.0, 'note ' || g FROM generate_series(1, $ROWS) g) TO STDOUT" >"$dir/t.txt"
    psql -p "$s0_port" -Atqc "COPY (SELECT g, 'region ' || g % 17 FROM generate_series(0, 9999) g) TO STDOUT" >"$dir/c.txt"
    for pair in "$PORT fed" "$s0_port plain"; do
        read -r port prefix <<<"$pair"
        psql -p "$port" -Atqc "\\copy ${prefix}_t FROM '$dir/t.txt'" >/dev/null
        psql -p "$port" -Atqc "\\copy ${prefix}_c FROM '$dir/c.txt'" >/dev/null
        psql -p "$port" -Atqc "ANALYZE ${prefix}_t" >/dev/null
        psql -p "$port" -Atqc "ANALYZE ${prefix}_c" >/dev/null
    done
    # The first federated read builds the federation database.
    psql -p "$PORT" -Atqc "SELECT count(DISTINCT grp) FROM fed_t" >/dev/null
    fed_db=$(psql -p "$s0_port" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'app_federation_%' ORDER BY oid DESC LIMIT 1")
    # An experiment's postgres_fdw server options (e.g. "use_remote_estimate 'true'"), set on
    # every shard's server of the federation just built.
    if [[ -n ${FDW_SERVER_OPTIONS:-} ]]; then
        for server in $(psql -p "$s0_port" -d "$fed_db" -Atqc "SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'shardgate%'"); do
            psql -p "$s0_port" -d "$fed_db" -Atqc "ALTER SERVER $server OPTIONS (ADD $FDW_SERVER_OPTIONS)" >/dev/null
        done
        echo "postgres_fdw servers set: $FDW_SERVER_OPTIONS" >&2
    fi
    if [[ -n ${FDW_ANALYZE:-} ]]; then
        started=$(date +%s.%N)
        for table in $(psql -p "$s0_port" -d "$fed_db" -Atqc "SELECT c.oid::regclass FROM pg_class c WHERE c.relkind = 'f'"); do
            psql -p "$s0_port" -d "$fed_db" -Atqc "ANALYZE $table" >/dev/null
        done
        echo "foreign tables analyzed in $(echo "$(date +%s.%N) - $started" | bc) s" >&2
    fi
    echo
    echo "### $shards shards, $ROWS rows"
    echo
    echo "| query | kind | plain tps | plain ms | proxy tps | proxy ms | proxy / plain latency | federation direct ms | planning ms | execution ms | rows pulled | bytes pulled (est.) |"
    echo "|-|-|-:|-:|-:|-:|-:|-:|-:|-:|-:|-:|"
    for entry in "${QUERIES[@]}"; do
        IFS='|' read -r name kind sql <<<"$entry"
        plain_sql=${sql//TABLE_T/plain_t}; plain_sql=${plain_sql//TABLE_C/plain_c}
        fed_sql=${sql//TABLE_T/fed_t}; fed_sql=${fed_sql//TABLE_C/fed_c}
        read -r p_tps p_lat <<<"$(run_pgbench "$s0_port" "$plain_sql")"
        read -r f_tps f_lat <<<"$(run_pgbench "$PORT" "$fed_sql")"
        read -r _ d_lat <<<"$(run_pgbench "$s0_port" "$fed_sql" "$fed_db")"
        read -r rows bytes planning execution <<<"$(pulled "$s0_port" "$fed_db" "$fed_sql")"
        ratio=$(echo "$f_lat / $p_lat" | bc -l | xargs printf '%.2f')
        echo "| $name | $kind | $p_tps | $p_lat | $f_tps | $f_lat | $ratio | $d_lat | $planning | $execution | $rows | $bytes |"
    done
    federated=$(admin "$PORT" "SHOW STATS" | awk -F'|' '{print $NF}')
    echo
    echo "proxy peak RSS: $(awk '/^VmHWM/ {print $2}' "/proc/$proxy_pid/status") KiB; federated reads counted: $federated"
    kill -INT "$proxy_pid"
    for _ in $(seq 100); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
    pids=("${pids[@]:0:${#pids[@]}-1}")
    rm -rf "$dir/demo"
done
