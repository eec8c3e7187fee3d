//! Literals out of simple-protocol SQL: `SELECT … WHERE id = 42` becomes `… WHERE id = $1`
//! with `42` kept aside, so statements that differ only in their constants share one cached
//! plan instead of paying a full parse each (the literals then route like text parameters).
//!
//! Part of the router (pure). It reads the tokens of [`crate::sql::lexer`], so comments, quoted
//! identifiers, dollar-quoted bodies and prefixed strings (`E''`, `B''`, `X''`, `U&''`, `N''`)
//! are left alone; it also keeps typed literals (`DATE '…'`) and takes a sign into a negative
//! number. When in doubt it gives up (`None`) and the caller plans the original text.

use std::iter::Peekable;

use crate::sql::lexer::{Lexer, StringStyle, Token, TokenKind, tokens};

/// Texts longer than this are not normalized (they are not cached either).
const MAX_LEN: usize = super::cache::MAX_CACHED_TEXT;

/// Words after which a string is a typed literal, which a placeholder cannot replace
/// (`zone` ends `TIMESTAMP WITH TIME ZONE '…'`).
const TYPE_WORDS: [&str; 8] = [
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "json",
    "jsonb",
    "zone",
];

/// `sql` with its literals replaced by `$1, $2, …`, and the literals' values; `None` when the
/// text has no literal, already uses placeholders, or has something the scanner does not know.
pub fn normalize(sql: &str) -> Option<(String, Vec<Option<String>>)> {
    if sql.len() > MAX_LEN {
        return None;
    }
    let mut scan = Scan {
        sql,
        tokens: tokens(sql).peekable(),
        previous: None,
        out: String::with_capacity(sql.len()),
        literals: Vec::new(),
    };
    while let Some(token) = scan.tokens.next() {
        let last = scan.token(token)?;
        if last.is_significant() {
            scan.previous = Some(last);
        }
    }
    (!scan.literals.is_empty()).then_some((scan.out, scan.literals))
}

struct Scan<'a> {
    sql: &'a str,
    tokens: Peekable<Lexer<'a>>,
    /// The last significant token before the current one.
    previous: Option<Token>,
    out: String,
    literals: Vec<Option<String>>,
}

