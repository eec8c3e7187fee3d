//! Merged rows written as `COPY … TO STDOUT` data, so a COPY of a sharded table (or of a
//! query over several shards) is the cross-shard read it is, through the same merge, with its
//! output in COPY's form (PostgreSQL docs, "COPY", File Formats): one CopyOutResponse, one
//! CSV header or binary signature, a CopyData per row, and at the end the binary trailer and
//! CopyDone. Rows come from the shards as text (text and CSV) or binary (binary) DataRows.

use bytes::BytesMut;

use super::MergeError;
use crate::wire::copy_rows::{CopyFormat, CsvOptions, ForceQuote};
use crate::wire::encode;

const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Turns the merge's DataRows into COPY data.
#[derive(Debug)]
pub struct CopyOut {
    format: CopyFormat,
    /// CopyOutResponse, then a CSV header line as CopyData.
    head: BytesMut,
    /// The binary signature, not sent yet: it goes in the first row's CopyData (or the
    /// trailer's), as PostgreSQL sends it (drivers read it there).
    signature_pending: bool,
    /// CSV: whether each column's non-NULL values are always quoted (FORCE_QUOTE).
    forced: Vec<bool>,
}

impl CopyOut {
    /// COPY output in `format` of rows described by `description` (a RowDescription body).
    pub fn new(format: CopyFormat, header: bool, description: &[u8]) -> Result<Self, MergeError> {
        let names = column_names(description)?;
        let mut head = BytesMut::new();
        let binary = matches!(format, CopyFormat::Binary);
        encode::copy_out_response(&mut head, binary, names.len());
        let mut forced = vec![false; names.len()];
        if let CopyFormat::Csv(csv) = &format {
            forced = forced_columns(&csv.force_quote, &names)?;
            if header {
                let mut line = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        line.push(csv.delimiter);
                    }
                    csv_value(&mut line, name, csv, false, names.len() == 1);
                }
                line.push(b'\n');
                encode::copy_data(&mut head, &line);
            }
        }
        Ok(Self {
            format,
            head,
            signature_pending: binary,
            forced,
        })
    }

    /// The binary file header, the first time (flags and header extension length zero).
    fn take_signature(&mut self, line: &mut Vec<u8>) {
        if std::mem::take(&mut self.signature_pending) {
            line.extend_from_slice(BINARY_SIGNATURE);
            line.extend([0; 8]);
        }
    }

    /// What the client gets before the first row.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Appends one CopyData per DataRow frame in `rows`.
    pub fn rows(&mut self, rows: &[u8], out: &mut BytesMut) -> Result<(), MergeError> {
        let mut at = 0;
        let mut line = Vec::new();
        while at + 5 <= rows.len() {
            let len = u32::from_be_bytes(rows[at + 1..at + 5].try_into().unwrap_or_default());
            let end = at + 1 + len as usize;
            let body = rows.get(at + 5..end).ok_or_else(malformed)?;
            line.clear();
            self.row(body, &mut line)?;
            encode::copy_data(out, &line);
            at = end;
        }
        Ok(())
    }

    fn row(&mut self, body: &[u8], line: &mut Vec<u8>) -> Result<(), MergeError> {
        let count = field_count(body)?;
        let mut at = 2;
        if matches!(self.format, CopyFormat::Binary) {
            self.take_signature(line);
            line.extend_from_slice(body); // A binary tuple is a DataRow's body.
            return Ok(());
        }
        for i in 0..count.max(0) {
            let size = body.get(at..at + 4).ok_or_else(malformed)?;
            let size = i32::from_be_bytes(size.try_into().unwrap_or_default());
            at += 4;
            let value = match usize::try_from(size) {
                Ok(size) => {
                    let value = body.get(at..at + size).ok_or_else(malformed)?;
                    at += size;
                    Some(value)
                }
                Err(_) => None,
            };
            match &self.format {
                CopyFormat::Text { delimiter, null } => {
                    if i > 0 {
                        line.push(*delimiter);
                    }
                    match value {
                        Some(value) => text_value(line, value, *delimiter),
                        None => line.extend_from_slice(null),
                    }
                }
                CopyFormat::Csv(csv) => {
                    if i > 0 {
                        line.push(csv.delimiter);
                    }
                    let forced = self.forced.get(i as usize).copied().unwrap_or(false);
                    let alone = count == 1;
                    match value {
                        Some(value) => csv_value(line, value, csv, forced, alone),
                        None => line.extend_from_slice(&csv.null),
                    }
                }
                CopyFormat::Binary => {}
            }
        }
        line.push(b'\n');
        Ok(())
    }

    /// The end of the data: the binary trailer, then CopyDone.
    pub fn end(&mut self, out: &mut BytesMut) {
        if matches!(self.format, CopyFormat::Binary) {
            let mut trailer = Vec::new();
            self.take_signature(&mut trailer);
            trailer.extend((-1i16).to_be_bytes());
            encode::copy_data(out, &trailer);
        }
        encode::copy_done(out);
    }
}

