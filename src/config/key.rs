//! Shard-key values: how a key written in SQL, sent as a text parameter or as a binary
//! parameter becomes one normalized value, so that `42`, `'42'`, `$1` = "42" and a binary
//! int4 or int8 42 all land on the same shard.
//!
//! Part of the config stage (range bounds and directory entries in a map are keys too) and
//! used by the router. Pure: no I/O. Never panics on any input.

use std::fmt;

mod datetime;

use datetime::{parse_date, parse_timestamp, write_date, write_timestamp};

/// Type oids a binary parameter may carry (PostgreSQL's `pg_type.dat`); 0 = left unspecified.
const OID_UNSPECIFIED: u32 = 0;
const OID_NAME: u32 = 19;
const OID_INT8: u32 = 20;
const OID_INT2: u32 = 21;
const OID_INT4: u32 = 23;
const OID_TEXT: u32 = 25;
const OID_UNKNOWN: u32 = 705;
const OID_BPCHAR: u32 = 1042;
const OID_VARCHAR: u32 = 1043;
const OID_DATE: u32 = 1082;
const OID_TIMESTAMP: u32 = 1114;
const OID_TIMESTAMPTZ: u32 = 1184;
const OID_UUID: u32 = 2950;

/// Longest piece of client text an error message repeats.
const MAX_MESSAGE_CHARS: usize = 64;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Days from 1970-01-01 (the civil-date algorithm's epoch) to 2000-01-01 (PostgreSQL's).
const UNIX_TO_PG_EPOCH_DAYS: i64 = 10_957;

/// Names a map may give a key column's type, compared ignoring ASCII case.
const TYPE_NAMES: [(&str, KeyType); 18] = [
    ("integer", KeyType::Integer),
    ("int", KeyType::Integer),
    ("int2", KeyType::Integer),
    ("int4", KeyType::Integer),
    ("int8", KeyType::Integer),
    ("smallint", KeyType::Integer),
    ("bigint", KeyType::Integer),
    ("text", KeyType::Text),
    ("varchar", KeyType::Text),
    ("character varying", KeyType::Text),
    ("char", KeyType::Text),
    ("bpchar", KeyType::Text),
    ("uuid", KeyType::Uuid),
    ("date", KeyType::Date),
    ("timestamp", KeyType::Timestamp),
    ("timestamp without time zone", KeyType::Timestamp),
    ("timestamptz", KeyType::TimestampTz),
    ("timestamp with time zone", KeyType::TimestampTz),
];

/// The SQL type family of a shard-key column: decides how keys are parsed, ordered and hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// smallint, integer, bigint.
    Integer,
    /// text, varchar, char.
    Text,
    /// uuid.
    Uuid,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone (keys compared in UTC).
    TimestampTz,
}

/// A normalized shard-key value. Ordering is the SQL ordering of the type (text: byte order,
/// which is what range maps over text use; see `example.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// Any integer width, widened.
    Integer(i64),
    /// UTF-8 text, exactly as stored.
    Text(String),
    /// The 16 bytes of a uuid.
    Uuid([u8; 16]),
    /// Days since 2000-01-01 (PostgreSQL's epoch).
    Date(i32),
    /// Microseconds since 2000-01-01 00:00:00 (UTC for `TimestampTz`).
    Timestamp(i64),
}

/// Why a value is not a key of its column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not a valid value of the type.
    #[error("{text:?} is not a valid {key_type} shard key")]
    Invalid {
        /// The key column's type.
        key_type: KeyType,
        /// What was given (truncated to 64 characters).
        text: String,
    },
    /// A timestamptz key written without a UTC offset depends on the session's TimeZone.
    #[error("timestamptz shard key {text:?} has no UTC offset; write it with one (e.g. +00)")]
    NoTimeZone {
        /// What was given.
        text: String,
    },
    /// A binary parameter whose type or length does not fit the key type.
    #[error("a binary parameter of type oid {oid} ({len} bytes) cannot be a {key_type} shard key")]
    Binary {
        /// The key column's type.
        key_type: KeyType,
        /// The parameter's type oid (0 when the client left it unspecified).
        oid: u32,
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Integer => "integer",
            KeyType::Text => "text",
            KeyType::Uuid => "uuid",
            KeyType::Date => "date",
            KeyType::Timestamp => "timestamp",
            KeyType::TimestampTz => "timestamptz",
        })
    }
}

