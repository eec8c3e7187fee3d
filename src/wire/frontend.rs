//! Frontend messages whose fields the proxy must read: the ones that name prepared statements,
//! and the SQL text of simple queries. Each parser takes the body (the frame without its header).

use super::WireError;
use super::reader::Reader;

/// Parse: `name\0 query\0 n:i16 oid:i32 * n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// SQL text.
    pub query: &'a str,
    /// Parameter type OIDs the client specified (0 = unspecified).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Reads a Parse body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr()?;
        let query = r.cstr()?;
        let count = r.i16()?;
        let count = usize::try_from(count).map_err(|_| WireError::Malformed { what: "Parse" })?;
        let mut param_types = Vec::with_capacity(count.min(body.len() / 4));
        for _ in 0..count {
            param_types.push(r.i32()? as u32);
        }
        Ok(Self {
            name,
            query,
            param_types,
        })
    }
}

/// The head of a Bind: the two names; everything after them is forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal; empty for the unnamed portal.
    pub portal: &'a str,
    /// Source statement; empty for the unnamed statement.
    pub statement: &'a str,
    /// Offset in the body where formats and parameters start.
    pub rest_offset: usize,
}

impl<'a> Bind<'a> {
    /// Reads the names at the start of a Bind body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        Ok(Self {
            portal,
            statement,
            rest_offset: r.position(),
        })
    }
}

/// The part of a Bind after the names: the parameters (formats and values, forwarded as
/// bytes) and the result-format codes the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRest<'a> {
    /// Parameter format codes, count and values, exactly as sent.
    pub params: &'a [u8],
    /// How many parameter values it carries.
    pub value_count: u16,
    /// Result-format codes: none (all text), one (for every column) or one per column.
    pub result_formats: Vec<i16>,
}

impl<'a> BindRest<'a> {
    /// Splits `rest` (a Bind body from `Bind::rest_offset`).
    pub fn decode(rest: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(rest, "Bind");
        let format_count = r.i16()? as u16;
        r.bytes(usize::from(format_count) * 2)?;
        let value_count = r.i16()? as u16;
        for _ in 0..value_count {
            let len = r.i32()?;
            if let Ok(len) = usize::try_from(len) {
                r.bytes(len)?;
            }
        }
        let params = &rest[..r.position()];
        let result_count = r.i16()? as u16;
        let result_formats = (0..result_count)
            .map(|_| r.i16())
            .collect::<Result<_, _>>()?;
        Ok(Self {
            params,
            value_count,
            result_formats,
        })
    }

    /// The Bind rest of a statement that takes only `chosen` of these parameters (0-based, in
    /// its own order), with the same formats: a split INSERT's part for one shard.
    pub fn select(&self, chosen: &[usize]) -> Result<Vec<u8>, WireError> {
        let mut r = Reader::new(self.params, "Bind");
        let format_count = usize::from(r.i16()? as u16);
        let formats: Vec<i16> = (0..format_count)
            .map(|_| r.i16())
            .collect::<Result<_, _>>()?;
        let value_count = usize::from(r.i16()? as u16);
        let mut values: Vec<&[u8]> = Vec::with_capacity(value_count);
        for _ in 0..value_count {
            let start = r.position();
            let len = r.i32()?;
            if let Ok(len) = usize::try_from(len) {
                r.bytes(len)?;
            }
            values.push(&self.params[start..r.position()]);
        }
        let missing = || WireError::Malformed { what: "Bind" };
        let mut out = Vec::with_capacity(self.params.len() + 8);
        let chosen_formats: Vec<i16> = match formats.as_slice() {
            [] | [_] => formats.clone(),
            all => (chosen.iter())
                .map(|&i| all.get(i).copied().ok_or_else(missing))
                .collect::<Result<_, _>>()?,
        };
        push_count(&mut out, chosen_formats.len())?;
        chosen_formats
            .iter()
            .for_each(|f| out.extend_from_slice(&f.to_be_bytes()));
        push_count(&mut out, chosen.len())?;
        for &i in chosen {
            out.extend_from_slice(values.get(i).ok_or_else(missing)?);
        }
        push_count(&mut out, self.result_formats.len())?;
        (self.result_formats.iter()).for_each(|f| out.extend_from_slice(&f.to_be_bytes()));
        Ok(out)
    }
}

/// A 16-bit count of a Bind section.
fn push_count(out: &mut Vec<u8>, count: usize) -> Result<(), WireError> {
    let count = i16::try_from(count).map_err(|_| WireError::Malformed { what: "Bind" })?;
    out.extend_from_slice(&count.to_be_bytes());
    Ok(())
}

/// Whether Describe or Close targets a prepared statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementOrPortal {
    /// `S`.
    Statement,
    /// `P`.
    Portal,
}

impl StatementOrPortal {
    fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self, WireError> {
        match r.u8()? {
            b'S' => Ok(Self::Statement),
            b'P' => Ok(Self::Portal),
            _ => Err(WireError::Malformed { what }),
        }
    }