/// A text-format value: backslash, line endings, tabs and the delimiter escaped.
fn text_value(line: &mut Vec<u8>, value: &[u8], delimiter: u8) {
    for &b in value {
        match b {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            8 => line.extend_from_slice(b"\\b"),
            12 => line.extend_from_slice(b"\\f"),
            11 => line.extend_from_slice(b"\\v"),
            b'\t' => line.extend_from_slice(b"\\t"),
            b if b == delimiter => line.extend_from_slice(&[b'\\', b]),
            b => line.push(b),
        }
    }
}

/// Which of the columns `names` FORCE_QUOTE names, or PostgreSQL's error for a name that
/// is not among them.
fn forced_columns(force: &ForceQuote, names: &[Vec<u8>]) -> Result<Vec<bool>, MergeError> {
    let named = match force {
        ForceQuote::Needed => return Ok(vec![false; names.len()]),
        ForceQuote::All => return Ok(vec![true; names.len()]),
        ForceQuote::Columns(named) => named,
    };
    if let Some(missing) = named
        .iter()
        .find(|n| !names.iter().any(|c| c == n.as_bytes()))
    {
        return Err(MergeError::NotCopied(missing.clone()));
    }
    let forced = names
        .iter()
        .map(|c| named.iter().any(|n| c == n.as_bytes()));
    Ok(forced.collect())
}

/// A CSV value as PostgreSQL writes it (`CopyAttributeOutCSV`): quoted when `forced`, when it
/// reads as the null string, holds the delimiter, the quote or a line ending, or is `\.` alone
/// on its line (the end-of-data marker); quotes and escapes inside doubled with the escape.
fn csv_value(line: &mut Vec<u8>, value: &[u8], csv: &CsvOptions, forced: bool, alone: bool) {
    let special = |b: &u8| *b == csv.delimiter || *b == csv.quote || *b == b'\n' || *b == b'\r';
    let quote = forced
        || value == csv.null.as_slice()
        || (alone && value == b"\\.")
        || value.iter().any(special);
    if !quote {
        line.extend_from_slice(value);
        return;
    }
    line.push(csv.quote);
    for &b in value {
        if b == csv.quote || b == csv.escape {
            line.push(csv.escape);
        }
        line.push(b);
    }
    line.push(csv.quote);
}

/// The column names of a RowDescription frame.
fn column_names(description: &[u8]) -> Result<Vec<Vec<u8>>, MergeError> {
    let body = description.get(5..).ok_or_else(malformed)?;
    let count = field_count(body)?;
    let mut at = 2;
    let mut names = Vec::new();
    for _ in 0..count.max(0) {
        let end = at
            + body
                .get(at..)
                .ok_or_else(malformed)?
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(malformed)?;
        names.push(body[at..end].to_vec());
        at = end + 1 + 18; // Table oid, column, type oid, size, modifier, format.
    }
    Ok(names)
}

/// The leading int16 of a DataRow or RowDescription body: how many fields follow.
fn field_count(body: &[u8]) -> Result<i16, MergeError> {
    let bytes = body.get(..2).ok_or_else(malformed)?;
    Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
}

