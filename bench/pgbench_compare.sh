#!/usr/bin/env bash
# pgbench_compare.sh: throughput and memory of shardgate against PostgreSQL directly and
# against PgBouncer, all three in front of the same single PostgreSQL server (one shard).
#
# What it measures
#   * tps (pgbench's "without initial connection time" figure) for four workloads
#       select-only  -S -M simple | -S -M extended | -S -M prepared
#       TPC-B-like   default script, -M simple
#     at 1, 16 and 64 clients, against three targets:
#       direct     pgbench -> PostgreSQL
#       shardgate  pgbench -> shardgate (transaction pooling, pool size 20) -> PostgreSQL
#       pgbouncer  pgbench -> PgBouncer (transaction pooling, pool size 20) -> PostgreSQL
#     Each cell is measured R times for T seconds; the report shows the median.
#   * memory (VmRSS) of shardgate and PgBouncer idle after startup and while IDLE_CLIENTS
#     authenticated clients sit connected doing nothing, giving KiB per idle client.
#
# Why the targets are interleaved
#   On a small machine throughput drifts over minutes (page cache, autovacuum, table bloat
#   from TPC-B, CPU frequency, neighbours). Running all repetitions of one target and then
#   all of the next would turn that drift into a fake difference between targets. So for
#   each (workload, clients) cell the script runs one repetition of every target, in an
#   order that rotates from repetition to repetition and from cell to cell, and takes the
#   median of the R repetitions per target.
#
# Other processes
#   The machine may be shared. Before each run the script waits (bounded by QUIET_WAIT) until
#   processes outside the benchmark are quiet, and reports for every run the share of CPU they
#   used while it ran, so a disturbed cell is visible in the report instead of silently skewed.
#
# Everything runs on 127.0.0.1 in a temporary directory (tmpfs when available); every wait
# loop is bounded; an EXIT trap stops the servers and removes the directory (KEEP=1 keeps it).
# Any pgbench run that fails, aborts, or reports failed transactions stops the script with
# its output and the tail of the proxy's log.
#
# Usage: bench/pgbench_compare.sh      (see bench/README.md for the environment variables)

set -euo pipefail

# ---- settings ---------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARDGATE_BIN=${SHARDGATE_BIN:-$REPO_ROOT/target/release/shardgate}
R=${R:-3}                                  # repetitions per (workload, clients, target)
T=${T:-10}                                 # seconds per pgbench run
CLIENTS=${CLIENTS:-"1 16 64"}              # client counts
SCALE=${SCALE:-10}                         # pgbench -i scale factor
POOL_SIZE=${POOL_SIZE:-20}                 # shardgate pool.size and PgBouncer default_pool_size
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}         # idle clients for the memory measurement
IDLE_HOLD=${IDLE_HOLD:-20}                 # seconds each idle client stays connected
SG_LOG_LEVEL=${SG_LOG_LEVEL:-warn}         # shardgate log.level (info for debugging)
SG_WORKERS=${SG_WORKERS:-}                 # shardgate runtime.worker_threads (default: one per core)
PERF=${PERF:-0}                            # 1 = also count each proxy's syscalls per transaction (perf stat; costs both proxies a little)
RESULTS_MD=${RESULTS_MD:-}                 # also write the markdown report to this file
KEEP=${KEEP:-0}                            # 1 = keep the temporary directory
QUIET_WAIT=${QUIET_WAIT:-120}              # seconds to wait for other processes to go quiet
BUSY_FLAG=${BUSY_FLAG:-10}                 # % of all CPUs used by others that flags a run
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