impl KeyType {
    /// The key type a map names (`integer`, `bigint`, `text`, `uuid`, `date`, `timestamp`,
    /// `timestamptz`, and their PostgreSQL aliases).
    pub fn from_name(name: &str) -> Option<KeyType> {
        let name = name.trim();
        TYPE_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, key_type)| key_type)
    }
}

impl KeyValue {
    /// Parses PostgreSQL's text form of a value of `key_type` (a SQL literal's contents or a
    /// text-format parameter).
    ///
    /// Accepts a subset of what PostgreSQL accepts and never a different meaning: integers in
    /// decimal; uuids as PostgreSQL reads them; dates as `YYYY-MM-DD`; timestamps as a date
    /// with an optional `HH:MM[:SS[.ffffff]]` and UTC offset (`Z`, `UTC`, `+HH`, `+HH:MM`,
    /// `-HHMM`). Special values (`infinity`, `now`, `epoch`) and a timestamptz without an
    /// offset (its meaning depends on the session's TimeZone) are refused rather than guessed.
    pub fn parse_text(key_type: KeyType, text: &str) -> Result<KeyValue, KeyError> {
        let invalid = || KeyError::Invalid {
            key_type,
            text: shorten(text),
        };
        match key_type {
            KeyType::Integer => parse_integer(text)
                .map(KeyValue::Integer)
                .ok_or_else(invalid),
            KeyType::Text => Ok(KeyValue::Text(text.to_owned())),
            KeyType::Uuid => parse_uuid(text).map(KeyValue::Uuid).ok_or_else(invalid),
            KeyType::Date => parse_date(text).map(KeyValue::Date).ok_or_else(invalid),
            KeyType::Timestamp => {
                let local = parse_timestamp(text).ok_or_else(invalid)?;
                // A timestamp without time zone ignores a written offset, as PostgreSQL does.
                Ok(KeyValue::Timestamp(local.micros))
            }
            KeyType::TimestampTz => {
                let local = parse_timestamp(text).ok_or_else(invalid)?;
                let offset = local.offset_seconds.ok_or_else(|| KeyError::NoTimeZone {
                    text: shorten(text),
                })?;
                Ok(KeyValue::Timestamp(
                    local.micros - offset * MICROS_PER_SECOND,
                ))
            }
        }
    }

    /// Decodes a binary-format parameter of type `oid` (0 = unspecified) as a key of `key_type`.
    ///
    /// Integers come as int2, int4 or int8 (by length when the oid is 0); text as text,
    /// varchar, bpchar, name or unknown; the others only as their own type. Any other oid or
    /// length is [`KeyError::Binary`]; the `infinity` sentinels are [`KeyError::Invalid`].
    pub fn from_binary(key_type: KeyType, oid: u32, bytes: &[u8]) -> Result<KeyValue, KeyError> {
        let own = |type_oid: u32| oid == type_oid || oid == OID_UNSPECIFIED;
        let decoded = match key_type {
            KeyType::Integer => binary_integer(oid, bytes).map(KeyValue::Integer),
            KeyType::Text => binary_text(oid, bytes).map(KeyValue::Text),
            KeyType::Uuid => own(OID_UUID)
                .then(|| fixed::<16>(bytes))
                .flatten()
                .map(KeyValue::Uuid),
            KeyType::Date => own(OID_DATE)
                .then(|| fixed(bytes).map(i32::from_be_bytes))
                .flatten()
                .map(KeyValue::Date),
            KeyType::Timestamp | KeyType::TimestampTz => {
                let type_oid = match key_type {
                    KeyType::Timestamp => OID_TIMESTAMP,
                    _ => OID_TIMESTAMPTZ,
                };
                own(type_oid)
                    .then(|| fixed(bytes).map(i64::from_be_bytes))
                    .flatten()
                    .map(KeyValue::Timestamp)
            }
        };
        let value = decoded.ok_or(KeyError::Binary {
            key_type,
            oid,
            len: bytes.len(),
        })?;
        refuse_infinity(key_type, value)
    }

    /// The canonical bytes that consistent hashing hashes, without allocating.
    ///
    /// FROZEN FOREVER: Integer = 8-byte big-endian i64, Text = its UTF-8 bytes, Uuid = its 16
    /// bytes, Date = 4-byte big-endian i32 days since 2000-01-01, Timestamp = 8-byte
    /// big-endian i64 microseconds since 2000-01-01. Changing any of them moves data.
    pub fn canonical(&self) -> CanonicalBytes<'_> {
        CanonicalBytes(match self {
            KeyValue::Integer(n) | KeyValue::Timestamp(n) => Canonical::Eight(n.to_be_bytes()),
            KeyValue::Text(text) => Canonical::Borrowed(text.as_bytes()),
            KeyValue::Uuid(bytes) => Canonical::Borrowed(bytes),
            KeyValue::Date(days) => Canonical::Four(days.to_be_bytes()),
        })
    }

    /// Appends the canonical bytes that consistent hashing hashes: the same for every way of
    /// writing one key, and frozen forever (changing them moves data). See [`Self::canonical`].
    pub fn canonical_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.canonical().as_bytes());
    }
}

