//! SQL text → [`Plan`]: what a statement does and which rows it needs, decided once per
//! statement text (and cached by the router) before any parameter value is known.
//!
//! Part of the router (pure). Strict: whatever the analysis cannot see (a sharded table in a
//! subquery, a key computed by an expression) makes the plan wider or a refusal, never narrower.
//! A token scan finds every map table the text names, as a safety net under the AST walk.

use std::collections::HashMap;

use sqlparser::ast::{self, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::condition::Condition;
use super::hint::Hint;
use super::operand::Operand;
use super::scope::folded;
use crate::config::{Placement, ShardMap, Sharding};
use crate::error::Unsupported;
use functions::calls_unknown_function;

pub mod copy;
pub mod cursor;
mod dml;
mod functions;
mod indexes;
mod query;
mod subquery;

/// What the router knows of a statement text.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One entry per statement (a simple Query may hold several).
    pub parts: Vec<Part>,
    /// A shard or key named in a leading comment.
    pub hint: Option<Hint>,
}

impl Plan {
    /// Whether the parser gave up on some statement.
    pub fn has_unparsed(&self) -> bool {
        (self.parts.iter()).any(|part| matches!(part.target, Target::Unparsed(_)))
    }
}

/// One statement of a plan.
#[derive(Debug, Clone)]
pub struct Part {
    /// Whether it reads, writes or changes schema.
    pub kind: Kind,
    /// Which rows it needs.
    pub target: Target,
    /// A read that locks its rows (`FOR UPDATE`/`FOR SHARE`): only a primary may run it.
    pub locks_rows: bool,
    /// It calls a function not known to be free of side effects (see `functions`).
    pub calls_unknown_function: bool,
}

/// What a statement does, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SELECT and other statements that change no data.
    Read,
    /// INSERT, UPDATE, DELETE, TRUNCATE, COPY FROM.
    Write,
    /// CREATE, ALTER, DROP.
    Ddl,
    /// Transaction control, SET, SHOW and the like.
    Session,
}

/// Where a statement's rows are.
#[derive(Debug, Clone)]
pub enum Target {
    /// No table is involved: any backend runs it (in a transaction, the one it is on).
    Anywhere,
    /// Only tables outside the map (or the catalogs): the default shard.
    DefaultShard,
    /// Every shard (DDL on map tables, writes to reference tables).
    EveryShard,
    /// Rows of sharded tables of one co-location group, narrowed by a key condition.
    Keyed(Keyed),
    /// An UPDATE that sets the shard key: the rows the condition narrows move to the shards
    /// of their new keys.
    MovesRows(Keyed),
    /// New rows of a sharded table, each with its key.
    Insert(InsertRows),
    /// Rows of sharded tables that no key narrows (different groups, subqueries).
    Scatter(String),
    /// Text the parser does not understand, naming these map tables.
    Unparsed(Vec<String>),
    /// Text whose syntax tree could be deeper than the proxy parses
    /// ([`crate::sql::MAX_DEPTH`]), naming these map tables.
    TooDeep {
        /// Map tables named anywhere in the text.
        mentions: Vec<String>,
        /// Its [`crate::sql::bounds::depth`].
        depth: usize,
    },
    /// Text longer than `limits.max_statement_bytes`, naming these map tables.
    TooLarge {
        /// Map tables named anywhere in the text.
        mentions: Vec<String>,
        /// Its length.
        size: usize,
        /// The limit it exceeds.
        max_bytes: usize,
    },
    /// Rows COPY FROM STDIN brings into a sharded or reference table.
    CopyIn(Box<copy::CopyIn>),
    /// Refused as not supported (SQLSTATE 0A000).
    Refused(Unsupported),
}

impl Target {
    /// Whether the router routed the text without looking inside it (unparseable, too deep,
    /// too large).
    pub fn is_opaque(&self) -> bool {
        matches!(
            self,
            Target::Unparsed(_) | Target::TooDeep { .. } | Target::TooLarge { .. }
        )
    }
}

/// Sharded rows narrowed by a key condition.
#[derive(Debug, Clone)]
pub struct Keyed {
    /// The first sharded table named (for messages).
    pub table: String,
    /// Its placement (shared by the whole group).
    pub sharding: Sharding,
    /// What the statement says about the key.
    pub condition: Condition,
    /// Whether a write may run on several shards when the key does not narrow it to one.
    pub multi_shard_writes: crate::config::MultiShardWrites,
}