for n in R T SCALE POOL_SIZE IDLE_CLIENTS IDLE_HOLD BUSY_FLAG; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, got '${!n}'"
done
[[ $(id -u) -eq 0 ]] || die "run as root: PostgreSQL and PgBouncer are started as the postgres user"
for tool in psql pgbench pgbouncer ss runuser awk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y postgresql-client pgbouncer)"
done
[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die "no initdb/pg_ctl in $PG_BIN (set PG_BIN)"
[[ $QUIET_WAIT =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be a whole number of seconds"
GIT_HEAD_START=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

if [[ ! -x $SHARDGATE_BIN ]]; then
    log "no binary at $SHARDGATE_BIN: cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release)
    [[ -x $SHARDGATE_BIN ]] || die "cargo build did not produce $SHARDGATE_BIN"
fi

# 1,000 idle clients plus pgbench's own sockets need more than the usual 1024 descriptors;
# shardgate inherits this limit (PgBouncer raises its own below, runuser resets it).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > IDLE_CLIENTS + 100 )) || die "open-file limit $(ulimit -n) too low for $IDLE_CLIENTS clients"

# ---- temporary directory and cleanup ----------------------------------------------------
base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
WORK=$(mktemp -d "$base/shardgate-bench.XXXXXX")
chown postgres: "$WORK"
chmod 755 "$WORK"
SG_PID= PGB_PID= PG_STARTED=0 BG_PIDS=()

cleanup() {
    local rc=$?
    set +e
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ -n $SG_PID ]] && kill -0 "$SG_PID" 2>/dev/null; then
        kill -TERM "$SG_PID"
        for _ in $(seq 50); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SG_PID" 2>/dev/null && log "shardgate did not stop within 5 s of SIGTERM; killed it"
    fi
    if [[ -n $PGB_PID ]] && kill -0 "$PGB_PID" 2>/dev/null; then
        kill -INT "$PGB_PID"       # SIGINT = PgBouncer's "safe shutdown now"
        for _ in $(seq 50); do kill -0 "$PGB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PGB_PID" 2>/dev/null && log "PgBouncer did not stop within 5 s of SIGINT; killed it"
    fi
    if (( PG_STARTED )); then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast -t 30 stop >/dev/null 2>&1
    fi
    if (( rc != 0 )); then
        log "failed (exit $rc); logs in $WORK"
        [[ -f $WORK/shardgate.log ]] && { log "last lines of shardgate.log:"; tail -n 30 "$WORK/shardgate.log" >&2; }
        KEEP=1
    fi
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1 (bounded number of tries; nothing listens on it right now).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        [[ -z $(ss -Htln "sport = :$p") ]] && { echo "$p"; return; }
    done
    die "no free port found"
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

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU ticks (utime+stime of every thread) and context switches (voluntary and involuntary, of
# every live thread) of one process: each proxy's cost per transaction, read around each run.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
proc_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }

# ---- CPU used by processes that are not part of the benchmark ---------------------------
# The machine may be shared (a cargo build next door takes both cores). Per run, the script
# computes how much CPU everything else used: busy time from /proc/stat minus the CPU time of
# PostgreSQL (postmaster, its live children, its reaped children), shardgate, PgBouncer and
# this script's reaped children (pgbench, psql). Counted in clock ticks (USER_HZ); irq and
# softirq time are left out on both sides (loopback traffic is accounted there).
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4; exit}' /proc/stat; }
# CPU ticks of our processes: utime+stime of PostgreSQL's live children, the postmaster,
# shardgate and PgBouncer, plus cutime+cstime (reaped children) of the postmaster and of this
# script. Children are read before the postmaster, so a backend reaped in between is counted
# twice rather than lost; callers let backends settle first anyway. Fields are counted after
# the ")" that closes the command name.
our_ticks() {
    local pm files
    pm=$(head -n 1 "$WORK/pg/postmaster.pid")
    files=$(pgrep -P "$pm" | sed 's|.*|/proc/&/stat|' || true)
    # shellcheck disable=SC2086  # $files is a list of paths without spaces
    { cat $files "/proc/$pm/stat" "/proc/$$/stat" "/proc/$SG_PID/stat" "/proc/$PGB_PID/stat" 2>/dev/null || true; } |
        awk -v pm="$pm" -v me="$$" '{ pid = $1; sub(/.*\) /, ""); t += $12 + $13
                                      if (pid == pm || pid == me) t += $14 + $15 } END { print t + 0 }'
}
# other_pct B0 O0 T0: % of all CPUs used by others since busy_ticks=B0, our_ticks=O0, time T0.
other_pct() {
    awk -v b="$(( $(busy_ticks) - $1 - ($(our_ticks) - $2) ))" -v hz="$HZ" -v n="$NCPU" \
        -v t0="$3" -v t1="$(date +%s.%N)" 'BEGIN {v = b * 100 / (hz * n * (t1 - t0)); printf "%d", (v < 0 ? 0 : v)}'
}
# Waits (at most about QUIET_WAIT s) until others use less than BUSY_FLAG % over one second.
wait_quiet() {
    local b0 o0 t0 pct start=$SECONDS said=0
    while :; do
        b0=$(busy_ticks) o0=$(our_ticks) t0=$(date +%s.%N)
        sleep 1
        pct=$(other_pct "$b0" "$o0" "$t0")
        (( pct < BUSY_FLAG )) && return
        (( said++ == 0 )) && log "other processes use ${pct}% of the CPUs; waiting up to ${QUIET_WAIT}s"
        (( SECONDS - start >= QUIET_WAIT )) && { log "still busy (${pct}%); measuring anyway (the run is flagged if it stays busy)"; return; }
    done
}