impl Scan<'_> {
    /// Copies `token` or turns it into a placeholder (with the number after it, for a sign);
    /// the last token it took, or `None` to give up.
    fn token(&mut self, token: Token) -> Option<Token> {
        let text = token.text(self.sql);
        match token.kind {
            TokenKind::Param | TokenKind::Unterminated => return None,
            TokenKind::String(StringStyle::Plain) if !self.keeps_string(token) => {
                self.string_glued(token)?;
                let value = text[1..text.len() - 1].replace("''", "'");
                self.placeholder(value);
            }
            TokenKind::Number if !text.starts_with('.') && !self.after_minus() => {
                self.number(token, "")?;
            }
            TokenKind::Operator if text == "-" && self.unary_minus(token) => {
                let number = self.tokens.next()?;
                self.number(number, "-")?;
                return Some(number);
            }
            _ => self.out.push_str(text),
        }
        Some(token)
    }

    /// A string right after a word (`some'…'`) or a type name (`DATE '…'`) stays: a
    /// placeholder cannot replace a typed literal.
    fn keeps_string(&self, string: Token) -> bool {
        let Some(previous) = self.previous else {
            return false;
        };
        let word = previous.kind == TokenKind::Word;
        let text = previous.text(self.sql);
        word && (previous.end == string.start
            || TYPE_WORDS.iter().any(|t| text.eq_ignore_ascii_case(t)))
    }

    /// `None` for a string a placeholder cannot stand in for: one continued by the next
    /// (`'a'` newline `'b'` is one constant) or glued to a word (`'a'AS x`).
    fn string_glued(&self, string: Token) -> Option<()> {
        let mut after = self.tokens.clone();
        let glued = after.peek().is_some_and(|next| {
            next.start == string.end && !matches!(next.kind, TokenKind::Punct | TokenKind::Operator)
        });
        let continued = after
            .find(|t| t.is_significant())
            .is_some_and(|next| matches!(next.kind, TokenKind::String(_)));
        (!glued && !continued).then_some(())
    }

    /// Whether the last significant token is a `-` that [`Scan::unary_minus`] left alone
    /// (`x - 3`): the number after it stays as written.
    fn after_minus(&self) -> bool {
        self.previous.is_some_and(|p| p.is_symbol(self.sql, "-"))
    }

    /// A `-` right before digits is a sign (part of the literal) when what precedes it is an
    /// operator or an opening bracket: `a + -5`, `= -5`, `(-5`. After anything else (`x -5`)
    /// it subtracts, and the number stays as written.
    fn unary_minus(&mut self, minus: Token) -> bool {
        let sql = self.sql;
        let next = self.tokens.peek();
        let signed = next.is_some_and(|n| {
            n.kind == TokenKind::Number && n.start == minus.end && !n.text(sql).starts_with('.')
        });
        let after_operator = self.previous.is_some_and(|p| {
            let last = p.text(sql).as_bytes().last().copied().unwrap_or(b' ');
            matches!(p.kind, TokenKind::Operator | TokenKind::Punct)
                && b"(,=<>+-*/%^[|&~!".contains(&last)
        });
        signed && after_operator
    }

    /// A number (with `sign`) as a placeholder; `None` for shapes not rewritten (`1abc`,
    /// `0x1f`, `1.2.3`: a word, number or dot right after it).
    fn number(&mut self, number: Token, sign: &str) -> Option<()> {
        let glued = self.tokens.peek().is_some_and(|next| {
            next.start == number.end
                && (matches!(next.kind, TokenKind::Word | TokenKind::Number)
                    || next.is_symbol(self.sql, "."))
        });
        if glued {
            return None;
        }
        self.placeholder(format!("{sign}{}", number.text(self.sql)));
        Some(())
    }

    fn placeholder(&mut self, value: String) {
        self.literals.push(Some(value));
        self.out.push('$');
        self.out.push_str(&self.literals.len().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(sql: &str) -> Option<(String, Vec<String>)> {
        normalize(sql).map(|(text, values)| (text, values.into_iter().flatten().collect()))
    }

    #[test]
    fn literals_become_placeholders() {
        let (text, values) =
            normalized("SELECT * FROM users WHERE user_id = 42 AND name = 'O''Hara'").unwrap();
        assert_eq!(text, "SELECT * FROM users WHERE user_id = $1 AND name = $2");
        assert_eq!(values, ["42", "O'Hara"]);
        let (text, values) =
            normalized("INSERT INTO t (a, b) VALUES (1.5e3, 'x'), (2, 'y')").unwrap();
        assert_eq!(text, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(values, ["1.5e3", "x", "2", "y"]);
    }

    #[test]
    fn what_must_not_change_is_copied() {
        let sql = "/* shard: s1 */ SELECT \"col 1\", t1.c2, E'a\\'b', DATE '2026-01-01', $$ 5 $$, \
                   x -7, x - 3, interval '1 day' -- 99\nFROM t1 WHERE k = 5 AND a = b + -2";
        let (text, values) = normalized(sql).unwrap();
        assert_eq!(
            text,
            "/* shard: s1 */ SELECT \"col 1\", t1.c2, E'a\\'b', DATE '2026-01-01', $$ 5 $$, \
             x -7, x - 3, interval '1 day' -- 99\nFROM t1 WHERE k = $1 AND a = b + $2"
        );
        assert_eq!(values, ["5", "-2"]);
        let (text, values) = normalized("SELECT * FROM t WHERE k = -5 OR k IN (-1, 2)").unwrap();
        assert_eq!(text, "SELECT * FROM t WHERE k = $1 OR k IN ($2, $3)");
        assert_eq!(values, ["-5", "-1", "2"]);
    }

    #[test]
    fn gives_up_when_unsure() {
        assert_eq!(normalized("SELECT 1 FROM t WHERE a = $1"), None);
        assert_eq!(normalized("SELECT 0x1f"), None);
        assert_eq!(normalized("SELECT 'unterminated"), None);
        assert_eq!(normalized("SELECT a FROM t"), None);
        assert_eq!(normalized("/* unterminated"), None);
        assert_eq!(normalized("SELECT 'a'\n'b'"), None);
        assert_eq!(normalized("SELECT 'a'AS x"), None);
        let (text, _) = normalized("SELECT TIMESTAMP WITH TIME ZONE '2026-01-01', 5").unwrap();
        assert_eq!(text, "SELECT TIMESTAMP WITH TIME ZONE '2026-01-01', $1");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_the_text_without_literals(sql in "[ -~\\n]{0,80}") {
            if let Some((text, values)) = normalize(&sql) {
                assert!(!values.is_empty());
                assert!(text.contains("$1"));
            }
        }
    }
}