/// Rows an INSERT adds to a sharded table.
#[derive(Debug, Clone)]
pub struct InsertRows {
    /// The table.
    pub table: String,
    /// Its placement.
    pub sharding: Sharding,
    /// The key of each row, in order.
    pub keys: Vec<Operand>,
}

/// Plans a statement text against `map`. A statement longer than `max_bytes` is not parsed
/// (see [`Target::TooLarge`]), nor is one whose syntax tree could be deeper than
/// [`crate::sql::MAX_DEPTH`] (see [`Target::TooDeep`]); a deep one within that bound is parsed
/// on a stack grown to fit.
pub fn plan(map: &ShardMap, sql: &str, max_bytes: usize) -> Plan {
    let hint = Hint::leading(sql);
    if sql.len() > max_bytes {
        let mentions = mentioned_anywhere(map, sql);
        let size = sql.len();
        let target = Target::TooLarge {
            mentions,
            size,
            max_bytes,
        };
        return Plan {
            parts: vec![unanalysed(target)],
            hint,
        };
    }
    let depth = crate::sql::bounds::depth(sql);
    if depth > crate::sql::MAX_DEPTH {
        return Plan {
            parts: vec![too_deep(map, sql, depth)],
            hint,
        };
    }
    let parts = crate::sql::on_stack_for(depth, || plan_parts(map, sql));
    Plan { parts, hint }
}

/// The parts of a statement text that is not too deep to parse.
fn plan_parts(map: &ShardMap, sql: &str) -> Vec<Part> {
    let dialect = PostgreSqlDialect {};
    match Tokenizer::new(&dialect, sql).tokenize() {
        Ok(tokens) => {
            let mut facts = statement_facts(map, &tokens);
            match Parser::new(&dialect).with_tokens(tokens).parse_statements() {
                Ok(statements) => {
                    if facts.len() != statements.len() {
                        // Cannot pair statements with their tokens: judge each by all of them.
                        let all = facts.into_iter().reduce(TokenFacts::merge);
                        facts = vec![all.unwrap_or_default(); statements.len()];
                    }
                    let pairs = statements.iter().zip(&facts);
                    pairs
                        .map(|(s, facts)| plan_statement(map, s, facts))
                        .collect()
                }
                Err(_) => vec![unparsed(map, sql)],
            }
        }
        Err(_) => vec![unparsed(map, sql)],
    }
}

/// Facts of each statement's tokens (split at top-level semicolons; empty statements skipped).
fn statement_facts(map: &ShardMap, tokens: &[Token]) -> Vec<TokenFacts> {
    let statements = tokens.split(|t| matches!(t, Token::SemiColon));
    let non_empty = statements.filter(|ts| ts.iter().any(|t| !matches!(t, Token::Whitespace(_))));
    non_empty.map(|ts| TokenFacts::scan(map, ts)).collect()
}

/// What the token stream says, whatever the parser makes of it.
#[derive(Debug, Clone, Default)]
pub(super) struct TokenFacts {
    /// Map tables named anywhere outside string literals (lower-case, deduplicated).
    pub mentions: Vec<String>,
    /// How many times each of `mentions` is named as a table (not as `name.column`).
    pub occurrences: HashMap<String, usize>,
    /// Number of FROM keywords (one per table-reading clause).
    pub from_clauses: usize,
    /// Whether any keyword that introduces a table (FROM, INTO, UPDATE, TABLE, JOIN) appears.
    pub names_tables: bool,
    /// Whether it calls a function the proxy does not know to be free of side effects (a
    /// SELECT calling it may write, so it runs on a primary and counts as a write).
    pub calls_unknown_function: bool,
}

impl TokenFacts {
    fn scan(map: &ShardMap, tokens: &[Token]) -> Self {
        let mut facts = TokenFacts::default();
        for (index, token) in tokens.iter().enumerate() {
            let Token::Word(word) = token else { continue };
            facts.calls_unknown_function |= calls_unknown_function(word, &tokens[index + 1..]);
            match word.keyword {
                Keyword::FROM => {
                    facts.from_clauses += 1;
                    facts.names_tables = true;
                }
                Keyword::INTO | Keyword::UPDATE | Keyword::TABLE | Keyword::JOIN => {
                    facts.names_tables = true;
                }
                _ => {}
            }
            let name = folded(&word.value, word.quote_style.is_some());
            if !map.tables.contains_key(&name) {
                continue;
            }
            let mut after = tokens[index + 1..].iter();
            let qualifier = after.find(|t| !matches!(t, Token::Whitespace(_)));
            if !matches!(qualifier, Some(Token::Period)) {
                *facts.occurrences.entry(name.clone()).or_default() += 1;
            }
            if !facts.mentions.contains(&name) {
                facts.mentions.push(name);
            }
        }
        facts
    }

