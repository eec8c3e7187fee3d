#!/usr/bin/env bash
# libpq tools against a running shardgate, per the contract of tests/drivers/run: psql,
# pgbench, pg_dump and pg_restore from the machine's PostgreSQL client packages. One PASS/FAIL
# line per check; every command runs under `timeout`. Ids 9_000_000–9_999_999 of matrix_items
# belong to this suite. psql 15 has no \bind, so psql checks send literals (simple protocol);
# pgbench -M extended/prepared covers parameters.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${SHARDGATE_URL:?}" "${SHARDGATE_ADMIN_URL:?}" "${DRIVERS_CACHE:?}"
export PGCONNECT_TIMEOUT=10

if ! command -v psql >/dev/null || ! command -v pgbench >/dev/null || ! command -v pg_dump >/dev/null; then
  echo "libpq: installing postgresql-client" >&2
  { apt-get install -y -qq postgresql-client || { apt-get update -qq && apt-get install -y -qq postgresql-client; }; } >&2 ||
    { echo "libpq: cannot install the PostgreSQL client tools" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shardgate-libpq.XXXXXX")
trap 'rm -rf "$work"' EXIT
LO=9000000
HI=9999999

version() { "$1" --version | head -1 | awk '{print $3}'; }
declare -A VER=([psql]=$(version psql) [pgbench]=$(version pgbench) [pg_dump]=$(version pg_dump) [pg_restore]=$(version pg_restore))

# check TOOL NAME FUNCTION: runs FUNCTION, whose output is the failure message.
check() {
  local tool=$1 name=$2 out
  if out=$("$3" 2>&1); then
    echo "PASS $tool ${VER[$tool]} | $name"
  else
    echo "FAIL $tool ${VER[$tool]} | $name | $(printf '%s' "$out" | tr '\n\t' '  ' | tr -s ' ' | cut -c1-500)"
  fi
}

# psql that stops at the first error and reports SQLSTATEs (VERBOSITY verbose).
q() { timeout 30 psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$SHARDGATE_URL" "$@"; }
expect() { # expect ACTUAL EXPECTED WHAT
  [ "$1" = "$2" ] && return 0
  printf '%s: got [%s], expected [%s]\n' "$3" "$1" "$2"
  return 1
}
# Each psql run is a new session, and reads outside a transaction go to replicas, which see
# other sessions' writes only after the replicas' lag (README, "Replicas and read-your-writes";
# replicas stream asynchronously, so that is up to a few hundred ms). So a
# check reads what it wrote in the same psql session, or with qp, inside a transaction (on
# the primaries).
qp() { q -c BEGIN -c "$1" -c COMMIT; }

setup() {
  # Clean shard by shard, one single-shard DELETE each (with a hint), so the setup does not
  # depend on the writes to several shards that multi_shard_update checks.
  local shards s
  shards=$(timeout 10 psql -X -At "$SHARDGATE_ADMIN_URL" -c 'SHOW SHARDS' | cut -d'|' -f2) || return 1
  for s in $shards; do
    q -c "/* shard: $s */ DELETE FROM matrix_items WHERE id BETWEEN $LO AND $HI" || return 1
  done
}

connect() { expect "$(q -c 'SELECT 1')" 1 "SELECT 1"; }

key_read_write() {
  local id=$((LO + 1))
  local out
  out=$(q -c "INSERT INTO matrix_items (id, t) VALUES ($id, 'first')" -c "SELECT t FROM matrix_items WHERE id = $id" \
          -c "UPDATE matrix_items SET t = 'second' WHERE id = $id" -c "SELECT t FROM matrix_items WHERE id = $id" \
          -c "DELETE FROM matrix_items WHERE id = $id" -c "SELECT count(*) FROM matrix_items WHERE id = $id") || return 1
  expect "$(echo $out)" "first second 0" "after INSERT, UPDATE and DELETE"
}

types_roundtrip() {
  local id=$((LO + 10))
  q -c "INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note) VALUES
        ($id, 2147483647, 9007199254740993, 12345678901234.56789, pi(), E'h\u00e9llo ''quoted'' \\\\ \u263a',
         '\\x00010205cff0', true, '2024-02-29', '2024-02-29 12:34:56.789123+00',
         '6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f', '{\"a\": 1, \"b\": [true, null, \"x\"]}', '{1,-2,3}', NULL),
        ($((id + 1)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)" || return 1
  local got
  got=$(q -F '|' -c "SET TimeZone = 'UTC'" -c BEGIN -c "SELECT i, big, num, f, t, encode(b, 'hex'), flag, d, ts, u, j, arr, note IS NULL
                       FROM matrix_items WHERE id = $id" -c COMMIT) || return 1
  expect "$got" "2147483647|9007199254740993|12345678901234.56789|3.141592653589793|héllo 'quoted' \\ ☺|00010205cff0|t|2024-02-29|2024-02-29 12:34:56.789123+00|6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f|{\"a\": 1, \"b\": [true, null, \"x\"]}|{1,-2,3}|t" "row" || return 1
  got=$(qp "SELECT num IS NULL, ts IS NULL, arr IS NULL, j IS NULL FROM matrix_items WHERE id = $((id + 1))") || return 1
  expect "$got" "t|t|t|t" "NULL row"
}

# The transaction checks run for 4 ids, so transactions starting on each shard are covered.
transaction_commit() {
  local id
  for id in $((LO + 20)) $((LO + 21)) $((LO + 22)) $((LO + 23)); do
    q -c "BEGIN" -c "INSERT INTO matrix_items (id, note) VALUES ($id, 'tx')" \
      -c "UPDATE matrix_items SET note = 'tx-updated' WHERE id = $id" -c "COMMIT" || return 1
    expect "$(qp "SELECT note FROM matrix_items WHERE id = $id")" tx-updated "committed row $id" || return 1
  done
}

transaction_rollback() {
  local id
  for id in $((LO + 30)) $((LO + 31)) $((LO + 32)) $((LO + 33)); do
    expect "$(q -c "BEGIN" -c "INSERT INTO matrix_items (id, note) VALUES ($id, 'rolled back')" \
                -c "SELECT note FROM matrix_items WHERE id = $id" -c "ROLLBACK")" "rolled back" "row inside the transaction" || return 1
    expect "$(qp "SELECT count(*) FROM matrix_items WHERE id = $id")" 0 "rows of $id after ROLLBACK" || return 1
  done
}

transaction_error() {
  local id out
  for id in $((LO + 40)) $((LO + 41)) $((LO + 42)) $((LO + 43)); do
    # No ON_ERROR_STOP here: psql goes on after the error, as an application would.
    out=$(printf '%s\n' "BEGIN;" "INSERT INTO matrix_items (id, note) VALUES ($id, 'doomed');" "SELECT 1 / 0;" \
            "SELECT note FROM matrix_items WHERE id = $id;" "ROLLBACK;" |
          timeout 30 psql -X -q -At -v VERBOSITY=verbose "$SHARDGATE_URL" 2>&1)
    grep -q 'ERROR:  22012' <<<"$out" || { echo "no 22012 for the division by zero: $out"; return 1; }
    grep -q 'ERROR:  25P02' <<<"$out" || { echo "no 25P02 after the error: $out"; return 1; }
    expect "$(qp "SELECT count(*) FROM matrix_items WHERE id = $id")" 0 "rows of $id after ROLLBACK" || return 1
  done
}

cross_shard_read() {
  local base=$((LO + 5000)) k sum=0 want
  for k in $(seq 0 39); do
    echo "INSERT INTO matrix_items (id, i, t) VALUES ($((base + k)), $(((k * 7) % 40)), 'row $k');"
    sum=$((sum + (k * 7) % 40))
  done > "$work/rows.sql"
  want=$(for k in $(seq 0 39); do echo "$(((k * 7) % 40)) $((base + k))"; done | sort -k1,1nr -k2,2n | head -5 |
         awk '{print $2 "|" $1}')
  # Written and read in one session: read-your-writes sends the reads to the primaries.
  local out
  out=$(q -f "$work/rows.sql" \
          -c "SELECT id, i FROM matrix_items WHERE id BETWEEN $base AND $((base + 999)) ORDER BY i DESC, id LIMIT 5" \
          -c "SELECT count(*), sum(i), min(id), max(id), avg(i) FROM matrix_items WHERE id BETWEEN $base AND $((base + 999))") || return 1
  expect "$(head -5 <<<"$out")" "$want" "ORDER BY i DESC LIMIT 5" || return 1
  expect "$(tail -n +6 <<<"$out")" \
    "40|$sum|$base|$((base + 39))|$(awk "BEGIN { printf \"%.16f\", $sum / 40 }")" "count/sum/min/max/avg"
}

# \copy is COPY FROM STDIN / TO STDOUT on psql's connection.
copy() {
  local base=$((LO + 7000)) k
  for k in $(seq 0 99); do printf '%s\t%s\tcopied %s\n' $((base + k)) $k $k; done > "$work/copy.tsv"
  q -c "\\copy matrix_items (id, i, t) FROM '$work/copy.tsv'" || return 1
  expect "$(qp "SELECT count(*) FROM matrix_items WHERE id BETWEEN $base AND $((base + 999))")" 100 "rows after \\copy in" || return 1
  q -c "\\copy (SELECT id, i, t FROM matrix_items WHERE id = $((base + 1))) TO '$work/out.tsv'" || return 1
  expect "$(cat "$work/out.tsv")" "$(sed -n 2p "$work/copy.tsv")" "\\copy out"
}

copy_to_by_key() {
  local id=$((LO + 7500))
  q -c "INSERT INTO matrix_items (id, i, t) VALUES ($id, 7, 'x')" \
    -c "\\copy (SELECT id, i, t FROM matrix_items WHERE id = $id) TO '$work/key.tsv'" || return 1
  expect "$(cat "$work/key.tsv")" "$(printf '%s\t7\tx' $id)" "\\copy out"
}

copy_unmapped_table() {
  seq 1 1000 | awk '{print $1 "\tline " $1}' > "$work/plain.tsv"
  q -c "DROP TABLE IF EXISTS drivers_copy_libpq" -c "CREATE TABLE drivers_copy_libpq (id bigint PRIMARY KEY, t text)" \
    -c "\\copy drivers_copy_libpq FROM '$work/plain.tsv'" \
    -c "\\copy (SELECT id, t FROM drivers_copy_libpq ORDER BY id) TO '$work/plain.out'" || return 1
  cmp -s "$work/plain.tsv" "$work/plain.out" || { echo "\\copy out differs from what went in"; return 1; }
  q -c "DROP TABLE drivers_copy_libpq"
}

psql_describe() {
  local out
  out=$(q -c '\d') || return 1
  grep -q 'matrix_items' <<<"$out" || { echo "\\d does not list matrix_items: $out"; return 1; }
  out=$(q -c '\dt') || return 1
  grep -q 'matrix_items' <<<"$out" || { echo "\\dt does not list matrix_items"; return 1; }
  out=$(timeout 30 psql -X -v ON_ERROR_STOP=1 "$SHARDGATE_URL" -c '\d matrix_items') || return 1
  for col in 'bigint' 'numeric(20,5)' 'integer[]' '"matrix_items_pkey" PRIMARY KEY, btree (id)'; do
    grep -qF "$col" <<<"$out" || { echo "\\d matrix_items lacks $col: $out"; return 1; }
  done
  out=$(q -c '\l') || return 1
  grep -q '^app|' <<<"$out" || { echo "\\l does not list app: $out"; return 1; }
  q -c '\dn' -c '\df' -c '\di' -c '\dv' >/dev/null
}

psql_script_variables() {
  local id=$((LO + 600)) out rc
  cat > "$work/script.sql" <<EOF
\\set ON_ERROR_STOP on
\\set id $id
\\set label 'from a variable'
INSERT INTO matrix_items (id, t) VALUES (:id, :'label');
SELECT t AS got FROM matrix_items WHERE id = :id \\gset
\\if :{?got}
\\echo got=:got
\\endif
SELECT 1 / 0;
\\echo not reached
EOF
  out=$(timeout 30 psql -X -q -v VERBOSITY=verbose -f "$work/script.sql" "$SHARDGATE_URL" 2>&1); rc=$?
  expect "$rc" 3 "psql exit code with ON_ERROR_STOP" || { echo "$out"; return 1; }
  grep -q '^got=from a variable$' <<<"$out" || { echo "no \\gset value: $out"; return 1; }
  grep -q 'not reached' <<<"$out" && { echo "the script went on after the error"; return 1; }
  grep -q '22012' <<<"$out" || { echo "no 22012: $out"; return 1; }
}

# SIGINT makes psql send a CancelRequest for the running query. A non-interactive psql then
# stops its script (by design), so "usable afterwards" is checked with a new session.
cancel() {
  local out pid started took
  # timeout passes the SIGINT on to psql, and kills it if the cancel never lands.
  timeout -s KILL 20 psql -X -q -At -v VERBOSITY=verbose -c "SELECT pg_sleep(10)" "$SHARDGATE_URL" > "$work/cancel.out" 2>&1 &
  pid=$!
  sleep 1
  started=$SECONDS
  kill -INT $pid
  wait $pid
  took=$((SECONDS - started))
  out=$(cat "$work/cancel.out")
  grep -q '57014' <<<"$out" || { echo "no 57014: $out"; return 1; }
  [ $took -le 5 ] || { echo "the cancel took ${took}s"; return 1; }
  expect "$(q -c "SELECT 'after cancel'")" "after cancel" "a new session after the cancel"
}

# A write to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`.
refused_error() {
  local out
  out=$(q -c "UPDATE matrix_guarded SET note = 'x'" 2>&1) && { echo "UPDATE without a key succeeded"; return 1; }
  grep -q 'ERROR:  0A000' <<<"$out" || { echo "expected 0A000, got: $out"; return 1; }
  grep -q 'matrix_guarded' <<<"$out" || { echo "the refusal does not name the table: $out"; return 1; }
}

# UPDATE and DELETE … WHERE id IN (…) over 8 ids (on both shards of the demo's ring), in one
# session (simple protocol, literals): the proxy runs them on every shard that holds rows
# (two-phase commit) and sums the command tags; inside a transaction the UPDATE joins it and is
# undone by its ROLLBACK. Without -q, psql prints the command tags.
multi_shard_update() {
  local base=$((LO + 8001)) ids id inserts=() out want
  ids=$(seq -s, $base $((base + 7)))
  for id in ${ids//,/ }; do inserts+=(-c "INSERT INTO matrix_items (id, t) VALUES ($id, 'multi')"); done
  q "${inserts[@]}" || return 1
  out=$(timeout 30 psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$SHARDGATE_URL" \
          -c "UPDATE matrix_items SET note = 'first' WHERE id IN ($ids)" \
          -c BEGIN -c "UPDATE matrix_items SET note = 'second' WHERE id IN ($ids)" \
          -c "SELECT count(*) FROM matrix_items WHERE note = 'second' AND id IN ($ids)" -c ROLLBACK \
          -c "SELECT id, note FROM matrix_items WHERE id IN ($ids) ORDER BY id" \
          -c "DELETE FROM matrix_items WHERE id IN ($ids)" \
          -c "SELECT count(*) FROM matrix_items WHERE id IN ($ids)" 2>&1) || { echo "$out"; return 1; }
  want=$(printf '%s\n' "UPDATE 8" BEGIN "UPDATE 8" 8 ROLLBACK; for id in ${ids//,/ }; do echo "$id|first"; done
         printf '%s\n' "DELETE 8" 0)
  expect "$(echo $out)" "$(echo $want)" "command tags and rows (UPDATE, UPDATE and ROLLBACK in a transaction, notes, DELETE, count)"
}

# set_config(…, false) changes a session setting without a SET, which the proxy does not see
# (pg_dump's scripts start with `SELECT pg_catalog.set_config('search_path', '', false)`).
# Returns the default shard primary's backends to their defaults: one transaction per pooled
# connection, all open at once so each holds a different backend. Run after every check that
# calls set_config, so that a leak cannot break the checks (and suites) that follow.
repair_backends() {
  local shard size k
  shard=$(timeout 10 psql -X -At "$SHARDGATE_ADMIN_URL" -c 'SHOW SHARDS' | awk -F'|' '$8 == "true" {print $2}')
  size=$(timeout 10 psql -X -At "$SHARDGATE_ADMIN_URL" -c 'SHOW POOLS' | awk -F'|' -v s="$shard" '$2 == s && $4 == "primary" {print $5}')
  for k in $(seq 1 "${size:-3}"); do
    q -c BEGIN -c "SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN ('search_path', 'statement_timeout')" \
      -c "SELECT pg_sleep(1)" -c COMMIT >/dev/null 2>&1 &
  done
  wait
}

set_config_isolation() {
  local k got leaked=""
  q -c "SELECT set_config('statement_timeout', '4321', false)" >/dev/null || return 1
  for k in $(seq 1 8); do
    got=$(q -c "SHOW statement_timeout") || { repair_backends; return 1; }
    [ "$got" = 4321ms ] && leaked="$leaked $k"
  done
  repair_backends
  [ -z "$leaked" ] || { echo "new sessions (#$leaked of 8) saw statement_timeout = 4321ms, set with set_config(…, false) by an earlier session"; return 1; }
}

# pgbench: 8 clients, 2 threads, 50 transactions each, by key on matrix_items, in each query mode.
PGBENCH_LO=$((LO + 100000))
pgbench_setup() {
  local k
  for k in $(seq 0 199); do echo "INSERT INTO matrix_items (id, i) VALUES ($((PGBENCH_LO + k)), 0);"; done > "$work/pgbench_rows.sql"
  q -f "$work/pgbench_rows.sql" || return 1
  cat > "$work/by_key.sql" <<EOF
\\set id random($PGBENCH_LO, $((PGBENCH_LO + 199)))
BEGIN;
UPDATE matrix_items SET i = i + 1 WHERE id = :id;
SELECT i FROM matrix_items WHERE id = :id;
END;
EOF
}
pgbench_mode() {
  local out before after sum="SELECT sum(i) FROM matrix_items WHERE id BETWEEN $PGBENCH_LO AND $((PGBENCH_LO + 199))"
  before=$(qp "$sum") || return 1
  out=$(timeout 120 pgbench -n -f "$work/by_key.sql" -c 8 -j 2 -t 50 -M "$1" "$SHARDGATE_URL" 2>&1) || {
    grep -E 'error|abort' <<<"$out" | sed 's/client [0-9]* /client N /' | sort | uniq -c | sort -rn | head -3; return 1; }
  grep -q 'number of transactions actually processed: 400/400' <<<"$out" || { echo "$out" | tail -8; return 1; }
  after=$(qp "$sum") || return 1
  expect $((after - before)) 400 "sum of the increments of 400 transactions"
}
pgbench_simple() { pgbench_mode simple; }
pgbench_extended() { pgbench_mode extended; }
pgbench_prepared() { pgbench_mode prepared; }

# pg_dump and pg_restore. The demo's database mixes sharded tables with unmapped ones on the
# default shard; pg_dump locks every table it dumps (LOCK TABLE … IN ACCESS SHARE MODE).
dump_table_setup() {
  q -c "DROP TABLE IF EXISTS drivers_dump_libpq" -c "DROP TABLE IF EXISTS drivers_dump_libpq_restored" \
    -c "CREATE TABLE drivers_dump_libpq (id int PRIMARY KEY, t text, d date)" \
    -c "INSERT INTO drivers_dump_libpq SELECT g, 'row ' || g, DATE '2024-01-01' + g FROM generate_series(1, 500) g"
}
pg_dump_schema() {
  timeout 60 pg_dump --schema-only "$SHARDGATE_URL" > "$work/schema.sql" || return 1
  grep -q 'CREATE TABLE public.matrix_items' "$work/schema.sql" || { echo "no CREATE TABLE public.matrix_items in the dump"; return 1; }
}
pg_dump_schema_unmapped() {
  # What works today: the schema without the tables the shard map names (each would be LOCKed).
  local excl=() t
  for t in $(timeout 10 psql -X -At "$SHARDGATE_ADMIN_URL" -c 'SHOW MAP' | cut -d'|' -f4); do excl+=(-T "public.$t"); done
  timeout 60 pg_dump --schema-only "${excl[@]}" "$SHARDGATE_URL" > "$work/schema_unmapped.sql" || return 1
  grep -q 'CREATE TABLE public.drivers_dump_libpq' "$work/schema_unmapped.sql" || { echo "no CREATE TABLE public.drivers_dump_libpq"; return 1; }
}
pg_dump_unmapped_table() {
  # Plain dump of one unmapped table, replayed with psql into a scratch table name.
  timeout 60 pg_dump -t public.drivers_dump_libpq --no-owner "$SHARDGATE_URL" > "$work/table.sql" || return 1
  sed 's/drivers_dump_libpq/drivers_dump_libpq_restored/g' "$work/table.sql" |
    timeout 60 psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$SHARDGATE_URL" >/dev/null || return 1
  local got
  got=$(qp "SELECT count(*), sum(id), max(d) FROM public.drivers_dump_libpq_restored")
  repair_backends # the script's set_config('search_path', '', false) stays on the backend that ran it
  expect "$got" "500|125250|2025-05-15" "restored rows" || return 1
  q -c "DROP TABLE drivers_dump_libpq_restored"
}
pg_restore_unmapped_table() {
  # Custom-format dump, table dropped, pg_restore straight into the proxy.
  timeout 60 pg_dump -Fc -t public.drivers_dump_libpq --no-owner "$SHARDGATE_URL" > "$work/table.dump" || return 1
  q -c "DROP TABLE drivers_dump_libpq" || return 1
  timeout 60 pg_restore --no-owner --exit-on-error -d "$SHARDGATE_URL" "$work/table.dump" || { repair_backends; return 1; }
  local got
  got=$(qp "SELECT count(*), sum(id), max(d) FROM public.drivers_dump_libpq")
  repair_backends
  expect "$got" "500|125250|2025-05-15" "restored rows" || return 1
  q -c "DROP TABLE drivers_dump_libpq"
}
pg_dump_sharded_table() {
  timeout 60 pg_dump -t public.matrix_items --data-only "$SHARDGATE_URL" > "$work/sharded.sql" || return 1
  grep -q "^$((LO + 10))	" "$work/sharded.sql" || { echo "the dump lacks row $((LO + 10))"; return 1; }
  local dumped stored # every row of every shard, once
  dumped=$(sed -n '/^COPY public.matrix_items /,/^\\\.$/p' "$work/sharded.sql" | grep -cv '^COPY \|^\\\.$')
  stored=$(q -Atc "SELECT count(*) FROM matrix_items")
  expect "$dumped" "$stored" "rows in the dump" || return 1
}

report_setup() { # a setup step prints a FAIL line only when it fails
  local out
  out=$("$2" 2>&1) || echo "FAIL $1 ${VER[$1]} | setup | $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-400)"
}

check psql connect connect
report_setup psql setup
check psql key_read_write key_read_write
check psql types_roundtrip types_roundtrip
check psql transaction_commit transaction_commit
check psql transaction_rollback transaction_rollback
check psql transaction_error transaction_error
check psql cross_shard_read cross_shard_read
check psql copy copy
check psql copy_to_by_key copy_to_by_key
check psql copy_unmapped_table copy_unmapped_table
check psql psql_describe psql_describe
check psql psql_script_variables psql_script_variables
check psql cancel cancel
check psql refused_error refused_error
check psql multi_shard_update multi_shard_update
check psql set_config_isolation set_config_isolation
report_setup pgbench pgbench_setup
check pgbench pgbench_simple pgbench_simple
check pgbench pgbench_extended pgbench_extended
check pgbench prepared_reuse pgbench_prepared
report_setup pg_dump dump_table_setup
check pg_dump pg_dump_schema pg_dump_schema
check pg_dump pg_dump_schema_unmapped pg_dump_schema_unmapped
check pg_dump pg_dump_unmapped_table pg_dump_unmapped_table
check pg_restore pg_restore_unmapped_table pg_restore_unmapped_table
check pg_dump pg_dump_sharded_table pg_dump_sharded_table
exit 0
