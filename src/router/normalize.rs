//! Literals out of simple-protocol SQL: `SELECT … WHERE id = 42` becomes `… WHERE id = $1`
//! with `42` kept aside, so statements that differ only in their constants share one cached
//! plan instead of paying a full parse each (the literals then route like text parameters).
//!
//! Part of the router (pure). A byte scanner that knows PostgreSQL's lexical rules for what it
//! must not touch: comments, quoted identifiers, dollar-quoted bodies, prefixed strings (`E''`,
//! `B''`, `X''`, `U&''`, `N''`), typed literals (`DATE '…'`) and negative numbers. When in
//! doubt it gives up (`None`) and the caller plans the original text.

/// Texts longer than this are not normalized (they are not cached either).
const MAX_LEN: usize = super::cache::MAX_CACHED_TEXT;

/// Words after which a string is a typed literal, which a placeholder cannot replace.
const TYPE_WORDS: [&str; 7] = [
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "json",
    "jsonb",
];

/// `sql` with its literals replaced by `$1, $2, …`, and the literals' values; `None` when the
/// text has no literal, already uses placeholders, or has something the scanner does not know.
pub fn normalize(sql: &str) -> Option<(String, Vec<Option<String>>)> {
    if sql.len() > MAX_LEN {
        return None;
    }
    let mut scan = Scan {
        text: sql,
        at: 0,
        out: String::with_capacity(sql.len()),
        literals: Vec::new(),
    };
    scan.run()?;
    (!scan.literals.is_empty()).then_some((scan.out, scan.literals))
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
    out: String,
    literals: Vec<Option<String>>,
}

impl Scan<'_> {
    fn run(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() {
            let next = bytes.get(self.at + 1).copied();
            let end = match bytes[self.at] {
                b'-' if next == Some(b'-') => self.find(b"\n").map_or(bytes.len(), |i| i + 1),
                b'-' if next.is_some_and(|b| b.is_ascii_digit()) && self.unary_minus() => {
                    self.number()?;
                    continue;
                }
                b'/' if next == Some(b'*') => self.block_comment_end()?,
                b'"' => self.quoted_end(b'"')?,
                b'$' => self.dollar_end()?,
                b'\'' if self.after_e_prefix() => self.escape_string_end()?,
                b'\'' if self.keeps_string() => self.quoted_end(b'\'')?,
                b'\'' => {
                    self.string()?;
                    continue;
                }
                b'0'..=b'9' if self.starts_number() => {
                    self.number()?;
                    continue;
                }
                c if is_ident(c) => self.word_end(),
                _ => self.at + 1,
            };
            self.out.push_str(&self.text[self.at..end]);
            self.at = end;
        }
        Some(())
    }

    fn find(&self, needle: &[u8]) -> Option<usize> {
        let hay = &self.text.as_bytes()[self.at..];
        let found = hay.windows(needle.len()).position(|w| w == needle)?;
        Some(self.at + found)
    }

    /// `/* … */`, nested as PostgreSQL allows.
    fn block_comment_end(&self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let (mut depth, mut i) = (0usize, self.at);
        while i + 1 < bytes.len() {
            match (bytes[i], bytes[i + 1]) {
                (b'/', b'*') => (depth, i) = (depth + 1, i + 2),
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => i += 1,
            }
        }
        None
    }

    /// The end of a `'…'` or `"…"` token (a doubled quote stays inside).
    fn quoted_end(&self, quote: u8) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut i = self.at + 1;
        loop {
            let close = i + bytes.get(i..)?.iter().position(|b| *b == quote)?;
            if bytes.get(close + 1) == Some(&quote) {
                i = close + 2;
            } else {
                return Some(close + 1);
            }
        }
    }

    /// `$tag$ … $tag$` bodies are copied; a `$1` placeholder means the text is not ours to
    /// rewrite.
    fn dollar_end(&self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let rest = &bytes[self.at + 1..];
        if rest.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let tag_len = rest.iter().position(|b| !is_ident(*b) || *b == b'$')?;
        if rest[tag_len] != b'$' {
            return Some(self.at + 1);
        }
        let delimiter = &bytes[self.at..self.at + tag_len + 2];
        let body = self.at + delimiter.len();
        let close = bytes[body..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)?;
        Some(body + close + delimiter.len())
    }

    /// `E'…'`: backslash escapes, so `\'` does not end it.
    fn after_e_prefix(&self) -> bool {
        let before = &self.text.as_bytes()[..self.at];
        let prefix = before.last().is_some_and(|b| b.eq_ignore_ascii_case(&b'e'));
        prefix
            && !before
                .len()
                .checked_sub(2)
                .is_some_and(|i| is_ident(before[i]))
    }

    fn escape_string_end(&self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut i = self.at + 1;
        loop {
            match *bytes.get(i)? {
                b'\\' => i += 2,
                b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }

    /// A string right after a prefix letter (`E'…'`) or a type name (`DATE '…'`) stays.
    fn keeps_string(&self) -> bool {
        let before = &self.text[..self.at];
        if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '&') {
            return true;
        }
        let word = before
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_alphanumeric())
            .next();
        word.is_some_and(|w| TYPE_WORDS.iter().any(|t| w.eq_ignore_ascii_case(t)))
    }

    /// A plain `'…'` string becomes a placeholder; its value has `''` undoubled.
    fn string(&mut self) -> Option<()> {
        let end = self.quoted_end(b'\'')?;
        let value = self.text[self.at + 1..end - 1].replace("''", "'");
        self.placeholder(value, end);
        Some(())
    }

    /// Digits that start a number: not inside an identifier, not after a dot (`t.1` is not a
    /// number) and not after a minus sign that `unary_minus` left alone.
    fn starts_number(&self) -> bool {
        let before = &self.text.as_bytes()[..self.at];
        let previous = before.last().copied();
        let significant = before
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
            .copied();
        !previous.is_some_and(|b| is_ident(b) || b == b'.') && significant != Some(b'-')
    }

    /// A `-` right before digits is a sign (part of the literal) when what precedes it is an
    /// operator or an opening bracket: `a + -5`, `= -5`, `(-5`. After anything else (`x -5`)
    /// it subtracts, and the number stays as written.
    fn unary_minus(&self) -> bool {
        let before = &self.text.as_bytes()[..self.at];
        let significant = before.iter().rev().find(|b| !b.is_ascii_whitespace());
        significant.is_some_and(|b| b"(,=<>+-*/%^[|&~!".contains(b))
    }

    /// A number, with its sign when `unary_minus` let it start at a `-`.
    fn number(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let mut end = self.at + usize::from(bytes[self.at] == b'-');
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        end = digits(end);
        if bytes.get(end) == Some(&b'.') {
            end = digits(end + 1);
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
            end = digits(end + 1 + sign);
        }
        if bytes.get(end).is_some_and(|b| is_ident(*b) || *b == b'.') {
            return None; // `1abc`, `0x1f`, `1.2.3`: not a shape we rewrite
        }
        let value = self.text[self.at..end].to_owned();
        self.placeholder(value, end);
        Some(())
    }

    fn word_end(&self) -> usize {
        let bytes = self.text.as_bytes();
        let len = bytes[self.at..].iter().position(|b| !is_ident(*b));
        len.map_or(bytes.len(), |len| self.at + len)
    }

    fn placeholder(&mut self, value: String, end: usize) {
        self.literals.push(Some(value));
        self.out.push('$');
        self.out.push_str(&self.literals.len().to_string());
        self.at = end;
    }
}

/// Bytes of identifiers and keywords (non-ASCII letters included).
fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
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