fn malformed() -> MergeError {
    MergeError::Contract("a malformed row from a shard for COPY TO".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tag;

    fn description(names: &[&str]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode::row_description_text(&mut out, names);
        out.to_vec()
    }

    fn data_row(values: &[Option<&str>]) -> BytesMut {
        let mut out = BytesMut::new();
        encode::data_row_text(&mut out, values);
        out
    }

    /// The CopyData payloads in `out`.
    fn payloads(out: &[u8]) -> Vec<String> {
        let mut at = 0;
        let mut found = Vec::new();
        while at < out.len() {
            let len = u32::from_be_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            if out[at] == tag::COPY_DATA {
                found.push(String::from_utf8_lossy(&out[at + 5..at + 1 + len]).into_owned());
            }
            at += 1 + len;
        }
        found
    }

    #[test]
    fn text_rows_escape_what_would_split_them() {
        let mut copy = CopyOut::new(CopyFormat::text(), false, &description(&["a", "b"])).unwrap();
        let mut rows = data_row(&[Some("x\ty\\z\nw"), None]);
        rows.extend_from_slice(&data_row(&[Some("plain"), Some("")]));
        let mut out = BytesMut::new();
        copy.rows(&rows, &mut out).unwrap();
        assert_eq!(payloads(&out), ["x\\ty\\\\z\\nw\t\\N\n", "plain\t\n"]);
    }

    #[test]
    fn csv_quotes_what_needs_it_and_writes_one_header() {
        let csv = CsvOptions::new();
        let mut copy =
            CopyOut::new(CopyFormat::Csv(csv), true, &description(&["id", "a,b"])).unwrap();
        assert_eq!(payloads(copy.head()), ["id,\"a,b\"\n"]);
        let rows = data_row(&[Some("1"), Some("say \"hi\"")]);
        let mut out = BytesMut::new();
        copy.rows(&rows, &mut out).unwrap();
        copy.rows(&data_row(&[Some(""), None]), &mut out).unwrap();
        assert_eq!(payloads(&out), ["1,\"say \"\"hi\"\"\"\n", "\"\",\n"]);
    }

    #[test]
    fn force_quote_quotes_every_non_null_value_of_its_columns() {
        let forced = |force| {
            let csv = CsvOptions {
                force_quote: force,
                ..CsvOptions::new()
            };
            let names = description(&["id", "note"]);
            let mut copy = CopyOut::new(CopyFormat::Csv(csv), false, &names)?;
            let mut out = BytesMut::new();
            copy.rows(&data_row(&[Some("7"), None]), &mut out)?;
            copy.rows(&data_row(&[Some("8"), Some("x")]), &mut out)?;
            Ok::<_, MergeError>(payloads(&out))
        };
        assert_eq!(
            forced(ForceQuote::All).unwrap(),
            ["\"7\",\n", "\"8\",\"x\"\n"]
        );
        let note = ForceQuote::Columns(vec!["note".into()]);
        assert_eq!(forced(note).unwrap(), ["7,\n", "8,\"x\"\n"]);
        let missing = forced(ForceQuote::Columns(vec!["nope".into()])).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "FORCE_QUOTE column \"nope\" not referenced by COPY"
        );
    }

    #[test]
    fn csv_quotes_the_end_marker_only_alone_on_its_line() {
        let lines = |names: &[&str], values: &[Option<&str>]| {
            let csv = CopyFormat::Csv(CsvOptions::new());
            let mut copy = CopyOut::new(csv, false, &description(names)).unwrap();
            let mut out = BytesMut::new();
            copy.rows(&data_row(values), &mut out).unwrap();
            payloads(&out)
        };
        assert_eq!(lines(&["a"], &[Some("\\.")]), ["\"\\.\"\n"]);
        assert_eq!(lines(&["a"], &[Some("\\.x")]), ["\\.x\n"]);
        assert_eq!(lines(&["a", "b"], &[Some("\\."), Some("1")]), ["\\.,1\n"]);
    }

    #[test]
    fn binary_output_has_one_signature_with_the_first_row_and_one_trailer() {
        let mut copy = CopyOut::new(CopyFormat::Binary, false, &description(&["a"])).unwrap();
        let mut out = BytesMut::new();
        copy.rows(&data_row(&[Some("x")]), &mut out).unwrap();
        copy.rows(&data_row(&[Some("y")]), &mut out).unwrap();
        copy.end(&mut out);
        let signed: Vec<bool> = (payloads(&out).iter())
            .map(|p| p.as_bytes().starts_with(b"PGCOPY"))
            .collect();
        assert_eq!(signed, [true, false, false]);
        assert!(out.ends_with(&[0xff, 0xff, tag::COPY_DONE, 0, 0, 0, 4]));
        // No rows: the signature comes with the trailer.
        let mut empty = CopyOut::new(CopyFormat::Binary, false, &description(&["a"])).unwrap();
        let mut out = BytesMut::new();
        empty.end(&mut out);
        assert_eq!(out.len(), 5 + 19 + 2 + 5);
    }
}
