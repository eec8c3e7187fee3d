//! Micro-benchmark of the router: what parse + route costs per statement, from the plan cache
//! and without it, for typical OLTP statements (pgbench's, a multi-row INSERT, a join of
//! co-located tables, transaction control), and per pgbench transaction.
//!
//! Run with `cargo bench --bench router` (the bench profile is release). Pure CPU: the router
//! never connects, so the map is `shard-maps/demo.yaml` as it is, plus pgbench's tables. Prints
//! markdown tables of median ns; bench/RESULTS.md relates them to the proxy's CPU per query.
//!
//! Per statement (each cell: the median of [`RUNS`] runs of at least [`RUN_TIME`] after a
//! warm-up; every measure has its own `Router`, so no cache is shared between columns):
//! - *uncached*: `Router::plan` + `Router::route` of the statement's Parse text (placeholders,
//!   text Bind values) on a `Router` that has never seen it: [`FRESH_ROUTERS`] routers are
//!   built before the timed loop, then each plans the text once (a cache miss and insert).
//!   What an extended-protocol client's first Parse of a text costs.
//! - *simple protocol*: `Router::route_simple` (what the session calls for a Query message) of
//!   the text with the values inlined as literals, new values every time ([`LITERAL_TEXTS`]
//!   distinct texts in turn), on one long-lived router. For a fixed text, that text.
//! - *simple, planned whole*: the same distinct texts, each planned as it is and routed. The
//!   cache holds 10,000 plans and starts over when full, so every text misses, and the cost
//!   includes the cache's inserts and clears. What a simple query costs when normalizing
//!   gives up (and what every simple query with a literal cost before commit 055d76c).
//! - *cached*: plan (a cache hit) + decoding the Bind's parameters (text) + route, same text:
//!   what a Bind costs (a Parse costs about the same again: plan + route without values).
//! - *route only*: decoding the Bind's parameters + route, with the plan fetched beforehand;
//!   parameters as text (what pgbench sends) and as binary int8 (oid 20).
//!
//! Per pgbench transaction: the texts `pgbench -M simple` sends at scale 10, with its random
//! values, all routed by one router (a proxy has one per database), so statements compete for
//! the plan cache as they do in the proxy.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use shardgate::config::{ShardMap, parse_shard_map};
use shardgate::router::{Params, Plan, Route, RouteError, Router};

/// The demo map, unchanged: routing needs its tables and strategies, never its servers.
const DEMO_MAP: &str = include_str!("../shard-maps/demo.yaml");

/// pgbench's tables, appended under demo.yaml's `tables:` (its last key): accounts hashed on
/// `aid` with the history co-located, tellers and branches hashed on their own ids, so every
/// pgbench statement routes to one shard by a key.
const PGBENCH_TABLES: &str = concat!(
    "  pgbench_accounts: {strategy: hash, key: aid, key_type: integer}\n",
    "  pgbench_history: {colocated_with: pgbench_accounts, key: aid}\n",
    "  pgbench_tellers: {strategy: hash, key: tid, key_type: integer}\n",
    "  pgbench_branches: {strategy: hash, key: bid, key_type: integer}\n",
);

/// The map `bench/pgbench_compare.sh` gives the proxy: one shard, no tables.
const UNMAPPED: &str =
    "shards:\n  - {name: s0, primary: 'postgres://app:app@127.0.0.1:5432/app'}\n";

/// Runs per cell; the cell is their median.
const RUNS: usize = 7;
/// Least measured time per run of a statement.
const RUN_TIME: Duration = Duration::from_millis(60);
/// Least measured time per run of a pgbench mix: several cycles of the plan cache.
const MIX_RUN_TIME: Duration = Duration::from_millis(300);
/// Routers built per uncached batch (each plans the text once).
const FRESH_ROUTERS: usize = 128;
/// Distinct literal texts per statement: twice the plan cache's 10,000, so none is a hit.
const LITERAL_TEXTS: u64 = 20_000;
/// pgbench transactions drawn per mix (cycled; far more texts than the cache holds).
const MIX_TRANSACTIONS: usize = 40_000;
/// Statements per timed batch in the cached, literal and route-only loops.
const BATCH: u64 = 500;
/// Type oid of int8, for the binary parameters.
const OID_INT8: u32 = 20;

