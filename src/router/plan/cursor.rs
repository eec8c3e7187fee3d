//! Cursors over map tables: `DECLARE name CURSOR FOR query` runs where its query would (one
//! shard when the query has the key), and over several shards the session keeps the merged
//! rows itself (see `session::scatter::cursors`); `FETCH`, `MOVE` and `CLOSE` of such a
//! cursor are answered from them.

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;

use crate::router::scope::{folded, ident_name};
use crate::sql::lexer::{Token, tokens};

/// A `DECLARE … CURSOR FOR query`, as the session needs it to keep the cursor's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCursor {
    /// The cursor's name, folded as PostgreSQL folds it.
    pub name: String,
    /// Its query, as the client wrote it.
    pub query: String,
    /// `BINARY`: rows in binary format.
    pub binary: bool,
    /// `WITH HOLD`: it outlives its transaction.
    pub hold: bool,
}

/// `sql` as a cursor declaration (one statement), if it is one.
pub fn declared_cursor(sql: &str) -> Option<DeclaredCursor> {
    let first = tokens(sql).find(|t| t.is_significant())?;
    if !first.is_keyword(sql, "declare") {
        return None; // Asked of every cross-shard read: only a DECLARE is read further.
    }
    let significant: Vec<Token> = tokens(sql).filter(|t| t.is_significant()).collect();
    let statements = sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Declare { stmts, .. }] = &statements[..] else {
        return None;
    };
    let [declare] = &stmts[..] else {
        return None;
    };
    let [name] = &declare.names[..] else {
        return None;
    };
    declare.for_query.as_ref()?;
    // The query is the text after the first FOR that follows CURSOR.
    let cursor = significant
        .iter()
        .position(|t| t.is_keyword(sql, "cursor"))?;
    let after = &significant[cursor + 1..];
    let for_keyword = after.iter().find(|t| t.is_keyword(sql, "for"))?;
    let query = sql[for_keyword.end..]
        .trim()
        .trim_end_matches(';')
        .trim_end();
    Some(DeclaredCursor {
        name: ident_name(name),
        query: query.to_owned(),
        binary: declare.binary == Some(true),
        hold: declare.hold == Some(true),
    })
}

/// A statement on a cursor by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorCommand {
    /// `FETCH [direction] [FROM | IN] name` (`moves`: `MOVE …`, which returns no rows).
    Fetch {
        /// The cursor's name, folded.
        name: String,
        /// How many rows forward; `None` for ALL.
        rows: Option<u64>,
        /// `MOVE`.
        moves: bool,
    },
    /// A FETCH or MOVE in a direction other than forward (PRIOR, FIRST, LAST, ABSOLUTE,
    /// RELATIVE, BACKWARD), or with a count of 0 or less.
    Backward {
        /// The cursor's name, folded.
        name: String,
    },
    /// `CLOSE name`.
    Close {
        /// The cursor's name, folded.
        name: String,
    },
    /// `CLOSE ALL`.
    CloseAll,
}

