//! Statements on indexes: `DROP INDEX`, `ALTER INDEX`, `COMMENT ON INDEX` and `REINDEX INDEX`
//! name no table, yet must run on every shard when the index belongs to a map table (created
//! there by a `CREATE INDEX` that ran on every shard). This finds the indexes they name, as
//! written; the session asks the catalog whose they are.

use crate::sql::lexer::{Token, TokenKind, tokens};

/// The indexes a statement on indexes names, or `None` for any other statement.
pub fn indexes_named(sql: &str) -> Option<Vec<String>> {
    let words: Vec<Token> = tokens(sql).filter(|t| t.is_significant()).collect();
    let mut at = Cursor {
        sql,
        words: &words,
        next: 0,
    };
    if at.keywords(&["drop", "index"]) {
        at.keyword("concurrently");
        at.keywords(&["if", "exists"]);
        return at.name_list();
    }
    if at.keywords(&["alter", "index"]) {
        at.keywords(&["if", "exists"]);
        if at.peek_keyword("all") {
            return None; // ALTER INDEX ALL IN TABLESPACE moves whatever the role owns.
        }
        return at.name().map(|name| vec![name]);
    }
    if at.keywords(&["comment", "on", "index"]) {
        return at.name().map(|name| vec![name]);
    }
    if at.keyword("reindex") {
        at.skip_parenthesized();
        if !at.keyword("index") {
            return None;
        }
        at.keyword("concurrently");
        return at.name().map(|name| vec![name]);
    }
    None
}

struct Cursor<'a> {
    sql: &'a str,
    words: &'a [Token],
    next: usize,
}

impl<'a> Cursor<'a> {
    fn text(&self, at: usize) -> Option<&'a str> {
        self.words.get(at).map(|t| t.text(self.sql))
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        let word = self
            .words
            .get(self.next)
            .filter(|t| t.kind == TokenKind::Word);
        word.is_some_and(|t| t.text(self.sql).eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        self.next += usize::from(found);
        found
    }

    /// All of `keywords` in a row, or nothing consumed.
    fn keywords(&mut self, keywords: &[&str]) -> bool {
        let start = self.next;
        if keywords.iter().all(|k| self.keyword(k)) {
            return true;
        }
        self.next = start;
        false
    }

    fn skip_parenthesized(&mut self) {
        if self.text(self.next) != Some("(") {
            return;
        }
        let mut depth = 0usize;
        while let Some(text) = self.text(self.next) {
            self.next += 1;
            match text {
                "(" => depth += 1,
                ")" if depth <= 1 => return,
                ")" => depth -= 1,
                _ => {}
            }
        }
    }

    /// A possibly qualified name (`a`, `s.a`, `"S"."a"`), as written.
    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        loop {
            let token = self.words.get(self.next)?;
            if !matches!(token.kind, TokenKind::Word | TokenKind::QuotedIdent) {
                return None;
            }
            name.push_str(token.text(self.sql));
            self.next += 1;
            if self.text(self.next) != Some(".") {
                return Some(name);
            }
            name.push('.');
            self.next += 1;
        }
    }

    fn name_list(&mut self) -> Option<Vec<String>> {
        let mut names = vec![self.name()?];
        while self.text(self.next) == Some(",") {
            self.next += 1;
            names.push(self.name()?);
        }
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(sql: &str) -> Option<Vec<String>> {
        indexes_named(sql)
    }

    #[test]
    fn finds_the_indexes_each_statement_on_indexes_names() {
        let cases: &[(&str, &[&str])] = &[
            ("DROP INDEX users_name_idx", &["users_name_idx"]),
            (
                "drop index concurrently if exists a, s.b CASCADE",
                &["a", "s.b"],
            ),
            ("DROP INDEX \"Odd Name\"", &["\"Odd Name\""]),
            ("ALTER INDEX i RENAME TO j", &["i"]),
            (
                "ALTER INDEX IF EXISTS public.i SET (fillfactor = 70)",
                &["public.i"],
            ),
            ("COMMENT ON INDEX i IS 'why'", &["i"]),
            ("REINDEX INDEX CONCURRENTLY i", &["i"]),
            ("REINDEX (VERBOSE, TABLESPACE t) INDEX i", &["i"]),
            ("/* c */ DROP -- x\n INDEX i;", &["i"]),
        ];
        for (sql, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(named(sql), Some(expected), "{sql}");
        }
    }

    #[test]
    fn other_statements_name_no_index() {
        for sql in [
            "DROP TABLE i",
            "REINDEX TABLE users",
            "ALTER INDEX ALL IN TABLESPACE a SET TABLESPACE b",
            "COMMENT ON TABLE users IS 'x'",
            "CREATE INDEX i ON users (name)",
            "SELECT 'DROP INDEX i'",
            "DROP INDEX",
        ] {
            assert_eq!(named(sql), None, "{sql}");
        }
    }
}
