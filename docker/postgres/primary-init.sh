#!/bin/bash
# Runs once, when the postgres image initialises an empty primary (/docker-entrypoint-initdb.d):
# creates the role the replica's pg_basebackup and walreceiver log in with, and lets it open
# replication connections from other containers. The image's own pg_hba line
# (`host all all all scram-sha-256`) does not cover them: `all` never matches `replication`.
# No `set -u`: where the executable bit is lost (some checkouts), the image sources this file
# into its own entry point, which expects unset variables to read as empty.
set -eo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set user="$REPLICATION_USER" --set password="$REPLICATION_PASSWORD" <<'EOSQL'
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
EOSQL

# pg_hba.conf is read when the server restarts after initialisation, before any replica connects.
printf 'host replication %s all scram-sha-256\n' "$REPLICATION_USER" >> "$PGDATA/pg_hba.conf"
