//! Why a statement goes where it goes: what `shardgate route` prints.
//!
//! Part of the router stage, pure: it asks the [`Router`] for the plan and the route exactly
//! as a session would (same plan, same parameters, same hint rules), then puts the plan's
//! facts into words: tables, shard key, the values the statement gives it, the strategy and
//! the shard(s). Never connects anywhere and never decides a route itself: every route it
//! shows comes from [`Router::route`], so an explanation cannot disagree with the proxy.

use std::fmt;
use std::ops::Bound;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::count;
use crate::config::key::KeyValue;
use crate::config::tables::{Fallback, Strategy};
use crate::config::{KeyType, ShardId, ShardMap, Sharding};
use crate::router::condition::Condition;
use crate::router::operand::{Operand, key_value};
use crate::router::plan::{Part, Target};
use crate::router::{Hint, Kind, Params, Plan, Route, RouteError, Router};

/// Rows of an INSERT whose keys are listed one by one; more are counted.
const MAX_ROWS_SHOWN: usize = 10;

/// A statement text's route, and the facts behind it.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// A hint in a leading comment, which overrides the key.
    pub hint: Option<Hint>,
    /// One entry per statement of the text.
    pub statements: Vec<StatementExplanation>,
    /// Where the whole text runs, or why it cannot run: what the proxy would do.
    pub route: Result<Route, RouteError>,
    /// Shard names by id, to print routes.
    shard_names: Vec<String>,
    /// For a read of several shards the merge cannot compute: why, as the federation
    /// database answers it instead (see `control::federation`).
    pub federated: Option<String>,
}

/// One statement of the text, in words.
#[derive(Debug, Clone)]
pub struct StatementExplanation {
    /// Read, write, DDL or session.
    pub kind: Kind,
    /// The statement's first keyword (`INSERT`, `SELECT`), when the text splits cleanly.
    pub verb: Option<String>,
    /// Tables of the shard map it names, in order of appearance.
    pub tables: Vec<String>,
    /// The shard key it is routed by, if any.
    pub key: Option<KeyFacts>,
    /// What it says about the key (or why it needs no key), with parameter values filled in.
    pub detail: String,
    /// Where this statement alone runs.
    pub route: Result<Route, RouteError>,
}

/// The shard key of a routed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key column.
    pub column: String,
    /// Its type family.
    pub key_type: KeyType,
    /// The strategy in words, e.g. `hash ring of 2 shards`.
    pub strategy: String,
}

/// Plans and routes `sql` with `params` (text or binary, as a Bind would carry them) and
/// explains the result. The route is exactly [`Router::route`]'s, without a session hint.
pub fn explain(router: &Router, sql: &str, params: &Params<'_>) -> Explanation {
    let plan = router.plan(sql);
    let scanned = scan(router.map(), sql);
    let statements = (plan.parts.iter().enumerate())
        .map(|(index, part)| {
            let (verb, tables) = match scanned.get(index) {
                Some(found) if scanned.len() == plan.parts.len() => found.clone(),
                _ => (None, scanned.iter().flat_map(|s| s.1.clone()).collect()),
            };
            let alone = Plan {
                parts: vec![part.clone()],
                hint: plan.hint.clone(),
            };
            let route = router.route(&alone, params, None);
            let (key, detail) = describe(router, part, params);
            StatementExplanation {
                kind: part.kind,
                verb,
                tables,
                key,
                detail,
                route,
            }
        })
        .collect();
    let route = router.route(&plan, params, None);
    let federated = match &route {
        Ok(Route::Scatter(_)) => {
            (router.scatter(&router.query_read_by(sql)).err()).map(|e| e.to_string())
        }
        _ => None,
    };
    Explanation {
        hint: plan.hint.clone(),
        statements,
        route,
        shard_names: router.map().shards.iter().map(|s| s.name.clone()).collect(),
        federated,
    }
}