/// One statement, in the forms a client sends it.
struct Statement {
    name: &'static str,
    /// The text of the Parse (`$n` placeholders), or the one fixed text.
    sql: &'static str,
    /// The Bind's values of `$1`, `$2`, ...
    params: &'static [i64],
    /// The values of variant `n` (each `n` < [`LITERAL_TEXTS`] distinct), which the simple
    /// protocol inlines as literals; `None` for a fixed text.
    variant: Option<fn(u64) -> Vec<i64>>,
}

impl Statement {
    /// The simple-protocol text of variant `n`: `sql` with each `$k` replaced by its value.
    fn literal_text(&self, n: u64) -> Option<String> {
        let values = (self.variant?)(n);
        let mut text = self.sql.to_owned();
        // From the highest index down, so `$1` never eats the start of `$10`.
        for (k, value) in values.iter().enumerate().rev() {
            text = text.replace(&format!("${}", k + 1), &value.to_string());
        }
        Some(text)
    }
}

/// The statements measured: pgbench's (`-S` and TPC-B), then the OLTP examples.
/// Variants are distinct texts with positive values, except where the name says otherwise.
fn statements() -> Vec<Statement> {
    let accounts = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;";
    vec![
        Statement {
            name: "pgbench -S / TPC-B select",
            sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            params: &[123_456],
            variant: Some(|n| vec![aid(n)]),
        },
        Statement {
            name: "TPC-B update accounts",
            sql: accounts,
            params: &[1234, 123_456],
            variant: Some(|n| vec![1 + n as i64 % 5000, aid(n)]),
        },
        Statement {
            name: "TPC-B update accounts, new negative delta",
            sql: accounts,
            params: &[-1234, 123_456],
            variant: Some(|n| vec![-1 - n as i64, aid(n)]),
        },
        Statement {
            name: "TPC-B update tellers",
            sql: "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
            params: &[1234, 42],
            variant: Some(|n| vec![1 + n as i64 / 100, 1 + n as i64 % 100]),
        },
        Statement {
            name: "TPC-B update branches",
            sql: "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;",
            params: &[1234, 7],
            variant: Some(|n| vec![1 + n as i64 / 10, 1 + n as i64 % 10]),
        },
        Statement {
            name: "TPC-B insert history",
            sql: "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                  VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
            params: &[42, 7, 123_456, 1234],
            variant: Some(|n| {
                let n = n as i64;
                vec![1 + n % 100, 1 + n % 10, aid(n as u64), 1 + n % 5000]
            }),
        },
        Statement {
            name: "INSERT users, 10 rows",
            sql: "INSERT INTO users (user_id, name) VALUES ($1,'a'),($2,'b'),($3,'c'),($4,'d'),\
                  ($5,'e'),($6,'f'),($7,'g'),($8,'h'),($9,'i'),($10,'j')",
            params: &[1; 10],
            variant: Some(|n| vec![1 + n as i64; 10]),
        },
        Statement {
            name: "join users/orders by user_id",
            sql: "SELECT * FROM users u JOIN orders o ON o.user_id = u.user_id \
                  WHERE u.user_id = $1",
            params: &[42],
            variant: Some(|n| vec![1 + n as i64]),
        },
        Statement {
            name: "SELECT users by user_id",
            sql: "SELECT * FROM users WHERE user_id = $1",
            params: &[12_345],
            variant: Some(|n| vec![10_000 + n as i64]),
        },
        fixed("BEGIN", "BEGIN;"),
        fixed("END", "END;"),
        fixed("SELECT 1", "SELECT 1"),
    ]
}

/// A statement that is always the same text.
fn fixed(name: &'static str, sql: &'static str) -> Statement {
    Statement {
        name,
        sql,
        params: &[],
        variant: None,
    }
}

/// An account id as pgbench -s 10 draws them (1 to 1,000,000), distinct for each `n` used.
fn aid(n: u64) -> i64 {
    1 + ((n * 7_919) % 1_000_000) as i64
}

