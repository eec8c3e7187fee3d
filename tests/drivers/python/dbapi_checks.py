"""The shared checks written once for the two DB-API drivers (psycopg 3 and psycopg2).

A suite passes a `Driver` that knows how to connect and adapt jsonb; everything here uses only
DB-API calls (cursor.execute with %s, commit, rollback), so the same text runs on both: psycopg 3
binds parameters server-side (extended protocol), psycopg2 inlines them (simple protocol).
Checks read their own writes inside a transaction or on the session that wrote, because reads
of other sessions outside a transaction may go to a replica that has not replayed them yet.
"""

import threading
import time

from common import (COLUMNS, CROSS_SQL, OFF, CheckFailed, check_cross_results, compare_row,
                    cross_rows, expect, expect_eq, expect_sqlstate, null_row, reference_row,
                    same_shard_ids, shards_of, two_shard_ids)


class Driver:
    """What a suite provides: connect(autocommit) -> connection, jsonb(obj) -> parameter."""

    name = "?"
    base = 0

    def connect(self, autocommit=True):
        raise NotImplementedError

    def jsonb(self, obj):
        return obj

    def ids(self, check, n=1):
        start = self.base + OFF[check]
        return [start + k for k in range(1, n + 1)]


INSERT_ALL = ("INSERT INTO matrix_items (id, " + ", ".join(COLUMNS) + ") VALUES (%s, "
              + ", ".join(["%s"] * len(COLUMNS)) + ")")
SELECT_ALL = "SELECT " + ", ".join(COLUMNS) + " FROM matrix_items WHERE id = %s"


def delete_ids(cur, ids):
    # One statement per id, each on one shard: cleanup does not depend on the UPDATE/DELETE on
    # several shards that multi_shard_update checks.
    for i in ids:
        cur.execute("DELETE FROM matrix_items WHERE id = %s", (i,))


def values_of(d, row):
    return [d.jsonb(row[c]) if c == "j" and row[c] is not None else row[c] for c in COLUMNS]


def connect(d):
    with d.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        expect_eq(cur.fetchone()[0], 1, "SELECT 1")
        cur.execute("SHOW server_version")
        expect(cur.fetchone()[0], "server_version is empty")


