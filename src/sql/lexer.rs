//! PostgreSQL's lexical rules as one pure, allocation-free scanner: SQL text → tokens that are
//! byte ranges of the text, in order, covering it exactly.
//!
//! Part of the `sql` leaf. Everything that reads SQL without a full parse (literal
//! normalization, statement splitting and classification, log redaction, the bounds checked
//! before sqlparser sees a statement) reads these tokens, so a lexing rule is fixed once. It
//! follows `src/backend/parser/scan.l` of PostgreSQL 15 where the difference matters to those
//! readers: nested block comments, prefixed strings (`E''`, `B''`, `X''`, `N''`, `U&''`),
//! dollar quoting, `$n` parameters, and how an operator ends. It never fails: a string,
//! identifier or comment left open runs to the end as [`TokenKind::Unterminated`]. Linear time,
//! no recursion.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Spaces, tabs, newlines.
    Space,
    /// `-- …` up to (not including) the end of the line.
    LineComment,
    /// `/* … */`, nested as PostgreSQL allows.
    BlockComment,
    /// An unquoted identifier or keyword.
    Word,
    /// `"…"` or `U&"…"`.
    QuotedIdent,
    /// A string constant, with how its prefix makes it read.
    String(StringStyle),
    /// `$tag$ … $tag$`.
    DollarString,
    /// A numeric constant (`42`, `1.5e-3`, `.5`).
    Number,
    /// A parameter placeholder `$n`.
    Param,
    /// An operator (`=`, `<>`, `||`, `::`, `->>`, …), ended as PostgreSQL ends it.
    Operator,
    /// One of `( ) [ ] , ; . :`, or any other single character.
    Punct,
    /// A string, quoted identifier or comment the text never closes.
    Unterminated,
}

/// The prefix of a string constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringStyle {
    /// `'…'`
    Plain,
    /// `E'…'`: backslash escapes.
    Escape,
    /// `B'…'` or `X'…'`: a bit string.
    Bits,
    /// `N'…'`: national character (same as plain).
    National,
    /// `U&'…'`: Unicode escapes.
    Unicode,
}

/// One token: its kind and where it is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Byte offset of its first byte.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
}

impl Token {
    /// Its text.
    pub fn text(self, sql: &str) -> &str {
        &sql[self.start..self.end]
    }

    /// Whether it is neither white space nor a comment.
    pub fn is_significant(self) -> bool {
        !matches!(
            self.kind,
            TokenKind::Space | TokenKind::LineComment | TokenKind::BlockComment
        )
    }

    /// Whether it is the unquoted word `keyword`, in any case.
    pub fn is_keyword(self, sql: &str, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text(sql).eq_ignore_ascii_case(keyword)
    }

    /// Whether it is the punctuation or operator `symbol`.
    pub fn is_symbol(self, sql: &str, symbol: &str) -> bool {
        matches!(self.kind, TokenKind::Punct | TokenKind::Operator) && self.text(sql) == symbol
    }
}

/// The tokens of `sql`, in order.
pub fn tokens(sql: &str) -> Lexer<'_> {
    Lexer {
        bytes: sql.as_bytes(),
        at: 0,
    }
}

/// Iterator of [`tokens`].
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let start = self.at;
        let first = *self.bytes.get(start)?;
        let (kind, end) = self.token_at(first);
        // Every branch consumes at least one byte; the guard keeps that true for any input.
        self.at = end.max(start + 1).min(self.bytes.len());
        Some(Token {
            kind,
            start,
            end: self.at,
        })
    }
}

