//! Part of the merge stage (pure): the layout of the shards' rows (PostgreSQL protocol,
//! "Message Formats": RowDescription and DataRow) and the frames the client sees.
//!
//! Owns where each field of a shard's DataRow lies and how a client row is framed: the
//! visible fields copied as one slice, or fields written one by one for computed rows. Field
//! values are never interpreted here, and bytes a backend sent never cause a panic: every read
//! is bounds-checked and a frame that does not match the RowDescription is an error.

use bytes::{BufMut, BytesMut};

use super::MergeError;
use crate::wire::{HEADER_LEN, Reader, WireError, tag};

/// Bytes before the first field of a DataRow: tag, length, field count.
const FIELDS_AT: usize = HEADER_LEN + 2;

/// One column of the shards' RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    /// Column name, for errors.
    pub(super) name: String,
    /// Type oid.
    pub(super) oid: u32,
    /// Format code 1: the values are in the type's binary format.
    pub(super) binary: bool,
}

/// The shards' row layout: every column, how many the client sees, and its RowDescription.
#[derive(Debug)]
pub(super) struct Layout {
    /// Every column of the shard SQL, the hidden ones last.
    pub(super) columns: Vec<Column>,
    /// Columns the client sees (the first ones).
    pub(super) visible: usize,
    /// The client's RowDescription frame: the visible columns' descriptions as they came.
    pub(super) description: Vec<u8>,
}

impl From<WireError> for MergeError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Malformed { what } => MergeError::Malformed(what),
            _ => MergeError::Malformed("message"),
        }
    }
}

impl Layout {
    /// Reads a RowDescription body whose last `hidden` columns are the plan's hidden ones.
    pub(super) fn parse(body: &[u8], hidden: usize) -> Result<Layout, MergeError> {
        let mut reader = Reader::new(body, "RowDescription");
        let count =
            usize::try_from(reader.i16()?).map_err(|_| MergeError::Malformed("RowDescription"))?;
        let visible = count.checked_sub(hidden).ok_or_else(|| {
            MergeError::Contract(format!("the plan hides {hidden} of {count} columns"))
        })?;
        let mut columns = Vec::with_capacity(count);
        let mut visible_end = reader.position();
        for _ in 0..count {
            let name_len = body[reader.position()..]
                .iter()
                .position(|&b| b == 0)
                .ok_or(MergeError::Malformed("RowDescription"))?;
            let name = String::from_utf8_lossy(reader.bytes(name_len)?).into_owned();
            // NUL, table oid (4), column number (2).
            reader.bytes(1 + 6)?;
            let oid = reader.i32()? as u32;
            // Type size (2), type modifier (4).
            reader.bytes(6)?;
            let binary = reader.i16()? == 1;
            columns.push(Column { name, oid, binary });
            if columns.len() == visible {
                visible_end = reader.position();
            }
        }
        if !reader.is_empty() {
            return Err(MergeError::Malformed("RowDescription"));
        }
        let mut description = Vec::with_capacity(HEADER_LEN + visible_end);
        description.push(tag::ROW_DESCRIPTION);
        description.extend_from_slice(&((visible_end + 4) as i32).to_be_bytes());
        description.extend_from_slice(&(visible as i16).to_be_bytes());
        description.extend_from_slice(&body[2..visible_end]);
        Ok(Layout {
            columns,
            visible,
            description,
        })
    }

    /// Hidden column `index`, which the plan reads: it must exist and be in binary.
    pub(super) fn hidden_column(&self, index: usize) -> Result<&Column, MergeError> {
        let column = self.columns.get(self.visible + index).ok_or_else(|| {
            MergeError::Contract(format!(
                "the plan reads hidden column {index} of {}",
                self.columns.len() - self.visible
            ))
        })?;
        if !column.binary {
            return Err(MergeError::Contract(format!(
                "hidden column {index} (\"{}\") was not fetched in binary",
                column.name
            )));
        }
        Ok(column)
    }

    /// Whether the shard SQL has columns the client does not see.
    pub(super) fn has_hidden(&self) -> bool {
        self.columns.len() > self.visible
    }
}

/// A shard's DataRow, checked against the layout: where its hidden fields start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    frame: &'a [u8],
    hidden_at: usize,
}

