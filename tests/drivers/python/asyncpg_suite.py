"""asyncpg against shardgate: the shared checks plus always-named prepared statements, binary
results, type introspection, a Pool under many concurrent queries, and cancel through
timeouts and task cancellation.

Ids 3_000_000-3_999_999. asyncpg speaks only the extended protocol with named statements (its
statement cache) and binary formats, except `execute(sql)` without arguments, which is a
simple Query. It introspects types it has no built-in codec for with catalog queries.
"""

import asyncio
import datetime as dt
import decimal
import io
import json
import time
import uuid

import asyncpg

from common import (COLUMNS, CROSS_SQL, OFF, URL, CheckFailed, Reporter, check_cross_results,
                    compare_row, cross_rows, expect, expect_eq, expect_sqlstate, log, null_row,
                    reference_row, same_shard_ids, shards_of, two_shard_ids)

BASE = 3_000_000


def ids(check, n=1, extra=0):
    start = BASE + OFF[check] + extra
    return [start + k for k in range(1, n + 1)]


async def jsonb_codec(conn):
    # What applications do to get dicts for jsonb; asyncpg looks the type up in the catalog.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def connect(**kw):
    conn = await asyncpg.connect(URL, timeout=10, **kw)
    await jsonb_codec(conn)
    return conn


async def delete_ids(conn, id_list):
    # One statement per id, each on one shard: cleanup does not depend on the UPDATE/DELETE on
    # several shards that multi_shard_update checks.
    for i in id_list:
        await conn.execute("DELETE FROM matrix_items WHERE id = $1", i)


INSERT_ALL = ("INSERT INTO matrix_items (id, " + ", ".join(COLUMNS) + ") VALUES ("
              + ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 2)) + ")")
SELECT_ALL = "SELECT " + ", ".join(COLUMNS) + " FROM matrix_items WHERE id = $1"


async def check_connect():
    conn = await connect()
    try:
        expect_eq(await conn.fetchval("SELECT 1"), 1, "SELECT 1")
        expect(conn.get_server_version().major >= 10, "server version")
    finally:
        await conn.close()


async def key_read_write():
    conn = await connect()
    try:
        id_list = ids("key_read_write", 4)
        await delete_ids(conn, id_list)
        for i in id_list:
            expect_eq(await conn.execute("INSERT INTO matrix_items (id, i, t) VALUES ($1, $2, $3)",
                                         i, i % 1000, f"v{i}"), "INSERT 0 1", f"INSERT {i}")
        for i in id_list:
            row = await conn.fetchrow("SELECT i, t FROM matrix_items WHERE id = $1", i)
            expect_eq(tuple(row), (i % 1000, f"v{i}"), f"SELECT {i}")
            expect_eq(await conn.execute("UPDATE matrix_items SET t = $1 WHERE id = $2", f"u{i}", i),
                      "UPDATE 1", f"UPDATE {i}")
            expect_eq(await conn.fetchval("SELECT t FROM matrix_items WHERE id = $1", i), f"u{i}",
                      f"SELECT {i} after UPDATE")
            expect_eq(await conn.execute("DELETE FROM matrix_items WHERE id = $1", i), "DELETE 1",
                      f"DELETE {i}")
            expect_eq(await conn.fetch("SELECT t FROM matrix_items WHERE id = $1", i), [],
                      f"SELECT {i} after DELETE")
    finally:
        await conn.close()


async def types_roundtrip():
    conn = await connect()
    try:
        full, empty = ids("types_roundtrip", 2)
        await delete_ids(conn, [full, empty])
        for i, row in ((full, reference_row()), (empty, null_row())):
            await conn.execute(INSERT_ALL, i, *[row[c] for c in COLUMNS])
            got = await conn.fetchrow(SELECT_ALL, i)
            compare_row(dict(got), row, f"id {i}")
        ref = reference_row()
        got = await conn.fetchrow(
            "SELECT $1::int AS i, $2::bigint AS big, $3::numeric AS num, $4::float8 AS f, "
            "$5::text AS t, $6::bytea AS b, $7::bool AS flag, $8::date AS d, "
            "$9::timestamptz AS ts, $10::uuid AS u, $11::jsonb AS j, $12::int[] AS arr, "
            "$13::text AS note", *[ref[c] for c in COLUMNS])
        compare_row(dict(got), ref, "SELECT of parameters")
    finally:
        await conn.close()