def key_read_write(d):
    ids = d.ids("key_read_write", 4)
    with d.connect() as conn:
        cur = conn.cursor()
        delete_ids(cur, ids)
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, i, t) VALUES (%s, %s, %s)", (i, i % 1000, f"v{i}"))
            expect_eq(cur.rowcount, 1, f"INSERT {i} rowcount")
        for i in ids:
            cur.execute("SELECT i, t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [(i % 1000, f"v{i}")], f"SELECT {i}")
            cur.execute("UPDATE matrix_items SET t = %s WHERE id = %s", (f"u{i}", i))
            expect_eq(cur.rowcount, 1, f"UPDATE {i} rowcount")
            cur.execute("SELECT t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [(f"u{i}",)], f"SELECT {i} after UPDATE")
            cur.execute("DELETE FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.rowcount, 1, f"DELETE {i} rowcount")
            cur.execute("SELECT t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [], f"SELECT {i} after DELETE")


def types_roundtrip(d, cursor_factory=None):
    full, empty = d.ids("types_roundtrip", 2)
    with d.connect() as conn:
        cur = conn.cursor() if cursor_factory is None else cursor_factory(conn)
        delete_ids(cur, [full, empty])
        for i, row in ((full, reference_row()), (empty, null_row())):
            cur.execute(INSERT_ALL, [i] + values_of(d, row))
            cur.execute(SELECT_ALL, (i,))
            got = cur.fetchone()
            compare_row(dict(zip(COLUMNS, got)), row, f"id {i}")
        # The same values echoed as parameters, without a table (the default shard).
        ref = reference_row()
        # CAST(… AS …), not %s::int: inlined by a client, -2147483648::int would parse as
        # -(2147483648::int), which is out of range.
        casts = ["int", "bigint", "numeric", "float8", "text", "bytea", "bool", "date",
                 "timestamptz", "uuid", "jsonb", "int[]", "text"]
        cur.execute("SELECT " + ", ".join(f"CAST(%s AS {c})" for c in casts), values_of(d, ref))
        compare_row(dict(zip(COLUMNS, cur.fetchone())), ref, "SELECT of parameters")


def _visible(d, ids):
    """Ids of `ids` another session sees, read inside a transaction (on the primaries)."""
    with d.connect(autocommit=False) as other:
        cur = other.cursor()
        seen = []
        for i in ids:  # one transaction per id: each stays on its shard
            cur.execute("SELECT id FROM matrix_items WHERE id = %s", (i,))
            seen += [r[0] for r in cur.fetchall()]
            other.rollback()
        return seen


def transaction_commit(d):
    ids = same_shard_ids(d.base + OFF["transaction_commit"], 4)
    with d.connect() as conn:
        delete_ids(conn.cursor(), ids)
    with d.connect(autocommit=False) as conn:
        cur = conn.cursor()
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'committed')", (i,))
        # = ANY of ids on one shard: routed to that shard, so the transaction stays there.
        cur.execute("SELECT count(*) FROM matrix_items WHERE id = ANY(%s)", (ids,))
        expect_eq(cur.fetchone()[0], len(ids), "rows seen inside the transaction")
        conn.commit()
    expect_eq(sorted(_visible(d, ids)), ids, "rows another session sees after COMMIT")


def transaction_rollback(d):
    ids = same_shard_ids(d.base + OFF["transaction_rollback"], 4)
    with d.connect() as conn:
        delete_ids(conn.cursor(), ids)
    with d.connect(autocommit=False) as conn:
        cur = conn.cursor()
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'rolled back')", (i,))
        conn.rollback()
        for i in ids:
            cur.execute("SELECT id FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [], f"id {i} after ROLLBACK (same session)")
            conn.rollback()
    expect_eq(_visible(d, ids), [], "rows another session sees after ROLLBACK")


def transaction_error(d):
    a, b = same_shard_ids(d.base + OFF["transaction_error"], 2)
    with d.connect() as conn:
        delete_ids(conn.cursor(), [a, b])
    with d.connect(autocommit=False) as conn:
        cur = conn.cursor()
        cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'first')", (a,))
        cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'second')", (b,))
        try:
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'duplicate')", (a,))
            raise CheckFailed("a duplicate key was accepted")
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the driver's error class differs
            expect_sqlstate(exc, "23505", "duplicate key")
        try:
            cur.execute("SELECT 1")
            raise CheckFailed("a statement after the error ran: the transaction was not aborted")
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            expect_sqlstate(exc, "25P02", "statement after the error")
        conn.rollback()
        cur.execute("SELECT 1")
        expect_eq(cur.fetchone()[0], 1, "SELECT 1 after ROLLBACK")
        conn.rollback()
    expect_eq(_visible(d, [a, b]), [], "writes of the failed transaction")


def transaction_span(d):
    """One transaction writing on two shards (keys bound as parameters), committed, then
    another rolled back: all or nothing is visible on both shards."""
    a, b = two_shard_ids(d.base + OFF["transaction_commit"] + 500)
    c, e = two_shard_ids(d.base + OFF["transaction_rollback"] + 500)
    with d.connect() as conn:
        delete_ids(conn.cursor(), [a, b, c, e])
    with d.connect(autocommit=False) as conn:
        cur = conn.cursor()
        for i in (a, b):
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'span')", (i,))
        cur.execute("SELECT count(*) FROM matrix_items WHERE id IN (%s, %s)", (a, b))
        expect_eq(cur.fetchone()[0], 2, "rows seen inside the spanning transaction")
        conn.commit()
        for i in (c, e):
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'span')", (i,))
        conn.rollback()
    expect_eq(sorted(_visible(d, [a, b, c, e])), sorted([a, b]),
              "rows visible after COMMIT of (a, b) and ROLLBACK of (c, e)")