impl Lexer<'_> {
    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.at + offset).copied()
    }

    fn token_at(&self, first: u8) -> (TokenKind, usize) {
        let next = self.peek(1);
        match first {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {
                (TokenKind::Space, self.space_end())
            }
            b'-' if next == Some(b'-') => (TokenKind::LineComment, self.line_end()),
            b'/' if next == Some(b'*') => self.block_comment(),
            b'\'' => self.quoted(self.at, b'\'', StringStyle::Plain),
            b'"' => self.quoted_ident(self.at),
            b'$' => self.dollar(),
            b'0'..=b'9' => (TokenKind::Number, self.number_end(self.at)),
            b'.' if next.is_some_and(|b| b.is_ascii_digit()) => {
                (TokenKind::Number, self.number_end(self.at))
            }
            b':' if next == Some(b':') => (TokenKind::Operator, self.at + 2),
            c if is_ident_start(c) => self.word(),
            c if is_operator_char(c) => (TokenKind::Operator, self.operator_end()),
            _ => (TokenKind::Punct, self.at + 1),
        }
    }

    fn space_end(&self) -> usize {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|b| !b" \t\n\r\x0b\x0c".contains(b));
        self.at + len.unwrap_or(rest.len())
    }

    fn line_end(&self) -> usize {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|b| matches!(b, b'\n' | b'\r'));
        self.at + len.unwrap_or(rest.len())
    }

    /// `/* … */` with nesting (scan.l `xc`).
    fn block_comment(&self) -> (TokenKind, usize) {
        let (mut depth, mut i) = (0usize, self.at);
        while i + 1 < self.bytes.len() {
            match (self.bytes[i], self.bytes[i + 1]) {
                (b'/', b'*') => (depth, i) = (depth + 1, i + 2),
                (b'*', b'/') => {
                    (depth, i) = (depth - 1, i + 2);
                    if depth == 0 {
                        return (TokenKind::BlockComment, i);
                    }
                }
                _ => i += 1,
            }
        }
        (TokenKind::Unterminated, self.bytes.len())
    }

    /// A quoted string from `open` (its opening quote); a doubled quote stays inside, and in
    /// an escape string a backslash takes the next byte.
    fn quoted(&self, open: usize, quote: u8, style: StringStyle) -> (TokenKind, usize) {
        let mut i = open + 1;
        while i < self.bytes.len() {
            match self.bytes[i] {
                b'\\' if style == StringStyle::Escape => i += 2,
                b if b == quote && self.bytes.get(i + 1) == Some(&quote) => i += 2,
                b if b == quote => return (TokenKind::String(style), i + 1),
                _ => i += 1,
            }
        }
        (TokenKind::Unterminated, self.bytes.len())
    }

    fn quoted_ident(&self, open: usize) -> (TokenKind, usize) {
        match self.quoted(open, b'"', StringStyle::Plain) {
            (TokenKind::String(_), end) => (TokenKind::QuotedIdent, end),
            unterminated => unterminated,
        }
    }

    /// `$1` (a parameter), `$tag$…$tag$` (a dollar-quoted string), or a lone `$`.
    fn dollar(&self) -> (TokenKind, usize) {
        let rest = &self.bytes[self.at + 1..];
        if rest.first().is_some_and(u8::is_ascii_digit) {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            return (TokenKind::Param, self.at + 1 + digits);
        }
        // scan.l `dolqdelim`: an empty tag, or one that starts like an identifier and holds
        // no `$`.
        let tag_len = match rest.first() {
            Some(&b) if is_ident_start(b) => (rest.iter())
                .position(|b| !is_ident_char(*b) || *b == b'$')
                .unwrap_or(rest.len()),
            _ => 0,
        };
        if rest.get(tag_len) != Some(&b'$') {
            return (TokenKind::Punct, self.at + 1);
        }
        let delimiter = &self.bytes[self.at..self.at + tag_len + 2];
        let body = self.at + delimiter.len();
        let close = self.bytes[body..]
            .windows(delimiter.len())
            .position(|w| w == delimiter);
        match close {
            Some(close) => (TokenKind::DollarString, body + close + delimiter.len()),
            None => (TokenKind::Unterminated, self.bytes.len()),
        }
    }

    /// Digits, a fraction and an exponent (scan.l `decimal`, `real`).
    fn number_end(&self, start: usize) -> usize {
        let digits = |mut i: usize| {
            while self.bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut end = digits(start);
        if self.bytes.get(end) == Some(&b'.') && self.bytes.get(end + 1) != Some(&b'.') {
            end = digits(end + 1);
        }
        if matches!(self.bytes.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.bytes.get(end + 1), Some(b'+' | b'-')));
            if self
                .bytes
                .get(end + 1 + sign)
                .is_some_and(u8::is_ascii_digit)
            {
                end = digits(end + 1 + sign);
            }
        }
        end
    }

    /// A word, or the prefix of a string constant (`E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`).
    fn word(&self) -> (TokenKind, usize) {
        let rest = &self.bytes[self.at..];
        let len = rest
            .iter()
            .position(|b| !is_ident_char(*b))
            .unwrap_or(rest.len());
        if len == 1 {
            let after = rest.get(1).copied();
            let style = match rest[0].to_ascii_lowercase() {
                b'e' => Some(StringStyle::Escape),
                b'b' | b'x' => Some(StringStyle::Bits),
                b'n' => Some(StringStyle::National),
                _ => None,
            };
            if let (Some(style), Some(b'\'')) = (style, after) {
                return self.quoted(self.at + 1, b'\'', style);
            }
            if rest[0].eq_ignore_ascii_case(&b'u') && after == Some(b'&') {
                match rest.get(2) {
                    Some(b'\'') => return self.quoted(self.at + 2, b'\'', StringStyle::Unicode),
                    Some(b'"') => return self.quoted_ident(self.at + 2),
                    _ => {}
                }
            }
        }
        (TokenKind::Word, self.at + len)
    }

    /// An operator: the longest run of operator characters, cut before a comment start, and
    /// without trailing `+`/`-` unless it holds one of `~!@#%^&|`?` (scan.l `{operator}`), so
    /// `=-5` is `=` then `-5`.
    fn operator_end(&self) -> usize {
        let rest = &self.bytes[self.at..];
        let mut len = rest
            .iter()
            .position(|b| !is_operator_char(*b))
            .unwrap_or(rest.len());
        let comment = (1..len).find(|&i| matches!(rest.get(i..i + 2), Some(b"/*" | b"--")));
        if let Some(cut) = comment {
            len = cut;
        }
        let run = &rest[..len];
        if len > 1 && !run.iter().any(|b| b"~!@#%^&|`?".contains(b)) {
            while len > 1 && matches!(rest[len - 1], b'+' | b'-') {
                len -= 1;
            }
        }
        self.at + len
    }
}

/// Bytes that start an identifier (non-ASCII letters included, as scan.l's `ident_start`).
fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

/// Bytes that continue an identifier.
fn is_ident_char(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

fn is_operator_char(byte: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?".contains(&byte)
}

#[cfg(test)]
mod tests;