async def visible(id_list):
    """Ids another session sees, read inside a transaction (on the primaries)."""
    conn = await connect()
    try:
        seen = []
        for i in id_list:  # one transaction per id: each stays on its shard
            async with conn.transaction():
                seen += [r[0] for r in await conn.fetch("SELECT id FROM matrix_items WHERE id = $1", i)]
        return seen
    finally:
        await conn.close()


async def transaction_commit():
    id_list = same_shard_ids(BASE + OFF["transaction_commit"], 4)
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        async with conn.transaction():
            for i in id_list:
                await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'committed')", i)
            # = ANY of ids on one shard: routed there, so the transaction stays on one shard.
            n = await conn.fetchval("SELECT count(*) FROM matrix_items WHERE id = ANY($1)", id_list)
            expect_eq(n, len(id_list), "rows seen inside the transaction")
    finally:
        await conn.close()
    expect_eq(sorted(await visible(id_list)), id_list, "rows another session sees after COMMIT")


async def transaction_rollback():
    id_list = same_shard_ids(BASE + OFF["transaction_rollback"], 4)
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        tr = conn.transaction()
        await tr.start()
        for i in id_list:
            await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'rolled back')", i)
        await tr.rollback()
        for i in id_list:
            expect_eq(await conn.fetch("SELECT id FROM matrix_items WHERE id = $1", i), [],
                      f"id {i} after ROLLBACK (same session)")
    finally:
        await conn.close()
    expect_eq(await visible(id_list), [], "rows another session sees after ROLLBACK")


async def transaction_error():
    a, b = same_shard_ids(BASE + OFF["transaction_error"], 2)
    conn = await connect()
    try:
        await delete_ids(conn, [a, b])
        tr = conn.transaction()
        await tr.start()
        await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'first')", a)
        await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'second')", b)
        try:
            await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'duplicate')", a)
            raise CheckFailed("a duplicate key was accepted")
        except asyncpg.PostgresError as exc:
            expect_sqlstate(exc, "23505", "duplicate key")
        try:
            await conn.fetchval("SELECT 1")
            raise CheckFailed("a statement after the error ran: the transaction was not aborted")
        except asyncpg.PostgresError as exc:
            expect_sqlstate(exc, "25P02", "statement after the error")
        await tr.rollback()
        expect_eq(await conn.fetchval("SELECT 1"), 1, "SELECT 1 after ROLLBACK")
    finally:
        await conn.close()
    expect_eq(await visible([a, b]), [], "writes of the failed transaction")


async def executemany_span():
    """executemany of rows on both shards (one batch, one Sync): every row, atomically; a
    duplicate key among them leaves none of that call's rows."""
    ids = list(range(BASE + OFF["extra"] + 700, BASE + OFF["extra"] + 720))
    sql = "INSERT INTO matrix_items (id, t) VALUES ($1, 'many')"
    conn = await connect()
    try:
        await delete_ids(conn, ids)
        await conn.executemany(sql, [(i,) for i in ids[:10]])
        failed = False
        try:
            await conn.executemany(sql, [(i,) for i in ids[10:15] + [ids[0]] + ids[15:]])
        except asyncpg.UniqueViolationError:
            failed = True
        expect_eq(failed, True, "a duplicate key in executemany is reported")
    finally:
        await conn.close()
    expect_eq(sorted(await visible(ids)), ids[:10], "rows of the executemany that succeeded only")


