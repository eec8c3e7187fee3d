#!/usr/bin/env bash
# tokio-postgres and sqlx checks against a running shardgate, per the contract of
# tests/drivers/run. A separate cargo project (its own workspace and Cargo.lock, same crate
# versions as the root lock where the root has them), built into $DRIVERS_CACHE/rust-target.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR=${DRIVERS_CACHE:?DRIVERS_CACHE must be set}/rust-target

if ! (cd "$here" && cargo build --locked --quiet) >&2; then
  echo "rust: cargo build failed" >&2
  exit 1
fi
# Each check has its own timeout; this bounds a wedged process.
timeout 300 "$CARGO_TARGET_DIR/debug/shardgate-driver-checks" || { echo "rust: checks did not finish (exit $?)" >&2; exit 1; }