export PGPASSWORD=app PGCONNECT_TIMEOUT=10

# ---- PostgreSQL -------------------------------------------------------------------------
PG_PORT=$(free_port)
log "PostgreSQL on 127.0.0.1:$PG_PORT ($WORK/pg)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
# Benchmark settings: durability is switched off (fsync, synchronous_commit, full_page_writes)
# so TPC-B measures the proxies and the CPU, not this machine's disk.
cat >>"$WORK/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$WORK/pg/pg_hba.conf"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$WORK/postgres.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1
runuser -u postgres -- psql -X -q -h "$WORK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE app LOGIN SUPERUSER PASSWORD 'app'" -c "CREATE DATABASE app OWNER app" >/dev/null
wait_ready "$PG_PORT" PostgreSQL
PG_VERSION=$(psql -X -At -h 127.0.0.1 -p "$PG_PORT" -U app -d app -c 'show server_version')

# ---- shardgate --------------------------------------------------------------------------
SG_PORT=$(free_port)
cat >"$WORK/shardgate.yaml" <<EOF
listen: 127.0.0.1:$SG_PORT
users:
  - name: app
    password: app
pool:
  size: $POOL_SIZE
  mode: transaction
limits:
  max_client_connections: 5000
log:
  level: $SG_LOG_LEVEL
databases:
  - name: app
    shard_map: map.yaml
EOF
[[ -n $SG_WORKERS ]] && printf 'runtime:\n  worker_threads: %s\n' "$SG_WORKERS" >>"$WORK/shardgate.yaml"
cat >"$WORK/map.yaml" <<EOF
shards:
  - name: s0
    primary: postgres://app:app@127.0.0.1:$PG_PORT/app
EOF
"$SHARDGATE_BIN" check --config "$WORK/shardgate.yaml" >&2 || die "shardgate check rejected the config"
log "shardgate on 127.0.0.1:$SG_PORT ($SHARDGATE_BIN)"
"$SHARDGATE_BIN" run --config "$WORK/shardgate.yaml" >"$WORK/shardgate.log" 2>&1 &
SG_PID=$!
wait_ready "$SG_PORT" shardgate
SG_VERSION=$("$SHARDGATE_BIN" --version)

# ---- PgBouncer --------------------------------------------------------------------------
PGB_PORT=$(free_port)
PGB_VERSION=$(pgbouncer --version | head -n 1)
pgb_ver=$(awk '{print $2}' <<<"$PGB_VERSION")
# Protocol-level prepared statements in transaction mode arrived in PgBouncer 1.21.
PGB_PREPARED=0 PGB_PREPARED_LINE=
if [[ $(printf '%s\n1.21.0\n' "$pgb_ver" | sort -V | head -n 1) == 1.21.0 ]]; then
    PGB_PREPARED=1 PGB_PREPARED_LINE="max_prepared_statements = 200"
