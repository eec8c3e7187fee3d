//! Federation databases that outlived their shard map. An edit of the map that changes what
//! the federation presents gives it a database of another name; the old one would stay on the
//! default primary for good.
//!
//! Every build marks the databases it built with the server's time (their comment), and a
//! proxy whose reads use its federation marks them again every [`MARK_EVERY`]. After a build,
//! the federation databases of the same application database marked more than
//! [`STALE_AFTER`] ago are dropped, unless someone is connected to them on the default primary
//! (`DROP DATABASE` refuses then; a build under way is connected, and marked only when done).
//! A proxy whose database went while its reads paused builds it again at its next read
//! (`Federation::lost`). Databases without the mark (made by hand, or by shardgate before the
//! mark existed) are left alone.

use std::time::Duration;

use super::super::ControlConn;
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

/// Drops the federation databases of `application` other than `own` that were last built more
/// than [`STALE_AFTER`] ago and that nobody is connected to.
pub(super) async fn drop_stale(origin: ControlConn, application: &str, own: Vec<String>) {
    let stale = "SELECT d.datname::text FROM pg_database d \
                 JOIN pg_shdescription s \
                   ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass \
                 WHERE starts_with(d.datname, $1) AND NOT d.datname = ANY($2) \
                   AND s.description ~ ('^' || $3 || '[0-9]+$') \
                   AND substring(s.description FROM '[0-9]+$')::int8 \
                       < extract(epoch FROM now())::int8 - $4::int8";
    let prefix = format!("{application}_federation_");
    let age = STALE_AFTER.as_secs() as i64;
    let rows = origin
        .client
        .query(stale, &[&prefix, &own, &MARK, &age])
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return tracing::debug!(error = %e, "listing stale federation databases failed"),
    };
    for row in rows {
        let database: String = row.get(0);
        let drop = format!("DROP DATABASE {}", ident(&database));
        match origin.client.batch_execute(&drop).await {
            Ok(()) => {
                tracing::info!(%database, "dropped the federation database of an earlier shard map")
            }
            // In use (55006): a proxy still reads it.
            Err(e) => tracing::debug!(%database, error = %e, "a stale federation database stays"),
        }
    }
}