/// The key and the words for one statement's target.
fn describe(router: &Router, part: &Part, params: &Params<'_>) -> (Option<KeyFacts>, String) {
    let map = router.map();
    match &part.target {
        Target::Anywhere => (None, "no sharded rows".to_owned()),
        Target::DefaultShard => (None, "no sharded or reference table".to_owned()),
        Target::EveryShard => (None, "schema change or reference-table write".to_owned()),
        Target::Scatter(why) => (None, why.clone()),
        Target::Unparsed(tables) if tables.is_empty() => (None, "unparsed text".to_owned()),
        Target::Unparsed(tables) => (None, format!("unparsed text naming {}", tables.join(", "))),
        Target::TooDeep { depth, .. } => (None, format!("too deep to parse (depth {depth})")),
        Target::TooLarge { size, .. } => (None, format!("too large to parse ({size} bytes)")),
        Target::Refused(_) => (None, "not supported".to_owned()),
        Target::CopyIn(copy) => match &copy.sharding {
            Some(sharding) => (
                Some(key_facts(map, sharding)),
                format!("COPY rows into {}, each to its key's shard", copy.table),
            ),
            None => (None, format!("COPY rows into {}, every shard", copy.table)),
        },
        Target::Keyed(keyed) | Target::MovesRows(keyed) => {
            let sharding = &keyed.sharding;
            let values = Values {
                key_type: sharding.key_type,
                params,
            };
            let mut text = values.condition(&keyed.condition, &sharding.key_column);
            if matches!(part.target, Target::MovesRows(_)) {
                text.push_str("; sets the shard key, so the rows move");
            }
            (Some(key_facts(map, sharding)), text)
        }
        Target::Insert(rows) => {
            let sharding = &rows.sharding;
            let values = Values {
                key_type: sharding.key_type,
                params,
            };
            let text = values.rows(&rows.keys, &sharding.key_column);
            (Some(key_facts(map, sharding)), text)
        }
    }
}

fn key_facts(map: &ShardMap, sharding: &Sharding) -> KeyFacts {
    KeyFacts {
        column: sharding.key_column.clone(),
        key_type: sharding.key_type,
        strategy: strategy_text(map, &sharding.strategy),
    }
}

/// A strategy in words, e.g. `hash ring of 2 shards` (`SHOW MAP` prints it too).
pub fn strategy_text(map: &ShardMap, strategy: &Strategy) -> String {
    let ring = |shards: usize| format!("hash ring of {}", count(shards, "shard"));
    match strategy {
        Strategy::Hash(spec) => ring(spec.shards.len()),
        Strategy::Range(spec) => count(spec.ranges.len(), "key range"),
        Strategy::Directory(spec) => {
            let fallback = match &spec.fallback {
                Fallback::Error => "error".to_owned(),
                Fallback::Shard(shard) => format!("shard {}", super::shard_name(map, *shard)),
                Fallback::Hash(spec) => ring(spec.shards.len()),
            };
            let entries = count(spec.entries.len(), "entry");
            format!("directory of {entries}, else {fallback}")
        }
    }
}

/// Operands in words, with the values the parameters give them.
struct Values<'a, 'p> {
    key_type: KeyType,
    params: &'a Params<'p>,
}

impl Values<'_, '_> {
    /// A condition as SQL-like text over `column`.
    fn condition(&self, condition: &Condition, column: &str) -> String {
        let join = |parts: &[Condition], with: &str| {
            let texts: Vec<String> = (parts.iter())
                .map(|part| match part {
                    Condition::And(_) | Condition::Or(_) => {
                        format!("({})", self.condition(part, column))
                    }
                    _ => self.condition(part, column),
                })
                .collect();
            texts.join(with)
        };
        match condition {
            Condition::Any => format!("no usable condition on {column}"),
            Condition::Eq(operand) => format!("{column} = {}", self.operand(operand)),
            Condition::In(list) => {
                let texts: Vec<String> = list.iter().map(|o| self.operand(o)).collect();
                format!("{column} IN ({})", texts.join(", "))
            }
            Condition::AnyOf(array) => format!("{column} = ANY({})", self.array(array)),
            Condition::Interval(lower, upper) => self.interval(lower, upper, column),
            Condition::And(parts) => join(parts, " AND "),
            Condition::Or(parts) => join(parts, " OR "),
        }
    }