impl<'a> Row<'a> {
    /// Checks every field of `frame` (a whole DataRow) against the layout.
    pub(super) fn parse(frame: &'a [u8], layout: &Layout) -> Result<Row<'a>, MergeError> {
        let mut reader = header(frame, layout.columns.len())?;
        let mut hidden_at = frame.len();
        for index in 0..layout.columns.len() {
            if index == layout.visible {
                hidden_at = reader.position();
            }
            skip_field(&mut reader)?;
        }
        if !reader.is_empty() {
            return Err(MergeError::Malformed("DataRow"));
        }
        Ok(Row { frame, hidden_at })
    }

    /// A row that [`Row::parse`] checked before, kept as its frame and `hidden_at`.
    pub(super) fn checked(frame: &'a [u8], hidden_at: usize) -> Row<'a> {
        Row { frame, hidden_at }
    }

    /// The whole DataRow frame.
    pub(super) fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// Offset of the first hidden field in the frame.
    pub(super) fn hidden_at(&self) -> usize {
        self.hidden_at
    }

    /// Hidden field `index` (0 = the first hidden column); `None` is NULL.
    pub(super) fn hidden(&self, index: usize) -> Result<Option<&'a [u8]>, MergeError> {
        self.field_after(self.hidden_at, index)
    }

    /// Visible field `index`; `None` is NULL.
    pub(super) fn visible(&self, index: usize) -> Result<Option<&'a [u8]>, MergeError> {
        self.field_after(FIELDS_AT, index)
    }

    fn field_after(&self, start: usize, skip: usize) -> Result<Option<&'a [u8]>, MergeError> {
        let rest = self
            .frame
            .get(start..)
            .ok_or(MergeError::Malformed("DataRow"))?;
        let mut reader = Reader::new(rest, "DataRow");
        for _ in 0..skip {
            skip_field(&mut reader)?;
        }
        read_field(&mut reader)
    }

    /// Appends the client's DataRow: this row's visible fields, one copy.
    pub(super) fn write_visible(&self, visible: usize, out: &mut BytesMut) {
        let fields = &self.frame[FIELDS_AT..self.hidden_at];
        out.reserve(FIELDS_AT + fields.len());
        out.put_u8(tag::DATA_ROW);
        out.put_i32((fields.len() + 6) as i32);
        out.put_i16(visible as i16);
        out.extend_from_slice(fields);
    }
}

/// A row kept after its push: a group's first row, a MIN/MAX winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwnedRow {
    frame: Box<[u8]>,
    hidden_at: usize,
}

impl OwnedRow {
    /// A copy of `row`.
    pub(super) fn new(row: &Row<'_>) -> OwnedRow {
        OwnedRow {
            frame: row.frame.into(),
            hidden_at: row.hidden_at,
        }
    }

    /// The kept row.
    pub(super) fn row(&self) -> Row<'_> {
        Row::checked(&self.frame, self.hidden_at)
    }

    /// Bytes it holds.
    pub(super) fn size(&self) -> usize {
        self.frame.len()
    }
}

/// Checks the tag, length and field count of a DataRow frame, without walking its fields:
/// enough for a row forwarded as it came (the backend framed it, PostgreSQL checks the rest).
pub(super) fn check_header(frame: &[u8], columns: usize) -> Result<(), MergeError> {
    header(frame, columns).map(|_| ())
}

fn header(frame: &[u8], columns: usize) -> Result<Reader<'_>, MergeError> {
    let mut reader = Reader::new(frame, "DataRow");
    let tag = reader.u8()?;
    let len = reader.i32()?;
    let count = reader.i16()?;
    if tag != tag::DATA_ROW || len as usize != frame.len() - 1 || count as usize != columns {
        return Err(MergeError::Malformed("DataRow"));
    }
    Ok(reader)
}

fn skip_field(reader: &mut Reader<'_>) -> Result<(), MergeError> {
    read_field(reader).map(|_| ())
}

fn read_field<'a>(reader: &mut Reader<'a>) -> Result<Option<&'a [u8]>, MergeError> {
    let len = reader.i32()?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| MergeError::Malformed("DataRow"))?;
    Ok(Some(reader.bytes(len)?))
}

/// Writes a client DataRow field by field (rows the merge computes).
pub(super) struct RowWriter<'a> {
    out: &'a mut BytesMut,
}

/// Appends a DataRow of `fields` fields that `fill` writes; if `fill` fails, `out` is left
/// as it was.
pub(super) fn write_row<E>(
    out: &mut BytesMut,
    fields: usize,
    fill: impl FnOnce(&mut RowWriter<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    out.put_u8(tag::DATA_ROW);
    out.put_i32(0);
    out.put_i16(fields as i16);
    if let Err(error) = fill(&mut RowWriter { out }) {
        out.truncate(start);
        return Err(error);
    }
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

impl RowWriter<'_> {
    /// A field copied as it is; `None` is NULL.
    pub(super) fn field(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.out.put_i32(-1),
            Some(bytes) => {
                self.out.put_i32(bytes.len() as i32);
                self.out.extend_from_slice(bytes);
            }
        }
    }

    /// A field whose bytes `write` appends to the buffer.
    pub(super) fn field_with<E>(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.out.len();
        self.out.put_i32(0);
        write(self.out)?;
        let len = (self.out.len() - at - 4) as i32;
        self.out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
