//! Encoders for the messages the proxy writes itself: to clients (startup answers, synthesized
//! completions, errors) and the renamed Bind it sends to backends. Other backend-bound messages
//! come from `postgres_protocol::message::frontend`.
//! Lengths are computed up front, so every encoder is one pass with no temporary buffers.

use bytes::BufMut;

use super::TxStatus;
use crate::error::ErrorReport;

fn header(out: &mut impl BufMut, tag: u8, body_len: usize) {
    out.put_u8(tag);
    out.put_u32((body_len + 4) as u32);
}

fn cstr(out: &mut impl BufMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

/// A Bind whose source statement is renamed; `rest` is the original body after both names.
pub fn bind_renamed(out: &mut impl BufMut, portal: &str, statement: &str, rest: &[u8]) {
    header(out, b'B', portal.len() + statement.len() + 2 + rest.len());
    cstr(out, portal);
    cstr(out, statement);
    out.put_slice(rest);
}

/// ParseComplete, for a Parse the proxy answered without the backend.
pub fn parse_complete(out: &mut impl BufMut) {
    header(out, b'1', 0);
}

/// NoData: the described portal returns no rows.
pub fn no_data(out: &mut impl BufMut) {
    header(out, b'n', 0);
}

/// BindComplete, for a Bind the proxy ran itself (a portal read from several shards).
pub fn bind_complete(out: &mut impl BufMut) {
    header(out, b'2', 0);
}

/// PortalSuspended, after the rows of an Execute's row limit the proxy answered itself.
pub fn portal_suspended(out: &mut impl BufMut) {
    header(out, b's', 0);
}

/// CloseComplete, for a Close the proxy answered without the backend.
pub fn close_complete(out: &mut impl BufMut) {
    header(out, b'3', 0);
}

/// CommandComplete with a tag such as `DEALLOCATE`.
pub fn command_complete(out: &mut impl BufMut, tag: &str) {
    header(out, b'C', tag.len() + 1);
    cstr(out, tag);
}

/// RowDescription of text columns named `names` (type `text`, no table), for results the
/// proxy makes itself (the admin console).
pub fn row_description_text(out: &mut impl BufMut, names: &[&str]) {
    const TEXT_OID: u32 = 25;
    let body: usize = 2 + names.iter().map(|n| n.len() + 1 + 18).sum::<usize>();
    header(out, b'T', body);
    out.put_u16(names.len() as u16);
    for name in names {
        cstr(out, name);
        out.put_u32(0); // table oid
        out.put_i16(0); // column number
        out.put_u32(TEXT_OID);
        out.put_i16(-1); // variable length
        out.put_i32(-1); // no type modifier
        out.put_i16(0); // text format
    }
}

/// DataRow of text values (`None`: NULL).
pub fn data_row_text(out: &mut impl BufMut, values: &[Option<&str>]) {
    let body: usize = 2 + values
        .iter()
        .map(|v| 4 + v.map_or(0, str::len))
        .sum::<usize>();
    header(out, b'D', body);
    out.put_u16(values.len() as u16);
    for value in values {
        match value {
            Some(text) => {
                out.put_i32(text.len() as i32);
                out.put_slice(text.as_bytes());
            }
            None => out.put_i32(-1),
        }
    }
}

/// CopyOutResponse: overall format (binary or text) and the same format for each column.
pub fn copy_out_response(out: &mut impl BufMut, binary: bool, columns: usize) {
    header(out, b'H', 3 + 2 * columns);
    out.put_u8(u8::from(binary));
    out.put_i16(columns as i16);
    for _ in 0..columns {
        out.put_i16(i16::from(binary));
    }
}

/// CopyData carrying `data`.
pub fn copy_data(out: &mut impl BufMut, data: &[u8]) {
    header(out, b'd', data.len());
    out.put_slice(data);
}

/// CopyDone.
pub fn copy_done(out: &mut impl BufMut) {
    header(out, b'c', 0);
}

/// ReadyForQuery with a transaction status.
pub fn ready_for_query(out: &mut impl BufMut, status: TxStatus) {
    header(out, b'Z', 1);
    out.put_u8(status.as_byte());
}

/// ParameterStatus.
pub fn parameter_status(out: &mut impl BufMut, name: &str, value: &str) {
    header(out, b'S', name.len() + value.len() + 2);
    cstr(out, name);
    cstr(out, value);
}

/// BackendKeyData with the proxy's own cancel key.
pub fn backend_key_data(out: &mut impl BufMut, pid: i32, secret: i32) {
    header(out, b'K', 8);
    out.put_i32(pid);
    out.put_i32(secret);
}

/// Authentication request with a code and an optional payload (SASL data, MD5 salt).
pub fn authentication(out: &mut impl BufMut, code: i32, payload: &[u8]) {
    header(out, b'R', 4 + payload.len());
    out.put_i32(code);
    out.put_slice(payload);
}

/// AuthenticationSASL listing one mechanism.
pub fn authentication_sasl(out: &mut impl BufMut, mechanism: &str) {
    header(out, b'R', 4 + mechanism.len() + 2);
    out.put_i32(10);
    cstr(out, mechanism);
    out.put_u8(0);
}

/// NegotiateProtocolVersion: the newest minor version we speak and the options we ignored.
pub fn negotiate_protocol_version(out: &mut impl BufMut, minor: i32, unrecognized: &[&str]) {
    let names: usize = unrecognized.iter().map(|n| n.len() + 1).sum();
    header(out, b'v', 8 + names);
    out.put_i32(minor);
    out.put_i32(unrecognized.len() as i32);
    for name in unrecognized {
        cstr(out, name);
    }
}

/// ErrorResponse for an error the proxy raises itself.
pub fn error_response(out: &mut impl BufMut, report: &ErrorReport) {
    report_message(out, b'E', report);
}

/// NoticeResponse for a warning the proxy gives itself.
pub fn notice_response(out: &mut impl BufMut, report: &ErrorReport) {
    report_message(out, b'N', report);
}

/// The fields of an ErrorResponse or NoticeResponse (same layout, different tag).
fn report_message(out: &mut impl BufMut, tag: u8, report: &ErrorReport) {
    let severity = report.severity.as_str();
    let detail = report.detail.as_deref();
    let hint = report.hint.as_deref();
    let context = report.context.as_deref();
    let body_len = 2 * (severity.len() + 2)
        + (report.code.as_str().len() + 2)
        + (report.message.len() + 2)
        + detail.map_or(0, |d| d.len() + 2)
        + hint.map_or(0, |h| h.len() + 2)
        + context.map_or(0, |w| w.len() + 2)
        + 1;
    header(out, tag, body_len);
    for (code, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', report.code.as_str()),
    ] {
        out.put_u8(code);
        cstr(out, value);
    }
    out.put_u8(b'M');
    cstr(out, &report.message);
    if let Some(detail) = detail {
        out.put_u8(b'D');
        cstr(out, detail);
    }
    if let Some(hint) = hint {
        out.put_u8(b'H');
        cstr(out, hint);
    }
    if let Some(context) = context {
        out.put_u8(b'W');
        cstr(out, context);
    }
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Blame, ErrorReport};
    use crate::wire::{error_fields, peek_header};

    fn assert_framed(out: &[u8]) {
        let h = peek_header(out).unwrap().unwrap();
        assert_eq!(h.total_len, out.len());
    }

    #[test]
    fn lengths_are_consistent() {
        let mut frames: Vec<Vec<u8>> = vec![Vec::new(); 8];
        bind_renamed(&mut frames[0], "", "sg_1", b"\0\0\0\0\0\0");
        parse_complete(&mut frames[1]);
        close_complete(&mut frames[2]);
        ready_for_query(&mut frames[3], TxStatus::Idle);
        parameter_status(&mut frames[4], "a", "b");
        authentication_sasl(&mut frames[5], "SCRAM-SHA-256");
        negotiate_protocol_version(&mut frames[6], 0, &["_pq_.x"]);
        command_complete(&mut frames[7], "DEALLOCATE");
        frames.iter().for_each(|f| assert_framed(f));
    }

    #[test]
    fn error_response_round_trips() {
        let mut out = Vec::new();
        let report = ErrorReport::error(
            crate::error::sqlstate::TOO_MANY_CONNECTIONS,
            Blame::Proxy,
            "pool busy",
        )
        .with_detail("d")
        .with_hint("h");
        error_response(&mut out, &report);
        assert_framed(&out);
        let fields = error_fields(&out[5..]).unwrap();
        assert!(fields.contains(&(b'C', "53300")));
        assert!(fields.contains(&(b'D', "d")));
        assert!(fields.contains(&(b'H', "h")));
        let decoded = crate::wire::error_report(&out[5..], Blame::Backend);
        assert_eq!((decoded.detail, decoded.hint), (report.detail, report.hint));
    }
}
