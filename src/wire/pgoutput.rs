//! The messages of PostgreSQL's logical replication output plugin (`pgoutput`, protocol
//! version 1), as `pg_logical_slot_get_binary_changes` returns them one per row: what an
//! online move (`RESHARD`) reads to apply the changes made to its source while it copies.
//! Layouts follow the PostgreSQL docs, "Logical Replication Message Formats". Values come in
//! text format (the plugin's default); nothing here allocates by a length before the bytes
//! are there.

use super::WireError;

/// One decoded message. Those an online move does not use (Begin, Commit, Origin, Type,
/// logical messages) are [`Change::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Describes a relation before its first change in a decoding session.
    Relation(Relation),
    /// A row inserted.
    Insert {
        /// The relation's id (from its [`Relation`]).
        relation: u32,
        /// The new row.
        new: Tuple,
    },
    /// A row updated: `old` is its replica identity before (or the whole row, with
    /// `REPLICA IDENTITY FULL`) when that changed or is full; otherwise `new` carries it.
    Update {
        /// The relation's id.
        relation: u32,
        /// The old identity, when sent.
        old: Option<Tuple>,
        /// The new row.
        new: Tuple,
    },
    /// A row deleted: its replica identity (or whole row).
    Delete {
        /// The relation's id.
        relation: u32,
        /// The old identity.
        old: Tuple,
    },
    /// Relations truncated.
    Truncate {
        /// Their ids.
        relations: Vec<u32>,
    },
    /// Anything else (transaction boundaries, origins, types, messages).
    Other(u8),
}

/// A relation as the plugin describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Its id (the table's OID).
    pub id: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Whether it is part of the replica identity (every column, with `FULL`).
    pub identity: bool,
}

/// One row's values, in column order.
pub type Tuple = Vec<Value>;

/// One column's value in a [`Tuple`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NULL.
    Null,
    /// A TOASTed value the change did not touch: not sent.
    Unchanged,
    /// A value in text format.
    Text(String),
}

/// Decodes one message.
pub fn decode(message: &[u8]) -> Result<Change, WireError> {
    let mut at = Cursor(message);
    let tag = at.u8()?;
    let change = match tag {
        b'R' => Change::Relation(relation(&mut at)?),
        b'I' => {
            let relation = at.u32()?;
            at.expect(b'N')?;
            Change::Insert {
                relation,
                new: tuple(&mut at)?,
            }
        }
        b'U' => {
            let relation = at.u32()?;
            let mut old = None;
            let mut kind = at.u8()?;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut at)?);
                kind = at.u8()?;
            }
            if kind != b'N' {
                return Err(malformed("pgoutput update (no new row)"));
            }
            Change::Update {
                relation,
                old,
                new: tuple(&mut at)?,
            }
        }
        b'D' => {
            let relation = at.u32()?;
            match at.u8()? {
                b'K' | b'O' => Change::Delete {
                    relation,
                    old: tuple(&mut at)?,
                },
                _ => return Err(malformed("pgoutput delete (no old row)")),
            }
        }
        b'T' => {
            let count = at.u32()?;
            let _options = at.u8()?;
            let mut relations = Vec::new();
            for _ in 0..count {
                relations.push(at.u32()?);
            }
            Change::Truncate { relations }
        }
        other => Change::Other(other),
    };
    Ok(change)
}

fn relation(at: &mut Cursor<'_>) -> Result<Relation, WireError> {
    let id = at.u32()?;
    let namespace = at.string()?;
    let name = at.string()?;
    let _identity_setting = at.u8()?;
    let count = at.u16()?;
    let mut columns = Vec::new();
    for _ in 0..count {
        let flags = at.u8()?;
        let column = at.string()?;
        let _type_oid = at.u32()?;
        let _type_modifier = at.u32()?;
        columns.push(Column {
            name: column,
            identity: flags & 1 == 1,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        columns,
    })
}

fn tuple(at: &mut Cursor<'_>) -> Result<Tuple, WireError> {
    let count = at.u16()?;
    let mut values = Vec::new();
    for _ in 0..count {
        let value = match at.u8()? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => {
                let len = at.u32()? as usize;
                let bytes = at.take(len)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| malformed("pgoutput value (not UTF-8)"))?;
                Value::Text(text.to_owned())
            }
            _ => return Err(malformed("pgoutput value (not text format)")),
        };
        values.push(value);
    }
    Ok(values)
}

/// `what` names the part of a pgoutput message that was wrong (read as "malformed {what} message").
fn malformed(what: &'static str) -> WireError {
    WireError::Malformed { what }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(malformed("pgoutput (cut short)"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn expect(&mut self, tag: u8) -> Result<(), WireError> {
        match self.u8()? == tag {
            true => Ok(()),
            false => Err(malformed("pgoutput insert (no new row)")),
        }
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn string(&mut self) -> Result<String, WireError> {
        let end = (self.0.iter().position(|b| *b == 0))
            .ok_or_else(|| malformed("pgoutput name (no terminator)"))?;
        let text = std::str::from_utf8(&self.0[..end])
            .map_err(|_| malformed("pgoutput name (not UTF-8)"))?;
        self.0 = &self.0[end + 1..];
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests;
