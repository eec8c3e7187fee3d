// postgres.js (`postgres`) against shardgate. It prepares every tagged query (prepare: true by
// default) and pipelines concurrent queries on one connection. Ids 5_000_000–5_999_999 of
// matrix_items belong to this suite; every cross-shard check filters by that range.
'use strict';

const postgres = require('postgres');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');
const pg = require('pg'); // only to read the shard names from the admin console
const { env, fail, assertEqual, eventually, expectSqlstate, runChecks } = require('./common');

const DRIVER = 'postgres.js';
// postgres.js does not export its package.json; it sits two folders above its CommonJS entry.
const VERSION = JSON.parse(require('node:fs').readFileSync(
  require('node:path').join(require.resolve('postgres'), '../../../package.json'))).version;
const LO = 5_000_000;
const HI = 5_999_999;

function connect(extra = {}) {
  return postgres({
    host: env.host, port: env.port, user: env.user, password: env.password, database: env.database,
    max: 4, connect_timeout: 10, idle_timeout: 5, onnotice: () => {}, ...extra,
  });
}

/** Runs `fn` with a fresh `sql` and always ends it. */
async function withSql(fn, extra) {
  const sql = connect(extra);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}

// Clean up the id range shard by shard, one single-shard DELETE each (with a hint), so the
// setup does not depend on the writes to several shards that multi_shard_update checks.
async function clean() {
  const admin = new pg.Client({ connectionString: env.adminUrl });
  await admin.connect();
  const shards = (await admin.query('SHOW SHARDS')).rows.map((r) => r.shard);
  await admin.end();
  await withSql(async (sql) => {
    for (const s of shards) await sql.unsafe(`/* shard: ${s} */ DELETE FROM matrix_items WHERE id BETWEEN ${LO} AND ${HI}`);
  });
}

async function checkConnect() {
  await withSql(async (sql) => {
    const rows = await sql`SELECT 1 AS one`;
    assertEqual([...rows], [{ one: 1 }], 'SELECT 1');
  });
}

async function keyReadWrite() {
  await withSql(async (sql) => {
    const id = LO + 1;
    await sql`INSERT INTO matrix_items (id, t) VALUES (${id}, ${'first'})`;
    assertEqual([...await sql`SELECT t FROM matrix_items WHERE id = ${id}`], [{ t: 'first' }], 'after INSERT');
    const u = await sql`UPDATE matrix_items SET t = ${'second'} WHERE id = ${id}`;
    assertEqual(u.count, 1, 'UPDATE count');
    assertEqual([...await sql`SELECT t FROM matrix_items WHERE id = ${id}`], [{ t: 'second' }], 'after UPDATE');
    const d = await sql`DELETE FROM matrix_items WHERE id = ${id}`;
    assertEqual(d.count, 1, 'DELETE count');
    assertEqual([...await sql`SELECT t FROM matrix_items WHERE id = ${id}`], [], 'after DELETE');
  });
}

async function typesRoundtrip() {
  const ts = new Date('2024-02-29T12:34:56.789Z');
  const sent = {
    i: 2147483647, big: '9007199254740993', num: '12345678901234.56789', f: 3.141592653589793,
    t: "héllo 'quoted' \\ ☺", b: Buffer.from([0, 1, 2, 92, 255]), flag: true, d: '2024-02-29',
    u: '6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f', j: { a: 1, b: [true, null, 'x'] }, arr: [1, -2, 3],
  };
  await withSql(async (sql) => {
    const id = LO + 10;
    await sql`INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note)
      VALUES (${id}, ${sent.i}, ${sent.big}, ${sent.num}, ${sent.f}, ${sent.t}, ${sent.b}, ${sent.flag},
              ${sent.d}, ${ts}, ${sent.u}, ${sql.json(sent.j)}, ${sent.arr}, ${null})`;
    await sql`INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note)
      VALUES (${id + 1}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null}, ${null})`;
    const [row] = await sql`SELECT * FROM matrix_items WHERE id = ${id}`;
    if (!row) fail('row not found');
    for (const k of ['i', 'big', 'num', 'f', 't', 'flag', 'u', 'j', 'arr']) assertEqual(row[k], sent[k], k);
    if (!Buffer.isBuffer(row.b) || !row.b.equals(sent.b)) fail(`b: got ${JSON.stringify(row.b)}`);
    if (!(row.d instanceof Date) || row.d.toISOString().slice(0, 10) !== sent.d) fail(`d: got ${row.d}`);
    if (!(row.ts instanceof Date) || row.ts.getTime() !== ts.getTime()) fail(`ts: got ${row.ts}`);
    assertEqual(row.note, null, 'note (NULL)');
    const [nulls] = await sql`SELECT * FROM matrix_items WHERE id = ${id + 1}`;
    for (const [k, v] of Object.entries(nulls)) if (k !== 'id') assertEqual(v, null, `NULL ${k}`);
  });
}