    fn merge(mut self, other: TokenFacts) -> TokenFacts {
        for name in other.mentions {
            if !self.mentions.contains(&name) {
                self.mentions.push(name);
            }
        }
        for (name, count) in other.occurrences {
            *self.occurrences.entry(name).or_default() += count;
        }
        self.from_clauses += other.from_clauses;
        self.names_tables |= other.names_tables;
        self.calls_unknown_function |= other.calls_unknown_function;
        self
    }

    /// Sharded tables the text names more often than `seen` (the occurrences the analysis
    /// understood) accounts for: a second use in a subquery or CTE is not narrowed by the key.
    pub fn unseen_sharded<'a>(&'a self, map: &'a ShardMap, seen: &'a [String]) -> Vec<&'a str> {
        let sharded = |name: &&String| {
            let named = self.occurrences.get(*name).copied().unwrap_or(0);
            let understood = seen.iter().filter(|s| s == name).count();
            matches!(map.tables[*name].placement, Placement::Sharded(_)) && named > understood
        };
        self.mentions
            .iter()
            .filter(sharded)
            .map(String::as_str)
            .collect()
    }
}

fn plan_statement(map: &ShardMap, statement: &Statement, facts: &TokenFacts) -> Part {
    let (kind, target) = match statement {
        Statement::Query(query) if query::writes(query) => (
            Kind::Write,
            default_or_refuse(
                facts,
                "a query that writes (data-modifying WITH, SELECT INTO)",
            ),
        ),
        Statement::Query(query) => (Kind::Read, query::read(map, query, facts)),
        Statement::Explain { statement, .. } => {
            let inner = plan_statement(map, statement, facts);
            (inner.kind, inner.target)
        }
        Statement::Insert(insert) => (Kind::Write, dml::insert(map, insert, facts)),
        Statement::Update(update) => (Kind::Write, dml::update(map, update, facts)),
        Statement::Delete(delete) => (Kind::Write, dml::delete(map, delete, facts)),
        Statement::Truncate(_) => (Kind::Write, schema_change(facts)),
        // `COPY (query) TO` runs where its query would: one shard when the query has the key.
        Statement::Copy {
            source: sqlparser::ast::CopySource::Query(query),
            to: true,
            ..
        } if !query::writes(query) => match query::read(map, query, facts) {
            Target::Scatter(why) => (Kind::Read, Target::Scatter(format!("COPY TO: {why}"))),
            target => (Kind::Read, target),
        },
        Statement::Copy {
            source:
                ast::CopySource::Table {
                    table_name,
                    columns,
                },
            to: false,
            target: ast::CopyTarget::Stdin,
            options,
            legacy_options,
            ..
        } if map_table_named(map, table_name).is_some() => {
            let table = map_table_named(map, table_name).unwrap_or_default();
            let target = copy::copy_in(map, &table, columns, options, legacy_options);
            (Kind::Write, target)
        }
        Statement::Copy { to, .. } => copy(*to, map, facts),
        // A cursor reads where its query would; over several shards the session keeps it.
        Statement::Declare { stmts, .. } => match &stmts[..] {
            [declare] => match declare.for_query.as_deref() {
                Some(query) if !query::writes(query) => match query::read(map, query, facts) {
                    Target::Scatter(why) => (Kind::Read, Target::Scatter(format!("DECLARE: {why}"))),
                    target => (Kind::Read, target),
                },
                _ => (Kind::Write, default_or_refuse(facts, "a cursor that writes")),
            },
            _ => (Kind::Write, default_or_refuse(facts, "this kind of statement")),
        },
        Statement::CreateTable(create) if create.query.is_some() => {
            (Kind::Ddl, derived_table(map, facts))
        }
        Statement::CreateView { .. } => (Kind::Ddl, derived_table(map, facts)),
        Statement::Drop {
            object_type: ast::ObjectType::Index,
            ..
        }
        | Statement::AlterIndex { .. }
        | Statement::Comment {
            object_type: ast::CommentObject::Index,
            ..
        } => (Kind::Ddl, on_indexes(&statement.to_string(), facts)),
        // What table definitions are written with (schemas, types, domains, extensions,
        // collations) exists on every shard, as the map tables using it do.
        Statement::CreateSchema { .. }
        | Statement::AlterSchema(_)
        | Statement::CreateType { .. }
        | Statement::AlterType(_)
        | Statement::CreateDomain(_)
        | Statement::DropDomain(_)
        | Statement::CreateExtension(_)
        | Statement::DropExtension(_)
        | Statement::CreateCollation(_)
        | Statement::AlterCollation(_)
        | Statement::Drop {
            object_type:
                ast::ObjectType::Schema | ast::ObjectType::Type | ast::ObjectType::Collation,
            ..
        } => (Kind::Ddl, Target::EveryShard),
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::CreateIndex(_)
        | Statement::Drop { .. }
        | Statement::Comment { .. }
        | Statement::Grant { .. }
        | Statement::Revoke { .. } => (Kind::Ddl, schema_change(facts)),
        // Maintenance and locks of map tables: each shard holds its part (or copy) of them.
        Statement::Analyze(_) | Statement::Vacuum(_) | Statement::Lock(_) => {
            (Kind::Ddl, schema_change(facts))
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        | Statement::Prepare { .. }
        // A cursor's FETCH and CLOSE run where it was declared: the transaction's backend, or
        // the one a WITH HOLD cursor pinned (cross-shard cursors the session answers itself).
        | Statement::Fetch { .. }
        | Statement::Close { .. } => (Kind::Session, Target::Anywhere),
        _ => (
            Kind::Write,
            default_or_refuse(facts, "this kind of statement"),
        ),
    };
    let locks_rows = matches!(statement, Statement::Query(query) if !query.locks.is_empty());
    let calls_unknown_function = facts.calls_unknown_function;
    Part {
        kind,
        target,
        locks_rows,
        calls_unknown_function,
    }
}

/// Statements the router does not analyse (no rule for their kind, or queries that write
/// through WITH / SELECT INTO): fine on the default shard when they name no map table,
/// otherwise refused with `what` in the message.
fn default_or_refuse(facts: &TokenFacts, what: &'static str) -> Target {
    match facts.mentions.first() {
        None => Target::DefaultShard,
        Some(table) => Target::Refused(Unsupported::UnanalysedStatement {
            what,
            table: table.clone(),
        }),
    }
}

/// `CREATE TABLE … AS` and views: over a sharded table each shard would keep only its own
/// rows, which reads of the new relation (on the default shard) would silently miss.
fn derived_table(map: &ShardMap, facts: &TokenFacts) -> Target {
    let sharded = (facts.mentions.iter()).find(|t| sharding_of(map, t).is_some());
    match sharded {
        Some(table) => Target::Refused(Unsupported::DerivedFromSharded {
            table: table.clone(),
        }),
        None => schema_change(facts),
    }
}

/// A statement on indexes: where their tables are, which the session reads from the catalog
/// (see `indexes`), unless it names a map table itself.
fn on_indexes(sql: &str, facts: &TokenFacts) -> Target {
    match indexes::indexes_named(sql) {
        Some(indexes) if facts.mentions.is_empty() => {
            Target::Refused(Unsupported::IndexTableUnknown { indexes })
        }
        _ => schema_change(facts),
    }
}

/// The map table `name` names, if any.
fn map_table_named(map: &ShardMap, name: &ast::ObjectName) -> Option<String> {
    super::scope::map_table_name(name).filter(|table| map.tables.contains_key(table))
}

/// DDL and TRUNCATE: on every shard when they touch map tables, which exist on every shard.
fn schema_change(facts: &TokenFacts) -> Target {
    if facts.mentions.is_empty() {
        Target::DefaultShard
    } else {
        Target::EveryShard
    }
}

fn copy(to: bool, map: &ShardMap, facts: &TokenFacts) -> (Kind, Target) {
    let kind = if to { Kind::Read } else { Kind::Write };
    let Some(table) = facts.mentions.first() else {
        return (kind, Target::DefaultShard);
    };
    let target = match (&map.tables[table].placement, to) {
        (Placement::Reference, true) => Target::Anywhere,
        (Placement::Reference, false) => Target::Refused(Unsupported::CopyIntoReference {
            table: table.clone(),
        }),
        (Placement::Sharded(_), true) => {
            Target::Scatter(format!("COPY {table} TO reads every shard"))
        }
        (Placement::Sharded(_), false) => Target::Refused(Unsupported::CopyIntoSharded {
            table: table.clone(),
        }),
    };
    (kind, target)
}

/// Text the parser rejects (`DO`, `CLUSTER`, …). Table maintenance of map tables runs on
/// every shard.
fn unparsed(map: &ShardMap, sql: &str) -> Part {
    if cursor::cursor_command(sql).is_some() {
        // MOVE, and FETCH forms the parser does not take: as a parsed FETCH.
        return Part {
            kind: Kind::Session,
            target: Target::Anywhere,
            locks_rows: false,
            calls_unknown_function: false,
        };
    }
    let mentions = mentioned_anywhere(map, sql);
    if !mentions.is_empty() && copy::is_copy(sql) {
        return copy_unparsed(map, sql, &mentions);
    }
    if let Some(indexes) = indexes::indexes_named(sql).filter(|_| mentions.is_empty()) {
        return Part {
            kind: Kind::Ddl,
            target: Target::Refused(Unsupported::IndexTableUnknown { indexes }),
            locks_rows: false,
            calls_unknown_function: false,
        };
    }
    if !mentions.is_empty() && is_maintenance(sql) {
        return Part {
            kind: Kind::Ddl,
            target: Target::EveryShard,
            locks_rows: false,
            calls_unknown_function: false,
        };
    }
    unanalysed(Target::Unparsed(mentions))
}

/// A COPY naming map tables that the parser rejects: read again with its boolean options
/// spelled as the parser knows them (`FREEZE ON` → `FREEZE TRUE`: what pgbench sends), else
/// refused by name. Never left to the shard a transaction is on: its rows belong to several.
fn copy_unparsed(map: &ShardMap, sql: &str, mentions: &[String]) -> Part {
    if let Some(spelled) = copy::spelled_for_parser(sql) {
        let mut parts = plan_parts(map, &spelled);
        if parts.len() == 1 && !matches!(parts[0].target, Target::Unparsed(_)) {
            return parts.remove(0);
        }
    }
    let table = mentions[0].clone();
    Part {
        kind: Kind::Write,
        target: Target::Refused(Unsupported::CopyOptionsUnread { table }),
        locks_rows: false,
        calls_unknown_function: false,
    }
}

/// Whether `sql` is table maintenance (`VACUUM`, `ANALYZE`, `CLUSTER`, `REINDEX`), whatever
/// its options: it changes no rows, and each shard does it to its own part of a table.
fn is_maintenance(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next();
    let maintenance = ["vacuum", "analyze", "analyse", "cluster", "reindex"];
    first.is_some_and(|word| maintenance.iter().any(|m| word.eq_ignore_ascii_case(m)))
}

/// Text too deep to parse: it runs where it would without its insides (a hinted shard, or the
/// default shard when it names no map table), or is refused with SQLSTATE 54001.
fn too_deep(map: &ShardMap, sql: &str, depth: usize) -> Part {
    let mentions = mentioned_anywhere(map, sql);
    unanalysed(Target::TooDeep { mentions, depth })
}

/// A statement the router could not look inside: it may write anything.
fn unanalysed(target: Target) -> Part {
    Part {
        kind: Kind::Write,
        target,
        locks_rows: false,
        calls_unknown_function: true,
    }
}

/// Map tables whose names appear as words anywhere in `sql`, strings and comments included
/// (a `DO` body is a string), lower-cased, in order of first mention.
fn mentioned_anywhere(map: &ShardMap, sql: &str) -> Vec<String> {
    let words = sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'));
    let mut mentions: Vec<String> = Vec::new();
    for word in words.filter(|w| !w.is_empty()).map(str::to_lowercase) {
        if map.tables.contains_key(&word) && !mentions.contains(&word) {
            mentions.push(word);
        }
    }
    mentions
}

/// The sharding of a table, if the map shards it.
pub(super) fn sharding_of<'a>(map: &'a ShardMap, table: &str) -> Option<&'a Sharding> {
    map.sharding(table)
}

/// Whether a query body is a plain SELECT (what the scope analysis understands).
pub(super) fn as_select(body: &SetExpr) -> Option<&ast::Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        _ => None,
    }
}