/// One key's canonical bytes (see [`KeyValue::canonical`]): borrowed from the key or held
/// inline, so the hot path hashes a key without touching the allocator.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalBytes<'a>(Canonical<'a>);

#[derive(Debug, Clone, Copy)]
enum Canonical<'a> {
    Borrowed(&'a [u8]),
    Four([u8; 4]),
    Eight([u8; 8]),
}

impl CanonicalBytes<'_> {
    /// The bytes to hash.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Canonical::Borrowed(bytes) => bytes,
            Canonical::Four(bytes) => bytes,
            Canonical::Eight(bytes) => bytes,
        }
    }
}

impl fmt::Display for KeyValue {
    /// PostgreSQL's text form, for messages and `shardgate route`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Integer(n) => write!(f, "{n}"),
            KeyValue::Text(text) => f.write_str(text),
            KeyValue::Uuid(bytes) => write_uuid(f, bytes),
            KeyValue::Date(days) => write_date(f, i64::from(*days)),
            KeyValue::Timestamp(micros) => write_timestamp(f, *micros),
        }
    }
}

/// `text` cut to the length an error message repeats.
pub(crate) fn shorten(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// The whitespace PostgreSQL's input functions skip (C `isspace`).
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn parse_integer(text: &str) -> Option<i64> {
    let trimmed = text.trim_matches(is_pg_space);
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    trimmed.parse().ok()
}

/// PostgreSQL's `uuid_in`: 32 hex digits, optionally in braces, with an optional hyphen
/// after any group of four digits (so the standard 8-4-4-4-12 form and no hyphens at all).
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    let mut rest = match bytes.strip_prefix(b"{") {
        Some(inner) => inner.strip_suffix(b"}")?,
        None => bytes,
    };
    let mut uuid = [0u8; 16];
    for (i, byte) in uuid.iter_mut().enumerate() {
        let [high, low, tail @ ..] = rest else {
            return None;
        };
        *byte = (hex_digit(*high)? << 4) | hex_digit(*low)?;
        rest = tail;
        if i % 2 == 1 && i < 15 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
    }
    rest.is_empty().then_some(uuid)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

fn write_uuid(f: &mut fmt::Formatter<'_>, bytes: &[u8; 16]) -> fmt::Result {
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

fn fixed<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

/// int2, int4 and int8 binary forms, told apart by length when the oid is unspecified.
fn binary_integer(oid: u32, bytes: &[u8]) -> Option<i64> {
    match (oid, bytes.len()) {
        (OID_INT2 | OID_UNSPECIFIED, 2) => fixed(bytes).map(|b| i16::from_be_bytes(b).into()),
        (OID_INT4 | OID_UNSPECIFIED, 4) => fixed(bytes).map(|b| i32::from_be_bytes(b).into()),
        (OID_INT8 | OID_UNSPECIFIED, 8) => fixed(bytes).map(i64::from_be_bytes),
        _ => None,
    }
}

/// The binary form of every string type is its bytes; keys are compared as UTF-8 text.
fn binary_text(oid: u32, bytes: &[u8]) -> Option<String> {
    match oid {
        OID_TEXT | OID_VARCHAR | OID_BPCHAR | OID_NAME | OID_UNKNOWN | OID_UNSPECIFIED => {
            std::str::from_utf8(bytes).ok().map(str::to_owned)
        }
        _ => None,
    }
}

/// PostgreSQL encodes `infinity` and `-infinity` as the extreme values of the binary forms;
/// refused like their text spelling.
fn refuse_infinity(key_type: KeyType, value: KeyValue) -> Result<KeyValue, KeyError> {
    let sentinel = match value {
        KeyValue::Date(i32::MAX) | KeyValue::Timestamp(i64::MAX) => "infinity",
        KeyValue::Date(i32::MIN) | KeyValue::Timestamp(i64::MIN) => "-infinity",
        _ => return Ok(value),
    };
    Err(KeyError::Invalid {
        key_type,
        text: sentinel.to_owned(),
    })
}
#[cfg(test)]
mod tests;
