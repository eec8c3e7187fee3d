//! The object ids a RowDescription or ParameterDescription carries: the table of each column
//! and the type of each column or parameter. Objects made after `initdb` (tables, enums,
//! extension types) get a server's next free oid, so the same table has different oids on
//! different shards; a driver that looks an oid up (pgjdbc's `getTableName`, a type's name)
//! asks the catalog its catalog queries reach. [`translate_description`] lets the caller put
//! that catalog's oids in place of the answering shard's.

use bytes::{BufMut, BytesMut};

use super::{HEADER_LEN, tag};

/// PostgreSQL's `FirstNormalObjectId`: oids below it are assigned by `initdb` and name the
/// same object on every server of one major version.
pub const FIRST_USER_OID: u32 = 16384;

/// What an oid in a description names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OidKind {
    /// A column's table (`pg_class`).
    Relation,
    /// A column's or parameter's type (`pg_type`).
    Type,
}

/// The frame (header included) of `body`, a RowDescription or ParameterDescription, with
/// every oid from [`FIRST_USER_OID`] up replaced by what `translate` makes of it; `None`
/// when nothing changes (no such oid, `translate` kept them all, or a malformed or other
/// message, which the caller forwards as it is). `translate` sees only such oids.
pub fn translate_description(
    frame_tag: u8,
    body: &[u8],
    translate: &mut dyn FnMut(OidKind, u32) -> u32,
) -> Option<BytesMut> {
    let mut changed: Option<Vec<u8>> = None;
    let mut visit = |at: usize, kind: OidKind| {
        let oid = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        if oid < FIRST_USER_OID {
            return;
        }
        let new = translate(kind, oid);
        if new != oid {
            let copy = changed.get_or_insert_with(|| body.to_vec());
            copy[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
    };
    visit_oids(frame_tag, body, &mut visit)?;
    let body = changed?;
    let mut frame = BytesMut::with_capacity(HEADER_LEN + body.len());
    frame.put_u8(frame_tag);
    frame.put_u32((body.len() + 4) as u32);
    frame.extend_from_slice(&body);
    Some(frame)
}

/// Calls `visit` with the place of every oid of a description's body (in order; without
/// allocating: this runs for every description a non-catalog shard sends); `None` for a
/// malformed or other message.
fn visit_oids(frame_tag: u8, body: &[u8], visit: &mut dyn FnMut(usize, OidKind)) -> Option<()> {
    let count = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let mut at = 2;
    match frame_tag {
        tag::ROW_DESCRIPTION => {
            for _ in 0..count {
                // Name, NUL, table oid (4), column number (2), type oid (4), size (2),
                // modifier (4), format (2).
                at += memchr::memchr(0, body.get(at..)?)? + 1;
                body.get(at..at + 18)?;
                visit(at, OidKind::Relation);
                visit(at + 6, OidKind::Type);
                at += 18;
            }
        }
        tag::PARAMETER_DESCRIPTION => {
            for _ in 0..count {
                body.get(at..at + 4)?;
                visit(at, OidKind::Type);
                at += 4;
            }
        }
        _ => return None,
    }
    (at == body.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RowDescription body of (name, table oid, type oid) columns.
    fn row_description(columns: &[(&str, u32, u32)]) -> Vec<u8> {
        let mut body = (columns.len() as u16).to_be_bytes().to_vec();
        for (name, table, type_oid) in columns {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(&table.to_be_bytes());
            body.extend_from_slice(&1u16.to_be_bytes());
            body.extend_from_slice(&type_oid.to_be_bytes());
            body.extend_from_slice(&[0, 8, 255, 255, 255, 255, 0, 0]);
        }
        body
    }

    fn shifted(kind: OidKind, oid: u32) -> u32 {
        match kind {
            OidKind::Relation => oid + 100,
            OidKind::Type => oid + 1,
        }
    }

    #[test]
    fn user_tables_and_types_of_a_row_description_are_translated() {
        let body = row_description(&[("id", 16435, 20), ("mood", 16435, 16440), ("n", 0, 23)]);
        let frame = translate_description(tag::ROW_DESCRIPTION, &body, &mut shifted).unwrap();
        assert_eq!(frame[0], tag::ROW_DESCRIPTION);
        let want = row_description(&[("id", 16535, 20), ("mood", 16535, 16441), ("n", 0, 23)]);
        assert_eq!(&frame[HEADER_LEN..], &want[..]);
        assert_eq!(&frame[1..5], &((want.len() + 4) as u32).to_be_bytes());
    }

    #[test]
    fn a_description_of_builtin_oids_or_unchanged_ones_is_left_alone() {
        let body = row_description(&[("n", 0, 23), ("t", 1259, 25)]);
        let mut called = false;
        let mut never = |_: OidKind, oid: u32| {
            called = true;
            oid
        };
        assert!(translate_description(tag::ROW_DESCRIPTION, &body, &mut never).is_none());
        assert!(!called, "only user oids are asked about");
        let body = row_description(&[("id", 16435, 20)]);
        let mut same = |_: OidKind, oid: u32| oid;
        assert!(translate_description(tag::ROW_DESCRIPTION, &body, &mut same).is_none());
    }

    #[test]
    fn parameter_types_are_translated() {
        let mut body = 2u16.to_be_bytes().to_vec();
        body.extend_from_slice(&23u32.to_be_bytes());
        body.extend_from_slice(&16440u32.to_be_bytes());
        let frame = translate_description(tag::PARAMETER_DESCRIPTION, &body, &mut shifted);
        let frame = frame.unwrap();
        assert_eq!(&frame[HEADER_LEN + 2..HEADER_LEN + 6], &23u32.to_be_bytes());
        assert_eq!(&frame[HEADER_LEN + 6..], &16441u32.to_be_bytes());
    }

    #[test]
    fn malformed_or_other_messages_are_left_to_the_caller() {
        let body = row_description(&[("id", 16435, 20)]);
        for cut in 0..body.len() {
            let got = translate_description(tag::ROW_DESCRIPTION, &body[..cut], &mut shifted);
            assert!(got.is_none(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(translate_description(tag::ROW_DESCRIPTION, &longer, &mut shifted).is_none());
        assert!(translate_description(tag::DATA_ROW, &body, &mut shifted).is_none());
    }
}