async function transactionCommit() {
  await withSql(async (sql) => {
    const id = LO + 20;
    await sql.begin(async (tx) => {
      await tx`INSERT INTO matrix_items (id, note) VALUES (${id}, 'tx')`;
      await tx`UPDATE matrix_items SET note = 'tx-updated' WHERE id = ${id}`;
    });
    assertEqual([...await sql`SELECT note FROM matrix_items WHERE id = ${id}`], [{ note: 'tx-updated' }], 'committed row');
  });
}

async function transactionRollback() {
  await withSql(async (sql) => {
    const id = LO + 21;
    const marker = new Error('roll back');
    try {
      await sql.begin(async (tx) => {
        await tx`INSERT INTO matrix_items (id, note) VALUES (${id}, 'rolled back')`;
        assertEqual((await tx`SELECT note FROM matrix_items WHERE id = ${id}`).length, 1, 'row inside the transaction');
        throw marker;
      });
    } catch (err) {
      if (err !== marker) throw err;
    }
    assertEqual([...await sql`SELECT note FROM matrix_items WHERE id = ${id}`], [], 'row after ROLLBACK');
  });
}

// sql.begin rolls back on the error; the reserved connection shows the aborted state (25P02).
async function transactionError() {
  await withSql(async (sql) => {
    const id = LO + 22;
    await expectSqlstate(sql.begin(async (tx) => {
      await tx`INSERT INTO matrix_items (id, note) VALUES (${id}, 'doomed')`;
      await tx`SELECT 1 / ${0}::int AS boom`;
    }), '22012', 'sql.begin with a division by zero');
    assertEqual([...await sql`SELECT note FROM matrix_items WHERE id = ${id}`], [], 'row after the failed sql.begin');
    const conn = await sql.reserve();
    try {
      await conn.unsafe('BEGIN');
      await conn`INSERT INTO matrix_items (id, note) VALUES (${id + 1}, 'doomed')`;
      await expectSqlstate(conn`SELECT 1 / ${0}::int AS boom`, '22012', 'division by zero');
      await expectSqlstate(conn`SELECT note FROM matrix_items WHERE id = ${id + 1}`, '25P02', 'statement after the error');
      await conn.unsafe('ROLLBACK');
    } finally {
      conn.release();
    }
    assertEqual([...await sql`SELECT note FROM matrix_items WHERE id = ${id + 1}`], [], 'row after ROLLBACK');
  });
}

// The same prepared statements in 60 transactions from 10 connections at once (more clients
// than the pool of 3 per server), so they run on backends that never saw the Parse.
async function preparedReuse() {
  const base = LO + 1000;
  await withSql(async (sql) => {
    const worker = async (w) => {
      for (let k = 0; k < 6; k++) {
        const id = base + w * 100 + k;
        await sql.begin(async (tx) => {
          await tx`INSERT INTO matrix_items (id, i, note) VALUES (${id}, ${w}, 'prepared')`;
          const rows = await tx`SELECT i, note FROM matrix_items WHERE id = ${id}`;
          assertEqual([...rows], [{ i: w, note: 'prepared' }], `select of ${id}`);
        });
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, w) => worker(w)));
    const count = async () => Number((await sql`SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 999}`)[0].n);
    await eventually(count, 60, 'rows written by the 60 transactions');
  }, { max: 10 });
}

// 200 queries in flight on one connection: postgres.js writes them all before reading.
async function pipelining() {
  await withSql(async (sql) => {
    const id = LO + 2000;
    await sql`INSERT INTO matrix_items (id, i) VALUES (${id}, 41)`;
    const results = await Promise.all(Array.from({ length: 200 }, (_, k) => (k % 2
      ? sql`SELECT ${k}::int AS n`
      : sql`SELECT i + ${k}::int AS n FROM matrix_items WHERE id = ${id}`)));
    results.forEach((rows, k) => assertEqual(rows[0].n, k % 2 ? k : 41 + k, `pipelined query ${k}`));
  }, { max: 1 });
}

// Statements sent as one batch inside a transaction (sql.begin returning an array).
async function pipelinedTransaction() {
  const base = LO + 2100;
  await withSql(async (sql) => {
    await sql.begin((tx) => Array.from({ length: 20 }, (_, k) =>
      tx`INSERT INTO matrix_items (id, i) VALUES (${base + k}, ${k})`));
    const [{ n, s }] = await sql`SELECT count(*) AS n, sum(i) AS s FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 99}`;
    assertEqual([Number(n), Number(s)], [20, 190], 'rows of the pipelined transaction');
  }, { max: 1 });
}

