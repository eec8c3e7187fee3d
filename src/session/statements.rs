//! The few facts about SQL text the session needs for pooling, found with a light scan instead
//! of a full parse: which statements change session state (SET/RESET/DISCARD/DEALLOCATE) and
//! which create state that cannot move to another backend (LISTEN, temp tables, session
//! advisory locks, WITH HOLD cursors, SQL-level PREPARE). A false "pins" only costs pooling
//! efficiency; a missed SET would silently lose a setting, so SET detection is exact.

use std::sync::Arc;

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

/// Session effects of every statement in a simple-query string, in order.
pub fn session_effects(sql: &str) -> Vec<SessionEffect> {
    split_statements(sql).filter_map(classify).collect()
}

fn classify(statement: &str) -> Option<SessionEffect> {
    let words: Vec<String> = leading_words(statement, 3);
    let first = words.first()?.as_str();
    match first {
        "set" => classify_set(statement, &words),
        "reset" => match words.get(1).map(String::as_str) {
            Some("all") => Some(SessionEffect::ResetAll),
            Some(name) => Some(SessionEffect::Reset {
                name: name.to_owned(),
            }),
            None => None,
        },
        "discard" if words.get(1).is_some_and(|w| w == "all") => Some(SessionEffect::DiscardAll),
        "deallocate" if words.iter().any(|w| w == "all") => Some(SessionEffect::DeallocateAll),
        "listen" => Some(SessionEffect::Pin(PinReason::Listen)),
        // Single-statement PREPARE is rewritten (see sql_prepared); inside a multi-statement
        // query it pins.
        "prepare" if words.get(1).is_some_and(|w| w != "transaction") => {
            Some(SessionEffect::Pin(PinReason::SqlPrepare))
        }
        _ => pin_reason(statement).map(SessionEffect::Pin),
    }
}

fn classify_set(statement: &str, words: &[String]) -> Option<SessionEffect> {
    let name = match words.get(1)?.as_str() {
        // Transaction-scoped: gone at commit, nothing to carry over.
        "local" | "transaction" | "constraints" => return None,
        "session" => match words.get(2)?.as_str() {
            "authorization" => "session_authorization".to_owned(),
            "characteristics" => "session_characteristics".to_owned(),
            other => other.to_owned(),
        },
        "time" => "timezone".to_owned(),
        other => other.to_owned(),
    };
    Some(SessionEffect::Set {
        name,
        statement: statement.into(),
    })
}

/// Session-level state created by function calls or DDL anywhere in the statement.
fn pin_reason(statement: &str) -> Option<PinReason> {
    let lower = statement.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("pg_advisory_lock") || has("pg_try_advisory_lock") {
        return Some(PinReason::AdvisoryLock);
    }
    if lower.starts_with("create") && (has(" temp ") || has(" temporary ")) {
        return Some(PinReason::TempTable);
    }
    if lower.starts_with("declare") && has("with hold") {
        return Some(PinReason::HoldCursor);
    }
    None
}

/// The first `n` words (identifiers, lower-cased unless quoted) of a statement.
fn leading_words(statement: &str, n: usize) -> Vec<String> {
    let mut words = Vec::with_capacity(n);
    let mut rest = statement;
    while words.len() < n {
        rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            words.push(quoted[..end].to_owned());
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        words.push(rest[..end].to_ascii_lowercase());
        rest = &rest[end..];
    }
    words
}

/// Splits a simple-query string into statements at top-level semicolons, skipping comments,
/// quoted strings, quoted identifiers and dollar-quoted bodies. Leading comments are dropped.
pub fn split_statements(sql: &str) -> impl Iterator<Item = &str> {
    let mut statements = Vec::new();
    let bytes = sql.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        i = match bytes[i] {
            b';' => {
                statements.push(&sql[start..i]);
                start = i + 1;
                i + 1
            }
            b'\'' | b'"' => skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_block_comment(bytes, i),
            b'$' => skip_dollar_quoted(sql, i),
            _ => i + 1,
        };
    }
    statements.push(&sql[start.min(sql.len())..]);
    statements
        .into_iter()
        .map(strip_leading_comments)
        .filter(|s| !s.is_empty())
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim();
        if s.starts_with("--") {
            s = s.find('\n').map_or("", |n| &s[n + 1..]);
        } else if s.starts_with("/*") {
            s = &s[skip_block_comment(s.as_bytes(), 0).min(s.len())..];
        } else {
            return s;
        }
    }
}

fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            // A doubled quote is an escaped quote inside the literal.
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_line(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| start + p + 1)
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    // Block comments nest in PostgreSQL.
    let (mut depth, mut i) = (0usize, start);
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_dollar_quoted(sql: &str, start: usize) -> usize {
    let rest = &sql[start + 1..];
    let tag_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if !rest[tag_len..].starts_with('$')
        || rest[..tag_len].starts_with(|c: char| c.is_ascii_digit())
    {
        return start + 1; // `$1` parameter or a lone `$`.
    }
    let delimiter = &sql[start..start + tag_len + 2];
    let body_start = start + delimiter.len();
    sql[body_start..]
        .find(delimiter)
        .map_or(sql.len(), |p| body_start + p + delimiter.len())
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
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(sql in "\\PC{0,60}") {
            let _ = session_effects(&sql);
        }
    }
}
