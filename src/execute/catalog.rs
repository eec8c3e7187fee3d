//! What the proxy reads from a shard's catalog on a backend of its own: the columns of a
//! table in order, which an INSERT without a column list needs routed and an UPDATE of the
//! shard key needs to move rows; the tables of indexes, which say where a statement on
//! indexes runs.

use bytes::BytesMut;

use super::broadcast::{next_frame, query, send};
use crate::backend::BackendConn;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::router::TableColumn;
use crate::sql::quote::literal;
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
         WHERE attrelid = pg_catalog.to_regclass({}) AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum",
        literal(table)
    );
    let rows = text_rows(conn, &sql).await?;
    let column = |row: Vec<Option<String>>| match row.as_slice() {
        [Some(name), Some(generated), Some(sql_type)] => Ok(TableColumn {
            name: name.clone(),
            generated: generated == "t",
            sql_type: sql_type.clone(),
        }),
        _ => Err(malformed()),
    };
    rows.into_iter().map(column).collect()
}

/// The tables (unqualified names) the indexes named `indexes` (as written in SQL, resolved
/// by the backend's search_path) belong to; indexes that do not exist have none.
pub async fn index_tables(
    conn: &mut BackendConn,
    indexes: &[String],
) -> Result<Vec<String>, ErrorReport> {
    let names: Vec<String> = indexes.iter().map(|name| literal(name)).collect();
    let sql = format!(
        "SELECT c.relname FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
         WHERE i.indexrelid IN (SELECT pg_catalog.to_regclass(n) \
           FROM unnest(ARRAY[{}]::text[]) AS n)",
        names.join(", ")
    );
    let rows = text_rows(conn, &sql).await?;
    let table = |row: Vec<Option<String>>| row.into_iter().next().flatten().ok_or_else(malformed);
    rows.into_iter().map(table).collect()
}

/// The rows (text columns) of one catalog query, or the server's error.
async fn text_rows(
    conn: &mut BackendConn,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, ErrorReport> {
    let mut out = BytesMut::new();
    query(&mut out, sql)?;
    send(conn, &out).await?;
    let (mut rows, mut error) = (Vec::new(), None);
    loop {
        let frame = next_frame(conn).await?;
        let body = &frame[wire::HEADER_LEN..];
        match frame[0] {
            tag::DATA_ROW => rows.push(wire::data_row_text(body).map_err(|_| malformed())?),
            tag::ERROR_RESPONSE => error = Some(wire::error_report(body, Blame::Backend)),
            tag::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match error {
        Some(report) => Err(report),
        None => Ok(rows),
    }
}

fn malformed() -> ErrorReport {
    ErrorReport::error(
        sqlstate::PROTOCOL_VIOLATION,
        Blame::Backend,
        "malformed catalog row from the server",
    )
}
