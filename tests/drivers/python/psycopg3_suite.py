"""psycopg 3 against shardgate: the shared checks plus server-side binding, prepare=True,
pipeline mode, binary results, COPY, cancel_safe and ClientCursor (the simple protocol).

Ids 1_000_000-1_999_999. psycopg 3 binds parameters server-side (Parse/Bind/Execute), prepares
a statement by name after prepare_threshold (5) executions, and sends parameterless texts as
simple queries, so the shared checks exercise both protocols.
"""

import psycopg
from psycopg.types.json import Jsonb

import dbapi_checks as checks
from common import (COLUMNS, OFF, URL, CheckFailed, Reporter, compare_row, cross_rows, expect,
                    expect_eq, log, reference_row, same_shard_ids, shards_of)


class Psycopg3(checks.Driver):
    name = "psycopg3"
    base = 1_000_000

    def connect(self, autocommit=True, **kw):
        return psycopg.connect(URL, autocommit=autocommit, connect_timeout=10, **kw)

    def jsonb(self, obj):
        return Jsonb(obj)


D = Psycopg3()


def run_tx_default(conn, i, value):
    """One transaction of the same three statements; psycopg prepares them after 5 uses."""
    with conn.transaction():
        conn.execute("INSERT INTO matrix_items (id, i) VALUES (%s, %s)", (i, value))
        conn.execute("UPDATE matrix_items SET note = %s WHERE id = %s", ("reused", i))
        return conn.execute("SELECT i FROM matrix_items WHERE id = %s", (i,)).fetchone()[0]


def prepared_reuse():
    checks.prepared_reuse(D, lambda: D.connect(), run_tx_default)


def prepare_true():
    """prepare_threshold=0 and prepare=True: every statement is a named server-side statement
    from its first use, reused across transactions on 10 sessions; plus a prepared
    cross-shard aggregate executed repeatedly."""
    def connect_one():
        return D.connect(prepare_threshold=0)

    def run_tx(conn, i, value):
        with conn.transaction():
            conn.execute("INSERT INTO matrix_items (id, i) VALUES (%s, %s)", (i + 500, value),
                         prepare=True)
            row = conn.execute("SELECT i FROM matrix_items WHERE id = %s", (i + 500,),
                               prepare=True).fetchone()
        # A prepared cross-shard read, outside the transaction (inside, it would make the
        # transaction span both shards; transaction_span covers that).
        n = conn.execute("SELECT count(*) FROM matrix_items WHERE id BETWEEN %s AND %s",
                         (i + 500, i + 500), prepare=True).fetchone()[0]
        expect_eq(n, 1, f"prepared cross-shard count(*) for id {i + 500}")
        return row[0]

    checks.prepared_reuse(D, connect_one, run_tx, clients=10, per_client=6)
    with D.connect(prepare_threshold=0) as conn:
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        psycopg_log(f"pg_prepared_statements on the backend this session landed on: {prepared}")


def psycopg_log(text):
    log(f"psycopg3: {text}")


def server_side_binding():
    """Parameters bound server-side decide the route at Bind: an id array spanning shards
    (= ANY($1)), a binary int8 key, and NULL parameters."""
    base = D.base + OFF["extra"]
    ids = [base + k for k in range(1, 9)]
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, ids)
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, t, note) VALUES (%s, %s, %s)",
                        (i, f"ssb{i}", None))
        cur.execute("SELECT id, t FROM matrix_items WHERE id = ANY(%s) ORDER BY id", (ids,))
        expect_eq(cur.fetchall(), [(i, f"ssb{i}") for i in ids], "WHERE id = ANY(%s)")
        cur.execute("SELECT t FROM matrix_items WHERE id = %s", (ids[3],), binary=True)
        expect_eq(cur.fetchall(), [(f"ssb{ids[3]}",)], "binary parameter key")
        cur.execute("SELECT count(*) FROM matrix_items WHERE id = ANY(%s) AND note IS NULL",
                    (ids,))
        expect_eq(cur.fetchone()[0], len(ids), "count with = ANY")
        expect(type(cur) is psycopg.Cursor, f"not a server-side binding cursor: {type(cur)}")