fi
echo '"app" "app"' >"$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app user=app password=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 5000
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
$PGB_PREPARED_LINE
EOF
chown postgres: "$WORK"/userlist.txt "$WORK"/pgbouncer.ini
log "PgBouncer on 127.0.0.1:$PGB_PORT ($PGB_VERSION)"
# runuser resets the open-file limit to 1024; raise it again for max_client_conn.
runuser -u postgres -- bash -c "ulimit -n 20000; exec pgbouncer '$WORK/pgbouncer.ini'" \
    >"$WORK/pgbouncer.out" 2>&1 &
for _ in $(seq 100); do [[ -s $WORK/pgbouncer.pid ]] && break; sleep 0.1; done
[[ -s $WORK/pgbouncer.pid ]] || { cat "$WORK/pgbouncer.out" >&2; die "PgBouncer did not start"; }
PGB_PID=$(<"$WORK/pgbouncer.pid")
wait_ready "$PGB_PORT" PgBouncer

declare -A PORT=([direct]=$PG_PORT [shardgate]=$SG_PORT [pgbouncer]=$PGB_PORT)

# ---- memory: idle, then IDLE_CLIENTS idle clients ---------------------------------------
# Measured before any load so the baseline is not inflated by buffers the allocator kept
# from the throughput runs. Each client runs a script that only sleeps, so all of them stay
# logged in (SCRAM done, startup answered) and idle for IDLE_HOLD seconds.
printf '\\sleep %s s\n' "$IDLE_HOLD" >"$WORK/idle.sql"
declare -A RSS_IDLE RSS_LOADED RSS_AFTER
measure_idle_clients() {
    local target=$1 pid=$2 port=${PORT[$1]} out="$WORK/idle-$1.out" bg n=0 peak=0 rss
    sleep 1
    RSS_IDLE[$target]=$(rss_kib "$pid")
    pgbench -n -f "$WORK/idle.sql" -c "$IDLE_CLIENTS" -j 2 -T $(( IDLE_HOLD + 5 )) \
        -h 127.0.0.1 -p "$port" -U app app >"$out" 2>&1 &
    bg=$!
    BG_PIDS+=($bg)
    # Wait (bounded) until every client holds an established connection to the target.
    for _ in $(seq $(( IDLE_HOLD * 10 ))); do
        n=$(ss -Htn state established "( sport = :$port )" | wc -l)
        (( n >= IDLE_CLIENTS )) && break
        kill -0 "$bg" 2>/dev/null || break
        sleep 0.1
    done
    (( n >= IDLE_CLIENTS )) || { cat "$out" >&2; die "$target: only $n of $IDLE_CLIENTS clients connected"; }
    # Sample while they sit idle; keep the peak.
    for _ in 1 2 3 4 5; do
        sleep 1
        rss=$(rss_kib "$pid"); (( rss > peak )) && peak=$rss
    done
    RSS_LOADED[$target]=$peak
    wait "$bg" || { cat "$out" >&2; die "$target: idle-client pgbench failed"; }
    check_pgbench "$out" "$target idle clients"
    sleep 2
    RSS_AFTER[$target]=$(rss_kib "$pid")
    log "$target: RSS idle ${RSS_IDLE[$target]} KiB, with $IDLE_CLIENTS idle clients $peak KiB, after ${RSS_AFTER[$target]} KiB"
}

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

measure_idle_clients shardgate "$SG_PID"
measure_idle_clients pgbouncer "$PGB_PID"

# ---- throughput -------------------------------------------------------------------------
log "pgbench -i -s $SCALE (directly)"
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U app app >"$WORK/init.out" 2>&1 \
    || { cat "$WORK/init.out" >&2; die "pgbench -i failed"; }
psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d app -c 'VACUUM ANALYZE' >/dev/null

