//! The few facts about SQL text the session needs for pooling, found with a light scan instead
//! of a full parse: which statements change session state (SET/RESET/DISCARD/DEALLOCATE) and
//! which create state that cannot move to another backend (LISTEN, temp tables, session
//! advisory locks, WITH HOLD cursors, SQL-level PREPARE). A false "pins" only costs pooling
//! efficiency; a missed SET would silently lose a setting, so SET detection is exact.

use std::sync::Arc;

use crate::sql::lexer::{self, Token, TokenKind};

/// A statement that matters to transaction pooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEffect {
    /// `SET [SESSION] name …`: replay the statement on other backends.
    Set {
        /// Lower-cased parameter name.
        name: String,
        /// The statement text, replayed as is.
        statement: Arc<str>,
    },
    /// `RESET name`.
    Reset {
        /// Lower-cased parameter name.
        name: String,
    },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`: resets settings and drops prepared statements.
    DiscardAll,
    /// `DEALLOCATE ALL`: drops every prepared statement.
    DeallocateAll,
    /// State that only exists on this backend; the client keeps it for the session.
    Pin(PinReason),
    /// `set_config(name, value, false)`: a setting changed behind the proxy's back (it follows
    /// SET, not function calls). The backend is closed when the client lets it go, so no other
    /// client inherits it (pg_dump scripts set `search_path` this way; asyncpg toggles `jit`).
    UntrackedSetting,
}

/// Why a client was pinned to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    /// LISTEN: notifications arrive on the connection that listens.
    Listen,
    /// A temporary table lives in its creating session.
    TempTable,
    /// Session-level advisory locks are held by the session.
    AdvisoryLock,
    /// A cursor WITH HOLD outlives its transaction.
    HoldCursor,
    /// SQL-level PREPARE creates a statement in this session.
    SqlPrepare,
}

/// Session effects of every statement in a simple-query string, in order. Allocates nothing
/// for the common statement that has none.
pub fn session_effects(sql: &str) -> Vec<SessionEffect> {
    split_statements(sql).filter_map(classify).collect()
}

fn classify(statement: &str) -> Option<SessionEffect> {
    let (first, rest) = next_word(statement)?;
    let second = next_word(rest);
    let second_is = |keyword: &str| second.as_ref().is_some_and(|(w, _)| w.is(keyword));
    if first.is("set") {
        classify_set(statement, rest)
    } else if first.is("reset") {
        let (name, _) = second?;
        Some(if name.is("all") {
            SessionEffect::ResetAll
        } else {
            SessionEffect::Reset { name: name.name() }
        })
    } else if first.is("discard") && second_is("all") {
        Some(SessionEffect::DiscardAll)
    } else if first.is("deallocate") && deallocates_all(rest) {
        Some(SessionEffect::DeallocateAll)
    } else if first.is("listen") {
        Some(SessionEffect::Pin(PinReason::Listen))
    } else if first.is("prepare") && second.is_some() && !second_is("transaction") {
        // Single-statement PREPARE is rewritten (see sql_prepared); inside a multi-statement
        // query it pins.
        Some(SessionEffect::Pin(PinReason::SqlPrepare))
    } else if let Some(name) = set_config_alone(statement) {
        Some(SessionEffect::Set {
            name,
            statement: statement.into(),
        })
    } else if sets_config_for_the_session(statement) {
        Some(SessionEffect::UntrackedSetting)
    } else {
        pin_reason(&first, statement).map(SessionEffect::Pin)
    }
}

/// Whether the words after DEALLOCATE are `ALL` or `PREPARE ALL`.
fn deallocates_all(after: &str) -> bool {
    match next_word(after) {
        Some((word, _)) if word.is("all") => true,
        Some((word, rest)) if word.is("prepare") => {
            next_word(rest).is_some_and(|(w, _)| w.is("all"))
        }
        _ => false,
    }
}

/// `SET [SESSION] name …`; transaction-scoped forms carry nothing over.
fn classify_set(statement: &str, after_set: &str) -> Option<SessionEffect> {
    let (word, rest) = next_word(after_set)?;
    let name = if transaction_scoped(&word) {
        return None;
    } else if word.is("session") {
        let (word, _) = next_word(rest)?;
        if word.is("authorization") {
            "session_authorization".to_owned()
        } else if word.is("characteristics") {
            "session_characteristics".to_owned()
        } else {
            word.name()
        }
    } else if word.is("time") {
        "timezone".to_owned()
    } else {
        word.name()
    };
    Some(SessionEffect::Set {
        name,
        statement: statement.into(),
    })
}

/// The word after SET of a setting that ends with the transaction (`SET LOCAL`,
/// `SET TRANSACTION`, `SET CONSTRAINTS`).
fn transaction_scoped(word: &Word<'_>) -> bool {
    word.is("local") || word.is("transaction") || word.is("constraints")
}

/// The statements of `sql` that change a setting: for the rest of the transaction (`SET
/// LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`) or for the session (`SET`, `RESET`, a lone
/// `set_config(…, false)`). Inside a transaction they follow it to every shard it reaches.
pub fn settings_statements(sql: &str) -> impl Iterator<Item = &str> {
    split_statements(sql).filter(|statement| {
        let Some((first, rest)) = next_word(statement) else {
            return false;
        };
        let scoped =
            first.is("set") && next_word(rest).is_some_and(|(word, _)| transaction_scoped(&word));
        scoped
            || matches!(
                classify(statement),
                Some(
                    SessionEffect::Set { .. }
                        | SessionEffect::Reset { .. }
                        | SessionEffect::ResetAll
                )
            )
    })
}

