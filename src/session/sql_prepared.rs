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