def client_cursor():
    """ClientCursor: parameters inlined client-side, the simple protocol (multi-statement
    texts allowed), for key reads and writes and a cross-shard read."""
    base = D.base + OFF["extra"] + 100
    ids = [base + k for k in range(1, 7)]
    with D.connect() as conn:
        cur = psycopg.ClientCursor(conn)
        checks.delete_ids(cur, ids)
        for i in ids:
            cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, %s); "
                        "UPDATE matrix_items SET i = %s WHERE id = %s", (i, f"cc{i}", i % 97, i))
        for i in ids:
            cur.execute("SELECT i, t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [(i % 97, f"cc{i}")], f"ClientCursor SELECT {i}")
        cur.execute("SELECT count(*), sum(i) FROM matrix_items WHERE id BETWEEN %s AND %s",
                    (ids[0], ids[-1]))
        expect_eq(tuple(cur.fetchone()), (len(ids), sum(i % 97 for i in ids)),
                  "ClientCursor cross-shard aggregate")
        checks.types_roundtrip(D, cursor_factory=psycopg.ClientCursor)


def _pipeline(ids):
    """Many statements before one Sync, results read after; then an error inside a
    pipelined transaction aborts what follows it, and the connection recovers."""
    with D.connect() as conn:
        checks.delete_ids(conn.cursor(), ids)
        with conn.pipeline():
            cur = conn.cursor()
            cur.executemany("INSERT INTO matrix_items (id, i) VALUES (%s, %s)",
                            [(i, i % 1000) for i in ids])
            cursors = []
            for i in ids:
                c = conn.cursor()
                c.execute("SELECT id, i FROM matrix_items WHERE id = %s", (i,))
                cursors.append(c)
        for i, c in zip(ids, cursors):
            expect_eq(c.fetchall(), [(i, i % 1000)], f"pipelined SELECT {i}")

        try:
            with conn.pipeline(), conn.transaction():
                conn.execute("UPDATE matrix_items SET note = 'p' WHERE id = %s", (ids[0],))
                conn.execute("INSERT INTO matrix_items (id) VALUES (%s)", (ids[1],))  # duplicate
                conn.execute("UPDATE matrix_items SET note = 'p' WHERE id = %s", (ids[2],))
            raise CheckFailed("a duplicate key in a pipeline was accepted")
        except psycopg.errors.UniqueViolation:
            pass
        with conn.pipeline():
            notes = [conn.execute("SELECT note FROM matrix_items WHERE id = %s", (i,))
                     for i in ids[:3]]
        expect_eq([c.fetchone()[0] for c in notes], [None, None, None],
                  "writes of the failed pipelined transaction")


def pipeline():
    """conn.pipeline() with every statement on one shard."""
    _pipeline(same_shard_ids(D.base + OFF["extra"] + 200, 10))


def pipeline_span():
    """conn.pipeline() with statements on both shards before one Sync (bulk writes by key,
    the usual reason to pipeline)."""
    base = D.base + OFF["extra"] + 250
    ids = [base + k for k in range(1, 21)]
    expect(len(set(shards_of(ids).values())) == 2, "the ids do not cover both shards")
    _pipeline(ids)


def binary():
    """cursor(binary=True): every type in binary, single-shard and merged cross-shard."""
    i = D.base + OFF["extra"] + 300
    ref = reference_row()
    rows = cross_rows(D.base + OFF["extra"] + 400, n=20)
    with D.connect() as conn:
        cur = conn.cursor(binary=True)
        checks.delete_ids(cur, [i] + [r["id"] for r in rows])
        cur.execute(checks.INSERT_ALL, [i] + checks.values_of(D, ref))
        cur.execute(checks.SELECT_ALL, (i,))
        compare_row(dict(zip(COLUMNS, cur.fetchone())), ref, f"binary id {i}")
        for r in rows:
            cur.execute("INSERT INTO matrix_items (id, i, big, num, t, flag) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (r["id"], r["i"], r["big"], r["num"], r["t"], r["flag"]))
        lo, hi = rows[0]["id"] - 1, rows[-1]["id"]
        checks.run_cross_queries(cur, lo, hi, rows)
        cur.execute("SELECT id, num, t FROM matrix_items WHERE id BETWEEN %s AND %s ORDER BY num DESC, id",
                    (lo, hi))
        want = sorted(((r["id"], r["num"], r["t"]) for r in rows), key=lambda x: (-x[1], x[0]))
        expect_eq(cur.fetchall(), want, "binary ORDER BY num DESC")


def copy():
    """COPY FROM STDIN into matrix_items, then COPY TO STDOUT of the same rows."""
    base = D.base + OFF["copy"]
    ids = [base + k for k in range(1, 11)]
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, ids)
        with cur.copy("COPY matrix_items (id, i, t) FROM STDIN") as cp:
            for i in ids:
                cp.write_row((i, i % 100, f"copy {i}"))
        expect_eq(cur.rowcount, len(ids), "COPY FROM row count")
        got = []
        with cur.copy("COPY (SELECT id, i, t FROM matrix_items WHERE id BETWEEN %s AND %s "
                      "ORDER BY id) TO STDOUT" % (ids[0], ids[-1])) as cp:
            for row in cp.rows():
                got.append(row)
        expect_eq(got, [(str(i), str(i % 100), f"copy {i}") for i in ids], "COPY TO rows")


def copy_to_key():
    """COPY (SELECT … WHERE id = key) TO STDOUT: a COPY that one shard can answer."""
    i = D.base + OFF["copy"] + 100
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, [i])
        cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'one')", (i,))
        with cur.copy(f"COPY (SELECT id, t FROM matrix_items WHERE id = {i}) TO STDOUT") as cp:
            got = list(cp.rows())
        expect_eq(got, [(str(i), "one")], "COPY TO of one key")


