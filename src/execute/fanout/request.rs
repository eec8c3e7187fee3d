//! The requests of a fan-out: the extended-protocol batch each leg sends, and the one round
//! trip that counts a statement's columns when its select list has a `*`.
//!
//! Part of the execute stage; encoding only, plus that single synchronous exchange.

use bytes::BytesMut;

use super::super::broadcast;
use super::OnStatus;
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{self, ParameterStatus, encode, tag};

/// Appends the extended-protocol batch of one leg: Parse and Bind of the unnamed statement
/// and portal, Describe of the portal, Execute (unless `execute` is false) and Sync.
/// `params` are the client's Bind parameters as sent (format codes, count and values).
pub fn leg_batch(
    out: &mut BytesMut,
    sql: &str,
    param_types: &[u32],
    params: &[u8],
    result_formats: &[i16],
    execute: bool,
) -> Result<(), ErrorReport> {
    use postgres_protocol::message::frontend;
    frontend::parse("", sql, param_types.iter().copied(), out).map_err(too_big)?;
    let mut rest = BytesMut::with_capacity(params.len() + 2 + 2 * result_formats.len());
    rest.extend_from_slice(params);
    rest.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for format in result_formats {
        rest.extend_from_slice(&format.to_be_bytes());
    }
    encode::bind_renamed(out, "", "", &rest);
    frontend::describe(b'P', "", out).map_err(too_big)?;
    if execute {
        frontend::execute("", 0, out).map_err(too_big)?;
    }
    frontend::sync(out);
    Ok(())
}

/// How many columns `sql` returns on `conn`, learned with Parse + Describe + Sync (after the
/// hidden `prelude`, which brings the backend to the client's settings first). Needed when a
/// select list has a `*` and the executor must ask a result format per column.
pub async fn column_count(
    conn: &mut BackendConn,
    prelude: &[String],
    sql: &str,
    param_types: &[u32],
    on_status: OnStatus<'_>,
) -> Result<usize, ErrorReport> {
    use postgres_protocol::message::frontend;
    let mut out = BytesMut::new();
    let mut ready_left = 1;
    for sql in prelude {
        broadcast::query(&mut out, sql)?;
        ready_left += 1;
    }
    frontend::parse("", sql, param_types.iter().copied(), &mut out).map_err(too_big)?;
    frontend::describe(b'S', "", &mut out).map_err(too_big)?;
    frontend::sync(&mut out);
    broadcast::send(conn, &out).await?;
    let (mut columns, mut error) = (0, None);
    while ready_left > 0 {
        let frame = broadcast::next_frame(conn).await?;
        let body = &frame[wire::HEADER_LEN..];
        match frame[0] {
            tag::READY_FOR_QUERY => ready_left -= 1,
            tag::ROW_DESCRIPTION if body.len() >= 2 => {
                columns = usize::from(u16::from_be_bytes([body[0], body[1]]));
            }
            tag::ERROR_RESPONSE => {
                error.get_or_insert(wire::error_report(body, Blame::Backend));
            }
            tag::PARAMETER_STATUS => {
                if let Ok(status) = ParameterStatus::decode(body) {
                    on_status(conn, status.name, status.value);
                }
            }
            _ => {}
        }
    }
    error.map_or(Ok(columns), Err)
}

/// A message too large for the protocol's length field: the client's statement is at fault.
fn too_big(e: std::io::Error) -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        Blame::Client,
        e.to_string(),
    )
    .caused_by(e)
}

/// The parameter section of a Bind without parameters (simple-protocol statements).
pub const NO_PARAMS: &[u8] = &[0, 0, 0, 0];

/// Which of `names` the server's catalog knows as aggregate (or window) functions, in any
/// schema: one simple query on `conn`, which must be idle.
pub async fn aggregates_among(
    conn: &mut BackendConn,
    names: &[String],
) -> Result<Vec<String>, ErrorReport> {
    let quoted: Vec<String> = (names.iter())
        .map(|name| format!("'{}'", name.replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc \
         WHERE prokind IN ('a', 'w') AND proname = ANY (ARRAY[{}]::name[])",
        quoted.join(", ")
    );
    let mut out = BytesMut::new();
    broadcast::query(&mut out, &sql)?;
    broadcast::send(conn, &out).await?;
    let (mut found, mut error) = (Vec::new(), None);
    loop {
        let frame = broadcast::next_frame(conn).await?;
        let body = &frame[wire::HEADER_LEN..];
        match frame[0] {
            tag::READY_FOR_QUERY => break,
            tag::DATA_ROW => found.extend(first_text(body)),
            tag::ERROR_RESPONSE => error = Some(wire::error_report(body, Blame::Backend)),
            _ => {}
        }
    }
    error.map_or(Ok(found), Err)
}

/// The first field of a DataRow body, as text.
fn first_text(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let bytes = body.get(6..6 + len)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}
