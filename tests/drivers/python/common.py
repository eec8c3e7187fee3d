"""Shared harness of the Python driver suites (psycopg 3, psycopg2, asyncpg).

Owns the result lines of the contract in tests/drivers/README.md (one `PASS`/`FAIL` line per
check on stdout, logs on stderr), the per-check watchdog, the id ranges and the reference
values every suite writes and reads back. Must never print anything else on stdout, and never
let one hanging or failing check stop the others.
"""

import asyncio
import datetime as dt
import decimal
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid

# Shared check names (the README matrix's columns); extras are named after the feature.
SHARED_CHECKS = [
    "connect", "key_read_write", "types_roundtrip", "transaction_commit",
    "transaction_rollback", "transaction_error", "prepared_reuse", "cross_shard_read",
    "copy", "cancel", "refused_error",
]

# Seconds one check may take before it is reported as hung and the suite moves on.
CHECK_TIMEOUT = float(os.environ.get("DRIVERS_CHECK_TIMEOUT", "90"))

ENV = {
    "host": os.environ.get("SHARDGATE_HOST", "127.0.0.1"),
    "port": int(os.environ.get("SHARDGATE_PORT", "6432")),
    "user": os.environ.get("SHARDGATE_USER", "app"),
    "password": os.environ.get("SHARDGATE_PASSWORD", "app"),
    "dbname": os.environ.get("SHARDGATE_DB", "app"),
}
URL = os.environ.get(
    "SHARDGATE_URL",
    f"postgres://{ENV['user']}:{ENV['password']}@{ENV['host']}:{ENV['port']}/{ENV['dbname']}",
)
ADMIN_URL = os.environ.get(
    "SHARDGATE_ADMIN_URL", f"postgres://admin:admin@{ENV['host']}:{ENV['port']}/shardgate")

# Id ranges of the contract: each suite owns [base, base + 999_999].
ID_BASES = {"psycopg3": 1_000_000, "psycopg2": 2_000_000, "asyncpg": 3_000_000}