def copy_shard_hint():
    """COPY FROM STDIN and COPY TO STDOUT pinned to one shard with SET shardgate.shard (the
    workaround while COPY into sharded tables is refused), for ids that live there."""
    ids = same_shard_ids(D.base + OFF["copy"] + 200, 10)
    shard = shards_of(ids[:1])[ids[0]]
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, ids)
        cur.execute(f"SET shardgate.shard = '{shard}'")
        with cur.copy("COPY matrix_items (id, i, t) FROM STDIN") as cp:
            for i in ids:
                cp.write_row((i, i % 100, f"copy {i}"))
        expect_eq(cur.rowcount, len(ids), "COPY FROM row count")
        with cur.copy("COPY (SELECT id, i, t FROM matrix_items WHERE id = ANY('{%s}') ORDER BY id) "
                      "TO STDOUT" % ",".join(map(str, ids))) as cp:
            got = list(cp.rows())
        expect_eq(got, [(str(i), str(i % 100), f"copy {i}") for i in ids], "COPY TO rows")
        cur.execute("RESET shardgate.shard")
        for i in ids:  # routed by key again
            cur.execute("SELECT t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [(f"copy {i}",)], f"SELECT {i} after COPY")


def cancel():
    checks.cancel(D, lambda conn: conn.cancel())


def cancel_safe():
    checks.cancel(D, lambda conn: conn.cancel_safe(timeout=5), "cancel_safe")


def refused_error():
    checks.refused_error(D, [
        ("UPDATE matrix_guarded SET note = 'x'", None),           # simple protocol
        ("UPDATE matrix_guarded SET note = %s", ("x",)),          # extended protocol
        ("DELETE FROM matrix_guarded WHERE note = %s", ("x",)),
    ])


def main():
    r = Reporter("psycopg3", psycopg.__version__)
    checks.run_shared(r, D)
    r.run("prepared_reuse", prepared_reuse)
    r.run("copy", copy)
    r.run("cancel", cancel)
    r.run("refused_error", refused_error)
    r.run("server_side_binding", server_side_binding)
    r.run("prepare_true", prepare_true)
    r.run("pipeline", pipeline)
    r.run("pipeline_span", pipeline_span)
    r.run("binary", binary)
    r.run("client_cursor", client_cursor)
    r.run("copy_to_key", copy_to_key)
    r.run("copy_shard_hint", copy_shard_hint)
    r.run("cancel_safe", cancel_safe)
    r.finish()


if __name__ == "__main__":
    main()
