//! Part of the merge stage (pure): the binary values the merge reads (hidden columns, the
//! finals it computes, HAVING constants) and how PostgreSQL 15 orders and equates them.
//!
//! Owns decoding a value by its type oid (PostgreSQL's `*_send` formats) and comparing two
//! values as the type's default btree operator class does: numeric by value (1.0 = 1.00, NaN
//! above everything), floats with NaN greatest and -0 = 0, text and bytea bytewise (C
//! collation), bpchar without its trailing spaces. Decoding borrows; it never allocates and
//! never panics on bytes a backend sent.

use std::cmp::Ordering;

use bytes::BufMut;

use super::MergeError;
use super::frame::Layout;
use super::numeric::{Numeric, NumericView};

/// The type of hidden column `index`, which the plan uses as `usage` (e.g. "an ORDER BY
/// key"); a type the merge cannot compare is refused, naming the column and its oid.
pub(super) fn hidden_type(
    layout: &Layout,
    index: usize,
    usage: &str,
) -> Result<SqlType, MergeError> {
    let column = layout.hidden_column(index)?;
    SqlType::from_oid(column.oid).ok_or_else(|| {
        MergeError::Unsupported(format!(
            "column \"{}\" of type oid {} cannot be {usage} across shards",
            column.name, column.oid
        ))
    })
}

/// `ty` when values of it may be ordered by the merge: text types only when their order is
/// bytewise (`bytewise`: the database's default collation is C, or the key says `COLLATE
/// "C"`), since the merge cannot reproduce another collation; `what` names the use.
pub(super) fn ordered_text(ty: SqlType, bytewise: bool, what: &str) -> Result<SqlType, MergeError> {
    let collated = matches!(ty, SqlType::Text | SqlType::Varchar | SqlType::Bpchar);
    if collated && !bytewise {
        return Err(MergeError::Unsupported(format!(
            "{what} of text across shards needs the C collation: this database's default \
             collation is not C and shardgate compares text bytewise (add COLLATE \"C\" to the \
             sort key, or narrow the query to one shard)"
        )));
    }
    Ok(ty)
}

/// The types whose values the merge can decode, order and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum SqlType {
    Bool,
    Bytea,
    Char,
    Name,
    Int8,
    Int2,
    Int4,
    Text,
    Oid,
    Float4,
    Float8,
    Money,
    Bpchar,
    Varchar,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Numeric,
    Uuid,
}

/// Types compared with each other as values (PostgreSQL has cross-type operators or implicit
/// casts between them); any other type is compared only with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// int2, int4, int8, float4, float8, numeric.
    Number,
    /// text, varchar, name, bpchar.
    Text,
    /// A type compared only with itself.
    Own(SqlType),
}

const TYPES: [(u32, SqlType, &str); 21] = [
    (16, SqlType::Bool, "boolean"),
    (17, SqlType::Bytea, "bytea"),
    (18, SqlType::Char, "\"char\""),
    (19, SqlType::Name, "name"),
    (20, SqlType::Int8, "bigint"),
    (21, SqlType::Int2, "smallint"),
    (23, SqlType::Int4, "integer"),
    (25, SqlType::Text, "text"),
    (26, SqlType::Oid, "oid"),
    (700, SqlType::Float4, "real"),
    (701, SqlType::Float8, "double precision"),
    (790, SqlType::Money, "money"),
    (1042, SqlType::Bpchar, "character"),
    (1043, SqlType::Varchar, "character varying"),
    (1082, SqlType::Date, "date"),
    (1083, SqlType::Time, "time without time zone"),
    (1114, SqlType::Timestamp, "timestamp without time zone"),
    (1184, SqlType::TimestampTz, "timestamp with time zone"),
    (1186, SqlType::Interval, "interval"),
    (1700, SqlType::Numeric, "numeric"),
    (2950, SqlType::Uuid, "uuid"),
];

impl SqlType {
    /// The type of oid `oid`, if the merge knows it.
    pub(super) fn from_oid(oid: u32) -> Option<SqlType> {
        TYPES.iter().find(|(o, ..)| *o == oid).map(|&(_, ty, _)| ty)
    }

    /// The type's SQL name, as PostgreSQL's messages spell it.
    pub(super) fn name(self) -> &'static str {
        TYPES
            .iter()
            .find(|(_, t, _)| *t == self)
            .map_or("", |&(.., name)| name)
    }

    /// Which types this one compares with.
    pub(super) fn family(self) -> Family {
        use SqlType::*;
        match self {
            Int2 | Int4 | Int8 | Float4 | Float8 | Numeric => Family::Number,
            Text | Varchar | Name | Bpchar => Family::Text,
            other => Family::Own(other),
        }
    }

    /// Decodes a value in the type's binary format.
    pub(super) fn decode(self, bytes: &[u8]) -> Result<Value<'_>, MergeError> {
        use SqlType::*;
        let value = match self {
            Bool => Value::Bool(boolean(bytes)?),
            Int2 => Value::Int(i16::from_be_bytes(fixed(bytes, self)?).into()),
            Int4 | Date => Value::Int(i32::from_be_bytes(fixed(bytes, self)?).into()),
            Oid => Value::Int(u32::from_be_bytes(fixed(bytes, self)?).into()),
            Int8 | Money | Time | Timestamp | TimestampTz => {
                Value::Int(i64::from_be_bytes(fixed(bytes, self)?).into())
            }
            Interval => Value::Int(interval_span(fixed(bytes, self)?)),
            Float4 => Value::Float(float4(bytes)?.into()),
            Float8 => Value::Float(float8(bytes)?),
            Numeric => Value::Numeric(NumericView::decode(bytes)?),
            Uuid => Value::Bytes(fixed::<16>(bytes, self).map(|_| bytes)?),
            Bpchar => Value::Bytes(trim_trailing_spaces(bytes)),
            Bytea | Char | Name | Text | Varchar => Value::Bytes(bytes),
        };
        Ok(value)
    }
}