async def transaction_span():
    """One transaction writing on two shards, committed, then another rolled back."""
    a, b = two_shard_ids(BASE + OFF["transaction_commit"] + 500)
    c, e = two_shard_ids(BASE + OFF["transaction_rollback"] + 500)
    conn = await connect()
    try:
        await delete_ids(conn, [a, b, c, e])
        async with conn.transaction():
            for i in (a, b):
                await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'span')", i)
            rows = await conn.fetch("SELECT id FROM matrix_items WHERE id IN ($1, $2)", a, b)
            expect_eq(len(rows), 2, "rows seen inside the spanning transaction")
        tr = conn.transaction()
        await tr.start()
        for i in (c, e):
            await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'span')", i)
        await tr.rollback()
    finally:
        await conn.close()
    expect_eq(sorted(await visible([a, b, c, e])), sorted([a, b]),
              "rows visible after COMMIT of (a, b) and ROLLBACK of (c, e)")


async def many_clients(run_tx, id_list, clients=10, per_client=8, **connect_kw):
    """`clients` sessions at once (more than the pool of 3 per server), each running
    `per_client` transactions; run_tx(conn, id, value) returns the value it read back."""
    async def client(k):
        conn = await connect(**connect_kw)
        try:
            for n in range(per_client):
                i = id_list[k * per_client + n]
                got = await run_tx(conn, i, k * 1000 + n)
                if got != k * 1000 + n:
                    raise CheckFailed(f"id {i}: read {got!r}, wrote {k * 1000 + n}")
        finally:
            await conn.close()

    await asyncio.gather(*(client(k) for k in range(clients)))


async def prepared_reuse():
    """conn.prepare() once per session; the statement objects (named on the server) are
    executed in 8 transactions on each of 10 sessions."""
    prepared = {}

    async def run_tx(conn, i, value):
        if conn not in prepared:
            prepared[conn] = (
                await conn.prepare("INSERT INTO matrix_items (id, i) VALUES ($1, $2)"),
                await conn.prepare("UPDATE matrix_items SET note = 'reused' WHERE id = $1"),
                await conn.prepare("SELECT i FROM matrix_items WHERE id = $1"),
            )
        ins, upd, sel = prepared[conn]
        async with conn.transaction():
            await ins.fetch(i, value)
            await upd.fetch(i)
            return await sel.fetchval(i)

    await many_clients(run_tx, ids("prepared_reuse", 80))


async def statement_cache_off():
    """statement_cache_size=0 (the usual advice for PgBouncer): unnamed statements only."""
    async def run_tx(conn, i, value):
        async with conn.transaction():
            await conn.execute("INSERT INTO matrix_items (id, i) VALUES ($1, $2)", i, value)
            return await conn.fetchval("SELECT i FROM matrix_items WHERE id = $1", i)

    await many_clients(run_tx, ids("prepared_reuse", 80, extra=500), statement_cache_size=0)


async def cross_shard_read():
    rows = cross_rows(BASE + OFF["cross_shard_read"])
    lo, hi = BASE + OFF["cross_shard_read"], BASE + OFF["cross_shard_read"] + 999
    conn = await connect()
    try:
        await delete_ids(conn, [r["id"] for r in rows])
        for r in rows:
            await conn.execute("INSERT INTO matrix_items (id, i, big, num, t, flag) "
                               "VALUES ($1, $2, $3, $4, $5, $6)",
                               r["id"], r["i"], r["big"], r["num"], r["t"], r["flag"])
        q = {k: v.replace("{lo}", "$1").replace("{hi}", "$2") for k, v in CROSS_SQL.items()}
        # fetch(), not fetchrow()/fetchval(): those send Execute with a row limit of 1, which
        # the proxy refuses for cross-shard results (fetchval_cross_shard covers it).
        (agg,) = await conn.fetch(q["aggregate"], lo, hi)
        page = [r[0] for r in await conn.fetch(q["page"], lo, hi)]
        groups = await conn.fetch(q["group"], lo, hi)
        check_cross_results(agg, page, groups, rows)
    finally:
        await conn.close()


