//! The rows of `COPY … FROM STDIN` data, in the three formats PostgreSQL reads (docs, "COPY",
//! File Formats): where each row ends and what its shard-key field holds, so a COPY into a
//! sharded table can send each row to its key's shard unchanged.
//!
//! Pure: bytes in, row boundaries and key fields out. The data arrives in CopyData messages
//! cut anywhere, so [`RowSplitter`] keeps the unfinished row and is fed as data arrives; a
//! row it returns is a byte range of its buffer, taken whole by the caller before the next
//! call. Rows are counted as PostgreSQL counts COPY lines (a CSV header is line 1; a quoted
//! CSV value spanning lines is one line), so errors can name the client's line.

use std::borrow::Cow;

/// The format of the data and what marks fields in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// `FORMAT text`: fields split by a delimiter, backslash escapes.
    Text {
        /// Field separator (default tab).
        delimiter: u8,
        /// The text that reads as NULL (default `\N`).
        null: Vec<u8>,
    },
    /// `FORMAT csv`.
    Csv(CsvOptions),
    /// `FORMAT binary`: a header, then tuples of length-prefixed fields.
    Binary,
}

/// The options of `FORMAT csv` that say where fields and rows end and what is NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (default `,`).
    pub delimiter: u8,
    /// Quote character (default `"`).
    pub quote: u8,
    /// Escape character inside quotes (default: the quote).
    pub escape: u8,
    /// The unquoted text that reads as NULL (default empty).
    pub null: Vec<u8>,
    /// The first line is a header.
    pub header: bool,
    /// The key column is in `FORCE_NOT_NULL`: its unquoted null string is not NULL.
    pub key_force_not_null: bool,
    /// The key column is in `FORCE_NULL`: its quoted null string is NULL too.
    pub key_force_null: bool,
    /// COPY TO: the columns whose non-NULL values are always quoted.
    pub force_quote: ForceQuote,
}

/// `FORCE_QUOTE` of a CSV `COPY … TO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForceQuote {
    /// Values are quoted only where they must be.
    #[default]
    Needed,
    /// `FORCE_QUOTE *`.
    All,
    /// `FORCE_QUOTE (a, b)`: these columns (names as PostgreSQL folds them).
    Columns(Vec<String>),
}

impl CsvOptions {
    /// PostgreSQL's defaults.
    pub fn new() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
            header: false,
            key_force_not_null: false,
            key_force_null: false,
            force_quote: ForceQuote::Needed,
        }
    }
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyFormat {
    /// `FORMAT text` with its defaults (tab, `\N`).
    pub fn text() -> Self {
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        }
    }
}

/// What one piece of the data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The CSV header line, or the binary file header: every shard gets it.
    Header,
    /// A row, with its key field.
    Row(Key<'a>),
    /// The end-of-data marker (`\.` on a line of its own, or the binary trailer): every shard
    /// gets it, and whatever follows is ignored, as PostgreSQL ignores it.
    End,
}

/// The key field of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// NULL.
    Null,
    /// Text as PostgreSQL would read it (escapes and quotes undone).
    Text(Cow<'a, [u8]>),
    /// A binary field's bytes.
    Binary(&'a [u8]),
    /// The row has fewer fields than the key's position.
    Missing,
}

/// A row (or header, or end marker) found: its bytes are `buffer[..len]` of the splitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// What it is.
    pub piece: Piece<'a>,
    /// Its length in bytes, line ending included.
    pub len: usize,
    /// Its line number, as PostgreSQL counts COPY lines.
    pub line: u64,
}

/// Data that cannot be COPY input of its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyDataError {
    /// Not a binary COPY header.
    #[error("COPY file signature not recognized")]
    BadSignature,
    /// A binary tuple that does not add up.
    #[error("invalid field size in binary COPY data, line {line}")]
    BadField {
        /// Its line (tuple) number.
        line: u64,
    },
    /// The data ended in the middle of a row (a CSV quote left open, a binary tuple cut).
    #[error("COPY data ended inside a row (line {line})")]
    Unfinished {
        /// Its line number.
        line: u64,
    },
}