// sql.unsafe without parameters uses the simple query protocol, several statements at once.
async function simpleProtocol() {
  await withSql(async (sql) => {
    const id = LO + 2200;
    await sql.unsafe(`INSERT INTO matrix_items (id, t) VALUES (${id}, 'simple')`);
    const results = await sql.unsafe(`SELECT t FROM matrix_items WHERE id = ${id}; SELECT 2 AS two`);
    assertEqual([[...results[0]], [...results[1]]], [[{ t: 'simple' }], [{ two: 2 }]], 'two result sets');
    const withParam = await sql.unsafe('SELECT t FROM matrix_items WHERE id = $1', [id]);
    assertEqual([...withParam], [{ t: 'simple' }], 'sql.unsafe with a parameter');
  });
}

// prepare: false: unnamed statements only, the same texts across transactions.
async function unprepared() {
  const base = LO + 2300;
  await withSql(async (sql) => {
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let k = 0; k < 7; k++) {
        await sql.begin(async (tx) => {
          await tx`INSERT INTO matrix_items (id, i) VALUES (${base + w * 10 + k}, ${k})`;
        });
      }
    }));
    const count = async () => Number((await sql`SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 99}`)[0].n);
    await eventually(count, 56, 'rows written without prepared statements');
  }, { max: 8, prepare: false });
}

async function crossShardRead() {
  const base = LO + 5000;
  await withSql(async (sql) => {
    const rows = Array.from({ length: 40 }, (_, k) => ({ id: base + k, i: (k * 7) % 40, t: `row ${k}` }));
    for (const r of rows) await sql`INSERT INTO matrix_items ${sql(r, 'id', 'i', 't')}`;
    const top = await sql`SELECT id, i FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 999} ORDER BY i DESC, id LIMIT 5`;
    const want = rows.map(({ id, i }) => ({ id: String(id), i })).sort((a, b) => b.i - a.i || a.id - b.id).slice(0, 5);
    assertEqual([...top], want, 'ORDER BY i DESC LIMIT 5');
    const [agg] = await sql`SELECT count(*) AS n, sum(i) AS s, min(id) AS lo, max(id) AS hi, avg(i) AS a
      FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 999}`;
    const sum = rows.reduce((s, r) => s + r.i, 0);
    assertEqual([agg.n, agg.s, agg.lo, agg.hi, Number(agg.a)], ['40', String(sum), String(base), String(base + 39), sum / 40], 'count/sum/min/max/avg');
  });
}

async function readAll(stream) {
  const chunks = [];
  await pipeline(stream, new Writable({ write(c, _e, done) { chunks.push(c); done(); } }));
  return Buffer.concat(chunks).toString();
}

// COPY FROM STDIN into the sharded table, then COPY (SELECT … by key) TO STDOUT.
async function copy() {
  const base = LO + 7000;
  await withSql(async (sql) => {
    const lines = Array.from({ length: 100 }, (_, k) => `${base + k}\t${k}\tcopied ${k}\n`);
    await pipeline(Readable.from(lines), await sql`COPY matrix_items (id, i, t) FROM STDIN`.writable());
    const [{ n }] = await sql`SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN ${base} AND ${base + 999}`;
    assertEqual(Number(n), 100, 'rows after COPY FROM STDIN');
    const out = await readAll(await sql.unsafe(`COPY (SELECT id, i, t FROM matrix_items WHERE id = ${base + 1}) TO STDOUT`).readable());
    assertEqual(out, lines[1], 'COPY TO STDOUT');
  });
}

async function copyToByKey() {
  const id = LO + 7500;
  await withSql(async (sql) => {
    await sql`INSERT INTO matrix_items (id, i, t) VALUES (${id}, 7, 'x')`;
    const out = await readAll(await sql.unsafe(`COPY (SELECT id, i, t FROM matrix_items WHERE id = ${id}) TO STDOUT`).readable());
    assertEqual(out, `${id}\t7\tx\n`, 'COPY TO STDOUT');
  });
}

async function copyUnmapped() {
  await withSql(async (sql) => {
    await sql.unsafe('DROP TABLE IF EXISTS drivers_copy_postgresjs');
    await sql.unsafe('CREATE TABLE drivers_copy_postgresjs (id bigint PRIMARY KEY, t text)');
    const lines = Array.from({ length: 1000 }, (_, k) => `${k}\tline ${k}\n`);
    await pipeline(Readable.from(lines), await sql`COPY drivers_copy_postgresjs (id, t) FROM STDIN`.writable());
    const out = await readAll(await sql`COPY (SELECT id, t FROM drivers_copy_postgresjs ORDER BY id) TO STDOUT`.readable());
    assertEqual(out, lines.join(''), 'COPY TO STDOUT');
    await sql.unsafe('DROP TABLE drivers_copy_postgresjs');
  });
}

