// node-postgres (`pg`) against shardgate. Ids 4_000_000–4_999_999 of matrix_items belong to
// this suite; every cross-shard check filters by that range. One PASS/FAIL line per check.
'use strict';

const pg = require('pg');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');
const { env, fail, assertEqual, eventually, expectSqlstate, runChecks } = require('./common');

const DRIVER = 'node-pg';
const VERSION = require('pg/package.json').version;
const LO = 4_000_000;
const HI = 4_999_999;

// Dates as their text, so a roundtrip does not depend on the local time zone.
pg.types.setTypeParser(1082, (v) => v);

const config = {
  host: env.host, port: env.port, user: env.user, password: env.password,
  database: env.database, connectionTimeoutMillis: 10000, query_timeout: 20000,
};

async function client(extra = {}) {
  const c = new pg.Client({ ...config, ...extra });
  c.on('error', () => {}); // a dropped connection shows up in the check's own query
  await c.connect();
  return c;
}

/** Runs `fn` with a fresh client and always closes it. */
async function withClient(fn, extra) {
  const c = await client(extra);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

// Clean up the suite's id range shard by shard, one single-shard DELETE each (with a hint; the
// shard names come from the admin console), so the setup does not depend on the writes to
// several shards that multi_shard_update checks.
async function clean() {
  const admin = new pg.Client({ connectionString: env.adminUrl });
  await admin.connect();
  const shards = (await admin.query('SHOW SHARDS')).rows.map((r) => r.shard);
  await admin.end();
  await withClient(async (c) => {
    for (const s of shards) await c.query(`/* shard: ${s} */ DELETE FROM matrix_items WHERE id BETWEEN ${LO} AND ${HI}`);
  });
}

async function rowCount(c, lo, hi) {
  const r = await c.query('SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN $1 AND $2', [lo, hi]);
  return Number(r.rows[0].n);
}

async function connect() {
  await withClient(async (c) => {
    const r = await c.query('SELECT 1 AS one');
    assertEqual(r.rows, [{ one: 1 }], 'SELECT 1');
  });
}

async function keyReadWrite() {
  await withClient(async (c) => {
    const id = LO + 1;
    await c.query('INSERT INTO matrix_items (id, t) VALUES ($1, $2)', [id, 'first']);
    let r = await c.query('SELECT t FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [{ t: 'first' }], 'after INSERT');
    r = await c.query('UPDATE matrix_items SET t = $2 WHERE id = $1', [id, 'second']);
    assertEqual(r.rowCount, 1, 'UPDATE rowCount');
    r = await c.query('SELECT t FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [{ t: 'second' }], 'after UPDATE');
    r = await c.query('DELETE FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rowCount, 1, 'DELETE rowCount');
    r = await c.query('SELECT t FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [], 'after DELETE');
  });
}

const TYPED_COLUMNS = 'id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note';

async function typesRoundtrip() {
  const ts = new Date('2024-02-29T12:34:56.789Z');
  const sent = {
    i: 2147483647, big: '9007199254740993', num: '12345678901234.56789', f: 3.141592653589793,
    t: "héllo 'quoted' \\ ☺", b: Buffer.from([0, 1, 2, 92, 255]), flag: true, d: '2024-02-29',
    u: '6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f', j: { a: 1, b: [true, null, 'x'] }, arr: [1, -2, 3],
  };
  await withClient(async (c) => {
    const id = LO + 10;
    await c.query(
      `INSERT INTO matrix_items (${TYPED_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
      [id, sent.i, sent.big, sent.num, sent.f, sent.t, sent.b, sent.flag, sent.d, ts, sent.u, sent.j, sent.arr, null]);
    await c.query(`INSERT INTO matrix_items (${TYPED_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
      [id + 1, null, null, null, null, null, null, null, null, null, null, null, null, null]);
    const r = await c.query(`SELECT ${TYPED_COLUMNS} FROM matrix_items WHERE id = $1`, [id]);
    const row = r.rows[0];
    if (!row) fail('row not found');
    for (const k of ['i', 'big', 'num', 'f', 't', 'flag', 'd', 'u', 'j', 'arr']) assertEqual(row[k], sent[k], k);
    if (!Buffer.isBuffer(row.b) || !row.b.equals(sent.b)) fail(`b: got ${JSON.stringify(row.b)}`);
    if (!(row.ts instanceof Date) || row.ts.getTime() !== ts.getTime()) fail(`ts: got ${row.ts}`);
    assertEqual(row.note, null, 'note (NULL)');
    const nulls = (await c.query(`SELECT ${TYPED_COLUMNS} FROM matrix_items WHERE id = $1`, [id + 1])).rows[0];
    for (const k of TYPED_COLUMNS.split(', ').slice(1)) assertEqual(nulls[k], null, `NULL ${k}`);
  });
}

async function transactionCommit() {
  await withClient(async (c) => {
    const id = LO + 20;
    await c.query('BEGIN');
    await c.query('INSERT INTO matrix_items (id, note) VALUES ($1, $2)', [id, 'tx']);
    await c.query('UPDATE matrix_items SET note = $2 WHERE id = $1', [id, 'tx-updated']);
    await c.query('COMMIT');
    const r = await c.query('SELECT note FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [{ note: 'tx-updated' }], 'committed row');
  });
}

async function transactionRollback() {
  await withClient(async (c) => {
    const id = LO + 21;
    await c.query('BEGIN');
    await c.query('INSERT INTO matrix_items (id, note) VALUES ($1, $2)', [id, 'rolled back']);
    const inside = await c.query('SELECT note FROM matrix_items WHERE id = $1', [id]);
    assertEqual(inside.rows.length, 1, 'row visible inside the transaction');
    await c.query('ROLLBACK');
    const r = await c.query('SELECT note FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [], 'row after ROLLBACK');
  });
}

async function transactionError() {
  await withClient(async (c) => {
    const id = LO + 22;
    await c.query('BEGIN');
    await c.query('INSERT INTO matrix_items (id, note) VALUES ($1, $2)', [id, 'doomed']);
    await expectSqlstate(c.query('SELECT 1 / $1::int AS boom', [0]), '22012', 'division by zero');
    await expectSqlstate(c.query('SELECT note FROM matrix_items WHERE id = $1', [id]), '25P02', 'statement after the error');
    await c.query('ROLLBACK');
    const r = await c.query('SELECT note FROM matrix_items WHERE id = $1', [id]);
    assertEqual(r.rows, [], 'row after ROLLBACK');
  });
}

// BEGIN through the extended protocol (as pgjdbc and pgbench -M extended send it), then a
// statement whose shard key is a parameter, for ids on every shard.
async function transactionExtendedBegin() {
  for (let k = 0; k < 4; k++) {
    const id = LO + 50 + k;
    await withClient(async (c) => {
      await c.query({ name: 'pg_begin', text: 'BEGIN' });
      await c.query('INSERT INTO matrix_items (id, note) VALUES ($1, $2)', [id, 'extended begin']);
      await c.query({ name: 'pg_commit', text: 'COMMIT' });
      const r = await c.query('SELECT note FROM matrix_items WHERE id = $1', [id]);
      assertEqual(r.rows, [{ note: 'extended begin' }], `row ${id}`);
    });
  }
}

// The same named and unnamed statements from 10 connections (more than the pool of 3 per
// server), 6 transactions each: every transaction may land on another backend.
async function preparedReuse() {
  const base = LO + 1000;
  const pool = new pg.Pool({ ...config, max: 10 });
  pool.on('error', () => {});
  let maxOpen = 0;
  try {
    const worker = async (w) => {
      for (let k = 0; k < 6; k++) {
        const c = await pool.connect();
        maxOpen = Math.max(maxOpen, pool.totalCount);
        try {
          const id = base + w * 100 + k;
          await c.query('BEGIN');
          await c.query({ name: 'pg_reuse_insert', text: 'INSERT INTO matrix_items (id, i, note) VALUES ($1, $2, $3)', values: [id, w, 'named'] });
          const r = await c.query({ name: 'pg_reuse_select', text: 'SELECT i, note FROM matrix_items WHERE id = $1', values: [id] });
          assertEqual(r.rows, [{ i: w, note: 'named' }], `named select of ${id}`);
          const u = await c.query('UPDATE matrix_items SET note = $2 WHERE id = $1', [id, 'unnamed']);
          assertEqual(u.rowCount, 1, 'unnamed UPDATE');
          await c.query('COMMIT');
        } finally {
          c.release();
        }
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, w) => worker(w)));
    if (maxOpen < 8) fail(`only ${maxOpen} connections were open at once`);
    const count = async () => Number((await pool.query({ name: 'pg_reuse_count', text: "SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN $1 AND $2 AND note = 'unnamed'", values: [base, base + 999] })).rows[0].n);
    await eventually(count, 60, 'rows written by the 60 transactions');
  } finally {
    await pool.end();
  }
}

// One client reusing one named statement across many transactions while 8 others keep the
// 3 backends per server busy, so its transactions land on different backends.
async function namedAcrossBackends() {
  const base = LO + 3000;
  await withClient(async (c) => {
    const pool = new pg.Pool({ ...config, max: 8 });
    pool.on('error', () => {});
    let stop = false;
    const noise = Array.from({ length: 8 }, async () => {
      while (!stop) await pool.query('SELECT count(*) FROM matrix_items WHERE id = $1', [base]);
    });
    try {
      for (let k = 0; k < 50; k++) {
        await c.query('BEGIN');
        await c.query({ name: 'pg_named_tx', text: 'INSERT INTO matrix_items (id, i) VALUES ($1, $2)', values: [base + k, k] });
        await c.query('COMMIT');
        const r = await c.query({ name: 'pg_named_get', text: 'SELECT i FROM matrix_items WHERE id = $1', values: [base + k] });
        assertEqual(r.rows, [{ i: k }], `read back ${base + k}`);
      }
    } finally {
      stop = true;
      await Promise.all(noise).catch(() => {});
      await pool.end();
    }
  });
}

async function poolManyQueries() {
  const pool = new pg.Pool({ ...config, max: 16 });
  pool.on('error', () => {});
  try {
    const results = await Promise.all(Array.from({ length: 300 }, (_, k) =>
      pool.query('SELECT $1::int + 1 AS n', [k])));
    results.forEach((r, k) => assertEqual(r.rows[0].n, k + 1, `query ${k}`));
  } finally {
    await pool.end();
  }
}

async function pipelineMode() {
  await withClient(async (c) => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, k) =>
      c.query('SELECT $1::int * 2 AS n', [k])));
    results.forEach((r, k) => assertEqual(r.rows[0].n, k * 2, `pipelined query ${k}`));
  }, { pipeline: true });
}

async function crossShardRead() {
  const base = LO + 5000;
  await withClient(async (c) => {
    const rows = Array.from({ length: 40 }, (_, k) => [base + k, (k * 7) % 40, `row ${k}`]);
    for (const [id, i, t] of rows) await c.query('INSERT INTO matrix_items (id, i, t) VALUES ($1, $2, $3)', [id, i, t]);
    const lo = base, hi = base + 999;
    const top = await c.query('SELECT id, i FROM matrix_items WHERE id BETWEEN $1 AND $2 ORDER BY i DESC, id LIMIT 5', [lo, hi]);
    const want = rows.map(([id, i]) => ({ id: String(id), i })).sort((a, b) => b.i - a.i || a.id - b.id).slice(0, 5);
    assertEqual(top.rows, want, 'ORDER BY i DESC LIMIT 5');
    const agg = await c.query('SELECT count(*) AS n, sum(i) AS s, min(id) AS lo, max(id) AS hi FROM matrix_items WHERE id BETWEEN $1 AND $2', [lo, hi]);
    const sum = rows.reduce((s, [, i]) => s + i, 0);
    assertEqual(agg.rows[0], { n: '40', s: String(sum), lo: String(base), hi: String(base + 39) }, 'count/sum/min/max');
    const simple = await c.query(`SELECT count(*) AS n FROM matrix_items WHERE id BETWEEN ${lo} AND ${hi}`);
    assertEqual(simple.rows[0].n, '40', 'simple-protocol count(*)');
  });
}

async function copyOut(c, sql) {
  const chunks = [];
  const sink = new Writable({ write(chunk, _enc, done) { chunks.push(chunk); done(); } });
  await pipeline(c.query(copyTo(sql)), sink);
  return Buffer.concat(chunks).toString();
}

// COPY FROM STDIN into the sharded table, then COPY (SELECT … by key) TO STDOUT.
async function copy() {
  const base = LO + 7000;
  await withClient(async (c) => {
    const lines = Array.from({ length: 100 }, (_, k) => `${base + k}\t${k}\tcopied ${k}\n`);
    await pipeline(Readable.from(lines), c.query(copyFrom('COPY matrix_items (id, i, t) FROM STDIN')));
    assertEqual(await rowCount(c, base, base + 999), 100, 'rows after COPY FROM STDIN');
    const out = await copyOut(c, `COPY (SELECT id, i, t FROM matrix_items WHERE id = ${base + 1}) TO STDOUT`);
    assertEqual(out, lines[1], 'COPY TO STDOUT');
  });
}

// COPY (SELECT … WHERE key = constant) TO STDOUT names its shard like a SELECT would.
async function copyToByKey() {
  const id = LO + 7500;
  await withClient(async (c) => {
    await c.query('INSERT INTO matrix_items (id, i, t) VALUES ($1, 7, $2)', [id, 'tab\there']);
    const out = await copyOut(c, `COPY (SELECT id, i, t FROM matrix_items WHERE id = ${id}) TO STDOUT`);
    assertEqual(out, `${id}\t7\ttab\\there\n`, 'COPY TO STDOUT');
  });
}

// COPY in both directions on a table the map does not name (it lives on the default shard).
async function copyUnmapped() {
  await withClient(async (c) => {
    await c.query('DROP TABLE IF EXISTS drivers_copy_nodepg');
    await c.query('CREATE TABLE drivers_copy_nodepg (id bigint PRIMARY KEY, t text)');
    const lines = Array.from({ length: 1000 }, (_, k) => `${k}\tline ${k}\n`);
    await pipeline(Readable.from(lines), c.query(copyFrom('COPY drivers_copy_nodepg (id, t) FROM STDIN')));
    const out = await copyOut(c, 'COPY (SELECT id, t FROM drivers_copy_nodepg ORDER BY id) TO STDOUT');
    assertEqual(out, lines.join(''), 'COPY TO STDOUT');
    await c.query('DROP TABLE drivers_copy_nodepg');
  });
}

async function cancel() {
  await withClient(async (c) => {
    const query = new pg.Query('SELECT pg_sleep(10)');
    const done = new Promise((resolve, reject) => { query.on('end', resolve); query.on('error', reject); });
    c.query(query);
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    new pg.Client(config).cancel(c, query);
    await expectSqlstate(done, '57014', 'cancelled pg_sleep(10)');
    const took = Date.now() - started;
    if (took > 5000) fail(`the cancel took ${took} ms`);
    const r = await c.query('SELECT 2 AS two');
    assertEqual(r.rows, [{ two: 2 }], 'query after the cancel');
  }, { query_timeout: 0 });
}

// Writes to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`.
async function refusedError() {
  await withClient(async (c) => {
    const err = await expectSqlstate(c.query("UPDATE matrix_guarded SET note = 'x'"), '0A000', 'UPDATE without a key');
    if (!/matrix_guarded/.test(err.message)) fail(`message does not name the table: ${err.message}`);
    await expectSqlstate(c.query('UPDATE matrix_guarded SET note = $1', ['x']), '0A000', 'extended-protocol UPDATE without a key');
    const r = await c.query('SELECT 3 AS three');
    assertEqual(r.rows, [{ three: 3 }], 'query after the refusal');
  });
}

// UPDATE and DELETE … WHERE id IN ($2, …) over 8 ids (on both shards of the demo's ring),
// parameters bound through the extended protocol: the proxy runs them on every shard that holds
// rows (two-phase commit) and sums the counts; inside a transaction the UPDATE joins it and is
// undone by its ROLLBACK.
async function multiShardUpdate() {
  const ids = Array.from({ length: 8 }, (_, k) => LO + 8001 + k);
  const marks = (from) => ids.map((_, k) => `$${from + k}`).join(', ');
  const update = `UPDATE matrix_items SET note = $1 WHERE id IN (${marks(2)})`;
  const notes = async (c) => (await c.query(`SELECT note FROM matrix_items WHERE id IN (${marks(1)}) ORDER BY id`, ids)).rows.map((r) => r.note);
  await withClient(async (c) => {
    for (const id of ids) await c.query("INSERT INTO matrix_items (id, t) VALUES ($1, 'multi')", [id]);
    let r = await c.query(update, ['first', ...ids]);
    assertEqual(r.rowCount, ids.length, 'UPDATE … WHERE id IN (…) rowCount');
    await c.query('BEGIN');
    r = await c.query(update, ['second', ...ids]);
    assertEqual(r.rowCount, ids.length, 'UPDATE rowCount inside the transaction');
    assertEqual(await notes(c), ids.map(() => 'second'), 'notes inside the transaction');
    await c.query('ROLLBACK');
    assertEqual(await notes(c), ids.map(() => 'first'), 'notes after ROLLBACK');
    r = await c.query(`DELETE FROM matrix_items WHERE id IN (${marks(1)})`, ids);
    assertEqual(r.rowCount, ids.length, 'DELETE … WHERE id IN (…) rowCount');
    assertEqual(await notes(c), [], 'rows after the DELETE');
  });
}

runChecks(DRIVER, VERSION, [
  ['connect', connect],
  ['setup', async () => { await clean(); return 'skip'; }],
  ['key_read_write', keyReadWrite],
  ['types_roundtrip', typesRoundtrip],
  ['transaction_commit', transactionCommit],
  ['transaction_rollback', transactionRollback],
  ['transaction_error', transactionError],
  ['transaction_extended_begin', transactionExtendedBegin],
  ['prepared_reuse', preparedReuse, 60000],
  ['named_statement_across_backends', namedAcrossBackends, 60000],
  ['pool_many_queries', poolManyQueries, 60000],
  ['pipeline_mode', pipelineMode],
  ['cross_shard_read', crossShardRead],
  ['copy', copy],
  ['copy_to_by_key', copyToByKey],
  ['copy_unmapped_table', copyUnmapped],
  ['cancel', cancel, 20000],
  ['refused_error', refusedError],
  ['multi_shard_update', multiShardUpdate],
]).then(() => process.exit(0), (err) => { console.error(err); process.exit(2); });