/// Splits COPY data into rows as it arrives; see the module doc.
#[derive(Debug)]
pub struct RowSplitter {
    format: CopyFormat,
    key_index: usize,
    buf: Vec<u8>,
    line: u64,
    header_pending: bool,
    ended: bool,
}

const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl RowSplitter {
    /// A splitter of data in `format` whose rows carry the key as field `key_index` (0-based).
    pub fn new(format: CopyFormat, key_index: usize) -> Self {
        let header_pending = match &format {
            CopyFormat::Csv(csv) => csv.header,
            CopyFormat::Binary => true,
            CopyFormat::Text { .. } => false,
        };
        Self {
            format,
            key_index,
            buf: Vec::new(),
            line: 0,
            header_pending,
            ended: false,
        }
    }

    /// Adds data that arrived.
    pub fn feed(&mut self, data: &[u8]) {
        if !self.ended {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held for a row not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the end-of-data marker was found (later data is ignored).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The bytes of the piece last returned by [`Self::next`], to take before [`Self::consume`].
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    /// Drops the first `len` bytes (the piece just taken).
    pub fn consume(&mut self, len: usize) {
        self.buf.drain(..len);
    }

    /// The next complete piece at the start of the buffer, if one has arrived. `last`: no
    /// more data will come (a final row without a line ending is then complete).
    pub fn next(&mut self, last: bool) -> Result<Option<Found<'_>>, CopyDataError> {
        if self.ended || self.buf.is_empty() {
            return Ok(None);
        }
        let found = match &self.format {
            CopyFormat::Binary => self.next_binary(last)?,
            CopyFormat::Text { .. } | CopyFormat::Csv(_) => self.next_line(last)?,
        };
        let Some((piece_kind, len)) = found else {
            return Ok(None);
        };
        let binary = matches!(self.format, CopyFormat::Binary);
        if piece_kind == Kind::Row || piece_kind == Kind::Header && !binary {
            self.line += 1;
        }
        let line = self.line;
        let piece = match piece_kind {
            Kind::Header => Piece::Header,
            Kind::End => {
                self.ended = true;
                Piece::End
            }
            Kind::Row => Piece::Row(self.key_of(len)),
        };
        Ok(Some(Found { piece, len, line }))
    }

    fn next_line(&mut self, last: bool) -> Result<Option<(Kind, usize)>, CopyDataError> {
        let (end, in_quotes) = match &self.format {
            CopyFormat::Csv(csv) => csv_line_end(&self.buf, csv),
            _ => (text_line_end(&self.buf), false),
        };
        let len = match end {
            LineEnd::At(len) => len,
            LineEnd::NeedMore if last && in_quotes => {
                let line = self.line + 1;
                return Err(CopyDataError::Unfinished { line });
            }
            LineEnd::NeedMore if last => self.buf.len(),
            LineEnd::NeedMore => return Ok(None),
        };
        let content = trim_line_end(&self.buf[..len]);
        if content == b"\\." {
            return Ok(Some((Kind::End, len)));
        }
        if std::mem::take(&mut self.header_pending) {
            return Ok(Some((Kind::Header, len)));
        }
        Ok(Some((Kind::Row, len)))
    }

    fn next_binary(&mut self, last: bool) -> Result<Option<(Kind, usize)>, CopyDataError> {
        let unfinished = |line| {
            if last {
                Err(CopyDataError::Unfinished { line })
            } else {
                Ok(None)
            }
        };
        if self.header_pending {
            if self.buf.len() < BINARY_SIGNATURE.len() + 8 {
                let prefix = self.buf.len().min(BINARY_SIGNATURE.len());
                if self.buf[..prefix] != BINARY_SIGNATURE[..prefix] {
                    return Err(CopyDataError::BadSignature);
                }
                return unfinished(0);
            }
            if &self.buf[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(CopyDataError::BadSignature);
            }
            let at = BINARY_SIGNATURE.len() + 4;
            let extension = i32::from_be_bytes(self.buf[at..at + 4].try_into().unwrap_or_default());
            let Ok(extension) = usize::try_from(extension) else {
                return Err(CopyDataError::BadSignature);
            };
            let len = at + 4 + extension;
            if self.buf.len() < len {
                return unfinished(0);
            }
            self.header_pending = false;
            return Ok(Some((Kind::Header, len)));
        }
        let line = self.line + 1;
        if self.buf.len() < 2 {
            return unfinished(line);
        }
        let fields = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if fields == -1 {
            return Ok(Some((Kind::End, 2)));
        }
        let Ok(fields) = usize::try_from(fields) else {
            return Err(CopyDataError::BadField { line });
        };
        let mut at = 2;
        for _ in 0..fields {
            let Some(prefix) = self.buf.get(at..at + 4) else {
                return unfinished(line);
            };
            let size = i32::from_be_bytes(prefix.try_into().unwrap_or_default());
            at += 4;
            if size == -1 {
                continue;
            }
            let Ok(size) = usize::try_from(size) else {
                return Err(CopyDataError::BadField { line });
            };
            at += size;
            if self.buf.len() < at {
                return unfinished(line);
            }
        }
        Ok(Some((Kind::Row, at)))
    }

    /// The key field of the row `self.buf[..len]`.
    fn key_of(&self, len: usize) -> Key<'_> {
        let row = &self.buf[..len];
        match &self.format {
            CopyFormat::Text { delimiter, null } => {
                text_key(trim_line_end(row), *delimiter, null, self.key_index)
            }
            CopyFormat::Csv(csv) => csv_key(trim_line_end(row), csv, self.key_index),
            CopyFormat::Binary => binary_key(row, self.key_index),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Header,
    Row,
    End,
}

enum LineEnd {
    /// The line is this long, its ending included.
    At(usize),
    /// No complete line yet.
    NeedMore,
}

/// Where a text-format line ends: at `\n`, `\r` or `\r\n` not escaped by a backslash.
fn text_line_end(buf: &[u8]) -> LineEnd {
    let mut at = 0;
    while let Some(offset) = memchr::memchr3(b'\\', b'\n', b'\r', &buf[at..]) {
        let i = at + offset;
        match buf[i] {
            b'\\' => at = i + 2,
            b'\n' => return LineEnd::At(i + 1),
            _ => return carriage_return_end(buf, i),
        }
        if at >= buf.len() {
            break;
        }
    }
    LineEnd::NeedMore
}

/// A line ending at the `\r` at `i`: `\r\n` when a `\n` follows (known only once the next
/// byte has arrived).
fn carriage_return_end(buf: &[u8], i: usize) -> LineEnd {
    match buf.get(i + 1) {
        Some(b'\n') => LineEnd::At(i + 2),
        Some(_) => LineEnd::At(i + 1),
        None => LineEnd::NeedMore,
    }
}

/// Where a CSV line ends: at a line ending outside quotes. With no complete line, also
/// whether the data ends inside a quoted value.
fn csv_line_end(buf: &[u8], csv: &CsvOptions) -> (LineEnd, bool) {
    let mut in_quotes = false;
    let mut i = 0;
    while i < buf.len() {
        let c = buf[i];
        if in_quotes && c == csv.escape && csv.escape != csv.quote {
            match buf.get(i + 1) {
                Some(&next) if next == csv.quote || next == csv.escape => i += 2,
                Some(_) => i += 1,
                None => return (LineEnd::NeedMore, true),
            }
            continue;
        }
        if c == csv.quote {
            in_quotes = !in_quotes;
        } else if !in_quotes && c == b'\n' {
            return (LineEnd::At(i + 1), false);
        } else if !in_quotes && c == b'\r' {
            return (carriage_return_end(buf, i), false);
        }
        i += 1;
    }
    (LineEnd::NeedMore, in_quotes)
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Field `index` of a text-format line: NULL when its raw text is the null string,
/// otherwise with backslash escapes undone (docs, "Text Format").
fn text_key<'a>(line: &'a [u8], delimiter: u8, null: &[u8], index: usize) -> Key<'a> {
    let mut start = 0;
    let mut field = 0;
    let mut i = 0;
    loop {
        let at_end = i >= line.len();
        if at_end || line[i] == delimiter {
            if field == index {
                let raw = &line[start..i.min(line.len())];
                if raw == null {
                    return Key::Null;
                }
                return Key::Text(unescape_text(raw));
            }
            if at_end {
                return Key::Missing;
            }
            field += 1;
            start = i + 1;
            i += 1;
            continue;
        }
        i += if line[i] == b'\\' { 2 } else { 1 };
    }
}

fn unescape_text(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 == raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// Field `index` of a CSV line (docs, "CSV Format"): unquoted, quoted parts joined; NULL when
/// it is the null string unquoted (or quoted, with FORCE_NULL), unless FORCE_NOT_NULL.
fn csv_key<'a>(line: &'a [u8], csv: &CsvOptions, index: usize) -> Key<'a> {
    let mut field = 0;
    let mut i = 0;
    loop {
        let (value, quoted, next) = csv_field(line, i, csv);
        if field == index {
            let is_null = value.as_ref() == csv.null.as_slice()
                && if quoted {
                    csv.key_force_null
                } else {
                    !csv.key_force_not_null
                };
            return if is_null { Key::Null } else { Key::Text(value) };
        }
        match next {
            Some(next) => i = next,
            None => return Key::Missing,
        }
        field += 1;
    }
}