/// The parameter part of a Bind body (what `Params::from_bind` reads): one format code for
/// all values (0 text, 1 binary), then the values, each int8 in that format.
fn bind_rest(values: &[i64], binary: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(1i16.to_be_bytes());
    out.extend(i16::from(binary).to_be_bytes());
    out.extend((values.len() as i16).to_be_bytes());
    for value in values {
        let bytes = match binary {
            true => value.to_be_bytes().to_vec(),
            false => value.to_string().into_bytes(),
        };
        out.extend((bytes.len() as i32).to_be_bytes());
        out.extend(bytes);
    }
    out
}

/// Ns per operation over [`RUNS`] runs.
#[derive(Clone, Copy)]
struct Ns {
    median: f64,
    /// (slowest - fastest run) / median: how much to trust the median.
    spread: f64,
}

/// Ns per operation of [`RUNS`] runs of at least `run_time`; `batch` does some operations and
/// returns how many and the time they took (its setup, outside that time, is not counted).
fn median_ns(run_time: Duration, mut batch: impl FnMut() -> (u64, Duration)) -> Ns {
    batch();
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (mut ops, mut spent) = (0, Duration::ZERO);
            while spent < run_time {
                let (n, t) = batch();
                ops += n;
                spent += t;
            }
            spent.as_nanos() as f64 / ops as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let median = samples[RUNS / 2];
    Ns {
        median,
        spread: (samples[RUNS - 1] - samples[0]) / median,
    }
}

/// Plan + route of `sql` with these Bind parameters on `router`.
fn plan_and_route(router: &Router, sql: &str, rest: &[u8]) -> Result<Route, RouteError> {
    let plan = router.plan(black_box(sql));
    route_only(router, &plan, rest, &[])
}

/// Decodes the Bind parameters (none when `rest` is empty) and routes `plan` with them.
fn route_only(
    router: &Router,
    plan: &Plan,
    rest: &[u8],
    types: &[u32],
) -> Result<Route, RouteError> {
    let params = match rest.is_empty() {
        true => Params::none(),
        false => Params::from_bind(black_box(rest), types).expect("bench Bind is well formed"),
    };
    router.route(plan, &params, None)
}

/// How a simple-protocol text is routed.
#[derive(Clone, Copy)]
enum SimplePath {
    /// `Router::route_simple`: literals taken out, the normalized text's plan cached.
    Normalized,
    /// The text planned as it is (a cache miss for each new literal): the fallback when
    /// normalizing gives up, and every simple query before 055d76c.
    Whole,
}

fn route_text(router: &Router, sql: &str, path: SimplePath) -> Result<Route, RouteError> {
    match path {
        SimplePath::Normalized => router.route_simple(black_box(sql), None),
        SimplePath::Whole => plan_and_route(router, sql, &[]),
    }
}

fn uncached(map: &ShardMap, s: &Statement) -> Ns {
    let rest = bind_rest(s.params, false);
    median_ns(RUN_TIME, || {
        let routers: Vec<Router> = (0..FRESH_ROUTERS).map(|_| Router::new(map)).collect();
        let start = Instant::now();
        for router in &routers {
            black_box(plan_and_route(router, s.sql, &rest)).ok();
        }
        (FRESH_ROUTERS as u64, start.elapsed())
    })
}

/// Simple-protocol texts of `s`, in turn: [`LITERAL_TEXTS`] literal variants, or its one text.
fn simple(router: &Router, s: &Statement, path: SimplePath) -> Ns {
    let texts: Vec<String> = match s.variant {
        Some(_) => (0..LITERAL_TEXTS)
            .filter_map(|n| s.literal_text(n))
            .collect(),
        None => vec![s.sql.to_owned()],
    };
    let mut next = 0;
    median_ns(RUN_TIME, || {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(route_text(router, &texts[next], path)).ok();
            next = (next + 1) % texts.len();
        }
        (BATCH, start.elapsed())
    })
}

fn cached(router: &Router, s: &Statement) -> Ns {
    let rest = bind_rest(s.params, false);
    median_ns(RUN_TIME, || {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(plan_and_route(router, s.sql, &rest)).ok();
        }
        (BATCH, start.elapsed())
    })
}

fn routed(router: &Router, s: &Statement, binary: bool) -> Ns {
    let plan = router.plan(s.sql);
    let rest = bind_rest(s.params, binary);
    let types = match binary {
        true => vec![OID_INT8; s.params.len()],
        false => Vec::new(),
    };
    median_ns(RUN_TIME, || {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(route_only(router, &plan, &rest, &types)).ok();
        }
        (BATCH, start.elapsed())
    })
}

