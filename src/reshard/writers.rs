//! Writers the fleet's fences do not hold back: transactions that had written (or were
//! writing) a moving table on a source when the fleet raised its fence. A fleet proxy whose
//! lease lapsed may have sent their `COMMIT` before it fenced itself out, or a direct
//! connection holds them open. The mover waits for them to end before it reads the sources'
//! slots behind the fence, so that what they commit is in the WAL it reads (and moves with
//! the rest) instead of landing on the old shard after the deletes' snapshot, where the new
//! map would never look.
//!
//! Every transaction holding (or queued for) a write lock on a moving table is followed, not
//! only those outside the fleet: the sources cannot tell them apart. A live proxy's are short
//! (it drained those that began before its fence). A transaction is followed by its
//! transaction id (held as a lock until it ends, also while it is prepared) once it has one,
//! and by its virtual transaction id before (a prepared transaction keeps it in PostgreSQL
//! 15.1 and later; on 15.0 one with no transaction id when the fence went up that is then
//! prepared between two looks, a few milliseconds, would be missed).
//!
//! A followed transaction that waits for a lock the move holds (DDL on a table it copies, a
//! key a target's open transaction wrote) would never end: the move fails at once instead.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Row;

use super::copy;
use crate::config::BackendUri;
use crate::control::ControlConn;
use crate::sql::quote;

/// How often the mover looks whether the writers ended.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Lock modes that let a transaction change a table's rows.
const WRITE_MODES: &str =
    "('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')";

/// The writers of the moving tables open on one source.
pub struct OpenWriters {
    shard: String,
    conn: ControlConn,
    /// Transaction ids: the transaction ended once no one holds their lock.
    xids: HashSet<String>,
    /// Virtual transaction ids of writers without a transaction id yet.
    virtual_only: HashSet<String>,
}

impl OpenWriters {
    /// The transactions on shard `name` (server `uri`) that hold a write lock on one of
    /// `tables`, the move's own sessions excepted.
    pub async fn on(
        name: &str,
        uri: &BackendUri,
        tables: &[String],
        timeout: Duration,
    ) -> Result<Self, String> {
        let conn =
            (copy::connect(uri, timeout).await).map_err(|why| format!("shard {name}: {why}"))?;
        let tables: Vec<String> = tables.iter().map(|table| quote::ident(table)).collect();
        // One read of the lock table for both the writers and their transaction ids.
        let sql = format!(
            "WITH l AS MATERIALIZED (SELECT * FROM pg_locks), \
             writers AS (SELECT DISTINCT l.virtualtransaction AS vxid FROM l \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'relation' AND l.mode IN {WRITE_MODES} \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t) \
             AND l.pid IS DISTINCT FROM pg_backend_pid() \
             AND a.application_name IS DISTINCT FROM $2) \
             SELECT w.vxid, x.transactionid::text FROM writers w \
             LEFT JOIN l x ON x.virtualtransaction = w.vxid \
             AND x.locktype = 'transactionid' AND x.mode = 'ExclusiveLock' AND x.granted"
        );
        let rows = (conn.client.query(&sql, &[&tables, &copy::APPLICATION_NAME]))
            .await
            .map_err(|e| copy::on(name, e))?;
        let mut writers = Self {
            shard: name.to_owned(),
            conn,
            xids: HashSet::new(),
            virtual_only: HashSet::new(),
        };
        for row in &rows {
            writers.note(row);
        }
        Ok(writers)
    }

    /// How many transactions are followed.
    pub fn len(&self) -> usize {
        self.xids.len() + self.virtual_only.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source's name.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Waits until every writer ended, for at most `wait`; why not, naming one that did not.
    pub async fn wait(mut self, wait: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let open = self.still_open().await?;
            let Some(first) = open.first() else {
                return Ok(());
            };
            if let Some(blocked) = open.iter().find(|row| row.get::<_, bool>(5)) {
                return Err(self.waits_for_the_move(blocked));
            }
            if tokio::time::Instant::now() >= deadline {
                let transactions: HashSet<String> = open.iter().map(|row| row.get(0)).collect();
                return Err(self.not_ended(first, transactions.len(), wait));
            }
            for row in &open {
                self.note(row);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// A row of (virtual transaction id, transaction id) noted: once a writer has a
    /// transaction id, it is followed by that.
    fn note(&mut self, row: &Row) {
        let vxid: String = row.get(0);
        match row.get::<_, Option<String>>(1) {
            Some(xid) => {
                self.virtual_only.remove(&vxid);
                self.xids.insert(xid);
            }
            None => {
                self.virtual_only.insert(vxid);
            }
        }
    }

    /// The followed writers' locks still held: (virtual transaction id, its transaction id,
    /// pid, application, state, whether it waits for one of the move's own sessions).
    async fn still_open(&self) -> Result<Vec<Row>, String> {
        let sql = "SELECT l.virtualtransaction, \
             CASE WHEN l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' \
             THEN l.transactionid::text END, \
             a.pid, a.application_name, a.state, \
             EXISTS (SELECT 1 FROM pg_stat_activity m \
             WHERE m.pid = ANY (pg_blocking_pids(a.pid)) AND m.application_name = $3) \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND (l.virtualtransaction = ANY($2) \
             OR (l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' \
             AND l.transactionid::text = ANY($1)))";
        let xids: Vec<&String> = self.xids.iter().collect();
        let virtual_only: Vec<&String> = self.virtual_only.iter().collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&xids, &virtual_only, &copy::APPLICATION_NAME];
        (self.conn.client.query(sql, &params))
            .await
            .map_err(|e| copy::on(&self.shard, e))
    }

    fn waits_for_the_move(&self, row: &Row) -> String {
        format!(
            "shard {}: a transaction that was writing a moving table when the fence went up \
             ({}) waits for a lock the move holds; nothing moved",
            self.shard,
            who(row)
        )
    }

    fn not_ended(&self, row: &Row, open: usize, wait: Duration) -> String {
        format!(
            "shard {}: {open} transaction(s) that were writing a moving table when the fence \
             went up still open after {} s ({}); nothing moved",
            self.shard,
            wait.as_secs(),
            who(row)
        )
    }
}

/// The session of a row of [`OpenWriters::still_open`], in words.
fn who(row: &Row) -> String {
    match row.get::<_, Option<i32>>(2) {
        Some(pid) => format!(
            "pid {pid}, application {:?}, {}",
            row.get::<_, Option<String>>(3).unwrap_or_default(),
            row.get::<_, Option<String>>(4).unwrap_or_default()
        ),
        None => "a prepared transaction".to_owned(),
    }
}
