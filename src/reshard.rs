//! Online resharding: shard-map edits that would move stored rows.
//!
//! A reloaded map that places existing rows on other shards cannot simply take over: from
//! that moment reads of those keys would find nothing and writes would land beside the old
//! rows. So before an edit is applied, [`stored`] asks the shards of the map in force whether
//! the keys it moves hold rows. An edit that moves stored rows is held ([`HeldEdit`]) while
//! the old map keeps serving; one that moves none applies as any other edit. `RESHARD`
//! ([`mover`]) applies a held edit by moving those rows online, behind the fence of
//! [`crate::topology::fence`].

mod coordination;
mod copy;
mod job;
pub mod leftovers;
pub mod mover;
mod schema;
mod stored;
mod stream;
mod writers;

use std::time::{Duration, SystemTime};

use crate::config::ShardMap;
use crate::moves::{self, MoveReport};

pub use job::{Piece, PieceRow, Reshard};
pub use stored::StoredRows;

/// An edited shard map that is not in force because it would move rows the shards hold.
#[derive(Debug, Clone)]
pub struct HeldEdit {
    /// The database whose map it is.
    pub database: String,
    /// The edited map.
    pub edited: ShardMap,
    /// The edited file's text, when read from a file (recorded once the edit applies).
    pub edited_text: Option<String>,
    /// What it would move, compared with the map in force.
    pub report: MoveReport,
    /// The stored rows it would move (or could not rule out), at `checked_at`.
    pub stored: Vec<StoredRows>,
    /// When the shards were asked.
    pub checked_at: SystemTime,
}

impl HeldEdit {
    /// One line for logs and warnings: the database and the rows that hold it.
    pub fn summary(&self) -> String {
        let rows: Vec<String> = self.stored.iter().map(ToString::to_string).collect();
        format!(
            "the edit of database {:?}'s shard map would move stored rows: {}",
            self.database,
            rows.join("; ")
        )
    }
}

/// The stored rows that replacing `old` by `new` (compared in `report`) would move, as the
/// shards of `old` answer now.
pub async fn stored_rows_moved(
    old: &ShardMap,
    new: &ShardMap,
    report: &MoveReport,
    connect_timeout: Duration,
) -> Vec<StoredRows> {
    let probes = stored::probes(old, new, report);
    stored::stored_rows(old, &probes, connect_timeout).await
}

/// The lines that say which stored rows an edit moves (`SHOW PLAN`, `shardgate plan
/// --connect`).
pub fn stored_lines(stored: &[StoredRows]) -> Vec<String> {
    if stored.is_empty() {
        return vec!["no stored row moves: a proxy applies this edit as it reads it".to_owned()];
    }
    let mut lines = vec!["stored rows it would move (a proxy holds the edit):".to_owned()];
    lines.extend(stored.iter().map(|rows| format!("  {rows}")));
    lines
}

/// Decides whether `edited` may replace `in_force` now: `None` when it moves no stored row
/// (no key changes shard, or the shards hold no row of the keys that do), else the edit to
/// hold. A shard that cannot answer (connecting is bounded by `connect_timeout`) holds it.
pub async fn check_edit(
    database: &str,
    in_force: &ShardMap,
    edited: &ShardMap,
    connect_timeout: Duration,
) -> Option<HeldEdit> {
    let report = moves::diff(in_force, edited);
    if !report.moves_rows() {
        return None;
    }
    let stored = stored_rows_moved(in_force, edited, &report, connect_timeout).await;
    if stored.is_empty() {
        tracing::info!(
            database,
            "the shard-map edit moves keys but no stored row; it applies"
        );
        return None;
    }
    Some(HeldEdit {
        database: database.to_owned(),
        edited: edited.clone(),
        edited_text: None,
        report,
        stored,
        checked_at: SystemTime::now(),
    })
}