def multi_shard_update(d):
    """UPDATE and DELETE … WHERE id IN (…) over ids on both shards: the proxy runs them on
    every shard that holds rows (two-phase commit) and sums the counts; inside a transaction
    the UPDATE joins it and is undone by its ROLLBACK."""
    ids = d.ids("multi_shard_update", 8)
    expect(len(set(shards_of(ids).values())) == 2, "the ids do not cover both shards")
    in_ids = "id IN (" + ", ".join(["%s"] * len(ids)) + ")"
    update = f"UPDATE matrix_items SET note = %s WHERE {in_ids}"
    with d.connect() as conn:
        cur = conn.cursor()
        delete_ids(cur, ids)
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'multi')", (i,))
        cur.execute(update, ["first"] + ids)
        expect_eq(cur.rowcount, len(ids), "UPDATE … WHERE id IN (…) rowcount")
        conn.autocommit = False
        cur.execute(update, ["second"] + ids)
        expect_eq(cur.rowcount, len(ids), "UPDATE rowcount inside the transaction")
        cur.execute(f"SELECT count(*) FROM matrix_items WHERE note = %s AND {in_ids}",
                    ["second"] + ids)
        expect_eq(cur.fetchone()[0], len(ids), "rows the transaction sees updated")
        conn.rollback()
        conn.autocommit = True
        cur.execute(f"SELECT id, note FROM matrix_items WHERE {in_ids} ORDER BY id", ids)
        expect_eq(cur.fetchall(), [(i, "first") for i in ids], "notes after ROLLBACK")
        cur.execute(f"DELETE FROM matrix_items WHERE {in_ids}", ids)
        expect_eq(cur.rowcount, len(ids), "DELETE … WHERE id IN (…) rowcount")
        cur.execute(f"SELECT count(*) FROM matrix_items WHERE {in_ids}", ids)
        expect_eq(cur.fetchone()[0], 0, "rows after the DELETE")


def prepared_reuse(d, connect_one, run_tx, clients=10, per_client=8):
    """`clients` sessions at once (more than the pool), each `per_client` transactions of
    the same statements; connect_one() -> connection, run_tx(conn, id, value) -> value read."""
    ids = d.ids("prepared_reuse", clients * per_client)
    barrier = threading.Barrier(clients)
    errors = []

    def client(k):
        try:
            conn = connect_one()
            try:
                barrier.wait(30)
                for n in range(per_client):
                    i = ids[k * per_client + n]
                    got = run_tx(conn, i, k * 1000 + n)
                    if got != k * 1000 + n:
                        raise CheckFailed(f"id {i}: read {got!r}, wrote {k * 1000 + n}")
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001
            if not isinstance(exc, threading.BrokenBarrierError):
                errors.append(exc)
            barrier.abort()  # the others stop waiting at once

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(75)
    if any(t.is_alive() for t in threads):
        raise CheckFailed(f"{sum(t.is_alive() for t in threads)} of {clients} clients hung")
    if errors:
        raise errors[0]
    expect(not barrier.broken, "a client gave up waiting for the others (barrier broken)")