/// One row of the table, in ns.
struct Row {
    uncached: Ns,
    simple: Ns,
    whole: Option<Ns>,
    cached: Ns,
    text: Ns,
    binary: Option<Ns>,
}

impl Row {
    fn cells(&self) -> [Option<Ns>; 6] {
        let (uncached, simple) = (Some(self.uncached), Some(self.simple));
        let (cached, text) = (Some(self.cached), Some(self.text));
        [uncached, simple, self.whole, cached, text, self.binary]
    }
}

/// Each measure on its own router, so one's cache never serves another.
fn measure(map: &ShardMap, s: &Statement) -> Row {
    let fresh = || Router::new(map);
    let whole = s.variant.map(|_| simple(&fresh(), s, SimplePath::Whole));
    let router = fresh();
    Row {
        uncached: uncached(map, s),
        simple: simple(&fresh(), s, SimplePath::Normalized),
        whole,
        cached: cached(&router, s),
        text: routed(&router, s, false),
        binary: (!s.params.is_empty()).then(|| routed(&router, s, true)),
    }
}

/// pgbench's random draws (SplitMix64 from a fixed seed: the same texts every run).
struct Draws(u64);

impl Draws {
    /// Uniform in `low..=high`, like pgbench's `random(low, high)`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        low + ((z ^ (z >> 31)) % (high - low + 1) as u64) as i64
    }
}

/// pgbench's built-in `select-only` script (`-S`) at scale 10, as `-M simple` sends it.
fn select_only(draws: &mut Draws) -> Vec<String> {
    let aid = draws.between(1, 1_000_000);
    vec![format!(
        "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
    )]
}

/// pgbench's built-in `tpcb-like` script at scale 10, as `-M simple` sends it, less its
/// BEGIN: the session answers that itself (deferred BEGIN), without the router.
fn tpcb(draws: &mut Draws) -> Vec<String> {
    let aid = draws.between(1, 1_000_000);
    let bid = draws.between(1, 10);
    let tid = draws.between(1, 100);
    let delta = draws.between(-5000, 5000);
    vec![
        format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
        format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
        format!("UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};"),
        format!("UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid};"),
        format!(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
             VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"
        ),
        "END;".to_owned(),
    ]
}

/// Ns per transaction of [`MIX_TRANSACTIONS`] drawn transactions routed in turn by one router,
/// after a full pass over them (so the plan cache is in its steady state).
fn mix(map: &ShardMap, script: fn(&mut Draws) -> Vec<String>, path: SimplePath) -> Ns {
    let mut draws = Draws(42);
    let transactions: Vec<Vec<String>> =
        (0..MIX_TRANSACTIONS).map(|_| script(&mut draws)).collect();
    let router = Router::new(map);
    let run = |transaction: &Vec<String>| {
        for sql in transaction {
            black_box(route_text(&router, sql, path)).ok();
        }
    };
    transactions.iter().for_each(run);
    let mut next = 0;
    median_ns(MIX_RUN_TIME, || {
        let start = Instant::now();
        for _ in 0..100 {
            run(&transactions[next]);
            next = (next + 1) % transactions.len();
        }
        (100, start.elapsed())
    })
}

/// Where the statement goes, for the table: a bench that times an error is no bench.
fn describe_route(router: &Router, s: &Statement) -> String {
    let result = plan_and_route(router, s.sql, &bind_rest(s.params, false));
    let simple = (s.literal_text(0)).map(|sql| route_text(router, &sql, SimplePath::Normalized));
    let same = simple.as_ref().is_none_or(|l| l.is_ok() == result.is_ok());
    let text = match result {
        Ok(Route::Shard(shard)) => format!("shard {}", shard.0),
        other => format!("{other:?}"),
    };
    match same {
        true => text,
        false => format!("{text} (simple protocol: {simple:?})"),
    }
}

