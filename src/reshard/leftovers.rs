//! Prepared transactions a `RESHARD` left behind: a proxy that stopped between the move's
//! `PREPARE TRANSACTION`s and its last `COMMIT PREPARED`. They hold the moving rows' locks, so
//! they are ended the way the move decided: the mover records its decision to commit
//! (`shardgate.reshard_decisions`, on the old map's default shard) before it commits anything,
//! so a move with a recorded decision is committed everywhere, and one without is rolled back
//! (presumed abort) — by the next `RESHARD`, or at start for decided ones.

use std::collections::BTreeMap;
use std::time::Duration;

use super::copy;
use crate::config::{BackendUri, ShardMap};
use crate::sql::quote;

/// What every prepared transaction of a move is named after: `shardgate_reshard_<stamp>_…`.
pub const PREFIX: &str = "shardgate_reshard_";

const DECISIONS_DDL: &str = "SELECT pg_advisory_xact_lock(hashtext('shardgate.reshard_decisions')); \
     CREATE SCHEMA IF NOT EXISTS shardgate; \
     CREATE TABLE IF NOT EXISTS shardgate.reshard_decisions (\
     stamp text PRIMARY KEY, decided_at timestamptz NOT NULL DEFAULT now())";

/// What to do with a move's transactions when no decision is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// Roll them back: no move of this proxy's runs (a `RESHARD` is starting).
    RollBack,
    /// Leave them: another proxy may be between its PREPAREs and its decision.
    Leave,
}

/// The statements that record that the move `stamp` commits.
pub fn decision_sql(stamp: &str) -> String {
    format!(
        "{DECISIONS_DDL}; INSERT INTO shardgate.reshard_decisions (stamp) VALUES ({})",
        quote::literal(stamp)
    )
}

/// Runs `decision` ([`decision_sql`]) on `uri`, before any side commits.
pub async fn record_decision(
    uri: &BackendUri,
    decision: &str,
    timeout: Duration,
) -> Result<(), String> {
    let conn = copy::connect(uri, timeout).await?;
    (conn.client.batch_execute(decision).await).map_err(|e| e.to_string())
}

/// Forgets the decision of a move: once it committed everywhere, or when it turns back before
/// any side committed. Whether the decision is gone.
pub async fn forget_decision(uri: &BackendUri, stamp: &str, timeout: Duration) -> bool {
    let Ok(conn) = copy::connect(uri, timeout).await else {
        return false;
    };
    let sql = "DELETE FROM shardgate.reshard_decisions WHERE stamp = $1";
    conn.client.execute(sql, &[&stamp]).await.is_ok()
}

/// Ends the moves' prepared transactions found on the primaries of `maps`; one line per
/// transaction ended or left.
pub async fn resolve(maps: &[&ShardMap], undecided: Undecided, timeout: Duration) -> Vec<String> {
    let primaries = primaries_of(maps);
    let mut by_stamp: BTreeMap<String, Vec<(&BackendUri, String)>> = BTreeMap::new();
    for uri in &primaries {
        for gid in prepared(uri, timeout).await {
            if let Some(stamp) = stamp_of(&gid) {
                by_stamp
                    .entry(stamp.to_owned())
                    .or_default()
                    .push((uri, gid));
            }
        }
    }
    let mut lines = Vec::new();
    for (stamp, sides) in by_stamp {
        let decided = decided(&primaries, &stamp, timeout).await;
        let command = match (decided, undecided) {
            (true, _) => "COMMIT PREPARED",
            (false, Undecided::RollBack) => "ROLLBACK PREPARED",
            (false, Undecided::Leave) => {
                lines.extend(
                    sides
                        .iter()
                        .map(|(_, gid)| format!("{gid}: undecided, left")),
                );
                continue;
            }
        };
        for (uri, gid) in sides {
            let ended = end(uri, &gid, command, timeout).await;
            lines.push(match ended {
                Ok(()) => format!("{gid}: {command}"),
                Err(why) => format!("{gid}: {command} failed: {why}"),
            });
        }
    }
    for uri in &primaries {
        lines.extend(drop_streams(uri, timeout).await);
    }
    for line in &lines {
        tracing::warn!(line, "a RESHARD left this behind");
    }
    lines
}

