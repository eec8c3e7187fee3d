// Shared pieces of the JavaScript driver suites (pg_checks.js, postgresjs_checks.js): the
// environment contract of tests/drivers/run, one-line PASS/FAIL reporting and per-check
// timeouts, so a check that hangs fails instead of stalling the run.
'use strict';

const env = {
  host: process.env.SHARDGATE_HOST || '127.0.0.1',
  port: Number(process.env.SHARDGATE_PORT || 6432),
  user: process.env.SHARDGATE_USER || 'app',
  password: process.env.SHARDGATE_PASSWORD || 'app',
  database: process.env.SHARDGATE_DB || 'app',
  url: process.env.SHARDGATE_URL,
  adminUrl: process.env.SHARDGATE_ADMIN_URL,
};

/** Error text for a FAIL line: SQLSTATE and the server's message when there are any. */
function describe(err) {
  if (!err) return 'unknown error';
  const code = /^[0-9A-Z]{5}$/.test(err.code || '') ? `SQLSTATE ${err.code}: ` : (err.code ? `${err.code}: ` : '');
  const msg = String(err.message || err).replace(/\s+/g, ' ').trim();
  return `${code}${msg}`;
}

/** An assertion failure that is not a server error. */
function fail(message) {
  throw new Error(message);
}

function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: got ${a}, expected ${e}`);
}

/** Rejects with `err` if `promise` has not settled after `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Expects `promise` to reject with SQLSTATE `code`; returns the error. */
async function expectSqlstate(promise, code, what) {
  try {
    await promise;
  } catch (err) {
    if (err.code === code) return err;
    fail(`${what}: expected SQLSTATE ${code}, got ${describe(err)}`);
  }
  fail(`${what}: expected SQLSTATE ${code}, but it succeeded`);
}

/**
 * Retries `fn` until it returns `expected` (compared as JSON) or `ms` passed. For cross-shard
 * counts of rows other sessions wrote: such reads go to replicas, which may lag a little
 * (README, "Replicas and read-your-writes"); a session's own writes need no wait.
 */
async function eventually(fn, expected, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await fn();
    if (JSON.stringify(got) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) fail(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)} (after ${ms} ms)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Runs the checks in order, each with its own timeout, printing exactly one line per check.
 * `checks` is a list of [name, async fn, timeoutMs?]. A check that returns the string 'skip'
 * prints nothing (the driver has no such feature).
 */
async function runChecks(driver, version, checks) {
  for (const [name, fn, ms = 30000] of checks) {
    try {
      const result = await withTimeout(Promise.resolve().then(fn), ms, name);
      if (result === 'skip') continue;
      console.log(`PASS ${driver} ${version} | ${name}`);
    } catch (err) {
      console.log(`FAIL ${driver} ${version} | ${name} | ${describe(err)}`);
    }
  }
}

module.exports = { env, describe, fail, assertEqual, eventually, withTimeout, expectSqlstate, runChecks };