    /// The keys of an INSERT's rows, the first [`MAX_ROWS_SHOWN`] of them listed.
    fn rows(&self, keys: &[Operand], column: &str) -> String {
        let mut shown: Vec<String> = (keys.iter().take(MAX_ROWS_SHOWN))
            .map(|operand| self.operand(operand))
            .collect();
        if keys.len() > MAX_ROWS_SHOWN {
            shown.push(format!("… {} more", keys.len() - MAX_ROWS_SHOWN));
        }
        match keys.len() {
            1 => format!("{column} = {}", shown.join("")),
            n => format!("{column} of {n} rows: {}", shown.join(", ")),
        }
    }

    fn interval(&self, lower: &Bound<Operand>, upper: &Bound<Operand>, column: &str) -> String {
        let mut texts = Vec::new();
        for (bound, inclusive, exclusive) in [(lower, ">=", ">"), (upper, "<=", "<")] {
            match bound {
                Bound::Included(o) => {
                    texts.push(format!("{column} {inclusive} {}", self.operand(o)))
                }
                Bound::Excluded(o) => {
                    texts.push(format!("{column} {exclusive} {}", self.operand(o)))
                }
                Bound::Unbounded => {}
            }
        }
        texts.join(" AND ")
    }

    /// A key operand: its normalized value, and the parameter it came from.
    fn operand(&self, operand: &Operand) -> String {
        let value = key_value(operand, self.key_type, self.params);
        let from = match operand {
            Operand::Param(n) => format!(" (${n})"),
            _ => String::new(),
        };
        match value {
            Ok(Some(key)) => format!("{}{from}", show(&key)),
            Ok(None) => format!("NULL{from}"),
            Err(RouteError::MissingParameter(n)) => format!("${n} (no value given)"),
            Err(error) => format!("{} (invalid: {error})", raw(operand, self.params)),
        }
    }

    /// An array operand as written or sent (its elements are keys).
    fn array(&self, operand: &Operand) -> String {
        raw(operand, self.params)
    }
}

/// An operand as the client wrote or sent it.
fn raw(operand: &Operand, params: &Params<'_>) -> String {
    match operand {
        Operand::Null => "NULL".to_owned(),
        Operand::Literal(text) => format!("'{text}'"),
        Operand::Param(n) => match params.get(*n) {
            Some(param) if !param.binary => match param.value {
                Some(bytes) => format!("${n} = '{}'", String::from_utf8_lossy(bytes)),
                None => format!("${n} = NULL"),
            },
            Some(_) => format!("${n} (binary)"),
            None => format!("${n} (no value given)"),
        },
    }
}