/// `sql` as a FETCH, MOVE or CLOSE of a cursor, if it is one.
pub fn cursor_command(sql: &str) -> Option<CursorCommand> {
    let words: Vec<Token> = tokens(sql).filter(|t| t.is_significant()).collect();
    let words = match words.last() {
        Some(last) if last.is_symbol(sql, ";") => &words[..words.len() - 1],
        _ => &words[..],
    };
    if words.iter().any(|t| t.is_symbol(sql, ";")) {
        return None; // several statements
    }
    let (first, rest) = words.split_first()?;
    let text = |t: &Token| t.text(sql);
    if first.is_keyword(sql, "close") {
        return match rest {
            [all] if all.is_keyword(sql, "all") => Some(CursorCommand::CloseAll),
            [name] => Some(CursorCommand::Close {
                name: cursor_name(text(name))?,
            }),
            _ => None,
        };
    }
    let moves = first.is_keyword(sql, "move");
    if !moves && !first.is_keyword(sql, "fetch") {
        return None;
    }
    let (name, direction) = rest.split_last()?;
    let name = cursor_name(text(name))?;
    let direction = match direction {
        [before @ .., from] if from.is_keyword(sql, "from") || from.is_keyword(sql, "in") => before,
        all => all,
    };
    let words: Vec<String> = direction.iter().map(|t| text(t).to_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // A count of 0 re-reads the current row, which a kept cursor does not keep.
    let count = |n: &str| n.parse::<u64>().ok().filter(|&n| n > 0);
    let rows = match words[..] {
        [] | ["next"] | ["forward"] => Some(Some(1)),
        ["all"] | ["forward", "all"] => Some(None),
        [n] | ["forward", n] => count(n).map(Some),
        _ => None,
    };
    Some(match rows {
        Some(rows) => CursorCommand::Fetch { name, rows, moves },
        None => CursorCommand::Backward { name },
    })
}

/// A cursor name as PostgreSQL folds it: unquoted to lower case, quoted as written.
fn cursor_name(text: &str) -> Option<String> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => Some(quoted.replace("\"\"", "\"")),
        None if text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$') =>
        {
            Some(folded(text, false))
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_keeps_its_query_as_written_and_its_options() {
        let sql = "DECLARE \"Big\" BINARY NO SCROLL CURSOR WITH HOLD FOR\n SELECT id /* for */ FROM users ORDER BY id;";
        let cursor = declared_cursor(sql).unwrap();
        assert_eq!(cursor.name, "Big");
        assert_eq!(cursor.query, "SELECT id /* for */ FROM users ORDER BY id");
        assert!(cursor.binary && cursor.hold);
        let plain = declared_cursor("declare C cursor for select 1").unwrap();
        assert_eq!(
            (plain.name.as_str(), plain.query.as_str()),
            ("c", "select 1")
        );
        assert!(!plain.binary && !plain.hold);
        assert!(declared_cursor("SELECT 1").is_none());
        assert!(declared_cursor("DECLARE c CURSOR").is_none());
    }

    #[test]
    fn fetch_and_move_forward_are_read_with_their_counts() {
        let fetch = |name: &str, rows, moves| CursorCommand::Fetch {
            name: name.into(),
            rows,
            moves,
        };
        assert_eq!(cursor_command("FETCH c"), Some(fetch("c", Some(1), false)));
        assert_eq!(
            cursor_command("fetch next from C;"),
            Some(fetch("c", Some(1), false))
        );
        assert_eq!(
            cursor_command("FETCH FORWARD 2000 FROM \"Cur\""),
            Some(fetch("Cur", Some(2000), false))
        );
        assert_eq!(
            cursor_command("FETCH 5 IN c"),
            Some(fetch("c", Some(5), false))
        );
        assert_eq!(cursor_command("FETCH ALL c"), Some(fetch("c", None, false)));
        assert_eq!(
            cursor_command("MOVE FORWARD ALL IN c"),
            Some(fetch("c", None, true))
        );
        assert_eq!(cursor_command("MOVE 3 c"), Some(fetch("c", Some(3), true)));
    }

    #[test]
    fn other_directions_and_close_are_named() {
        let backward =
            |sql| cursor_command(sql) == Some(CursorCommand::Backward { name: "c".into() });
        assert!(backward("FETCH PRIOR FROM c"));
        assert!(backward("FETCH BACKWARD 3 FROM c"));
        assert!(backward("FETCH ABSOLUTE 1 c"));
        assert!(backward("MOVE -1 IN c"));
        assert!(backward("FETCH 0 FROM c"));
        assert_eq!(
            cursor_command("CLOSE c;"),
            Some(CursorCommand::Close { name: "c".into() })
        );
        assert_eq!(cursor_command("close all"), Some(CursorCommand::CloseAll));
        assert_eq!(cursor_command("SELECT 1"), None);
        assert_eq!(cursor_command("FETCH"), None);
        assert_eq!(cursor_command("FETCH 1 FROM c; FETCH 1 FROM c"), None);
    }
}
