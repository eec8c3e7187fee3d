//! What the proxy reads from a shard's catalog on a backend of its own: the columns of a
//! table in order, which an INSERT without a column list needs routed and an UPDATE of the
//! shard key needs to move rows.

use bytes::BytesMut;

use super::broadcast::{next_frame, query, send};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::router::TableColumn;
use crate::wire::{self, tag};

/// The columns of `table` (a map table, unqualified: as the backend's search_path finds it),
/// in the order an INSERT without a column list fills them. Empty when there is no such table.
pub async fn table_columns(
    conn: &mut BackendConn,
    table: &str,
) -> Result<Vec<TableColumn>, ErrorReport> {
    let sql = format!(
        "SELECT attname, attgenerated <> '', pg_catalog.format_type(atttypid, atttypmod) \
         FROM pg_catalog.pg_attribute \
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
            tag::DATA_ROW => {
                let values = wire::data_row_text(body).map_err(|_| malformed())?;
                let [Some(name), Some(generated), Some(sql_type)] = values.as_slice() else {
                    return Err(malformed());
                };
                columns.push(TableColumn {
                    name: name.clone(),
                    generated: generated == "t",
                    sql_type: sql_type.clone(),
                });
            }
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

fn malformed() -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROTOCOL_VIOLATION,
        Blame::Backend,
        "malformed catalog row from the server",
    )
}
