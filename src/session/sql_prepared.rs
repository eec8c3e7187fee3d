//! SQL-level `PREPARE` / `EXECUTE` / `DEALLOCATE` under transaction pooling.
//!
//! The statement name is rewritten to a backend-wide name derived from the statement's text,
//! exactly like protocol-level statements (see `prepared`), so `EXECUTE` works on whichever
//! backend the client gets: the proxy replays the `PREPARE` there first. Only single-statement
//! queries are rewritten; a `PREPARE` inside a multi-statement query pins the client instead.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::statements::next_word;

/// A SQL-level prepared-statement command, split around its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlCommand<'a> {
    /// `PREPARE name <rest>`.
    Prepare {
        /// Normalized name (unquoted identifiers fold to lower case).
        name: String,
        /// Everything after the name: parameter types, `AS`, the statement.
        rest: &'a str,
    },
    /// `EXECUTE name <rest>`.
    Execute {
        /// Normalized name.
        name: String,
        /// Everything after the name: the argument list, if any.
        rest: &'a str,
    },
    /// `DEALLOCATE [PREPARE] name`.
    Deallocate {
        /// Normalized name.
        name: String,
    },
}

/// A client's SQL-level statement and how to create it on any backend.
#[derive(Debug)]
pub struct SqlPrepared {
    /// Name on every backend.
    pub backend_name: Arc<str>,
    /// `PREPARE <backend_name> <rest>`.
    pub prepare_sql: String,
    /// The statement itself (after `AS`), which `EXECUTE` is routed by.
    pub query: String,
    /// The parameter types the PREPARE declares, as written.
    pub declared_types: Vec<String>,
}

impl SqlPrepared {
    /// The statement with each `$n` replaced by the EXECUTE's constant argument `n` (cast to
    /// its declared type): what the statement runs as, for reads the proxy runs itself on
    /// several shards. `None` when an argument is missing (the EXECUTE passed expressions).
    pub fn with_arguments(&self, arguments: &[Option<String>]) -> Option<String> {
        use crate::sql::lexer::{TokenKind, tokens};
        use std::fmt::Write;
        let query = &self.query;
        let mut out = String::with_capacity(query.len() + 16 * arguments.len());
        let mut copied = 0;
        for token in tokens(query).filter(|t| t.kind == TokenKind::Param) {
            let n: usize = token.text(query)[1..].parse().ok()?;
            let argument = arguments.get(n.checked_sub(1)?)?;
            out.push_str(&query[copied..token.start]);
            let value = match argument {
                Some(text) => dollar_quoted(text),
                None => "NULL".to_owned(),
            };
            match self.declared_types.get(n - 1) {
                Some(declared) => write!(out, "({value}::{declared})").ok()?,
                None => out.push_str(&value),
            }
            copied = token.end;
        }
        out.push_str(&query[copied..]);
        Some(out)
    }
}

/// `text` as a dollar-quoted constant (never read for escapes, whatever the session's
/// `standard_conforming_strings`), with a tag the text does not contain.
fn dollar_quoted(text: &str) -> String {
    let mut tag = String::from("$sg$");
    while text.contains(&tag) {
        tag.insert(tag.len() - 1, 'x');
    }
    format!("{tag}{text}{tag}")
}

/// One client's SQL-level statements, by normalized name.
#[derive(Debug, Default)]
pub struct SqlStatements(HashMap<String, Arc<SqlPrepared>>);

impl SqlStatements {
    /// Registers `name`, named on backends by `current_name` of its base name (see
    /// `KnownStatements::current_name`); `None` if the client already has one by that name.
    pub fn register(
        &mut self,
        name: &str,
        rest: &str,
        current_name: impl FnOnce(Arc<str>) -> Arc<str>,
    ) -> Option<Arc<SqlPrepared>> {
        if self.0.contains_key(name) {
            return None;
        }
        let backend_name = current_name(backend_name(rest));
        let prepared = Arc::new(SqlPrepared {
            prepare_sql: format!("PREPARE {backend_name} {rest}"),
            query: statement_after_as(rest).to_owned(),
            declared_types: declared_types(rest),
            backend_name,
        });
        self.0.insert(name.to_owned(), prepared.clone());
        Some(prepared)
    }

    /// The statement the client calls `name`.
    pub fn get(&self, name: &str) -> Option<Arc<SqlPrepared>> {
        self.0.get(name).cloned()
    }