/// Ends every prepared transaction of the move `stamp` on the primaries of `maps` with
/// `command` (`COMMIT PREPARED` for a decided move, `ROLLBACK PREPARED` for one that can no
/// longer decide); why not, when a primary cannot be asked or one fails (asked again later).
pub async fn end_move(
    maps: &[&ShardMap],
    stamp: &str,
    command: &str,
    timeout: Duration,
) -> Result<(), String> {
    let primaries = primaries_of(maps);
    let prefix = format!("{PREFIX}{stamp}_");
    for uri in primaries {
        let conn = copy::connect(uri, timeout).await?;
        let sql = "SELECT gid FROM pg_prepared_xacts \
                   WHERE database = current_database() AND starts_with(gid, $1)";
        let rows = (conn.client.query(sql, &[&prefix]).await).map_err(|e| format!("{uri}: {e}"))?;
        for gid in rows.iter().map(|row| row.get::<_, String>(0)) {
            end(uri, &gid, command, timeout).await?;
        }
    }
    Ok(())
}

/// Drops the replication slots and publications of moves that stopped before dropping them
/// (a slot keeps its server's WAL). A slot in use right now is left: a move is reading it.
/// A move of another proxy between two reads of its slot loses it and fails, with nothing
/// moved: `RESHARD` runs from one proxy at a time.
async fn drop_streams(uri: &BackendUri, timeout: Duration) -> Vec<String> {
    let Ok(conn) = copy::connect(uri, timeout).await else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let slots = "SELECT slot_name::text FROM pg_replication_slots \
                 WHERE database = current_database() AND NOT active AND starts_with(slot_name, $1)";
    let publications = "SELECT pubname::text FROM pg_publication WHERE starts_with(pubname, $1)";
    for (list, drop) in [
        (slots, "SELECT pg_drop_replication_slot($1)"),
        (publications, ""),
    ] {
        let Ok(rows) = conn.client.query(list, &[&PREFIX]).await else {
            continue;
        };
        for name in rows.iter().map(|row| row.get::<_, String>(0)) {
            let dropped = match drop.is_empty() {
                true => {
                    let sql = format!("DROP PUBLICATION IF EXISTS {}", quote::ident(&name));
                    conn.client.batch_execute(&sql).await
                }
                false => conn.client.execute(drop, &[&name]).await.map(|_| ()),
            };
            lines.push(match dropped {
                Ok(()) => format!("{name}: dropped"),
                Err(error) => format!("{name}: not dropped: {error}"),
            });
        }
    }
    lines
}

/// The primaries of `maps`, each once.
fn primaries_of<'a>(maps: &[&'a ShardMap]) -> Vec<&'a BackendUri> {
    let mut primaries: Vec<&BackendUri> = Vec::new();
    for shard in maps.iter().flat_map(|map| &map.shards) {
        if !primaries.contains(&&shard.primary) {
            primaries.push(&shard.primary);
        }
    }
    primaries
}

/// The stamp of a move's transaction name.
pub fn stamp_of(gid: &str) -> Option<&str> {
    let rest = gid.strip_prefix(PREFIX)?;
    let stamp = rest.split('_').next()?;
    (!stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(stamp)
}

async fn prepared(uri: &BackendUri, timeout: Duration) -> Vec<String> {
    let Ok(conn) = copy::connect(uri, timeout).await else {
        return Vec::new();
    };
    let sql = "SELECT gid FROM pg_prepared_xacts \
               WHERE database = current_database() AND starts_with(gid, $1)";
    match conn.client.query(sql, &[&PREFIX]).await {
        Ok(rows) => rows.iter().filter_map(|row| row.try_get(0).ok()).collect(),
        Err(_) => Vec::new(),
    }
}

async fn decided(primaries: &[&BackendUri], stamp: &str, timeout: Duration) -> bool {
    let sql = "SELECT 1 FROM shardgate.reshard_decisions WHERE stamp = $1";
    for uri in primaries {
        if let Ok(conn) = copy::connect(uri, timeout).await
            && let Ok(Some(_)) = conn.client.query_opt(sql, &[&stamp]).await
        {
            return true;
        }
    }
    false
}

async fn end(uri: &BackendUri, gid: &str, command: &str, timeout: Duration) -> Result<(), String> {
    let conn = copy::connect(uri, timeout).await?;
    let sql = format!("{command} {}", quote::literal(gid));
    conn.client
        .batch_execute(&sql)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::stamp_of;

    #[test]
    fn a_moves_transactions_are_known_by_their_stamp() {
        assert_eq!(stamp_of("shardgate_reshard_1765_s0_in"), Some("1765"));
        assert_eq!(stamp_of("shardgate_reshard_1765_shard_2_out"), Some("1765"));
        assert_eq!(stamp_of("shardgate:abc:s0:s1"), None);
        assert_eq!(stamp_of("shardgate_reshard_x_s0_in"), None);
        assert_eq!(stamp_of("shardgate_reshard_"), None);
    }
}