/// Session-level state created by function calls or DDL anywhere in the statement.
fn pin_reason(first: &Word<'_>, statement: &str) -> Option<PinReason> {
    if contains_ci(statement, "pg_advisory_lock") || contains_ci(statement, "pg_try_advisory_lock")
    {
        return Some(PinReason::AdvisoryLock);
    }
    if first.is("create")
        && (contains_ci(statement, " temp ") || contains_ci(statement, " temporary "))
    {
        return Some(PinReason::TempTable);
    }
    if first.is("declare") && contains_ci(statement, "with hold") {
        return Some(PinReason::HoldCursor);
    }
    None
}

/// Whether `sql` (its first statement) may change the schema: CREATE, ALTER, DROP or
/// IMPORT. Looks at the first word only, as it runs for every statement.
pub fn changes_schema(sql: &str) -> bool {
    let Some((first, _)) = next_word(sql) else {
        return false;
    };
    first.is("create") || first.is("alter") || first.is("drop") || first.is("import")
}

/// The parameter `statement` sets when it is nothing but `SELECT [pg_catalog.]set_config('name',
/// 'value', false)`: a session-level SET spelled as a function call (pg_dump sets search_path
/// so), followed from backend to backend as SET is. Other calls are untracked.
fn set_config_alone(statement: &str) -> Option<String> {
    if !contains_ci(statement, "set_config") {
        return None; // the common case, without lexing
    }
    let significant: Vec<Token> = lexer::tokens(statement)
        .filter(|t| t.is_significant())
        .collect();
    let rest = match significant.as_slice() {
        [select, schema, dot, rest @ ..]
            if select.is_keyword(statement, "select")
                && schema.is_keyword(statement, "pg_catalog")
                && dot.is_symbol(statement, ".") =>
        {
            rest
        }
        [select, rest @ ..] if select.is_keyword(statement, "select") => rest,
        _ => return None,
    };
    let [
        call,
        open,
        name,
        comma,
        value,
        comma2,
        local,
        close,
        end @ ..,
    ] = rest
    else {
        return None;
    };
    let plain_string = |t: &Token| t.kind == TokenKind::String(lexer::StringStyle::Plain);
    let alone = call.is_keyword(statement, "set_config")
        && open.is_symbol(statement, "(")
        && plain_string(name)
        && comma.is_symbol(statement, ",")
        && plain_string(value)
        && comma2.is_symbol(statement, ",")
        && local.is_keyword(statement, "false")
        && close.is_symbol(statement, ")")
        && end.iter().all(|t| t.is_symbol(statement, ";"));
    // Only a plain string's text is quoted (a lone word, say, is one byte long).
    alone.then(|| {
        let quoted = name.text(statement);
        quoted[1..quoted.len() - 1]
            .replace("''", "'")
            .to_ascii_lowercase()
    })
}

/// Whether `statement` calls `set_config` with a third argument other than a literal `true`
/// (transaction-local, which ends with the transaction and leaks nothing).
fn sets_config_for_the_session(statement: &str) -> bool {
    if !contains_ci(statement, "set_config") {
        return false; // the common case, without lexing
    }
    let significant: Vec<Token> = lexer::tokens(statement)
        .filter(|t| t.is_significant())
        .collect();
    let calls = significant.windows(2).enumerate().filter(|(_, pair)| {
        pair[0].is_keyword(statement, "set_config") && pair[1].is_symbol(statement, "(")
    });
    calls.into_iter().any(|(at, _)| {
        let third = third_argument(statement, &significant[at + 2..]);
        third.is_none_or(|third| !third.eq_ignore_ascii_case("true"))
    })
}