    /// Forgets `name`; true if it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.0.remove(name).is_some()
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// `(type, …) AS statement` → the types as written (none without the list).
fn declared_types(rest: &str) -> Vec<String> {
    let Some(list) = rest.trim_start().strip_prefix('(') else {
        return Vec::new();
    };
    let mut types = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                types.push(list[start..i].trim().to_owned());
                return types;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                types.push(list[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    Vec::new()
}

/// `[(type, …)] AS statement` → `statement` (empty when the text has another shape; the
/// server then reports the syntax error).
fn statement_after_as(rest: &str) -> &str {
    let mut text = rest.trim_start();
    if text.starts_with('(') {
        let mut depth = 0usize;
        let end = text.char_indices().find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i + 1)
        });
        text = &text[end.unwrap_or(text.len())..];
    }
    match next_word(text) {
        Some((word, statement)) if word.is("as") => statement.trim_start(),
        _ => "",
    }
}

fn backend_name(rest: &str) -> Arc<str> {
    let half = |seed: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        (seed, rest).hash(&mut hasher);
        hasher.finish()
    };
    format!("sgq_{:016x}{:016x}", half(1), half(2)).into()
}

/// Recognizes a single statement that is a SQL-level prepared-statement command.
pub fn parse_sql_command(statement: &str) -> Option<SqlCommand<'_>> {
    let (keyword, after) = next_word(statement)?;
    if keyword.is("prepare") {
        let (name, rest) = next_word(after)?;
        (!name.is("transaction")).then(|| SqlCommand::Prepare {
            name: name.name(),
            rest,
        })
    } else if keyword.is("execute") {
        let (name, rest) = next_word(after)?;
        Some(SqlCommand::Execute {
            name: name.name(),
            rest,
        })
    } else if keyword.is("deallocate") {
        let (mut name, mut rest) = next_word(after)?;
        if name.is("prepare") {
            (name, rest) = next_word(rest)?;
        }
        (!name.is("all") && rest.trim().is_empty())
            .then(|| SqlCommand::Deallocate { name: name.name() })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_take_the_place_of_parameters_cast_to_their_declared_types() {
        let mut statements = SqlStatements::default();
        let rest = " (bigint, numeric(10, 2)) AS SELECT '$1', $1 + $2 -- $2\n, $1";
        let prepared = statements.register("q", rest, |name| name).unwrap();
        assert_eq!(prepared.declared_types, ["bigint", "numeric(10, 2)"]);
        let arguments = [Some("7".to_owned()), None];
        assert_eq!(
            prepared.with_arguments(&arguments).unwrap(),
            "SELECT '$1', ($sg$7$sg$::bigint) + (NULL::numeric(10, 2)) -- $2\n, ($sg$7$sg$::bigint)"
        );
        assert_eq!(
            prepared.with_arguments(&arguments[..1]),
            None,
            "$2 has no argument"
        );
        let untyped = statements
            .register("u", " AS SELECT $1", |name| name)
            .unwrap();
        let quoted = [Some("it's $sg$".to_owned())];
        assert_eq!(
            untyped.with_arguments(&quoted).unwrap(),
            "SELECT $sgx$it's $sg$$sgx$"
        );
    }

    #[test]
    fn splits_commands_around_their_names() {
        assert_eq!(
            parse_sql_command("PREPARE Q1 (int) AS SELECT $1"),
            Some(SqlCommand::Prepare {
                name: "q1".into(),
                rest: " (int) AS SELECT $1"
            })
        );
        assert_eq!(
            parse_sql_command("execute \"Q1\"(5)"),
            Some(SqlCommand::Execute {
                name: "Q1".into(),
                rest: "(5)"
            })
        );
        assert_eq!(
            parse_sql_command("DEALLOCATE PREPARE q1"),
            Some(SqlCommand::Deallocate { name: "q1".into() })
        );
        assert_eq!(
            parse_sql_command("DEALLOCATE q1"),
            Some(SqlCommand::Deallocate { name: "q1".into() })
        );
        assert_eq!(parse_sql_command("DEALLOCATE ALL"), None);
        assert_eq!(parse_sql_command("PREPARE TRANSACTION 'x'"), None);
        assert_eq!(parse_sql_command("SELECT 1"), None);
    }

    #[test]
    fn same_statement_text_shares_a_backend_name() {
        let mut a = SqlStatements::default();
        let mut b = SqlStatements::default();
        let pa = a.register("x", " AS SELECT 1", |n| n).unwrap();
        let pb = b.register("y", " AS SELECT 1", |n| n).unwrap();
        assert_eq!(pa.backend_name, pb.backend_name);
        assert!(pa.prepare_sql.starts_with("PREPARE sgq_"));
        assert!(a.register("x", " AS SELECT 2", |n| n).is_none());
    }
}
