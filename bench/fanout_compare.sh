#!/usr/bin/env bash
# fanout_compare.sh: cross-shard reads through shardgate (2 and 4 shards, every shard a
# primary + one streaming replica, reads on the replicas) against the same queries on one
# plain PostgreSQL server that holds all the rows.
#
# What it measures, per query x protocol (-M simple / -M extended) x client count x target:
#   * tps and mean latency (pgbench, custom scripts in bench/fanout/, -n);
#   * CPU: shardgate's own (utime+stime from /proc/PID/stat before and after the run), the
#     PostgreSQL servers behind the target (every postmaster and backend, reaped ones too),
#     pgbench's, and what processes outside the benchmark used;
#   * proxy CPU per query and per merged row: shardgate's CPU divided by the transactions and
#     by the rows the shards sent (counted once before the runs by running each query on each
#     shard's replica directly: 1 per shard for count(*), 10 per shard for the LIMITs, 40
#     per shard for the GROUP BY, and the ROWS/every matching rows for the streamed reads);
#   * shardgate memory: VmRSS idle after startup and after warm-up, VmRSS and VmHWM at the end.
#
# The table t (id bigint primary key, grp int, amount numeric(12,2), note text) gets ROWS
# rows with deterministic values. The same INSERT file loads the plain server directly and
# each sharded cluster through a shardgate that has no replicas in its map (so the rows are
# placed by shardgate's own hash ring); then every primary is vacuumed and its replica made
# with pg_basebackup, and the measured shardgate processes start fresh (their memory figures
# do not include the load). Before any run, every query's result through each proxy is
# compared with the plain server's.
#
# Targets are interleaved: for each (query, protocol, clients) cell, one repetition of every
# target, in an order that rotates from repetition to repetition and cell to cell; the report
# shows medians of R repetitions.
#
# Everything runs on 127.0.0.1 in a temporary directory (tmpfs when available), as the
# postgres user for PostgreSQL; every wait is bounded and every pgbench run is capped with
# timeout(1); an EXIT trap stops all servers and removes the directory (KEEP=1 keeps it).
# A pgbench run that fails, aborts or reports failed transactions stops the script with its
# output and the tail of the proxy's log, and keeps the directory.
#
# Usage: bench/fanout_compare.sh      (see bench/README.md for the environment variables)

set -euo pipefail

# ---- settings ---------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT_DIR=$REPO_ROOT/bench/fanout
SHARDGATE_BIN=${SHARDGATE_BIN:-$REPO_ROOT/target/release/shardgate}
R=${R:-2}                                    # repetitions per cell and target
T=${T:-3}                                    # seconds per pgbench run
CLIENTS=${CLIENTS:-"1 8"}                    # client counts
SHARDS=${SHARDS:-"2 4"}                      # shard counts, one shardgate per count
ROWS=${ROWS:-1000000}                        # rows in t
STREAM_ROWS=${STREAM_ROWS:-10000}            # rows the streamed queries return (every = ROWS / this)
QUERIES=${QUERIES:-"count top10 top10_cols groupby stream stream_sorted"}
MODES=${MODES:-"simple extended"}            # pgbench -M
POOL_SIZE=${POOL_SIZE:-20}                   # shardgate pool.size
LOAD_BATCH=${LOAD_BATCH:-1000}               # rows per INSERT when loading
SG_LOG_LEVEL=${SG_LOG_LEVEL:-warn}           # shardgate log.level
QUIET_WAIT=${QUIET_WAIT:-10}                 # seconds per run to wait for other processes to go quiet
QUIET_BUDGET=${QUIET_BUDGET:-60}             # total seconds of such waiting, then measure regardless
BUSY_FLAG=${BUSY_FLAG:-10}                   # % of all CPUs used by others that flags a run
RESULTS_MD=${RESULTS_MD:-}                   # also write the markdown report to this file
KEEP=${KEEP:-0}                              # 1 = keep the temporary directory
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_EXTRA_CONF=${PG_EXTRA_CONF:-}             # lines appended to every postgresql.conf

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

for n in R T ROWS STREAM_ROWS POOL_SIZE LOAD_BATCH BUSY_FLAG; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, got '${!n}'"
done
for n in QUIET_WAIT QUIET_BUDGET; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number of seconds, got '${!n}'"
done
for c in $CLIENTS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CLIENTS: '$c' is not a positive integer"; done
for s in $SHARDS; do [[ $s =~ ^[1-9][0-9]*$ ]] || die "SHARDS: '$s' is not a positive integer"; done
for m in $MODES; do [[ $m == simple || $m == extended || $m == prepared ]] || die "MODES: unknown '$m'"; done
for q in $QUERIES; do [[ -f $SCRIPT_DIR/$q.sql ]] || die "QUERIES: no script $SCRIPT_DIR/$q.sql"; done
(( ROWS >= STREAM_ROWS )) || die "ROWS ($ROWS) must be at least STREAM_ROWS ($STREAM_ROWS)"
EVERY=$(( ROWS / STREAM_ROWS ))
[[ $(id -u) -eq 0 ]] || die "run as root: PostgreSQL is started as the postgres user"
for tool in psql pgbench ss runuser awk pgrep timeout md5sum; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y postgresql postgresql-client)"
done
for tool in initdb pg_ctl pg_basebackup; do
    [[ -x $PG_BIN/$tool ]] || die "no $tool in $PG_BIN (set PG_BIN)"