/// The text of the third top-level argument of a call whose tokens after `(` are `arguments`.
fn third_argument<'a>(sql: &'a str, arguments: &[Token]) -> Option<&'a str> {
    let (mut depth, mut index) = (0usize, 0usize);
    let mut span: Option<(usize, usize)> = None;
    for token in arguments {
        let punctuation = token.kind == TokenKind::Punct;
        match token.text(sql) {
            "(" | "[" if punctuation => depth += 1,
            ")" | "]" if punctuation && depth == 0 => {
                return (index == 2).then(|| span.map(|(from, to)| &sql[from..to]))?;
            }
            ")" | "]" if punctuation => depth -= 1,
            "," if punctuation && depth == 0 => {
                index += 1;
                continue;
            }
            _ => {}
        }
        if index == 2 {
            let from = span.map_or(token.start, |(from, _)| from);
            span = Some((from, token.end));
        }
    }
    None
}

/// ASCII case-insensitive substring test, without allocating.
fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// An identifier or keyword as written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Word<'a> {
    text: &'a str,
    quoted: bool,
}

impl Word<'_> {
    /// Whether this is the (unquoted) keyword `keyword`, in any case.
    pub(super) fn is(&self, keyword: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(keyword)
    }

    /// The identifier as PostgreSQL resolves it: folded to lower case unless quoted.
    pub(super) fn name(&self) -> String {
        if self.quoted {
            self.text.to_owned()
        } else {
            self.text.to_ascii_lowercase()
        }
    }
}

/// Whether `sql` is one statement that ends a transaction: COMMIT, END, ROLLBACK or ABORT
/// (not `ROLLBACK TO SAVEPOINT`, which goes on with it).
pub(super) fn ends_transaction(sql: &str) -> bool {
    let mut statements = split_statements(sql);
    let (Some(only), None) = (statements.next(), statements.next()) else {
        return false;
    };
    let mut words = std::iter::successors(next_word(only), |(_, rest)| next_word(rest));
    let first = words.next().map(|(w, _)| w);
    let ends = ["commit", "end", "rollback", "abort"];
    let to_savepoint = words.take(2).any(|(w, _)| w.is("to"));
    first.is_some_and(|w| ends.iter().any(|k| w.is(k))) && !to_savepoint
}

/// The next word of `text` (skipping white space and comments) and the text after it.
pub(super) fn next_word(text: &str) -> Option<(Word<'_>, &str)> {
    let first = lexer::tokens(text).find(|t| t.is_significant());
    let text = &text[first.map_or(text.len(), |t| t.start)..];
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find('"')?;
        let word = Word {
            text: &quoted[..end],
            quoted: true,
        };
        return Some((word, &quoted[end + 1..]));
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'))
        .unwrap_or(text.len());
    let word = Word {
        text: &text[..end],
        quoted: false,
    };
    (end > 0).then_some((word, &text[end..]))
}

/// Splits a simple-query string into statements at top-level semicolons (by the
/// [`crate::sql::lexer`], so none inside strings, quoted identifiers, comments or
/// dollar-quoted bodies). Leading comments and surrounding white space are dropped, empty
/// statements skipped.
pub fn split_statements(sql: &str) -> Statements<'_> {
    Statements {
        sql,
        tokens: lexer::tokens(sql),
    }
}

/// Iterator of [`split_statements`].
pub struct Statements<'a> {
    sql: &'a str,
    tokens: lexer::Lexer<'a>,
}

