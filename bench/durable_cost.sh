#!/usr/bin/env bash
# Cost of synchronous_commit = on for the demo/test servers (issue 12): one server with the
# settings src/local_cluster/conf.rs writes (on tmpfs, as scratch_dir puts them), pgbench
# TPC-B directly against it, synchronous_commit off and on alternating, 3 runs each.
# Usage: bash bench/durable_cost.sh  (as root: runs PostgreSQL as the postgres user)
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d /dev/shm/shardgate-durable-XXXX)
PORT=${PORT:-54987}
AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u postgres --) && chown postgres "$DIR"
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null
cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
port = $PORT
max_connections = 300
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
fsync = off
full_page_writes = off
CONF
trap '"${AS[@]}" "$BIN/pg_ctl" stop -D "$DIR/data" -m fast >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
"${AS[@]}" "$BIN/pg_ctl" start -w -D "$DIR/data" -l "$DIR/log" >/dev/null
PG=(-h 127.0.0.1 -p "$PORT" -U postgres)
pgbench "${PG[@]}" -i -s 5 -q postgres 2>&1 | tail -1
for round in 1 2 3; do
  for sc in off on; do
    psql "${PG[@]}" -X -q -c "ALTER SYSTEM SET synchronous_commit = $sc" -c "SELECT pg_reload_conf()" postgres >/dev/null
    tps=$(pgbench "${PG[@]}" -c 16 -j 2 -T 10 -n postgres 2>&1 | awk '/^tps/ {print $3; exit}')
    echo "round $round synchronous_commit=$sc tps=$tps"
  done
done