async def binary():
    """Merged cross-shard ORDER BY over binary-format timestamptz, uuid and numeric keys."""
    id_list = ids("extra", 24, extra=300)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = [(i, start + dt.timedelta(minutes=(i * 37) % 101),
             uuid.UUID(int=(i * 2654435761) % (1 << 128)),
             decimal.Decimal(i % 13) / 8) for i in id_list]
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        for r in rows:
            await conn.execute("INSERT INTO matrix_items (id, ts, u, num) VALUES ($1, $2, $3, $4)", *r)
        lo, hi = id_list[0], id_list[-1]
        got = await conn.fetch("SELECT id, ts FROM matrix_items WHERE id BETWEEN $1 AND $2 "
                               "ORDER BY ts DESC, id", lo, hi)
        expect_eq([tuple(g) for g in got],
                  sorted(((r[0], r[1]) for r in rows), key=lambda x: (-x[1].timestamp(), x[0])),
                  "ORDER BY ts DESC, id")
        got = await conn.fetch("SELECT u FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY u "
                               "LIMIT 10", lo, hi)
        expect_eq([uuid.UUID(str(g[0])) for g in got], sorted(r[2] for r in rows)[:10],
                  "ORDER BY u LIMIT 10")
        (got,) = await conn.fetch("SELECT sum(num), min(ts), max(ts) FROM matrix_items "
                                  "WHERE id BETWEEN $1 AND $2", lo, hi)
        expect_eq(tuple(got),
                  (sum(r[3] for r in rows), min(r[1] for r in rows), max(r[1] for r in rows)),
                  "sum(num), min(ts), max(ts)")
    finally:
        await conn.close()


async def type_introspection():
    """Types asyncpg has no built-in codec for are looked up in pg_catalog on first use: a
    table's row type (a composite of every column type) from rows on both shards, on fresh
    connections, inside and outside a transaction."""
    id_list = ids("extra", 6, extra=600)
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        ref = reference_row()
        for i in id_list:
            await conn.execute(INSERT_ALL, i, *[ref[c] for c in COLUMNS])
    finally:
        await conn.close()
    for in_tx in (True, False):
        conn = await asyncpg.connect(URL, timeout=10)  # fresh: empty type cache, no codecs
        try:
            tr = conn.transaction()
            if in_tx:
                await tr.start()
            for i in id_list:
                # Outside a transaction a fresh session may read a replica: the rows were
                # committed (and read in the transaction) a moment ago, so allow for lag.
                for _ in range(50):
                    row = await conn.fetchval("SELECT m FROM matrix_items m WHERE id = $1", i)
                    if row is not None or in_tx:
                        break
                    await asyncio.sleep(0.1)
                expect(row is not None, f"row type of id {i} is NULL")
                got = dict(zip(["id"] + COLUMNS, tuple(row)))
                got["j"] = json.loads(got["j"])  # no codec on this connection: jsonb is text
                expect_eq(got["id"], i, "id in the row type")
                compare_row(got, ref, f"row type of id {i} (in transaction: {in_tx})")
            if in_tx:
                await tr.commit()
        finally:
            await conn.close()