# PgBouncer before 1.21 cannot keep protocol-level prepared statements across transaction-
# pooled server connections. Record what actually happens when one tries (short, bounded).
PGB_PREPARED_NOTE="supported (max_prepared_statements = 200)"
if (( ! PGB_PREPARED )); then
    pgbench -n -S -M prepared -c 16 -j 2 -T 3 -h 127.0.0.1 -p "$PGB_PORT" -U app app \
        >"$WORK/pgb-prepared-probe.out" 2>&1 && probe_rc=0 || probe_rc=$?
    # Two pgbench threads may interleave their "pgbench: " prefixes on stderr.
    probe_err=$(grep -m 1 -E 'ERROR|error' "$WORK/pgb-prepared-probe.out" | sed -E 's/^ *(pgbench: )+/pgbench: /' || true)
    PGB_PREPARED_NOTE="not supported by PgBouncer $pgb_ver (needs 1.21+); a 3 s probe with -c 16 exited $probe_rc: ${probe_err:-no error line}"
    log "pgbouncer -M prepared: $PGB_PREPARED_NOTE"
fi

WORKLOADS=("select-only simple|-S -M simple" "select-only extended|-S -M extended"
           "select-only prepared|-S -M prepared" "TPC-B simple|-M simple")
declare -A TPS           # "workload|clients|target" -> space-separated tps of each repetition
total_runs=0
for w in "${WORKLOADS[@]}"; do
    for c in $CLIENTS; do
        n=3; [[ ${w#*|} == *prepared* ]] && (( ! PGB_PREPARED )) && n=2
        total_runs=$(( total_runs + n * R ))
    done
done
log "throughput: $total_runs runs of ${T}s (about $(( total_runs * (T + 2) / 60 )) min)"

run=0 cell=0 flagged=0 max_other=0
declare -A OTHER         # "workload|clients|target" -> % CPU used by others in each repetition
declare -A CPU_US SWITCHES SYSCALLS # "workload|clients|proxy" -> its CPU µs / context switches / syscalls per transaction
for w in "${WORKLOADS[@]}"; do
    name=${w%%|*} args=${w#*|}
    targets=(direct shardgate pgbouncer)
    [[ $args == *prepared* ]] && (( ! PGB_PREPARED )) && targets=(direct shardgate)
    for c in $CLIENTS; do
        j=2; (( c == 1 )) && j=1
        for (( rep = 0; rep < R; rep++ )); do
            nt=${#targets[@]}
            for (( k = 0; k < nt; k++ )); do
                target=${targets[$(( (k + rep + cell) % nt ))]}
                run=$(( run + 1 ))
                if [[ $name == TPC-B* ]]; then
                    # What pgbench does before a run, done directly and identically for every
                    # target (the runs use -n): history grows with every TPC-B run.
                    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d app \
                        -c 'VACUUM pgbench_branches, pgbench_tellers' -c 'TRUNCATE pgbench_history' >/dev/null
                fi
                out="$WORK/run-$run.out"
                wait_quiet
                pid=; [[ $target == shardgate ]] && pid=$SG_PID; [[ $target == pgbouncer ]] && pid=$PGB_PID
                [[ -n $pid ]] && p0=$(proc_ticks "$pid") s0=$(proc_switches "$pid")
                perf_pid=
                if [[ -n $pid ]] && (( PERF )); then
                    perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$WORK/perf-$run.txt" &
                    perf_pid=$!
                fi
                b0=$(busy_ticks) o0=$(our_ticks) t0=$(date +%s.%N)
                # shellcheck disable=SC2086  # $args is a list of pgbench flags
                pgbench -n $args -c "$c" -j "$j" -T "$T" -h 127.0.0.1 -p "${PORT[$target]}" -U app app \
                    >"$out" 2>&1 || { cat "$out" >&2; die "$name c=$c $target: pgbench exited non-zero"; }
                if [[ -n $pid ]]; then
                    txns=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]}' "$out")
                    CPU_US["$name|$c|$target"]+="$(awk -v t="$(( $(proc_ticks "$pid") - p0 ))" -v hz="$HZ" -v n="$txns" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}') "
                    SWITCHES["$name|$c|$target"]+="$(awk -v d="$(( $(proc_switches "$pid") - s0 ))" -v n="$txns" 'BEGIN {printf "%.3f", d / n}') "
                fi
                if [[ -n $perf_pid ]]; then
                    kill -INT "$perf_pid"; wait "$perf_pid" || true
                    SYSCALLS["$name|$c|$target"]+="$(awk -F, -v n="$txns" '/raw_syscalls/ {printf "%.2f", $1 / n}' "$WORK/perf-$run.txt") "
                fi
                sleep 0.5    # let direct backends exit and be reaped before counting CPU time
                other=$(other_pct "$b0" "$o0" "$t0")
                check_pgbench "$out" "$name c=$c $target"
                tps=$(awk '/^tps = / {print $3; exit}' "$out")
                [[ -n $tps ]] || { cat "$out" >&2; die "$name c=$c $target: no tps line"; }
                TPS["$name|$c|$target"]+="$tps "
                OTHER["$name|$c|$target"]+="$other "
                (( other > max_other )) && max_other=$other
                (( other >= BUSY_FLAG )) && flagged=$(( flagged + 1 ))
                log "[$run/$total_runs] $name c=$c rep $((rep + 1)) $target: $tps tps (others used ${other}% CPU)"
            done
        done
        cell=$(( cell + 1 ))
    done
done

sleep 1
RSS_END_SG=$(rss_kib "$SG_PID")
RSS_END_PGB=$(rss_kib "$PGB_PID")
kill -0 "$SG_PID" || die "shardgate exited during the run"
# shardgate colours its log even into a file; strip the escapes before counting levels.
SG_ERRORS=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/shardgate.log" | grep -cE ' (ERROR|WARN) ' || true)
PGB_ERRORS=$(grep -cE ' (ERROR|WARNING) ' "$WORK/pgbouncer.log" || true)

# ---- report -----------------------------------------------------------------------------
# median VALUES [PRINTF-FORMAT]
median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk -v f="${2:-%.0f}" '{v[NR]=$1} END {
    if (NR == 0) print ""; else if (NR % 2) printf f, v[(NR+1)/2];
    else printf f, (v[NR/2] + v[NR/2+1]) / 2 }'; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' || echo "n/a"; }
# "5123 (2%), 5210 (0%)" for one cell and target, or "-" when it was not measured.
runs() {
    [[ -n ${TPS[$1]:-} ]] || { echo "-"; return; }
    paste -d' ' <(tr ' ' '\n' <<<"${TPS[$1]}" | awk 'NF {printf "%.0f\n", $1}') \
                <(tr ' ' '\n' <<<"${OTHER[$1]}" | awk 'NF {print "(" $1 "%)"}') | paste -sd',' | sed 's/,/, /g'
}
kib_per_client() { awk -v a="$2" -v b="$1" -v n="$IDLE_CLIENTS" 'BEGIN {printf "%.1f", (a - b) / n}'; }

# The syscall cells of one row (PERF=1 only).
syscall_cells() {
    (( PERF )) || return 0
    echo " $(median "${SYSCALLS[$1|shardgate]:-}" "%.2f") | $(median "${SYSCALLS[$1|pgbouncer]:-}" "%.2f") |"
}

report() {
    echo "### Throughput (median tps of $R runs of ${T}s each)"
    echo
    echo "| workload | clients | direct tps | shardgate tps | pgbouncer tps | shardgate/direct | shardgate/pgbouncer |"
    echo "|-|-:|-:|-:|-:|-:|-:|"
    for w in "${WORKLOADS[@]}"; do
        name=${w%%|*}
        for c in $CLIENTS; do
            d=$(median "${TPS[$name|$c|direct]:-}")
            s=$(median "${TPS[$name|$c|shardgate]:-}")
            p=$(median "${TPS[$name|$c|pgbouncer]:-}")
            echo "| $name (\`${w#*|}\`) | $c | $d | $s | ${p:-not supported} | $(ratio "$s" "$d") | $(ratio "$s" "$p") |"
        done
    done
    echo
    echo "PgBouncer and \`-M prepared\`: $PGB_PREPARED_NOTE."
    echo
    echo "### Proxy cost per transaction (median of $R runs)"
    echo
    echo "CPU time (utime+stime of all its threads, from /proc) and context switches (all its threads)"
    echo "of the proxy process during each run, divided by the transactions pgbench completed; with"
    echo "PERF=1 also its system calls (perf stat, raw_syscalls:sys_enter)."
    echo
    local syscall_head="" syscall_rule=""
    (( PERF )) && syscall_head=" shardgate syscalls | pgbouncer syscalls |" syscall_rule="-:|-:|"
    echo "| workload | clients | shardgate CPU µs | pgbouncer CPU µs | shardgate/pgbouncer | shardgate switches | pgbouncer switches |$syscall_head"
    echo "|-|-:|-:|-:|-:|-:|-:|$syscall_rule"
    for w in "${WORKLOADS[@]}"; do
        name=${w%%|*}
        for c in $CLIENTS; do
            s=$(median "${CPU_US[$name|$c|shardgate]:-}" "%.1f")
            p=$(median "${CPU_US[$name|$c|pgbouncer]:-}" "%.1f")
            echo "| $name | $c | $s | ${p:--} | $(ratio "$s" "$p") | $(median "${SWITCHES[$name|$c|shardgate]:-}" "%.2f") | $(median "${SWITCHES[$name|$c|pgbouncer]:-}" "%.2f") |$(syscall_cells "$name|$c")"
        done
    done
    echo
    echo "### Memory (VmRSS, $IDLE_CLIENTS idle authenticated clients)"
    echo
    echo "| proxy | idle after startup | with $IDLE_CLIENTS idle clients (peak of 5 samples) | after they left | KiB per idle client | after all throughput runs |"
    echo "|-|-:|-:|-:|-:|-:|"
    for t in shardgate pgbouncer; do
        local end=$RSS_END_SG; [[ $t == pgbouncer ]] && end=$RSS_END_PGB
        echo "| $t | ${RSS_IDLE[$t]} KiB | ${RSS_LOADED[$t]} KiB | ${RSS_AFTER[$t]} KiB | $(kib_per_client "${RSS_IDLE[$t]}" "${RSS_LOADED[$t]}") | $end KiB |"
    done
    echo
    echo "### Every run"
    echo
    echo "tps of each repetition in run order, and in brackets the share of all CPUs that processes"
    echo "outside the benchmark used during that run. $flagged of $run runs had others at ${BUSY_FLAG}% or more"
    echo "(highest: ${max_other}%)."
    echo
    echo "| workload | clients | direct | shardgate | pgbouncer |"
    echo "|-|-:|-|-|-|"
    for w in "${WORKLOADS[@]}"; do
        name=${w%%|*}
        for c in $CLIENTS; do
            echo "| $name | $c | $(runs "$name|$c|direct") | $(runs "$name|$c|shardgate") | $(runs "$name|$c|pgbouncer") |"
        done
    done
    echo
    echo "### Setup"
    echo
    echo "- command: \`R=$R T=$T CLIENTS=\"$CLIENTS\" SCALE=$SCALE bench/pgbench_compare.sh\`, finished $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM (free -g total), kernel $(uname -r)"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- PostgreSQL $PG_VERSION (max_connections 300, shared_buffers 256MB, fsync off, synchronous_commit off, full_page_writes off), pgbench $(pgbench --version | awk '{print $3}')"
    echo "- $PGB_VERSION (pool_mode transaction, default_pool_size $POOL_SIZE, max_client_conn 5000, auth scram-sha-256)"
    echo "- $SG_VERSION: \`$SHARDGATE_BIN\` (sha256 $(sha256sum "$SHARDGATE_BIN" | cut -c1-16)…, modified $(date -u -r "$SHARDGATE_BIN" '+%Y-%m-%d %H:%M:%S UTC')); repo HEAD $GIT_HEAD_START at start, $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) at the end; pool.size $POOL_SIZE, transaction mode, runtime.worker_threads ${SG_WORKERS:-default (one per core)}, log.level $SG_LOG_LEVEL; $SG_ERRORS WARN/ERROR lines in its log"
    echo "- $PGB_ERRORS WARNING/ERROR lines in PgBouncer's log"
}

REPORT=$(report)
printf '%s\n' "$REPORT"
[[ -n $RESULTS_MD ]] && printf '%s\n' "$REPORT" >"$RESULTS_MD"
log "done"
