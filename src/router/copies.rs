//! Statements that name map tables and tables only the default shard has at once:
//! `TRUNCATE a, b`, `DROP TABLE a, b`, `LOCK a, b`, `VACUUM ANALYZE a, b` (`pgbench -i` runs the
//! first and the last over its four tables). They run on every shard: whole on the default
//! shard, as on one server, and on every other shard naming only the map tables, which every
//! shard has; there the other names would fail as "does not exist".
//!
//! Part of the router (pure).

use sqlparser::ast::{ObjectName, ObjectType, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::scope::map_table_name;
use crate::config::ShardMap;

/// What the shards other than the default one run of `sql`, a statement routed to every
/// shard: `None` when that is `sql` itself.
pub(super) fn elsewhere(map: &ShardMap, sql: &str) -> Option<String> {
    let mapped =
        |name: &ObjectName| map_table_name(name).is_some_and(|t| map.tables.contains_key(&t));
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => match statements.as_slice() {
            [statement] => trimmed_statement(statement, &mapped),
            _ => None,
        },
        Err(_) => trimmed_maintenance(sql, &|name: &str| map.tables.contains_key(name)),
    }
}

/// A TRUNCATE, LOCK or DROP TABLE naming only the tables `mapped` keeps, if it named others too.
fn trimmed_statement(
    statement: &Statement,
    mapped: &dyn Fn(&ObjectName) -> bool,
) -> Option<String> {
    let mut trimmed = statement.clone();
    let (before, after) = match &mut trimmed {
        Statement::Truncate(truncate) => {
            let before = truncate.table_names.len();
            truncate.table_names.retain(|target| mapped(&target.name));
            (before, truncate.table_names.len())
        }
        Statement::Lock(lock) => {
            let before = lock.tables.len();
            lock.tables.retain(|target| mapped(&target.name));
            (before, lock.tables.len())
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            let before = names.len();
            names.retain(|name| mapped(name));
            (before, names.len())
        }
        _ => return None,
    };
    (after > 0 && after < before).then(|| trimmed.to_string())
}

/// Words that may come between VACUUM or ANALYZE and the tables.
const MAINTENANCE_WORDS: [&str; 7] = [
    "VACUUM",
    "ANALYZE",
    "ANALYSE",
    "FULL",
    "FREEZE",
    "VERBOSE",
    "SKIP_LOCKED",
];

/// A VACUUM or ANALYZE of several tables (which the parser does not take) naming only the
/// tables `mapped` keeps, if it named others too. Each table may have a column list.
fn trimmed_maintenance(sql: &str, mapped: &dyn Fn(&str) -> bool) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut tokens = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)));
    let mut head = Vec::new();
    let mut items: Vec<Vec<Token>> = Vec::new();
    let mut depth = 0usize;
    for token in tokens.by_ref() {
        let word = matches!(&token, Token::Word(w) if w.quote_style.is_none()
            && MAINTENANCE_WORDS.iter().any(|m| w.value.eq_ignore_ascii_case(m)));
        let in_options = depth > 0 || (token == Token::LParen && items.is_empty());
        if items.is_empty() && (word || in_options) {
            depth = paren_depth(depth, &token)?;
            head.push(token);
            continue;
        }
        match (&token, depth) {
            (Token::Comma, 0) => items.push(Vec::new()),
            (Token::SemiColon, 0) => return None,
            _ => {
                depth = paren_depth(depth, &token)?;
                if items.is_empty() {
                    items.push(Vec::new());
                }
                items.last_mut()?.push(token);
            }
        }
    }
    if !matches!(head.first(), Some(Token::Word(_))) || items.iter().any(Vec::is_empty) {
        return None;
    }
    let before = items.len();
    items.retain(|item| table_of(item).is_some_and(|t| mapped(&t)));
    if items.is_empty() || items.len() == before {
        return None;
    }
    let text = |tokens: &[Token]| tokens.iter().map(Token::to_string).collect::<Vec<_>>();
    let items: Vec<String> = items.iter().map(|item| text(item).join("")).collect();
    Some(format!("{} {}", text(&head).join(" "), items.join(", ")))
}

fn paren_depth(depth: usize, token: &Token) -> Option<usize> {
    match token {
        Token::LParen => Some(depth + 1),
        Token::RParen => depth.checked_sub(1),
        _ => Some(depth),
    }
}

/// The map name of the table an item of a VACUUM or ANALYZE names: the last word before its
/// column list (`public.t (a, b)` → `t`), folded as PostgreSQL folds it.
fn table_of(item: &[Token]) -> Option<String> {
    let name: Vec<&Token> = item.iter().take_while(|t| **t != Token::LParen).collect();
    match name.last()? {
        Token::Word(word) => {
            let quoted = word.quote_style.is_some();
            Some(super::scope::folded(&word.value, quoted))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_and_drop_leave_out_the_default_shards_own_tables_elsewhere() {
        let router = super::super::tests::router();
        let map = router.map();
        let cases = [
            (
                "TRUNCATE TABLE users, pgbench_branches, orders RESTART IDENTITY",
                Some("TRUNCATE TABLE users, orders RESTART IDENTITY"),
            ),
            (
                "DROP TABLE IF EXISTS settings, public.users CASCADE",
                Some("DROP TABLE IF EXISTS public.users CASCADE"),
            ),
            ("TRUNCATE users, orders", None),
            ("TRUNCATE pgbench_branches", None),
            ("DROP VIEW users_view, users", None),
            ("TRUNCATE \"Users\", users", Some("TRUNCATE users")),
            (
                "LOCK TABLE settings, orders IN SHARE MODE",
                Some("LOCK TABLE orders IN SHARE MODE"),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(elsewhere(map, sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn vacuum_and_analyze_of_several_tables_leave_them_out_too() {
        let router = super::super::tests::router();
        let map = router.map();
        let cases = [
            (
                "vacuum analyze pgbench_branches, users, pgbench_tellers, orders",
                Some("vacuum analyze users, orders"),
            ),
            (
                "VACUUM (VERBOSE, ANALYZE) users (name, country), settings",
                Some("VACUUM ( VERBOSE , ANALYZE ) users(name,country)"),
            ),
            ("ANALYZE public.users, x", Some("ANALYZE public.users")),
            ("VACUUM users, orders", None),
            ("VACUUM x, y", None),
            ("VACUUM users, x; DROP TABLE orders", None),
        ];
        for (sql, want) in cases {
            assert_eq!(elsewhere(map, sql).as_deref(), want, "{sql}");
        }
    }
}