    /// The wire byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Self::Statement => b'S',
            Self::Portal => b'P',
        }
    }
}

/// Describe or Close: `kind name\0`; the two messages share a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// Statement or portal.
    pub kind: StatementOrPortal,
    /// Its name.
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// Reads a Describe body.
    pub fn decode_describe(body: &'a [u8]) -> Result<Self, WireError> {
        Self::decode(body, "Describe")
    }

    /// Reads a Close body.
    pub fn decode_close(body: &'a [u8]) -> Result<Self, WireError> {
        Self::decode(body, "Close")
    }

    fn decode(body: &'a [u8], what: &'static str) -> Result<Self, WireError> {
        let mut r = Reader::new(body, what);
        let kind = StatementOrPortal::read(&mut r, what)?;
        Ok(Self {
            kind,
            name: r.cstr()?,
        })
    }
}

/// The portal an Execute body runs.
pub fn execute_portal(body: &[u8]) -> Result<&str, WireError> {
    Reader::new(body, "Execute").cstr()
}

/// The portal and row limit (0 = all rows) of an Execute body.
pub fn execute_fields(body: &[u8]) -> Result<(&str, i32), WireError> {
    let mut r = Reader::new(body, "Execute");
    Ok((r.cstr()?, r.i32()?))
}

/// The SQL text of a Query body.
pub fn query_text(body: &[u8]) -> Result<&str, WireError> {
    Reader::new(body, "Query").cstr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[5..]
    }

    #[test]
    fn parse_round_trips() {
        let mut out = BytesMut::new();
        frontend::parse("s1", "SELECT $1", [23], &mut out).unwrap();
        let parsed = Parse::decode(body(&out)).unwrap();
        assert_eq!(
            parsed,
            Parse {
                name: "s1",
                query: "SELECT $1",
                param_types: vec![23]
            }
        );
    }

    #[test]
    fn bind_rest_splits_parameters_from_result_formats() {
        let mut out = BytesMut::new();
        let values = [Some("42"), None];
        frontend::bind(
            "",
            "s",
            [1],
            values,
            |v, buf| match v {
                Some(v) => {
                    buf.extend_from_slice(v.as_bytes());
                    Ok(postgres_protocol::IsNull::No)
                }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            [0, 1],
            &mut out,
        )
        .map_err(|_| ())
        .unwrap();
        let bind = Bind::decode(body(&out)).unwrap();
        let rest = BindRest::decode(&body(&out)[bind.rest_offset..]).unwrap();
        assert_eq!(rest.result_formats, [0, 1]);
        // 1 format (2+2) + count (2) + "42" (4+2) + NULL (4)
        assert_eq!(rest.params.len(), 16);
        assert!(BindRest::decode(&rest.params[..7]).is_err());
    }

    /// A Bind rest with one format code per value (text, binary, text), values "a", NULL, "cc",
    /// and binary results.
    fn three_values() -> Vec<u8> {
        let mut rest = vec![0, 3, 0, 0, 0, 1, 0, 0, 0, 3];
        rest.extend_from_slice(&[0, 0, 0, 1, b'a']);
        rest.extend_from_slice(&(-1i32).to_be_bytes());
        rest.extend_from_slice(&[0, 0, 0, 2, b'c', b'c']);
        rest.extend_from_slice(&[0, 1, 0, 1]);
        rest
    }

    #[test]
    fn a_bind_rest_keeps_the_chosen_values_with_their_formats() {
        let rest = three_values();
        let decoded = BindRest::decode(&rest).unwrap();
        let picked = decoded.select(&[2, 1]).unwrap();
        let mut want = vec![0, 2, 0, 0, 0, 1, 0, 2];
        want.extend_from_slice(&[0, 0, 0, 2, b'c', b'c']);
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(picked, want);
        assert_eq!(decoded.select(&[0, 1, 2]).unwrap(), rest);
        assert!(decoded.select(&[3]).is_err(), "a value the Bind lacks");
    }

    #[test]
    fn bind_names_and_rest() {
        let b = b"portal\0stmt\0\0\0\0\0\0\0";
        let bind = Bind::decode(b).unwrap();
        assert_eq!(
            (bind.portal, bind.statement, bind.rest_offset),
            ("portal", "stmt", 12)
        );
    }

    #[test]
    fn describe_and_close() {
        assert_eq!(
            Target::decode_describe(b"Sx\0").unwrap().kind,
            StatementOrPortal::Statement
        );
        assert_eq!(Target::decode_close(b"Py\0").unwrap().name, "y");
        assert!(Target::decode_close(b"Qy\0").is_err());
    }

    #[test]
    fn negative_parameter_count_is_malformed() {
        assert!(Parse::decode(b"\0SELECT 1\0\xff\xff").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Parse::decode(&bytes);
            let _ = Bind::decode(&bytes);
            let _ = Target::decode_describe(&bytes);
            let _ = Target::decode_close(&bytes);
            let _ = query_text(&bytes);
        }
    }
}