impl<'a> Iterator for Statements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let mut seen_any = false;
            let (mut start, mut end) = (None, 0);
            for token in self.tokens.by_ref() {
                seen_any = true;
                if token.is_symbol(self.sql, ";") {
                    break;
                }
                if token.is_significant() {
                    start.get_or_insert(token.start);
                }
                if start.is_some() && token.kind != TokenKind::Space {
                    end = token.end;
                }
            }
            match start {
                Some(start) => return Some(&self.sql[start..end]),
                None if seen_any => continue,
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_quotes_comments_and_dollar_bodies() {
        let sql =
            "SELECT ';' ; -- x;y\nSET a = 1; CREATE FUNCTION f() AS $b$ ; $b$; /* ; */ SELECT $1";
        let parts: Vec<&str> = split_statements(sql).collect();
        assert_eq!(
            parts,
            vec![
                "SELECT ';'",
                "SET a = 1",
                "CREATE FUNCTION f() AS $b$ ; $b$",
                "SELECT $1"
            ]
        );
    }

    #[test]
    fn escape_strings_keep_backslash_quotes_inside() {
        let parts: Vec<&str> =
            split_statements(r"SELECT E'it\'s; here', e'\\'; SET a = 1;;").collect();
        assert_eq!(parts, vec![r"SELECT E'it\'s; here', e'\\'", "SET a = 1"]);
        // A column named e followed by a string is not an escape string.
        let parts: Vec<&str> = split_statements(r"SELECT some'\'; SELECT 2").collect();
        assert_eq!(parts, vec![r"SELECT some'\'", "SELECT 2"]);
    }

    #[test]
    fn finds_session_settings() {
        let effects =
            session_effects("set search_path to a, b; SET LOCAL x = 1; RESET work_mem; RESET ALL");
        assert_eq!(
            effects,
            vec![
                SessionEffect::Set {
                    name: "search_path".into(),
                    statement: "set search_path to a, b".into()
                },
                SessionEffect::Reset {
                    name: "work_mem".into()
                },
                SessionEffect::ResetAll,
            ]
        );
    }

    #[test]
    fn names_special_set_forms() {
        let effects = session_effects(
            "SET SESSION statement_timeout = 5; SET TIME ZONE 'UTC'; SET SESSION AUTHORIZATION bob",
        );
        let names: Vec<_> = effects
            .iter()
            .map(|e| match e {
                SessionEffect::Set { name, .. } => name.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(
            names,
            vec!["statement_timeout", "timezone", "session_authorization"]
        );
    }

    #[test]
    fn finds_pinning_statements() {
        let pins = |sql| session_effects(sql);
        assert_eq!(
            pins("LISTEN ch"),
            vec![SessionEffect::Pin(PinReason::Listen)]
        );
        assert_eq!(
            pins("create temp table t (a int)"),
            vec![SessionEffect::Pin(PinReason::TempTable)]
        );
        assert_eq!(
            pins("select pg_advisory_lock(1)"),
            vec![SessionEffect::Pin(PinReason::AdvisoryLock)]
        );
        assert_eq!(pins("SELECT pg_advisory_xact_lock(1)"), vec![]);
        assert_eq!(
            pins("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            vec![SessionEffect::Pin(PinReason::HoldCursor)]
        );
        assert_eq!(
            pins("PREPARE q AS SELECT 1"),
            vec![SessionEffect::Pin(PinReason::SqlPrepare)]
        );
        assert_eq!(pins("DISCARD ALL"), vec![SessionEffect::DiscardAll]);
        assert_eq!(pins("DEALLOCATE ALL"), vec![SessionEffect::DeallocateAll]);
        assert_eq!(
            pins("deallocate prepare all"),
            vec![SessionEffect::DeallocateAll]
        );
        assert_eq!(pins("DEALLOCATE install_q"), vec![]);
        // Comments between words hide nothing.
        assert_eq!(
            session_effects("SET /* x */ search_path TO a"),
            vec![SessionEffect::Set {
                name: "search_path".into(),
                statement: "SET /* x */ search_path TO a".into(),
            }]
        );
        assert_eq!(
            session_effects("RESET -- all\n work_mem"),
            vec![SessionEffect::Reset {
                name: "work_mem".into()
            }]
        );
        let set_config = vec![SessionEffect::UntrackedSetting];
        let alone = "SELECT pg_catalog.set_config('Search_Path', 'a, ''b''', FALSE)";
        assert_eq!(
            pins(alone),
            vec![SessionEffect::Set {
                name: "search_path".into(),
                statement: alone.into(),
            }]
        );
        assert_eq!(
            pins("SELECT set_config('search_path', '', false) FROM t"),
            set_config
        );
        assert_eq!(
            pins("SELECT set_config(name, 'x', false) FROM pg_settings"),
            set_config
        );
        assert_eq!(pins("SELECT set_config(x, 'a', false)"), set_config);
        assert_eq!(pins("SELECT set_config('a.b', f(1, 2), $1)"), set_config);
        assert_eq!(pins("SELECT SET_CONFIG('a.b', 'x,y)', TRUE)"), vec![]);
        assert_eq!(pins("SELECT current_setting('search_path')"), vec![]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(sql in "\\PC{0,60}") {
            let _ = session_effects(&sql);
        }
    }
}