def cross_shard_read(d, cursor_factory=None):
    rows = cross_rows(d.base + OFF["cross_shard_read"])
    lo, hi = d.base + OFF["cross_shard_read"], d.base + OFF["cross_shard_read"] + 999
    with d.connect() as conn:
        cur = conn.cursor() if cursor_factory is None else cursor_factory(conn)
        delete_ids(cur, [r["id"] for r in rows])
        for r in rows:
            cur.execute("INSERT INTO matrix_items (id, i, big, num, t, flag) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (r["id"], r["i"], r["big"], r["num"], r["t"], r["flag"]))
        run_cross_queries(cur, lo, hi, rows)


def run_cross_queries(cur, lo, hi, rows):
    """The three cross-shard reads, with the range as parameters."""
    q = {k: v.replace("{lo}", "%s").replace("{hi}", "%s") for k, v in CROSS_SQL.items()}
    cur.execute(q["aggregate"], (lo, hi))
    agg = cur.fetchone()
    cur.execute(q["page"], (lo, hi))
    page = [r[0] for r in cur.fetchall()]
    cur.execute(q["group"], (lo, hi))
    groups = cur.fetchall()
    check_cross_results(agg, page, groups, rows)


def cancel(d, cancel_fn, label="cancel"):
    """Runs pg_sleep(10) and cancels it after 1 s with cancel_fn(conn): the driver must see
    57014 within a few seconds, and the same connection must answer afterwards."""
    with d.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        outcome = {}

        def sleeper():
            began = time.monotonic()
            try:
                cur.execute("SELECT pg_sleep(10)")
                outcome["result"] = "completed"
            except Exception as exc:  # noqa: BLE001
                outcome["exc"] = exc
            outcome["took"] = time.monotonic() - began

        t = threading.Thread(target=sleeper, daemon=True)
        t.start()
        time.sleep(1.0)
        cancel_fn(conn)
        t.join(15)
        expect(not t.is_alive(), "pg_sleep(10) still running 15 s after the cancel")
        expect("exc" in outcome, f"pg_sleep(10) was not cancelled (took {outcome.get('took', 0):.1f} s)")
        expect_sqlstate(outcome["exc"], "57014", label)
        expect(outcome["took"] < 5, f"cancelled only after {outcome['took']:.1f} s")
        cur.execute("SELECT 2")
        expect_eq(cur.fetchone()[0], 2, "SELECT 2 on the connection after the cancel")


def refused_error(d, statements):
    """Each (sql, params), a write to several shards of matrix_guarded (whose map entry says
    `multi_shard_writes: refuse`), must fail with 0A000, and the session must go on working."""
    with d.connect() as conn:
        cur = conn.cursor()
        for sql, params in statements:
            try:
                cur.execute(sql, params)
                raise CheckFailed(f"{sql!r} was accepted")
            except CheckFailed:
                raise
            except Exception as exc:  # noqa: BLE001
                expect_sqlstate(exc, "0A000", sql)
                expect("matrix_guarded" in str(exc), f"the refusal does not name the table: {exc}")
            cur.execute("SELECT 1")
            expect_eq(cur.fetchone()[0], 1, "SELECT 1 after the refusal")


def named_cursor(d):
    """A named (server-side) cursor over several shards: DECLARE … CURSOR, then FETCH FORWARD
    itersize again and again (psycopg2 in simple queries, psycopg 3 through the extended
    protocol); the rows come in the merged order, across several FETCHes."""
    base = d.base + OFF["extra"] + 800
    ids = [base + k for k in range(1, 31)]
    with d.connect(autocommit=False) as conn:
        cur = conn.cursor()
        delete_ids(cur, ids)
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, i) VALUES (%s, %s)", (i, i % 7))
        conn.commit()
        named = conn.cursor(name="sg_named")
        named.itersize = 4
        named.execute("SELECT id, i FROM matrix_items WHERE id BETWEEN %s AND %s "
                      "ORDER BY i, id", (ids[0], ids[-1]))
        got = [tuple(row) for row in named]
        want = sorted(((i, i % 7) for i in ids), key=lambda r: (r[1], r[0]))
        expect_eq(got, want, "rows of the named cursor")
        named.close()
        conn.commit()


def run_shared(reporter, d):
    """The shared checks written here, plus transaction_span, multi_shard_update and
    named_cursor; copy,
    cancel, refused_error and prepared_reuse need driver-specific wiring and are run by each
    suite."""
    reporter.run("connect", connect, d)
    reporter.run("key_read_write", key_read_write, d)
    reporter.run("types_roundtrip", types_roundtrip, d)
    reporter.run("transaction_commit", transaction_commit, d)
    reporter.run("transaction_rollback", transaction_rollback, d)
    reporter.run("transaction_error", transaction_error, d)
    reporter.run("cross_shard_read", cross_shard_read, d)
    reporter.run("transaction_span", transaction_span, d)
    reporter.run("multi_shard_update", multi_shard_update, d)
    reporter.run("named_cursor", named_cursor, d)