# Offsets of each check's ids inside a suite's range, so checks never see each other's rows.
OFF = {
    "key_read_write": 1_000, "types_roundtrip": 2_000, "transaction_commit": 3_000,
    "transaction_rollback": 4_000, "transaction_error": 5_000, "prepared_reuse": 10_000,
    "cross_shard_read": 20_000, "copy": 30_000, "extra": 40_000, "multi_shard_update": 50_000,
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def sqlstate_of(exc):
    """The SQLSTATE a driver exception carries, if any (psycopg: sqlstate, psycopg2: pgcode)."""
    for attr in ("sqlstate", "pgcode"):
        code = getattr(exc, attr, None)
        if code:
            return code
    return None


def describe(exc):
    """One line: SQLSTATE, the server's message, and where in the suite it was raised."""
    code = sqlstate_of(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    where = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.endswith("_suite.py") or f.filename.endswith("common.py")]
    if frames:
        f = frames[-1]
        where = f" [{os.path.basename(f.filename)}:{f.lineno}]"
    kind = type(exc).__name__
    if code:
        return f"SQLSTATE {code} {kind}: {text}{where}"
    return f"{kind}: {text}{where}"


class CheckFailed(AssertionError):
    """A check's own verdict (wrong value, wrong SQLSTATE, too slow)."""


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_eq(got, want, what):
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")


def expect_sqlstate(exc, want, what):
    got = sqlstate_of(exc)
    if got != want:
        raise CheckFailed(f"{what}: want SQLSTATE {want}, got {describe(exc)}")


class Reporter:
    """Prints one contract line per check; runs sync checks under a watchdog thread."""

    def __init__(self, driver, version):
        self.driver = driver
        self.version = version
        self.failed = 0

    def line(self, ok, check, message=""):
        if ok:
            print(f"PASS {self.driver} {self.version} | {check}", flush=True)
        else:
            self.failed += 1
            message = " ".join(message.split()).replace("|", "/")
            print(f"FAIL {self.driver} {self.version} | {check} | {message}", flush=True)

    def run(self, check, fn, *args):
        """Runs fn(*args) in a daemon thread; a check that hangs is reported and abandoned."""
        outcome = {}

        def body():
            try:
                fn(*args)
                outcome["ok"] = True
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a FAIL line
                outcome["exc"] = exc

        began = time.monotonic()
        worker = threading.Thread(target=body, name=check, daemon=True)
        worker.start()
        worker.join(CHECK_TIMEOUT)
        took = time.monotonic() - began
        if worker.is_alive():
            self.line(False, check, f"hung: no answer within {CHECK_TIMEOUT:.0f} s")
        elif "exc" in outcome:
            log(f"{self.driver} {check}: failed after {took:.2f} s: " + "".join(
                traceback.format_exception(outcome["exc"])).rstrip())
            self.line(False, check, describe(outcome["exc"]))
        else:
            log(f"{self.driver} {check}: ok in {took:.2f} s")
            self.line(True, check)

    async def run_async(self, check, coro_fn, *args):
        began = time.monotonic()
        try:
            await asyncio.wait_for(coro_fn(*args), CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            self.line(False, check, f"hung: no answer within {CHECK_TIMEOUT:.0f} s")
            return
        except BaseException as exc:  # noqa: BLE001
            log(f"{self.driver} {check}: failed after {time.monotonic() - began:.2f} s: "
                + "".join(traceback.format_exception(exc)).rstrip())
            self.line(False, check, describe(exc))
            return
        log(f"{self.driver} {check}: ok in {time.monotonic() - began:.2f} s")
        self.line(True, check)

    def finish(self):
        # Abandoned (hung) checks may still hold threads and sockets: do not wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# ---------------------------------------------------------------- reference values

COLUMNS = ["i", "big", "num", "f", "t", "b", "flag", "d", "ts", "u", "j", "arr", "note"]


def reference_row():
    """One value of every type matrix_items has, chosen to catch lossy conversions."""
    return {
        "i": -2147483648,
        "big": 9223372036854775807,
        "num": decimal.Decimal("123456789012345.12345"),
        "f": 3.141592653589793e-300,
        "t": "h\u00e9llo \u2713 'quoted' \\ back\ttab \U0001f600",
        "b": bytes(range(256)),
        "flag": True,
        "d": dt.date(2026, 2, 28),
        "ts": dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc),
        "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "j": {"a": [1, 2.5, {"b": None}], "s": "x\u00e9", "t": True},
        "arr": [1, None, -3],
        "note": None,
    }


def null_row():
    return {c: None for c in COLUMNS}


def compare_row(got, want, what):
    """got: a mapping column -> value read back; bytes-like and tz-aware values normalised."""
    for col in COLUMNS:
        g, w = got[col], want[col]
        if isinstance(g, memoryview):
            g = bytes(g)
        if isinstance(w, uuid.UUID) and g is not None:
            g = uuid.UUID(str(g))  # asyncpg returns its own UUID class
        if isinstance(g, dt.datetime) and isinstance(w, dt.datetime):
            if g != w:
                raise CheckFailed(f"{what}: column {col}: got {g!r}, want {w!r}")
            continue
        if g != w or type(g) is not type(w):
            raise CheckFailed(f"{what}: column {col}: got {g!r} ({type(g).__name__}), "
                              f"want {w!r} ({type(w).__name__})")


_SHARDS = {}


def shards_of(ids):
    """id -> shard name, asked of the admin console (SHOW ROUTE) once per id, with psql."""
    missing = [i for i in ids if i not in _SHARDS]
    if missing:
        cmd = ["psql", ADMIN_URL, "-XAtq"]
        for i in missing:
            cmd += ["-c", f"SHOW ROUTE SELECT 1 FROM matrix_items WHERE id = {i}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
        for m in re.finditer(r"id = (\d+) -> shard (\S+)", out):
            _SHARDS[int(m.group(1))] = m.group(2)
    unknown = [i for i in ids if i not in _SHARDS]
    if unknown:
        raise CheckFailed(f"SHOW ROUTE named no shard for ids {unknown[:3]}")
    return {i: _SHARDS[i] for i in ids}


def same_shard_ids(start, n):
    """n ids from start on, all on the shard of the first: transactions that stay on one
    shard (the common case), so they test commit/rollback and not spanning."""
    cands = list(range(start, start + 20 * n))
    where = shards_of(cands)
    picked = [i for i in cands if where[i] == where[cands[0]]][:n]
    expect(len(picked) == n, f"fewer than {n} ids on {where[cands[0]]} from {start}")
    return picked


def two_shard_ids(start):
    """(a, b): the first ids from start on that live on two different shards."""
    cands = list(range(start, start + 40))
    where = shards_of(cands)
    a = cands[0]
    b = next((i for i in cands if where[i] != where[a]), None)
    expect(b is not None, f"ids from {start} all live on {where[a]}")
    return a, b


def cross_rows(base, n=40):
    """Rows for the cross-shard checks: ids spread over the hash ring, known aggregates."""
    rows = []
    for k in range(n):
        rows.append({
            "id": base + k * 7 + 1,
            "i": k - 10,
            "big": 10_000_000_000 * k,
            "num": decimal.Decimal(k) / 4,
            "t": f"row {k:03d}",
            "flag": k % 3 == 0,
        })
    return rows


def cross_expectations(rows):
    ids = sorted(r["id"] for r in rows)
    return {
        "count": len(rows),
        "sum_i": sum(r["i"] for r in rows),
        "sum_big": sum(r["big"] for r in rows),
        "sum_num": sum(r["num"] for r in rows),
        "min_id": ids[0],
        "max_id": ids[-1],
        # ORDER BY id DESC LIMIT 5 OFFSET 2
        "page": sorted(ids, reverse=True)[2:7],
        "by_flag": {flag: sum(1 for r in rows if r["flag"] == flag) for flag in (False, True)},
    }


CROSS_SQL = {
    "aggregate": "SELECT count(*), sum(i), sum(big), sum(num), min(id), max(id) "
                 "FROM matrix_items WHERE id BETWEEN {lo} AND {hi}",
    "page": "SELECT id FROM matrix_items WHERE id BETWEEN {lo} AND {hi} "
            "ORDER BY id DESC LIMIT 5 OFFSET 2",
    "group": "SELECT flag, count(*) FROM matrix_items WHERE id BETWEEN {lo} AND {hi} "
             "GROUP BY flag ORDER BY flag",
}


def check_cross_results(agg, page, groups, rows):
    """agg: (count, sum_i, sum_big, sum_num, min_id, max_id); page: [id]; groups: [(flag, n)]."""
    want = cross_expectations(rows)
    expect_eq(tuple(agg), (want["count"], want["sum_i"], want["sum_big"], want["sum_num"],
                           want["min_id"], want["max_id"]),
              "count, sum(i), sum(big), sum(num), min(id), max(id)")
    expect_eq(list(page), want["page"], "ORDER BY id DESC LIMIT 5 OFFSET 2")
    expect_eq([tuple(g) for g in groups], sorted(want["by_flag"].items()),
              "GROUP BY flag ORDER BY flag")