async def pool_concurrency():
    """A Pool of 10 connections serving 200 concurrent queries (key reads, transactions,
    cross-shard counts); every answer checked."""
    id_list = ids("extra", 50, extra=1000)
    pool = await asyncpg.create_pool(URL, min_size=10, max_size=10, init=jsonb_codec, timeout=10)
    try:
        async with pool.acquire() as conn:
            await delete_ids(conn, id_list)
            for i in id_list:
                await conn.execute("INSERT INTO matrix_items (id, i) VALUES ($1, $2)", i, i % 1000)
        # Key reads outside transactions go to replicas, and only the inserting session is
        # guaranteed to read its own writes: wait until a fresh session sees every row.
        other = await asyncpg.connect(URL, timeout=10)
        try:
            for _ in range(100):
                rows = await other.fetch("SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2",
                                         id_list[0], id_list[-1])
                if rows[0][0] == len(id_list):
                    break
                await asyncio.sleep(0.05)
        finally:
            await other.close()

        async def one(k):
            i = id_list[k % len(id_list)]
            kind = k % 4
            if kind == 0:
                return await pool.fetchval("SELECT i FROM matrix_items WHERE id = $1", i) == i % 1000
            if kind == 1:
                async with pool.acquire() as c:
                    async with c.transaction():
                        await c.execute("UPDATE matrix_items SET note = $1 WHERE id = $2", f"n{k}", i)
                        return await c.fetchval("SELECT note FROM matrix_items WHERE id = $1", i) == f"n{k}"
            if kind == 2:
                async with pool.acquire() as c:
                    async with c.transaction():
                        rows = await c.fetch("SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2",
                                             id_list[0], id_list[-1])
                return rows[0][0] == len(id_list)
            return await pool.fetchval("SELECT $1::int + 1", k) == k + 1

        began = time.monotonic()
        results = await asyncio.gather(*(one(k) for k in range(200)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        wrong = [k for k, ok in enumerate(results) if not ok]
        expect(not wrong, f"{len(wrong)} of 200 answers were wrong (first: query {wrong[:1]})")
        log(f"asyncpg: 200 pooled queries in {time.monotonic() - began:.2f} s")
    finally:
        await asyncio.wait_for(pool.close(), 20)


async def copy():
    """copy_records_to_table (COPY … FROM STDIN, binary) and copy_from_query (COPY … TO)."""
    id_list = ids("copy", 10)
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        status = await conn.copy_records_to_table(
            "matrix_items", records=[(i, i % 100, f"copy {i}") for i in id_list],
            columns=["id", "i", "t"])
        expect_eq(status, f"COPY {len(id_list)}", "COPY FROM status")
        out = io.BytesIO()
        await conn.copy_from_query("SELECT id, i, t FROM matrix_items WHERE id BETWEEN $1 AND $2 "
                                   "ORDER BY id", id_list[0], id_list[-1], output=out, format="text")
        expect_eq(out.getvalue().decode(), "".join(f"{i}\t{i % 100}\tcopy {i}\n" for i in id_list),
                  "COPY TO output")
    finally:
        await conn.close()


async def copy_shard_hint():
    """copy_records_to_table and copy_from_query pinned to one shard with SET
    shardgate.shard (asyncpg writes the COPY text itself, so no comment hint), for ids that
    live there."""
    id_list = same_shard_ids(BASE + OFF["copy"] + 200, 10)
    shard = shards_of(id_list[:1])[id_list[0]]
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        await conn.execute(f"SET shardgate.shard = '{shard}'")
        status = await conn.copy_records_to_table(
            "matrix_items", records=[(i, i % 100, f"copy {i}") for i in id_list],
            columns=["id", "i", "t"])
        expect_eq(status, f"COPY {len(id_list)}", "COPY FROM status")
        out = io.BytesIO()
        await conn.copy_from_query("SELECT id, i, t FROM matrix_items WHERE id = ANY($1::bigint[]) "
                                   "ORDER BY id", id_list, output=out, format="text")
        expect_eq(out.getvalue().decode(), "".join(f"{i}\t{i % 100}\tcopy {i}\n" for i in id_list),
                  "COPY TO output")
        await conn.execute("RESET shardgate.shard")
        for i in id_list:
            expect_eq(await conn.fetchval("SELECT t FROM matrix_items WHERE id = $1", i), f"copy {i}",
                      f"SELECT {i} after COPY")
    finally:
        await conn.close()


async def cancel():
    """wait_for(..., timeout): asyncpg sends a CancelRequest on timeout and waits until the
    server has stopped the statement (57014 is consumed by the driver); the connection must
    answer at once afterwards, so the sleep really was cancelled."""
    conn = await connect()
    try:
        began = time.monotonic()
        try:
            await conn.fetchval("SELECT pg_sleep(10)", timeout=1.0)
            raise CheckFailed("pg_sleep(10) completed despite the timeout")
        except asyncio.TimeoutError:
            pass
        expect_eq(await conn.fetchval("SELECT 2", timeout=5), 2, "SELECT 2 after the cancel")
        took = time.monotonic() - began
        expect(took < 5, f"timeout + cancel + next query took {took:.1f} s")
    finally:
        await conn.close()


async def cancel_task():
    """task.cancel() on a running query, then the connection answers at once."""
    conn = await connect()
    try:
        began = time.monotonic()
        task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(1.0)
        task.cancel()
        try:
            await task
            raise CheckFailed("pg_sleep(10) completed despite task.cancel()")
        except asyncio.CancelledError:
            pass
        expect_eq(await conn.fetchval("SELECT 2", timeout=5), 2, "SELECT 2 after the cancel")
        took = time.monotonic() - began
        expect(took < 5, f"cancel + next query took {took:.1f} s")
    finally:
        await conn.close()


async def fetchval_cross_shard():
    """fetchval/fetchrow of a cross-shard read (asyncpg sends Execute with a row limit of 1):
    the most common asyncpg idiom for count(*) and friends."""
    lo, hi = BASE + OFF["cross_shard_read"], BASE + OFF["cross_shard_read"] + 999
    rows = cross_rows(lo)
    conn = await connect()
    try:
        n = await conn.fetchval("SELECT count(*) FROM matrix_items WHERE id BETWEEN $1 AND $2", lo, hi)
        expect_eq(n, len(rows), "fetchval(count(*))")
        row = await conn.fetchrow("SELECT id FROM matrix_items WHERE id BETWEEN $1 AND $2 "
                                  "ORDER BY id LIMIT 1", lo, hi)
        expect_eq(row[0], rows[0]["id"], "fetchrow(ORDER BY id LIMIT 1)")
    finally:
        await conn.close()


async def cursor_cross_shard():
    """A cursor over several shards inside a transaction: iterating it sends Execute with a
    row limit (prefetch) again and again on one portal; fetch(n) does the same."""
    lo, hi = BASE + OFF["cross_shard_read"], BASE + OFF["cross_shard_read"] + 999
    rows = cross_rows(lo)
    want = sorted(r["id"] for r in rows)
    conn = await connect()
    try:
        async with conn.transaction():
            sql = "SELECT id FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY id"
            got = [r[0] async for r in conn.cursor(sql, lo, hi, prefetch=7)]
            expect_eq(got, want, "rows of an iterated cursor")
            cur = await conn.cursor(sql, lo, hi)
            first = [r[0] for r in await cur.fetch(5)]
            second = [r[0] for r in await cur.fetch(5)]
            expect_eq(first + second, want[:10], "two fetch(5) of one cursor")
    finally:
        await conn.close()


async def prepare_error():
    """A statement the server rejects when asyncpg prepares it (Parse, Describe, Flush, Sync):
    the driver must get the error and the connection must go on working. Runs last: the proxy
    bug it found leaks the backend."""
    conn = await connect()
    try:
        try:
            await conn.fetch("SELECT no_such_column FROM matrix_items WHERE id = $1", 1)
            raise CheckFailed("a statement naming no_such_column was accepted")
        except asyncpg.PostgresError as exc:
            expect_sqlstate(exc, "42703", "prepare of a bad statement")
        try:
            got = await conn.fetchval("SELECT 2", timeout=5)
        except asyncio.TimeoutError:
            raise CheckFailed("the next query on the connection got no answer within 5 s")
        expect_eq(got, 2, "SELECT 2 after the failed prepare")
    finally:
        conn.terminate()


async def multi_shard_update():
    """UPDATE and DELETE … WHERE id IN ($2, …) over ids on both shards (named prepared
    statements): the proxy runs them on every shard that holds rows (two-phase commit) and
    sums the counts; inside a transaction the UPDATE joins it and is undone by its ROLLBACK."""
    id_list = ids("multi_shard_update", 8)
    expect(len(set(shards_of(id_list).values())) == 2, "the ids do not cover both shards")
    n = len(id_list)
    in_ids = "id IN (" + ", ".join(f"${k}" for k in range(2, n + 2)) + ")"
    update = f"UPDATE matrix_items SET note = $1 WHERE {in_ids}"
    conn = await connect()
    try:
        await delete_ids(conn, id_list)
        for i in id_list:
            await conn.execute("INSERT INTO matrix_items (id, t) VALUES ($1, 'multi')", i)
        expect_eq(await conn.execute(update, "first", *id_list), f"UPDATE {n}",
                  "UPDATE … WHERE id IN (…)")
        tr = conn.transaction()
        await tr.start()
        expect_eq(await conn.execute(update, "second", *id_list), f"UPDATE {n}",
                  "UPDATE inside the transaction")
        rows = await conn.fetch(f"SELECT count(*) FROM matrix_items WHERE note = $1 AND {in_ids}",
                                "second", *id_list)
        expect_eq(rows[0][0], n, "rows the transaction sees updated")
        await tr.rollback()
        in_ids1 = "id IN (" + ", ".join(f"${k}" for k in range(1, n + 1)) + ")"
        rows = await conn.fetch(f"SELECT id, note FROM matrix_items WHERE {in_ids1} ORDER BY id",
                                *id_list)
        expect_eq([tuple(r) for r in rows], [(i, "first") for i in id_list], "notes after ROLLBACK")
        expect_eq(await conn.execute(f"DELETE FROM matrix_items WHERE {in_ids1}", *id_list),
                  f"DELETE {n}", "DELETE … WHERE id IN (…)")
        rows = await conn.fetch(f"SELECT count(*) FROM matrix_items WHERE {in_ids1}", *id_list)
        expect_eq(rows[0][0], 0, "rows after the DELETE")
    finally:
        await conn.close()


async def refused_error():
    """Writes to several shards of matrix_guarded (`multi_shard_writes: refuse` in the map)."""
    conn = await connect()
    try:
        for sql, args in (("UPDATE matrix_guarded SET note = 'x'", ()),  # simple protocol
                          ("UPDATE matrix_guarded SET note = $1", ("x",)),  # extended
                          ("DELETE FROM matrix_guarded WHERE note = $1", ("x",))):
            try:
                await conn.execute(sql, *args)
                raise CheckFailed(f"{sql!r} was accepted")
            except asyncpg.PostgresError as exc:
                expect_sqlstate(exc, "0A000", sql)
                expect("matrix_guarded" in str(exc), f"the refusal does not name the table: {exc}")
            expect_eq(await conn.fetchval("SELECT 1"), 1, "SELECT 1 after the refusal")
    finally:
        await conn.close()


async def main():
    r = Reporter("asyncpg", asyncpg.__version__)
    for name, fn in [
        ("connect", check_connect), ("key_read_write", key_read_write),
        ("types_roundtrip", types_roundtrip), ("transaction_commit", transaction_commit),
        ("transaction_rollback", transaction_rollback), ("transaction_error", transaction_error),
        ("prepared_reuse", prepared_reuse), ("cross_shard_read", cross_shard_read),
        ("copy", copy), ("copy_shard_hint", copy_shard_hint), ("cancel", cancel),
        ("refused_error", refused_error),
        ("statement_cache_off", statement_cache_off), ("binary", binary),
        ("type_introspection", type_introspection), ("pool_concurrency", pool_concurrency),
        ("cancel_task", cancel_task), ("transaction_span", transaction_span),
        ("executemany_span", executemany_span),
        ("multi_shard_update", multi_shard_update),
        ("fetchval_cross_shard", fetchval_cross_shard),
        ("cursor_cross_shard", cursor_cross_shard),
        ("prepare_error", prepare_error),  # last: see its docstring
    ]:
        await r.run_async(name, fn)
    r.finish()


if __name__ == "__main__":
    asyncio.run(main())