/// An int8 in binary.
pub(super) fn int8(bytes: &[u8]) -> Result<i64, MergeError> {
    Ok(i64::from_be_bytes(fixed(bytes, SqlType::Int8)?))
}

/// A float4 in binary.
pub(super) fn float4(bytes: &[u8]) -> Result<f32, MergeError> {
    Ok(f32::from_be_bytes(fixed(bytes, SqlType::Float4)?))
}

/// A float8 in binary.
pub(super) fn float8(bytes: &[u8]) -> Result<f64, MergeError> {
    Ok(f64::from_be_bytes(fixed(bytes, SqlType::Float8)?))
}

/// A boolean in binary.
pub(super) fn boolean(bytes: &[u8]) -> Result<bool, MergeError> {
    Ok(fixed::<1>(bytes, SqlType::Bool)?[0] != 0)
}

/// The `N` bytes of a fixed-size binary value of type `ty`.
fn fixed<const N: usize>(bytes: &[u8], ty: SqlType) -> Result<[u8; N], MergeError> {
    bytes
        .try_into()
        .map_err(|_| MergeError::Malformed(ty.binary_name()))
}

impl SqlType {
    /// What a malformed value of this type is called in errors.
    fn binary_name(self) -> &'static str {
        match self {
            SqlType::Interval => "interval value",
            SqlType::Uuid => "uuid value",
            SqlType::Float4 | SqlType::Float8 => "float value",
            SqlType::Bool => "boolean value",
            _ => "integer or time value",
        }
    }
}

/// interval_cmp_value (utils/adt/timestamp.c): months count 30 days, so '1 mon' = '30 days'.
fn interval_span(bytes: [u8; 16]) -> i128 {
    let time = i64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]);
    let day = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let month = i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let days = i128::from(month) * 30 + i128::from(day);
    i128::from(time) + days * 86_400_000_000
}

fn trim_trailing_spaces(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &bytes[..len]
}

/// A decoded value: what ordering and equality read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    /// Integers and the types ordered as one (date, time, timestamps, money, oid, interval).
    Int(i128),
    /// float4 (widened exactly) and float8.
    Float(f64),
    /// numeric.
    Numeric(NumericView<'a>),
    /// text-like (bpchar already trimmed), bytea, uuid, "char": compared bytewise.
    Bytes(&'a [u8]),
    /// boolean.
    Bool(bool),
}

impl Value<'_> {
    /// PostgreSQL's order; values of one family compare as their common type does
    /// (int with numeric exactly, with float as float8).
    pub(super) fn compare(&self, other: &Value<'_>) -> Ordering {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => compare_floats(*a, *b),
            (Numeric(a), Numeric(b)) => a.compare(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Numeric(b)) => compare_int_numeric(*a, b),
            (Numeric(a), Int(b)) => compare_int_numeric(*b, a).reverse(),
            (Int(a), Float(b)) => compare_floats(*a as f64, *b),
            (Float(a), Int(b)) => compare_floats(*a, *b as f64),
            (Numeric(a), Float(b)) => compare_floats(a.to_f64(), *b),
            (Float(a), Numeric(b)) => compare_floats(*a, b.to_f64()),
            // Values of unrelated types never meet: Merger::new refuses such comparisons.
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Int(_) | Value::Float(_) | Value::Numeric(_) => 0,
            Value::Bytes(_) => 1,
            Value::Bool(_) => 2,
        }
    }

    /// Appends bytes that are equal for two values exactly when `compare` says Equal (for
    /// values of one type): the key of GROUP BY and DISTINCT.
    pub(super) fn write_key(&self, out: &mut impl BufMut) {
        match self {
            Value::Int(v) => out.put_i128(*v),
            Value::Float(v) => out.put_u64(canonical_float(*v).to_bits()),
            Value::Numeric(v) => v.write_key(out),
            Value::Bytes(v) => {
                out.put_u32(v.len() as u32);
                out.put_slice(v);
            }
            Value::Bool(v) => out.put_u8(u8::from(*v)),
        }
    }
}

/// float8_cmp_internal: NaN equals NaN and sorts above every other value; -0 = 0.
pub(super) fn compare_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn canonical_float(v: f64) -> f64 {
    if v.is_nan() {
        f64::NAN
    } else if v == 0.0 {
        0.0
    } else {
        v
    }
}

fn compare_int_numeric(a: i128, b: &NumericView<'_>) -> Ordering {
    Numeric::from_i128(a).compare_view(b)
}

#[cfg(test)]
mod tests;
