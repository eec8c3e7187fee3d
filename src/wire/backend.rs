//! Backend messages whose fields the proxy reads: parameter reports, cancel keys, command tags and
//! error fields. Each parser takes the body (the frame without its header).

use super::WireError;
use super::reader::Reader;
use crate::error::{Blame, ErrorReport, SqlState, sqlstate};

/// ParameterStatus: a reported run-time parameter and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// Parameter name as the server spells it (e.g. `DateStyle`).
    pub name: &'a str,
    /// Current value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Reads a ParameterStatus body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "ParameterStatus");
        Ok(Self {
            name: r.cstr()?,
            value: r.cstr()?,
        })
    }
}

/// BackendKeyData: what a CancelRequest must quote (protocol 3.0: 4-byte key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Backend process id.
    pub pid: i32,
    /// Secret key.
    pub secret: i32,
}

impl BackendKeyData {
    /// Reads a BackendKeyData body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "BackendKeyData");
        Ok(Self {
            pid: r.i32()?,
            secret: r.i32()?,
        })
    }
}

/// The values of a DataRow body in text format (`None`: NULL), for the few rows the proxy reads
/// itself (catalog answers, rows an UPDATE of the shard key moves).
pub fn data_row_text(body: &[u8]) -> Result<Vec<Option<String>>, WireError> {
    let mut r = Reader::new(body, "DataRow");
    let count = r.i16()?;
    let mut values = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let len = r.i32()?;
        let value = match usize::try_from(len) {
            Ok(len) => {
                let bytes = r.bytes(len)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| WireError::Malformed { what: "DataRow" })?;
                Some(text.to_owned())
            }
            Err(_) => None,
        };
        values.push(value);
    }
    Ok(values)
}

/// The tag of a CommandComplete body, such as `INSERT 0 1` or `ROLLBACK`.
pub fn command_tag(body: &[u8]) -> Result<&str, WireError> {
    Reader::new(body, "CommandComplete").cstr()
}

/// The fields of an ErrorResponse or NoticeResponse as (code byte, value) pairs.
pub fn error_fields(body: &[u8]) -> Result<Vec<(u8, &str)>, WireError> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut fields = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            return Ok(fields);
        }
        fields.push((code, r.cstr()?));
        if r.is_empty() {
            return Err(WireError::Malformed {
                what: "ErrorResponse",
            });
        }
    }
}

/// Whether an ErrorResponse body is FATAL or PANIC: the server closes the connection after it.
/// Read from the `V` field, which is never translated (PostgreSQL 9.6 and later), else `S`.
pub fn ends_connection(body: &[u8]) -> bool {
    let fields = error_fields(body).unwrap_or_default();
    let severity = (fields.iter().find(|(code, _)| *code == b'V'))
        .or_else(|| fields.iter().find(|(code, _)| *code == b'S'))
        .map(|(_, value)| *value);
    matches!(severity, Some("FATAL" | "PANIC"))
}

/// A backend's ErrorResponse as a report: SQLSTATE, message and detail kept (XX000 and a
/// placeholder message when the server left them out or the body is malformed).
pub fn error_report(body: &[u8], blame: Blame) -> ErrorReport {
    let fields = error_fields(body).unwrap_or_default();
    let field = |code: u8| fields.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);
    let mut report = ErrorReport::error(
        field(b'C')
            .and_then(SqlState::parse)
            .unwrap_or(sqlstate::INTERNAL_ERROR),
        blame,
        field(b'M').unwrap_or("error without a message"),
    );
    report.detail = field(b'D').map(str::to_owned);
    report.hint = field(b'H').map(str::to_owned);
    report.context = field(b'W').map(str::to_owned);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_read_as_text_with_nulls() {
        let mut row = bytes::BytesMut::new();
        crate::wire::encode::data_row_text(&mut row, &[Some("user_id"), None, Some("t")]);
        let values = data_row_text(&row[5..]).unwrap();
        assert_eq!(
            values,
            [Some("user_id".to_owned()), None, Some("t".to_owned())]
        );
        assert!(data_row_text(&row[5..9]).is_err());
    }

    #[test]
    fn reads_error_fields() {
        let fields = error_fields(b"SERROR\0C42601\0Msyntax\0\0").unwrap();
        assert_eq!(
            fields,
            vec![(b'S', "ERROR"), (b'C', "42601"), (b'M', "syntax")]
        );
        assert!(error_fields(b"SERROR\0").is_err());
    }

    #[test]
    fn fatal_errors_end_the_connection_whatever_the_language() {
        let died = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to unexpected postmaster exit\0\0";
        assert!(ends_connection(died));
        // Translated `S`, untranslated `V`.
        assert!(ends_connection(b"SFATAL-FR\0VFATAL\0C57P01\0Mx\0\0"));
        assert!(!ends_connection(b"SERREUR\0VERROR\0C42601\0Mx\0\0"));
        assert!(!ends_connection(b"garbage"));
    }

    #[test]
    fn reads_parameter_status_and_key() {
        let p = ParameterStatus::decode(b"TimeZone\0UTC\0").unwrap();
        assert_eq!((p.name, p.value), ("TimeZone", "UTC"));
        let k = BackendKeyData::decode(&[0, 0, 0, 7, 0, 0, 1, 0]).unwrap();
        assert_eq!((k.pid, k.secret), (7, 256));
    }
}