/// The CSV field starting at `start`: its value, whether any of it was quoted, and where the
/// next field starts (`None` at the end of the line).
fn csv_field<'a>(
    line: &'a [u8],
    start: usize,
    csv: &CsvOptions,
) -> (Cow<'a, [u8]>, bool, Option<usize>) {
    let mut value: Option<Vec<u8>> = None;
    let mut i = start;
    while i < line.len() {
        let c = line[i];
        if c == csv.delimiter {
            let quoted = value.is_some();
            return (finish(line, start, i, value), quoted, Some(i + 1));
        }
        if c != csv.quote {
            if let Some(value) = value.as_mut() {
                value.push(c);
            }
            i += 1;
            continue;
        }
        let value = value.get_or_insert_with(|| line[start..i].to_vec());
        i += 1;
        while i < line.len() {
            let (c, next) = (line[i], line.get(i + 1).copied());
            let escapes =
                next == Some(csv.quote) || csv.escape != csv.quote && next == Some(csv.escape);
            if c == csv.escape && escapes {
                value.extend(next);
                i += 2;
            } else if c == csv.quote {
                i += 1;
                break;
            } else {
                value.push(c);
                i += 1;
            }
        }
    }
    let quoted = value.is_some();
    (finish(line, start, line.len(), value), quoted, None)
}

fn finish<'a>(line: &'a [u8], start: usize, end: usize, value: Option<Vec<u8>>) -> Cow<'a, [u8]> {
    match value {
        Some(value) => Cow::Owned(value),
        None => Cow::Borrowed(&line[start..end]),
    }
}

/// Field `index` of a binary tuple (already checked to be whole).
fn binary_key(row: &[u8], index: usize) -> Key<'_> {
    let fields = usize::try_from(i16::from_be_bytes([row[0], row[1]])).unwrap_or(0);
    let mut at = 2;
    for field in 0..fields {
        let size = i32::from_be_bytes(row[at..at + 4].try_into().unwrap_or_default());
        at += 4;
        let size = usize::try_from(size).ok();
        if field == index {
            return match size {
                None => Key::Null,
                Some(size) => Key::Binary(&row[at..at + size]),
            };
        }
        at += size.unwrap_or(0);
    }
    Key::Missing
}

#[cfg(test)]
mod tests;
