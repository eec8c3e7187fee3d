//! What the proxy reads from a shard's catalog on a backend of its own: the columns of a
//! table in order, which an INSERT without a column list needs routed.

use bytes::BytesMut;

use super::broadcast::{next_frame, query, send};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{self, tag};

/// The columns of `table` (a map table, unqualified: as the backend's search_path finds it),
/// in the order an INSERT without a column list fills them. Empty when there is no such table.
pub async fn table_columns(
    conn: &mut BackendConn,
    table: &str,
) -> Result<Vec<String>, ErrorReport> {
    let sql = format!(
        "SELECT attname FROM pg_catalog.pg_attribute \
         WHERE attrelid = pg_catalog.to_regclass('{}') AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum",
        table.replace('\'', "''")
    );
    let mut out = BytesMut::new();
    query(&mut out, &sql)?;
    send(conn, &out).await?;
    let (mut columns, mut error) = (Vec::new(), None);
    loop {
        let frame = next_frame(conn).await?;
        let body = &frame[wire::HEADER_LEN..];
        match frame[0] {
            tag::DATA_ROW => columns.push(first_value(body).ok_or_else(malformed)?),
            tag::ERROR_RESPONSE => error = Some(wire::error_report(body, Blame::Backend)),
            tag::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match error {
        Some(report) => Err(report),
        None => Ok(columns),
    }
}

/// The first value of a DataRow, as text.
fn first_value(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let value = body.get(6..6 + len)?;
    String::from_utf8(value.to_vec()).ok()
}

fn malformed() -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROTOCOL_VIOLATION,
        Blame::Backend,
        "malformed catalog row from the server",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_rows_first_value_is_read() {
        let mut row = BytesMut::new();
        crate::wire::encode::data_row_text(&mut row, &[Some("user_id"), None]);
        assert_eq!(first_value(&row[5..]).as_deref(), Some("user_id"));
        assert_eq!(first_value(&[0, 1]), None);
    }
}
