"""psycopg2 against shardgate: the shared checks, SQL-level PREPARE/EXECUTE reused across
transactions, COPY through copy_expert, cancel through connection.cancel().

Ids 2_000_000-2_999_999. psycopg2 inlines parameters client-side, so everything it sends is a
simple Query; its default (autocommit off) opens a transaction before the first statement.
"""

import contextlib
import io

import psycopg2
import psycopg2.extras

import dbapi_checks as checks
from common import OFF, URL, Reporter, expect_eq, same_shard_ids, shards_of

psycopg2.extras.register_uuid()


class Psycopg2(checks.Driver):
    name = "psycopg2"
    base = 2_000_000

    def raw(self, autocommit=True):
        conn = psycopg2.connect(URL, connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def connect(self, autocommit=True):
        # psycopg2's `with conn` ends a transaction but does not close: close explicitly.
        return contextlib.closing(self.raw(autocommit))

    def jsonb(self, obj):
        return psycopg2.extras.Json(obj)


D = Psycopg2()


def prepared_reuse():
    """SQL-level PREPARE once per session, EXECUTE in every transaction: the proxy rewrites
    them so they follow the client to whichever backend it gets."""
    def connect_one():
        conn = D.raw(autocommit=True)
        cur = conn.cursor()
        cur.execute("PREPARE ins (bigint, int) AS INSERT INTO matrix_items (id, i) VALUES ($1, $2)")
        cur.execute("PREPARE upd (bigint) AS UPDATE matrix_items SET note = 'reused' WHERE id = $1")
        cur.execute("PREPARE sel (bigint) AS SELECT i FROM matrix_items WHERE id = $1")
        conn.autocommit = False
        return conn

    def run_tx(conn, i, value):
        cur = conn.cursor()
        cur.execute("EXECUTE ins (%s, %s)", (i, value))
        cur.execute("EXECUTE upd (%s)", (i,))
        cur.execute("EXECUTE sel (%s)", (i,))
        got = cur.fetchone()[0]
        conn.commit()
        return got

    checks.prepared_reuse(D, connect_one, run_tx)


def copy():
    """copy_expert: COPY FROM STDIN into matrix_items, then COPY TO STDOUT of the same rows."""
    base = D.base + OFF["copy"]
    ids = [base + k for k in range(1, 11)]
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, ids)
        data = "".join(f"{i}\t{i % 100}\tcopy {i}\n" for i in ids)
        cur.copy_expert("COPY matrix_items (id, i, t) FROM STDIN", io.StringIO(data))
        expect_eq(cur.rowcount, len(ids), "COPY FROM row count")
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT id, i, t FROM matrix_items WHERE id BETWEEN {ids[0]} "
                        f"AND {ids[-1]} ORDER BY id) TO STDOUT", out)
        expect_eq(out.getvalue(), data, "COPY TO output")


def copy_to_key():
    """COPY (SELECT … WHERE id = key) TO STDOUT: a COPY that one shard can answer."""
    i = D.base + OFF["copy"] + 100
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, [i])
        cur.execute("INSERT INTO matrix_items (id, t) VALUES (%s, 'one')", (i,))
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT id, t FROM matrix_items WHERE id = {i}) TO STDOUT", out)
        expect_eq(out.getvalue(), f"{i}\tone\n", "COPY TO of one key")


def copy_shard_hint():
    """copy_expert pinned to one shard with SET shardgate.shard (the workaround while COPY
    into sharded tables is refused), for ids that live there."""
    ids = same_shard_ids(D.base + OFF["copy"] + 200, 10)
    shard = shards_of(ids[:1])[ids[0]]
    with D.connect() as conn:
        cur = conn.cursor()
        checks.delete_ids(cur, ids)
        cur.execute(f"SET shardgate.shard = '{shard}'")
        data = "".join(f"{i}\t{i % 100}\tcopy {i}\n" for i in ids)
        cur.copy_expert("COPY matrix_items (id, i, t) FROM STDIN", io.StringIO(data))
        expect_eq(cur.rowcount, len(ids), "COPY FROM row count")
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id, i, t FROM matrix_items WHERE id = ANY('{%s}') ORDER BY id) "
                        "TO STDOUT" % ",".join(map(str, ids)), out)
        expect_eq(out.getvalue(), data, "COPY TO output")
        cur.execute("RESET shardgate.shard")
        for i in ids:
            cur.execute("SELECT t FROM matrix_items WHERE id = %s", (i,))
            expect_eq(cur.fetchall(), [(f"copy {i}",)], f"SELECT {i} after COPY")


def main():
    r = Reporter("psycopg2", psycopg2.__version__.split()[0])
    checks.run_shared(r, D)
    r.run("prepared_reuse", prepared_reuse)
    r.run("copy", copy)
    r.run("cancel", checks.cancel, D, lambda conn: conn.cancel())
    r.run("refused_error", checks.refused_error, D, [
        ("UPDATE matrix_guarded SET note = 'x'", None),
        ("DELETE FROM matrix_guarded WHERE note = %s", ("x",)),
    ])
    r.run("copy_to_key", copy_to_key)
    r.run("copy_shard_hint", copy_shard_hint)
    r.finish()


if __name__ == "__main__":
    main()