done
GIT_HEAD_START=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')
SECONDS=0

if [[ ! -x $SHARDGATE_BIN ]]; then
    log "no binary at $SHARDGATE_BIN: cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release)
    [[ -x $SHARDGATE_BIN ]] || die "cargo build did not produce $SHARDGATE_BIN"
fi
SG_VERSION=$("$SHARDGATE_BIN" --version)

# ---- temporary directory and cleanup ----------------------------------------------------
base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
WORK=$(mktemp -d "$base/shardgate-fanout.XXXXXX")
chown postgres: "$WORK"
chmod 755 "$WORK"

declare -A PORT          # instance or proxy name -> port
declare -A SG_PID        # proxy name -> pid
STARTED=()               # PostgreSQL instances started, in start order
BG_PIDS=()
USED_PORTS=" "

stop_sg() {
    local name=$1 pid=${SG_PID[$1]:-}
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null && log "$name did not stop within 5 s of SIGTERM; killed it"
    fi
    wait "$pid" 2>/dev/null || true
    SG_PID[$name]=
}

cleanup() {
    local rc=$? i name
    set +e
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for name in "${!SG_PID[@]}"; do stop_sg "$name"; done
    # Replicas before primaries (a primary's fast shutdown waits for its walsenders).
    for (( i = ${#STARTED[@]} - 1; i >= 0; i-- )); do
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/${STARTED[i]}" -m fast -t 30 stop >/dev/null 2>&1
    done
    if (( rc != 0 )); then
        log "failed (exit $rc); logs in $WORK"
        KEEP=1
    fi
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sets FREE_PORT to a free TCP port on 127.0.0.1 not handed out before (bounded number of
# tries). Not called in a subshell, so USED_PORTS remembers every port given out.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if [[ -z $(ss -Htln "sport = :$p") ]]; then USED_PORTS+="$p "; FREE_PORT=$p; return; fi
    done
    die "no free port found"
}

export PGPASSWORD=app PGCONNECT_TIMEOUT=10 LC_ALL=C

# psql as app over TCP; the first argument is the port. Bounded by timeout(1).
sql() {
    local port=$1; shift
    timeout 600 psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U app -d app "$@"
}

# Waits (at most ~20 s) until `psql` can log in as app on the given port.
wait_ready() {
    local port=$1 name=$2
    for _ in $(seq 200); do
        psql -X -q -h 127.0.0.1 -p "$port" -U app -d app -c 'select 1' >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "$name on port $port is not accepting logins after 20 s"
}

# ---- PostgreSQL instances ---------------------------------------------------------------
# Same settings everywhere (replicas copy their primary's postgresql.conf and get their own
# port appended). Durability is off: the benchmark measures CPU and round trips, not disks.
pg_settings() {
    cat <<EOF
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$WORK'
max_connections = 100
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
$PG_EXTRA_CONF
EOF
}

pg_start() {
    local name=$1
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/$name" -l "$WORK/$name.log" -w -t 60 start >/dev/null \
        || { tail -n 20 "$WORK/$name.log" >&2; die "PostgreSQL $name did not start"; }
    STARTED+=("$name")
}

# A primary (or the plain server): initdb, settings, role app/app, database app.
init_primary() {
    local name=$1 port
    free_port; port=$FREE_PORT
    PORT[$name]=$port
    runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/$name" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$WORK/$name.initdb.log" 2>&1 \
        || { cat "$WORK/$name.initdb.log" >&2; die "initdb $name failed"; }
    pg_settings "$port" >>"$WORK/$name/postgresql.conf"
    printf 'local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' \
        >"$WORK/$name/pg_hba.conf"
    pg_start "$name"
    runuser -u postgres -- psql -X -q -h "$WORK" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE app LOGIN SUPERUSER PASSWORD 'app'" -c "CREATE DATABASE app OWNER app" >/dev/null
    wait_ready "$port" "$name"
}

# A streaming replica of a primary, cloned with pg_basebackup over the unix socket.
init_replica() {
    local name=$1 primary=$2 port
    free_port; port=$FREE_PORT
    PORT[$name]=$port
    runuser -u postgres -- timeout 600 "$PG_BIN/pg_basebackup" -D "$WORK/$name" -h "$WORK" -p "${PORT[$primary]}" \
        -U postgres -X stream -R -c fast >"$WORK/$name.basebackup.log" 2>&1 \
        || { cat "$WORK/$name.basebackup.log" >&2; die "pg_basebackup $name from $primary failed"; }
    printf 'port = %s\n' "$port" >>"$WORK/$name/postgresql.conf"
    pg_start "$name"
    wait_ready "$port" "$name"
    [[ $(sql "$port" -c 'select pg_is_in_recovery()') == t ]] || die "$name is not in recovery"
}

# ---- CPU accounting ---------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
now() { date +%s.%N; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4; exit}' /proc/stat; }
# utime+stime of one process (fields after the ")" that closes the command name).
proc_ticks() { { cat "/proc/$1/stat" 2>/dev/null || true; } | awk '{sub(/.*\) /, ""); t = $12 + $13} END {print t + 0}'; }
# cutime+cstime of this script: its reaped children (pgbench under timeout, psql, awk...).
self_child_ticks() { awk '{sub(/.*\) /, ""); print $14 + $15}' "/proc/$$/stat"; }
# CPU ticks of PostgreSQL instances: live children's utime+stime, plus the postmaster's own
# and its reaped children's. Children are read before the postmaster, so a backend reaped in
# between is counted twice rather than lost; callers let backends settle first.
pg_ticks() {
    local name pm files=() pms=""
    for name in "$@"; do
        pm=$(head -n 1 "$WORK/$name/postmaster.pid")
        pms+=" $pm "
        while read -r child; do files+=("/proc/$child/stat"); done < <(pgrep -P "$pm" || true)
        files+=("/proc/$pm/stat")
    done
    { cat "${files[@]}" 2>/dev/null || true; } |
        awk -v pms="$pms" '{ pid = $1; sub(/.*\) /, ""); t += $12 + $13
                             if (index(pms, " " pid " ")) t += $14 + $15 } END { print t + 0 }'
}
sg_ticks_all() {
    local t=0 name
    for name in "${!SG_PID[@]}"; do
        [[ -n ${SG_PID[$name]} ]] && t=$(( t + $(proc_ticks "${SG_PID[$name]}") ))
    done
    echo "$t"
}
our_ticks() { echo $(( $(pg_ticks "${STARTED[@]}") + $(sg_ticks_all) + $(self_child_ticks) )); }
# % of all CPUs used by others since busy_ticks=B0, our_ticks=O0, time T0.
other_pct() {
    awk -v b="$(( $(busy_ticks) - $1 - ($(our_ticks) - $2) ))" -v hz="$HZ" -v n="$NCPU" \
        -v t0="$3" -v t1="$(now)" 'BEGIN {v = b * 100 / (hz * n * (t1 - t0)); printf "%d", (v < 0 ? 0 : v)}'
}
QUIET_SPENT=0
# Waits until others use less than BUSY_FLAG % over half a second: at most QUIET_WAIT s per
# run, and QUIET_BUDGET s over the whole script (then it measures without waiting). Only the
# time after the first busy sample counts as waiting.
wait_quiet() {
    local b0 o0 t0 pct start waited=0
    (( QUIET_SPENT < QUIET_BUDGET && QUIET_WAIT > 0 )) || return 0
    b0=$(busy_ticks) o0=$(our_ticks) t0=$(now)
    sleep 0.5
    pct=$(other_pct "$b0" "$o0" "$t0")
    (( pct < BUSY_FLAG )) && return 0
    start=$(now)
    while :; do
        b0=$(busy_ticks) o0=$(our_ticks) t0=$(now)
        sleep 0.5
        pct=$(other_pct "$b0" "$o0" "$t0")
        waited=$(awk -v a="$start" -v b="$(now)" 'BEGIN {printf "%d", b - a}')
        (( pct < BUSY_FLAG || waited >= QUIET_WAIT || QUIET_SPENT + waited >= QUIET_BUDGET )) && break
    done
    QUIET_SPENT=$(( QUIET_SPENT + waited ))
}
kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---- plain server and shard primaries ---------------------------------------------------
log "$SG_VERSION ($SHARDGATE_BIN); temporary directory $WORK"
log "PostgreSQL instances: plain$(for n in $SHARDS; do printf ', %s primaries + %s replicas' "$n" "$n"; done)"
init_primary plain
PG_VERSION=$(sql "${PORT[plain]}" -c 'show server_version')
for n in $SHARDS; do
    for (( s = 0; s < n; s++ )); do init_primary "c${n}p$s"; done
done

# ---- shardgate configs ------------------------------------------------------------------
# sg<N>.yaml serves database app from map<N>.yaml (replicas, reads: replica); the loader
# configs use a map without replicas.
write_map() {
    local n=$1 replicas=$2 s
    echo "shards:"
    for (( s = 0; s < n; s++ )); do
        echo "  - name: s$s"
        echo "    primary: postgres://app:app@127.0.0.1:${PORT[c${n}p$s]}/app"
        (( replicas )) && echo "    replicas: [postgres://app:app@127.0.0.1:${PORT[c${n}r$s]}/app]"
    done
    cat <<EOF
reads: replica
tables:
  t:
    strategy: hash
    key: id
    key_type: bigint
EOF
}
write_config() {
    local port=$1 map=$2
    cat <<EOF
listen: 127.0.0.1:$port
users:
  - name: app
    password: app
pool:
  size: $POOL_SIZE
  mode: transaction
limits:
  max_client_connections: 1000
log:
  level: $SG_LOG_LEVEL
databases:
  - name: app
    shard_map: $map
EOF
}
start_sg() {
    local name=$1 config=$2 port=$3
    "$SHARDGATE_BIN" check --config "$config" >&2 || die "shardgate check rejected $config"
    "$SHARDGATE_BIN" run --config "$config" >"$WORK/$name.log" 2>&1 &
    SG_PID[$name]=$!
    PORT[$name]=$port
    wait_ready "$port" "$name"
}

# ---- load -------------------------------------------------------------------------------
# Deterministic rows: grp = id % 40 (40 groups), amount in 0.00..9999.99 scrambled by id.
log "generating $ROWS rows in INSERTs of $LOAD_BATCH"
awk -v n="$ROWS" -v b="$LOAD_BATCH" 'BEGIN {
    for (s = 1; s <= n; s += b) {
        e = s + b - 1; if (e > n) e = n
        printf "INSERT INTO t (id, grp, amount, note) VALUES "
        for (i = s; i <= e; i++) {
            a = (i * 2654435761) % 1000003 % 1000000
            printf "%s(%d,%d,%d.%02d,'\''row %d'\'')", (i > s ? "," : ""), i, i % 40, int(a / 100), a % 100, i
        }
        print ";"
    } }' >"$WORK/load.sql"
DDL="CREATE TABLE t (id bigint PRIMARY KEY, grp int NOT NULL, amount numeric(12,2) NOT NULL, note text NOT NULL)"
declare -A LOAD_SECS
load_through() {   # name port
    local t0=$SECONDS
    sql "$2" -c "$DDL" >/dev/null
    sql "$2" -f "$WORK/load.sql" >"$WORK/load-$1.out" 2>&1 \
        || { tail -n 20 "$WORK/load-$1.out" >&2; die "loading $1 failed"; }
    LOAD_SECS[$1]=$(( SECONDS - t0 ))
    log "loaded $ROWS rows into $1 in ${LOAD_SECS[$1]} s"
}
load_through plain "${PORT[plain]}"
for n in $SHARDS; do
    write_map "$n" 0 >"$WORK/map$n-load.yaml"
    free_port; lport=$FREE_PORT
    write_config "$lport" "map$n-load.yaml" >"$WORK/sg$n-load.yaml"
    start_sg "loader$n" "$WORK/sg$n-load.yaml" "$lport"
    load_through "sg$n" "$lport"
    stop_sg "loader$n"
done

declare -A SHARD_COUNT
sql "${PORT[plain]}" -c 'VACUUM (ANALYZE) t' -c 'CHECKPOINT'
[[ $(sql "${PORT[plain]}" -c 'select count(*) from t') == "$ROWS" ]] || die "plain server does not hold $ROWS rows"
for n in $SHARDS; do
    total=0
    for (( s = 0; s < n; s++ )); do
        p=${PORT[c${n}p$s]}
        sql "$p" -c 'VACUUM (ANALYZE) t' -c 'CHECKPOINT'
        SHARD_COUNT[$n|$s]=$(sql "$p" -c 'select count(*) from t')
        total=$(( total + SHARD_COUNT[$n|$s] ))
    done
    (( total == ROWS )) || die "$n shards hold $total rows, not $ROWS"
done

# ---- replicas ---------------------------------------------------------------------------
for n in $SHARDS; do
    for (( s = 0; s < n; s++ )); do
        init_replica "c${n}r$s" "c${n}p$s"
        [[ $(sql "${PORT[c${n}r$s]}" -c 'select count(*) from t') == "${SHARD_COUNT[$n|$s]}" ]] \
            || die "replica c${n}r$s does not hold its primary's rows"
    done
done
log "replicas made with pg_basebackup and streaming"

# ---- measured proxies -------------------------------------------------------------------
declare -A RSS_IDLE RSS_WARM
TARGETS=(plain)
for n in $SHARDS; do
    write_map "$n" 1 >"$WORK/map$n.yaml"
    free_port; port=$FREE_PORT
    write_config "$port" "map$n.yaml" >"$WORK/sg$n.yaml"
    start_sg "sg$n" "$WORK/sg$n.yaml" "$port"
    TARGETS+=("sg$n")
done
sleep 2
for n in $SHARDS; do RSS_IDLE[sg$n]=$(kib "${SG_PID[sg$n]}" VmRSS); done
# Wait (bounded) until every shard's read goes to a replica: grouped by pg_is_in_recovery(),
# a cross-shard count must come back as the single group (t, ROWS).
for n in $SHARDS; do
    ok=0
    for _ in $(seq 30); do
        got=$(sql "${PORT[sg$n]}" -F ' ' -c 'SELECT pg_is_in_recovery(), count(*) FROM t GROUP BY 1' 2>&1 || true)
        [[ $got == "t $ROWS" ]] && { ok=1; break; }
        sleep 1
    done
    (( ok )) || die "sg$n: cross-shard reads do not all go to replicas after 30 s (last answer: $got)"
done
log "proxies: $(for n in $SHARDS; do printf 'sg%s on %s, ' "$n" "${PORT[sg$n]}"; done)reads on replicas"

# ---- correctness and rows per query -----------------------------------------------------
# The query a script runs, with :every filled in and without the final semicolon.
query_text() { sed -e "s/:every/$EVERY/g" -e 's/;[[:space:]]*$//' "$SCRIPT_DIR/$1.sql" | paste -sd' '; }
declare -A SAME ROWS_CLIENT ROWS_SHARDS
mismatches=0
for q in $QUERIES; do
    text=$(query_text "$q")
    sortit="cat"; [[ $text != *"ORDER BY"* ]] && sortit="sort"
    want=$(sql "${PORT[plain]}" -c "$text" | $sortit | md5sum)
    ROWS_CLIENT[$q]=$(sql "${PORT[plain]}" -c "SELECT count(*) FROM ($text) q")
    ROWS_SHARDS[$q|plain]=${ROWS_CLIENT[$q]}
    for n in $SHARDS; do
        got=$(sql "${PORT[sg$n]}" -c "$text" 2>"$WORK/check-$q-sg$n.err" | $sortit | md5sum) || true
        if [[ $got == "$want" ]]; then
            SAME[$q|sg$n]=same
        else
            SAME[$q|sg$n]=DIFFERENT
            mismatches=$(( mismatches + 1 ))
            sql "${PORT[plain]}" -c "$text" | $sortit >"$WORK/check-$q-plain.out"
            sql "${PORT[sg$n]}" -c "$text" 2>&1 | $sortit >"$WORK/check-$q-sg$n.out" || true
            log "sg$n: result of '$text' differs from the plain server's (see $WORK/check-$q-*.out)"
        fi
        rows=0
        for (( s = 0; s < n; s++ )); do
            rows=$(( rows + $(sql "${PORT[c${n}r$s]}" -c "SELECT count(*) FROM ($text) q") ))
        done
        ROWS_SHARDS[$q|sg$n]=$rows
    done
done
(( mismatches )) && KEEP=1
for n in $SHARDS; do RSS_WARM[sg$n]=$(kib "${SG_PID[sg$n]}" VmRSS); done
log "results checked against the plain server: $mismatches difference(s)"

# ---- runs -------------------------------------------------------------------------------
# pgbench exits 0 even when it retried and gave up on transactions, so read its report too.
check_pgbench() {
    local out=$1 what=$2 failed
    grep -q '^number of transactions actually processed: [1-9]' "$out" \
        || { cat "$out" >&2; die "$what: pgbench processed no transactions"; }
    failed=$(awk -F': ' '/^number of failed transactions/ {split($2, a, " "); print a[1]}' "$out")
    [[ $failed == 0 ]] || { cat "$out" >&2; die "$what: $failed failed transactions"; }
    if grep -Eq 'aborted|ERROR|FATAL|^pgbench: error' "$out"; then
        cat "$out" >&2; die "$what: pgbench reported errors"
    fi
}
fail_run() {   # out what target
    cat "$1" >&2
    if [[ $3 != plain ]]; then
        log "last lines of $3.log:"
        sed 's/\x1b\[[0-9;]*m//g' "$WORK/$3.log" | tail -n 30 >&2
    fi
    die "$2: pgbench failed"
}
# The PostgreSQL instances behind a target, and its replicas alone.
instances() { if [[ $1 == plain ]]; then echo plain; else local n=${1#sg} s; for (( s = 0; s < n; s++ )); do echo "c${n}p$s c${n}r$s"; done; fi; }
replicas_of() { local n=${1#sg} s; for (( s = 0; s < n; s++ )); do echo "c${n}r$s"; done; }

read -ra QA <<<"$QUERIES"; read -ra MA <<<"$MODES"; read -ra CA <<<"$CLIENTS"
nt=${#TARGETS[@]}
total_runs=$(( ${#QA[@]} * ${#MA[@]} * ${#CA[@]} * R * nt ))
log "measuring: $total_runs runs of ${T}s (at least $(( total_runs * (T + 3) / 60 )) min)"
declare -A TPS LAT OTHER PX_PCT BE_PCT PB_PCT PX_USQ PX_USROW BE_USQ REP_TICKS PRI_TICKS
run=0 cell=0 flagged=0 max_other=0
for q in "${QA[@]}"; do
  for m in "${MA[@]}"; do
    for c in "${CA[@]}"; do
      j=2; (( c == 1 )) && j=1
      for (( rep = 0; rep < R; rep++ )); do
        for (( k = 0; k < nt; k++ )); do
          target=${TARGETS[$(( (k + rep + cell) % nt ))]}
          key="$q|$m|$c|$target"
          run=$(( run + 1 ))
          out="$WORK/run-$run-$q-$m-c$c-$target.out"
          read -ra insts <<<"$(instances "$target" | paste -sd' ')"
          reps=(); [[ $target != plain ]] && read -ra reps <<<"$(replicas_of "$target" | paste -sd' ')"
          wait_quiet
          sgp=${SG_PID[$target]:-}
          b0=$(busy_ticks) o0=$(our_ticks) t0=$(now)
          be0=$(pg_ticks "${insts[@]}")
          rp0=0; (( ${#reps[@]} )) && rp0=$(pg_ticks "${reps[@]}")
          px0=0; [[ -n $sgp ]] && px0=$(proc_ticks "$sgp")
          me0=$(self_child_ticks)
          w0=$(now)
          timeout $(( T + 60 )) pgbench -n -f "$SCRIPT_DIR/$q.sql" -M "$m" -D every="$EVERY" \
              -c "$c" -j "$j" -T "$T" -h 127.0.0.1 -p "${PORT[$target]}" -U app app >"$out" 2>&1 \
              || fail_run "$out" "$q -M $m c=$c $target" "$target"
          w1=$(now)
          me1=$(self_child_ticks)
          sleep 0.5    # let direct backends exit and be reaped before counting their CPU
          px1=0; [[ -n $sgp ]] && px1=$(proc_ticks "$sgp")
          be1=$(pg_ticks "${insts[@]}")
          rp1=0; (( ${#reps[@]} )) && rp1=$(pg_ticks "${reps[@]}")
          other=$(other_pct "$b0" "$o0" "$t0")
          check_pgbench "$out" "$q -M $m c=$c $target"
          tps=$(awk '/^tps = / {print $3; exit}' "$out")
          lat=$(awk '/^latency average = / {print $4; exit}' "$out")
          txns=$(awk -F': ' '/^number of transactions actually processed/ {print $2 + 0; exit}' "$out")
          [[ -n $tps && -n $lat ]] || { cat "$out" >&2; die "$key: no tps or latency line"; }
          # Per-run figures: % of one core over the pgbench wall time; µs per query and row.
          read -r pxp bep pbp pxq pxr beq < <(awk -v px=$(( px1 - px0 )) -v be=$(( be1 - be0 )) \
              -v pb=$(( me1 - me0 )) -v hz="$HZ" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" \
              -v n="$txns" -v rows="${ROWS_SHARDS[$q|$target]}" 'BEGIN {
                  printf "%.1f %.1f %.1f %.1f %.3f %.1f\n", px * 100 / hz / w, be * 100 / hz / w,
                      pb * 100 / hz / w, px * 1e6 / hz / n, px * 1e6 / hz / (n * rows), be * 1e6 / hz / n }')
          TPS[$key]+="$tps " LAT[$key]+="$lat " OTHER[$key]+="$other "
          PX_PCT[$key]+="$pxp " BE_PCT[$key]+="$bep " PB_PCT[$key]+="$pbp "
          PX_USQ[$key]+="$pxq " PX_USROW[$key]+="$pxr " BE_USQ[$key]+="$beq "
          if [[ $target != plain ]]; then
              REP_TICKS[$target]=$(( ${REP_TICKS[$target]:-0} + rp1 - rp0 ))
              PRI_TICKS[$target]=$(( ${PRI_TICKS[$target]:-0} + (be1 - be0) - (rp1 - rp0) ))
          fi
          (( other > max_other )) && max_other=$other
          (( other >= BUSY_FLAG )) && flagged=$(( flagged + 1 ))
          log "[$run/$total_runs] $q -M $m c=$c rep $(( rep + 1 )) $target: $tps tps, $lat ms; proxy ${pxp}% backends ${bep}% pgbench ${pbp}% of a core; others ${other}% of all CPUs"
        done
      done
      cell=$(( cell + 1 ))
    done
  done
done

sleep 1
declare -A RSS_END HWM_END SG_WARN
for n in $SHARDS; do
    kill -0 "${SG_PID[sg$n]}" 2>/dev/null || die "sg$n exited during the runs"
    RSS_END[sg$n]=$(kib "${SG_PID[sg$n]}" VmRSS)
    HWM_END[sg$n]=$(kib "${SG_PID[sg$n]}" VmHWM)
    # shardgate colours its log even into a file; strip the escapes before counting levels.
    SG_WARN[sg$n]=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/sg$n.log" | grep -cE ' (ERROR|WARN) ' || true)
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -----------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk -v f="${2:-%.0f}" '{v[NR]=$1} END {
    if (NR == 0) print "-"; else if (NR % 2) printf f, v[(NR+1)/2];
    else printf f, (v[NR/2] + v[NR/2+1]) / 2 }'; }
ratio() { [[ $1 != - && $2 != - ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' || echo "n/a"; }
runs() {
    [[ -n ${TPS[$1]:-} ]] || { echo "-"; return; }
    paste -d' ' <(tr ' ' '\n' <<<"${TPS[$1]}" | awk 'NF {printf "%.0f\n", $1}') \
                <(tr ' ' '\n' <<<"${OTHER[$1]}" | awk 'NF {print "(" $1 "%)"}') | paste -sd',' | sed 's/,/, /g'
}
secs() { awk -v t="$1" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz}'; }

report() {
    local q m c t n s hdr sep row
    echo "### Throughput and latency (median of $R runs of ${T}s each)"
    echo
    hdr="| query | protocol | clients | plain tps | plain ms"; sep="|-|-|-:|-:|-:"
    for n in $SHARDS; do hdr+=" | $n shards tps | $n shards ms"; sep+="|-:|-:"; done
    for n in $SHARDS; do hdr+=" | $n shards / plain"; sep+="|-:"; done
    echo "$hdr |"; echo "$sep|"
    for q in $QUERIES; do for m in $MODES; do for c in $CLIENTS; do
        row="| $q | $m | $c | $(median "${TPS[$q|$m|$c|plain]:-}") | $(median "${LAT[$q|$m|$c|plain]:-}" %.2f)"
        for n in $SHARDS; do
            row+=" | $(median "${TPS[$q|$m|$c|sg$n]:-}") | $(median "${LAT[$q|$m|$c|sg$n]:-}" %.2f)"
        done
        for n in $SHARDS; do
            row+=" | $(ratio "$(median "${TPS[$q|$m|$c|sg$n]:-}" %.3f)" "$(median "${TPS[$q|$m|$c|plain]:-}" %.3f)")"
        done
        echo "$row |"
    done; done; done
    echo
    echo "Queries (bench/fanout/*.sql, \`:every\` = $EVERY):"
    echo
    for q in $QUERIES; do
        echo "- $q: \`$(query_text "$q")\` — rows to the client: ${ROWS_CLIENT[$q]}; rows sent by the shards per query: $(for n in $SHARDS; do printf '%s shards %s; ' "$n" "${ROWS_SHARDS[$q|sg$n]}"; done | sed 's/; $//')"
    done
    echo
    echo "### CPU (medians of $R runs)"
    echo
    echo "CPU % is of one core over the run's wall time (the machine has $NCPU cores = $(( NCPU * 100 ))%)."
    echo "Backends are every PostgreSQL process behind the target (for shardgate: primaries and replicas)."
    echo "Proxy µs per merged row = shardgate CPU / (transactions × rows the shards sent per query)."
    echo
    echo "| query | protocol | clients | target | rows from shards / query | proxy CPU % | backends CPU % | pgbench CPU % | proxy µs / query | proxy µs / merged row | backends µs / query |"
    echo "|-|-|-:|-|-:|-:|-:|-:|-:|-:|-:|"
    for q in $QUERIES; do for m in $MODES; do for c in $CLIENTS; do for t in "${TARGETS[@]}"; do
        local k="$q|$m|$c|$t" pxp="-" pxq="-" pxr="-"
        if [[ $t != plain ]]; then
            pxp=$(median "${PX_PCT[$k]:-}" %.0f); pxq=$(median "${PX_USQ[$k]:-}" %.0f); pxr=$(median "${PX_USROW[$k]:-}" %.2f)
        fi
        echo "| $q | $m | $c | $t | ${ROWS_SHARDS[$q|$t]} | $pxp | $(median "${BE_PCT[$k]:-}" %.0f) | $(median "${PB_PCT[$k]:-}" %.0f) | $pxq | $pxr | $(median "${BE_USQ[$k]:-}" %.0f) |"
    done; done; done; done
    echo
    echo "### shardgate memory"
    echo
    echo "| proxy | VmRSS idle after startup | VmRSS after the correctness check | VmRSS at the end | VmHWM at the end | WARN/ERROR lines in its log |"
    echo "|-|-:|-:|-:|-:|-:|"
    for n in $SHARDS; do
        echo "| sg$n ($n shards) | ${RSS_IDLE[sg$n]} KiB | ${RSS_WARM[sg$n]} KiB | ${RSS_END[sg$n]} KiB | ${HWM_END[sg$n]} KiB | ${SG_WARN[sg$n]} |"
    done
    echo
    for n in $SHARDS; do
        [[ ${SG_WARN[sg$n]} != 0 ]] || continue
        echo "sg$n's WARN/ERROR lines (at most 5):"
        echo
        echo '```'
        sed 's/\x1b\[[0-9;]*m//g' "$WORK/sg$n.log" | grep -E ' (ERROR|WARN) ' | head -n 5 || true
        echo '```'
        echo
    done
    echo "### Where the reads went"
    echo
    echo "CPU used during all measured runs by each cluster's replicas and by its primaries (the"
    echo "primaries only answer shardgate's replica health checks, so theirs should stay near zero):"
    echo
    for n in $SHARDS; do
        echo "- $n shards: replicas $(secs "${REP_TICKS[sg$n]:-0}") s, primaries $(secs "${PRI_TICKS[sg$n]:-0}") s"
    done
    echo
    echo "### Every run"
    echo
    echo "tps of each repetition in run order, and in brackets the share of all CPUs that processes"
    echo "outside the benchmark used during that run. $flagged of $run runs had others at ${BUSY_FLAG}% or more"
    echo "(highest: ${max_other}%)."
    echo
    hdr="| query | protocol | clients"; sep="|-|-|-:"
    for t in "${TARGETS[@]}"; do hdr+=" | $t"; sep+="|-"; done
    echo "$hdr |"; echo "$sep|"
    for q in $QUERIES; do for m in $MODES; do for c in $CLIENTS; do
        row="| $q | $m | $c"
        for t in "${TARGETS[@]}"; do row+=" | $(runs "$q|$m|$c|$t")"; done
        echo "$row |"
    done; done; done
    echo
    echo "### Data and correctness"
    echo
    echo "- t: $ROWS rows (id 1..$ROWS, grp = id % 40, amount numeric(12,2) scrambled by id, note text), hash-sharded on id (bigint, 64 vnodes per shard); loaded with INSERTs of $LOAD_BATCH rows: plain directly in ${LOAD_SECS[plain]} s$(for n in $SHARDS; do printf ', %s shards through shardgate in %s s' "$n" "${LOAD_SECS[sg$n]}"; done)"
    for n in $SHARDS; do
        echo "- rows per shard, $n shards: $(for (( s = 0; s < n; s++ )); do printf 's%s %s, ' "$s" "${SHARD_COUNT[$n|$s]}"; done | sed 's/, $//')"
    done
    echo "- result through shardgate vs the plain server (psql, simple protocol; unordered results sorted first): $(for q in $QUERIES; do for n in $SHARDS; do printf '%s/%s shards %s, ' "$q" "$n" "${SAME[$q|sg$n]}"; done; done | sed 's/, $//')"
    echo
    echo "### Setup"
    echo
    echo "- command: \`R=$R T=$T CLIENTS=\"$CLIENTS\" SHARDS=\"$SHARDS\" ROWS=$ROWS QUERIES=\"$QUERIES\" MODES=\"$MODES\"${PG_EXTRA_CONF:+ PG_EXTRA_CONF=\"$PG_EXTRA_CONF\"} bench/fanout_compare.sh\`, $STARTED_AT to $(date -u '+%H:%M UTC') ($(( SECONDS / 60 )) min $(( SECONDS % 60 )) s)"
    echo "- machine: $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM (free -g total), kernel $(uname -r)"
    echo "- load average at the start: $LOAD_START; at the end: $LOAD_END; the script waited $QUIET_SPENT s in total for other processes to go quiet"
    echo "- PostgreSQL $PG_VERSION, every instance: shared_buffers 256MB, max_connections 100, fsync/synchronous_commit/full_page_writes off, other settings default (parallel query on)${PG_EXTRA_CONF:+, then: $(paste -sd';' <<<"$PG_EXTRA_CONF")}; replicas: pg_basebackup -X stream -R, hot standby; pgbench $(pgbench --version | awk '{print $3}'), -n, -j 1 for one client, -j 2 otherwise"
    echo "- $SG_VERSION: \`$SHARDGATE_BIN\` (sha256 $(sha256sum "$SHARDGATE_BIN" | cut -c1-16)…, modified $(date -u -r "$SHARDGATE_BIN" '+%Y-%m-%d %H:%M:%S UTC')); repo HEAD $GIT_HEAD_START at start ($GIT_DIRTY changed files under src/ and Cargo.*), $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) at the end; one process per shard count, pool.size $POOL_SIZE, transaction mode, reads: replica, default runtime (one worker per core), log.level $SG_LOG_LEVEL"
}

REPORT=$(report)
printf '%s\n' "$REPORT"
[[ -n $RESULTS_MD ]] && printf '%s\n' "$REPORT" >"$RESULTS_MD"
(( mismatches )) && log "$mismatches result difference(s); kept $WORK for the check-*.out files"
log "done"
