#!/bin/bash
# Entry point of a replica container (runs as the postgres user). On first start, with an empty
# data directory, it clones the primary with pg_basebackup -R, which writes standby.signal and
# primary_conninfo, so the server starts as a streaming replica of PRIMARY_HOST. Later starts
# find the cloned directory and just start the server.
set -euo pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready --host "$PRIMARY_HOST" --quiet; do
        echo "waiting for $PRIMARY_HOST"
        sleep 1
    done
    # PGPASSWORD (set on the container) authenticates the backup and, later, the walreceiver.
    # A failed copy is removed so the next start tries again instead of finding half a cluster.
    if ! pg_basebackup --host "$PRIMARY_HOST" --username "$REPLICATION_USER" \
        --pgdata "$PGDATA" --wal-method stream --checkpoint fast --write-recovery-conf; then
        find "$PGDATA" -mindepth 1 -delete
        exit 1
    fi
fi
# PostgreSQL refuses to start on a data directory others can read.
chmod 0700 "$PGDATA"
exec docker-entrypoint.sh postgres "$@"