fn cell(ns: Option<Ns>) -> String {
    ns.map_or("—".into(), |ns| format!("{:.0}", ns.median))
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let text = format!("{DEMO_MAP}{PGBENCH_TABLES}");
    let map = parse_shard_map(&text, Path::new("shard-maps/demo.yaml"))
        .expect("demo.yaml + pgbench tables is a valid map");
    println!("load average before: {}", load_average());
    println!();
    let rows = print_statements(&map);
    println!();
    let mut spreads = print_transactions(&map, &rows);
    spreads.extend(rows.iter().flat_map(|(_, row)| row.cells()).flatten());
    print_spread(&spreads);
    println!("load average after: {}", load_average());
}

/// The per-statement table.
fn print_statements(map: &ShardMap) -> Vec<(&'static str, Row)> {
    println!(
        "| statement | uncached: plan + route (fresh Router) | simple protocol: route_simple \
         | simple, text planned whole | cached plan + route | route only, text params \
         | route only, binary int8 | route |"
    );
    println!("|-|-:|-:|-:|-:|-:|-:|-|");
    let router = Router::new(map);
    let mut rows = Vec::new();
    for s in statements() {
        let row = measure(map, &s);
        let cells: Vec<String> = row.cells().into_iter().map(cell).collect();
        let route = describe_route(&router, &s);
        println!("| {} | {} | {route} |", s.name, cells.join(" | "));
        rows.push((s.name, row));
    }
    rows
}

/// Routing work per pgbench transaction: simple protocol measured on drawn transactions,
/// extended and prepared from the per-statement rows. Returns the measures, for their spread.
fn print_transactions(map: &ShardMap, rows: &[(&str, Row)]) -> Vec<Ns> {
    let cached = |name: &str| {
        let row = rows.iter().find(|(n, _)| *n == name).expect("measured");
        row.1.cached.median
    };
    let select = cached("pgbench -S / TPC-B select");
    let tpcb_statements = [
        "TPC-B update accounts",
        "pgbench -S / TPC-B select",
        "TPC-B update tellers",
        "TPC-B update branches",
        "TPC-B insert history",
    ];
    let tpcb_cached: f64 = tpcb_statements.iter().map(|n| cached(n)).sum();
    let unmapped = parse_shard_map(UNMAPPED, Path::new("map.yaml")).expect("valid map");
    let measured = [
        mix(map, select_only, SimplePath::Normalized),
        mix(map, select_only, SimplePath::Whole),
        mix(map, tpcb, SimplePath::Normalized),
        mix(map, tpcb, SimplePath::Whole),
        mix(&unmapped, select_only, SimplePath::Normalized),
        mix(&unmapped, select_only, SimplePath::Whole),
    ];
    let [s, s_whole, t, t_whole, u, u_whole] = measured.map(|ns| ns.median);
    println!("| pgbench transaction | routing work per transaction (ns) | how |");
    println!("|-|-:|-|");
    println!("| `-S -M simple` | {s:.0} | route_simple, drawn aids, one router |");
    println!("| `-S -M simple`, planned whole | {s_whole:.0} | fallback; before 055d76c |");
    println!(
        "| `-S -M extended` | {:.0} | Parse + Bind: 2 × cached |",
        2.0 * select
    );
    println!("| `-S -M prepared` | {select:.0} | Bind: 1 × cached |");
    println!("| TPC-B `-M simple` | {t:.0} | route_simple, 5 statements + END, drawn values |");
    println!("| TPC-B `-M simple`, planned whole | {t_whole:.0} | fallback; before 055d76c |");
    let extended = 2.0 * (tpcb_cached + cached("BEGIN") + cached("END"));
    println!("| TPC-B `-M extended` | {extended:.0} | 7 × (Parse + Bind): 2 × cached each |");
    println!("| `-S -M simple`, map without tables | {u:.0} | as pgbench_compare.sh runs it |");
    println!("| same, planned whole | {u_whole:.0} | fallback; before 055d76c |");
    println!();
    measured.to_vec()
}

/// How far apart the runs of each measure were: the median and the widest spread.
fn print_spread(measures: &[Ns]) {
    let mut spreads: Vec<f64> = measures.iter().map(|ns| ns.spread).collect();
    spreads.sort_by(f64::total_cmp);
    println!(
        "(slowest - fastest of the {RUNS} runs) / median, over all measures: median {:.0}%, \
         widest {:.0}%",
        100.0 * spreads[spreads.len() / 2],
        100.0 * spreads[spreads.len() - 1]
    );
}
