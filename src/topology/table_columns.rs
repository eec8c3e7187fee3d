//! The column order of map tables, read from the catalog for an INSERT without a column list
//! (the router needs the key's position among the values). Kept a few seconds, and forgotten
//! whenever DDL runs through this proxy; DDL through another proxy of a fleet is seen within
//! [`FRESH_FOR`] (until then such an INSERT fails as PostgreSQL would fail it, never lands on
//! the wrong shard: a column list that no longer matches the table is an error there).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::router::TableColumn;

/// How long a table's columns are used before the catalog is read again.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// Tables kept at most (then it starts over).
const MAX_TABLES: usize = 1_000;

/// Columns of tables by map name, with when they were read.
#[derive(Default)]
pub struct TableColumns(Mutex<HashMap<String, Read>>);

/// A table's columns, and when they were read.
type Read = (Instant, Arc<[TableColumn]>);

impl TableColumns {
    /// The columns of `table` read less than [`FRESH_FOR`] ago.
    pub fn get(&self, table: &str) -> Option<Arc<[TableColumn]>> {
        let tables = self.lock();
        let (read, columns) = tables.get(table)?;
        (read.elapsed() < FRESH_FOR).then(|| columns.clone())
    }

    /// Remembers the columns of `table` just read.
    pub fn insert(&self, table: &str, columns: Arc<[TableColumn]>) {
        let mut tables = self.lock();
        if tables.len() >= MAX_TABLES {
            tables.clear();
        }
        tables.insert(table.to_owned(), (Instant::now(), columns));
    }

    /// DDL ran: every table is read again when next needed.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Read>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_kept_until_ddl() {
        let columns = TableColumns::default();
        assert!(columns.get("users").is_none());
        let column = |name: &str| TableColumn {
            name: name.to_owned(),
            generated: false,
            sql_type: "text".to_owned(),
        };
        columns.insert("users", Arc::from(vec![column("user_id"), column("name")]));
        assert_eq!(columns.get("users").unwrap().len(), 2);
        columns.forget_all();
        assert!(columns.get("users").is_none());
    }
}
