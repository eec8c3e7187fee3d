//! Federation databases that outlived their shard map. An edit of the map that changes what
//! the federation presents gives it a database of another name; the old one would stay on the
//! default primary for good.
//!
//! Every build marks its databases with the server's time (their comment) before it touches
//! them, and a proxy whose reads use its federation marks them again every [`MARK_EVERY`].
//! After a build, the federation databases of the same application database marked more than
//! [`STALE_AFTER`] ago are dropped, unless someone is connected to them: on the default
//! primary (`DROP DATABASE` refuses then) or on one of its replicas, where the copy on the
//! replicas is read (replaying the drop would end those reads). A proxy whose database went
//! while its reads paused builds it again at its next read (`Federation::lost`). Databases
//! without the mark (made by hand, or by shardgate before the mark existed) are left alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::ControlConn;
use super::Federation;
use crate::config::BackendUri;
use crate::sql::quote::{ident, literal};

/// How long after it was last marked a federation database nobody is connected to may be
/// dropped.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// How often a proxy whose reads use its federation marks its databases again.
pub const MARK_EVERY: Duration = Duration::from_secs(120);

/// The comment a proxy leaves on its federation databases, followed by the server's time in
/// seconds.
const MARK: &str = "shardgate federation in use at ";

/// Marks `database` as in use now.
pub(super) async fn mark_in_use(origin: &ControlConn, database: &str) -> Result<(), String> {
    let now = "SELECT extract(epoch FROM now())::int8";
    let row = origin.client.query_one(now, &[]).await;
    let now: i64 = row.map_err(|e| e.to_string())?.get(0);
    let comment = format!(
        "COMMENT ON DATABASE {} IS {}",
        ident(database),
        literal(&format!("{MARK}{now}"))
    );
    (origin.client.batch_execute(&comment).await).map_err(|e| e.to_string())
}

impl Federation {
    /// A read uses the federation: its databases are marked in use again (in the background)
    /// when their mark is getting old, so no other proxy drops them as stale.
    pub fn keep_alive(self: &Arc<Self>) {
        let now = self.started.elapsed().as_secs();
        let marked = self.marked.load(Ordering::Relaxed);
        let due = now >= marked + MARK_EVERY.as_secs();
        let swap =
            || (self.marked).compare_exchange(marked, now, Ordering::SeqCst, Ordering::SeqCst);
        if !due || swap().is_err() {
            return;
        }
        let federation = self.clone();
        tokio::spawn(async move {
            let Ok(origin) = federation.connect(&federation.origin).await else {
                return;
            };
            for copy in federation.copies() {
                if let Err(e) = mark_in_use(&origin, &copy.database).await {
                    tracing::debug!(database = %copy.database, error = %e, "marking the federation in use failed");
                }
            }
        });
    }
}

/// What a build leaves to clean up after it.
pub(super) struct Stale {
    /// The application database whose federation databases are looked at.
    pub application: String,
    /// The databases of the proxy that built: never dropped.
    pub own: Vec<String>,
    /// The default shard's replicas: a copy on the replicas is read there, where the primary
    /// cannot see its readers (and replaying its drop would end them).
    pub standbys: Vec<BackendUri>,
    /// How long connecting to a standby may take.
    pub connect_timeout: Duration,
}

impl Stale {
    /// Drops the federation databases of `application` other than `own` that were last
    /// marked more than [`STALE_AFTER`] ago and that nobody is connected to, on the primary
    /// (`origin`) or on a standby.
    pub(super) async fn drop_unused(self, origin: ControlConn) {
        let stale = "SELECT d.datname::text FROM pg_database d \
                     JOIN pg_shdescription s \
                       ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass \
                     WHERE starts_with(d.datname, $1) AND NOT d.datname = ANY($2) \
                       AND s.description ~ ('^' || $3 || '[0-9]+$') \
                       AND substring(s.description FROM '[0-9]+$')::int8 \
                           < extract(epoch FROM now())::int8 - $4::int8";
        let prefix = format!("{}_federation_", self.application);
        let age = STALE_AFTER.as_secs() as i64;
        let rows = (origin.client)
            .query(stale, &[&prefix, &self.own, &MARK, &age])
            .await;
        let candidates: Vec<String> = match rows {
            Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
            Err(e) => {
                return tracing::debug!(error = %e, "listing stale federation databases failed");
            }
        };
        for database in candidates {
            if self.read_on_a_standby(&database).await {
                continue;
            }
            let drop = format!("DROP DATABASE {}", ident(&database));
            match origin.client.batch_execute(&drop).await {
                Ok(()) => {
                    tracing::info!(%database, "dropped the federation database of an earlier shard map")
                }
                // In use (55006): a proxy still reads it.
                Err(e) => {
                    tracing::debug!(%database, error = %e, "a stale federation database stays")
                }
            }
        }
    }

    /// Whether anyone is connected to `database` on a standby, or a standby cannot say.
    async fn read_on_a_standby(&self, database: &str) -> bool {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1";
        for standby in &self.standbys {
            let config =
                super::super::client_config(standby, "shardgate federation", self.connect_timeout);
            let Ok(conn) = ControlConn::open(&config, self.connect_timeout).await else {
                return true;
            };
            match conn.client.query_one(sql, &[&database]).await {
                Ok(row) if row.get::<_, i64>(0) == 0 => {}
                _ => return true,
            }
        }
        false
    }
}