/// A key as SQL would show it: text quoted, everything else bare.
fn show(key: &KeyValue) -> String {
    match key {
        KeyValue::Text(text) => format!("'{}'", text.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// Per statement of the text: its first keyword, and the map tables it names.
fn scan(map: &ShardMap, sql: &str) -> Vec<(Option<String>, Vec<String>)> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Vec::new();
    };
    let statements = tokens.split(|token| matches!(token, Token::SemiColon));
    let non_empty = statements.filter(|ts| ts.iter().any(|t| !matches!(t, Token::Whitespace(_))));
    non_empty
        .map(|tokens| {
            let words = tokens.iter().filter_map(|token| match token {
                Token::Word(word) => Some(word),
                _ => None,
            });
            let verb = words.clone().next().map(|word| word.value.to_uppercase());
            let mut tables: Vec<String> = Vec::new();
            for word in words {
                let name = match word.quote_style {
                    Some(_) => word.value.clone(),
                    None => word.value.to_lowercase(),
                };
                if map.tables.contains_key(&name) && !tables.contains(&name) {
                    tables.push(name);
                }
            }
            (verb, tables)
        })
        .collect()
}

impl Explanation {
    fn shard(&self, id: ShardId) -> &str {
        self.shard_names
            .get(id.0 as usize)
            .map_or("?", String::as_str)
    }

    fn shards(&self, ids: &[ShardId]) -> String {
        let names: Vec<&str> = ids.iter().map(|id| self.shard(*id)).collect();
        names.join(", ")
    }

    /// A route in words: `shard s1`, `scatter to s0, s1`, `split: s0 rows 2; s1 rows 1`.
    fn route_text(&self, route: &Route) -> String {
        match route {
            Route::Anywhere => "any shard".to_owned(),
            Route::Shard(id) => format!("shard {}", self.shard(*id)),
            Route::Scatter(ids) => format!("scatter to {}", self.shards(ids)),
            Route::Broadcast(ids) => format!("broadcast to {}", self.shards(ids)),
            Route::MoveRows(ids) => format!(
                "move rows from {} to the shards of their new keys",
                self.shards(ids)
            ),
            Route::Replicate(ids) => format!("every copy, on {}", self.shards(ids)),
            Route::CopyIn(ids) => format!("COPY rows split over {}", self.shards(ids)),
            Route::CurrentShardOnly => {
                "only the shard a transaction is already on (unparsed text)".to_owned()
            }
            Route::PerStatement => "each statement on its own shard, in one transaction".to_owned(),
            Route::Split(groups) => {
                let texts: Vec<String> = (groups.iter())
                    .map(|(id, rows)| {
                        let rows: Vec<String> = rows.iter().map(|r| (r + 1).to_string()).collect();
                        format!("{} rows {}", self.shard(*id), rows.join(", "))
                    })
                    .collect();
                format!("split: {}", texts.join("; "))
            }
        }
    }
}

impl fmt::Display for Explanation {
    /// `route: …` first (script-friendly), then a hint line if any, then one line per
    /// statement; every line ends in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.route {
            Ok(Route::Scatter(ids)) if self.federated.is_some() => writeln!(
                f,
                "route: federation database, PostgreSQL over {}",
                self.shards(ids)
            )?,
            Ok(route) => writeln!(f, "route: {}", self.route_text(route))?,
            Err(error) => writeln!(f, "route: error {}: {error}", error.report().code)?,
        }
        if let Some(why) = &self.federated {
            writeln!(f, "federated: the merge cannot compute it: {why}")?;
        }
        match &self.hint {
            Some(Hint::Shard(name)) => writeln!(f, "hint: shard {name} (from a leading comment)")?,
            Some(Hint::ShardKey(key)) => {
                writeln!(f, "hint: shard_key {key} (from a leading comment)")?
            }
            None => {}
        }
        for (index, statement) in self.statements.iter().enumerate() {
            write!(f, "statement {}: ", index + 1)?;
            self.write_statement(f, statement)?;
        }
        Ok(())
    }
}

impl Explanation {
    fn write_statement(&self, f: &mut fmt::Formatter<'_>, s: &StatementExplanation) -> fmt::Result {
        let kind = match s.kind {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Ddl => "ddl",
            Kind::Session => "session",
        };
        write!(f, "{kind}")?;
        if let Some(verb) = &s.verb {
            write!(f, " ({verb})")?;
        }
        if !s.tables.is_empty() {
            write!(f, " on {}", s.tables.join(", "))?;
        }
        if let Some(key) = &s.key {
            write!(
                f,
                ", key {} ({}, {})",
                key.column, key.key_type, key.strategy
            )?;
        }
        write!(f, ": {} -> ", s.detail)?;
        match &s.route {
            Ok(route) => writeln!(f, "{}", self.route_text(route)),
            // The first refusal is the text's: its message is already on the route line.
            Err(error) if self.route.as_ref().err() == Some(error) => {
                writeln!(f, "error {}", error.report().code)
            }
            Err(error) => writeln!(f, "error {}: {error}", error.report().code),
        }
    }
}