async function cancel() {
  await withSql(async (sql) => {
    const query = sql`SELECT pg_sleep(10)`;
    const done = query.then(() => {});
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    await query.cancel();
    await expectSqlstate(done, '57014', 'cancelled pg_sleep(10)');
    const took = Date.now() - started;
    if (took > 5000) fail(`the cancel took ${took} ms`);
    assertEqual([...await sql`SELECT 2 AS two`], [{ two: 2 }], 'query after the cancel');
  }, { max: 1 });
}

// A first-time prepared statement that fails at Parse: postgres.js sends Parse, Describe and
// Flush, gets the error, then sends Sync. The next statement on the connection must get its
// own answer (a server sends ParseComplete … DataRow … ReadyForQuery for it).
async function parseErrorRecovery() {
  await withSql(async (sql) => {
    await expectSqlstate(sql`SELECT * FROM no_such_table_postgresjs WHERE x = ${1}`, '42P01', 'statement on a missing table');
    const first = await sql`SELECT 1 AS one`;
    const second = await sql`SELECT 2 AS two`;
    assertEqual([[...first], [...second]], [[{ one: 1 }], [{ two: 2 }]], 'the next two statements on the connection');
  }, { max: 1, fetch_types: false });
}

// Writes to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`.
async function refusedError() {
  await withSql(async (sql) => {
    const err = await expectSqlstate(sql`UPDATE matrix_guarded SET note = ${'x'}`, '0A000', 'prepared UPDATE without a key');
    if (!/matrix_guarded/.test(err.message)) fail(`message does not name the table: ${err.message}`);
    await expectSqlstate(sql.unsafe("UPDATE matrix_guarded SET note = 'x'"), '0A000', 'simple UPDATE without a key');
    assertEqual([...await sql`SELECT 3 AS three`], [{ three: 3 }], 'query after the refusal');
  });
}

// UPDATE and DELETE … WHERE id IN ${sql(ids)} over 8 ids (on both shards of the demo's ring),
// as prepared statements: the proxy runs them on every shard that holds rows (two-phase commit)
// and sums the counts; inside sql.begin the UPDATE joins the transaction and is undone when the
// callback throws (ROLLBACK).
async function multiShardUpdate() {
  const ids = Array.from({ length: 8 }, (_, k) => LO + 8001 + k);
  await withSql(async (sql) => {
    const notes = async (q) => [...await q`SELECT note FROM matrix_items WHERE id IN ${q(ids)} ORDER BY id`].map((r) => r.note);
    for (const id of ids) await sql`INSERT INTO matrix_items (id, t) VALUES (${id}, 'multi')`;
    const u = await sql`UPDATE matrix_items SET note = ${'first'} WHERE id IN ${sql(ids)}`;
    assertEqual(u.count, ids.length, 'UPDATE … WHERE id IN (…) count');
    const marker = new Error('roll back');
    try {
      await sql.begin(async (tx) => {
        const t = await tx`UPDATE matrix_items SET note = ${'second'} WHERE id IN ${tx(ids)}`;
        assertEqual(t.count, ids.length, 'UPDATE count inside the transaction');
        assertEqual(await notes(tx), ids.map(() => 'second'), 'notes inside the transaction');
        throw marker;
      });
    } catch (err) {
      if (err !== marker) throw err;
    }
    assertEqual(await notes(sql), ids.map(() => 'first'), 'notes after ROLLBACK');
    const d = await sql`DELETE FROM matrix_items WHERE id IN ${sql(ids)}`;
    assertEqual(d.count, ids.length, 'DELETE … WHERE id IN (…) count');
    assertEqual(await notes(sql), [], 'rows after the DELETE');
  }, { max: 1 });
}

runChecks(DRIVER, VERSION, [
  ['connect', checkConnect],
  ['setup', async () => { await clean(); return 'skip'; }],
  ['key_read_write', keyReadWrite],
  ['types_roundtrip', typesRoundtrip],
  ['transaction_commit', transactionCommit],
  ['transaction_rollback', transactionRollback],
  ['transaction_error', transactionError],
  ['prepared_reuse', preparedReuse, 60000],
  ['pipelining', pipelining],
  ['pipelined_transaction', pipelinedTransaction],
  ['simple_protocol', simpleProtocol],
  ['unprepared', unprepared, 60000],
  ['cross_shard_read', crossShardRead],
  ['copy', copy],
  ['copy_to_by_key', copyToByKey],
  ['copy_unmapped_table', copyUnmapped],
  ['cancel', cancel, 20000],
  ['refused_error', refusedError],
  ['multi_shard_update', multiShardUpdate],
  ['parse_error_recovery', parseErrorRecovery],
]).then(() => process.exit(0), (err) => { console.error(err); process.exit(2); });
