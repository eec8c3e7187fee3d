//! What one `RESHARD` did and does, for `SHOW RESHARD` and the logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A move of one database's rows, shared between the task that runs it and the console.
pub struct Reshard {
    /// The database whose map it changes.
    pub database: String,
    /// When it started.
    pub started: SystemTime,
    status: Mutex<Status>,
}

#[derive(Default)]
struct Status {
    phase: &'static str,
    method: String,
    pieces: Vec<Piece>,
    /// Per source: WAL bytes its slot has not been read past (streamed moves).
    behind: HashMap<String, i64>,
    /// How long writes to the moving keys were fenced, once the fence is down.
    fenced: Option<Duration>,
    /// `None` while it runs; the epoch it switched to, or why it failed.
    outcome: Option<Result<u64, String>>,
}

/// Rows of one table going from one shard to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The table.
    pub table: String,
    /// The shard the rows leave.
    pub source: String,
    /// The shard they go to.
    pub target: String,
    /// Rows copied so far.
    pub rows: u64,
}

/// One line of `SHOW RESHARD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceRow {
    /// The database.
    pub database: String,
    /// The piece (empty table/shards before any row was found to move).
    pub piece: Piece,
    /// Where the move stands.
    pub phase: &'static str,
    /// `logical replication`, or `fenced copy` and why.
    pub method: String,
    /// WAL bytes of the source not applied yet (streamed moves).
    pub bytes_behind: Option<i64>,
    /// How long writes to the moving keys waited at the fence, in milliseconds, once it is
    /// down.
    pub fence_ms: Option<u128>,
    /// `running`, `done (epoch N)` or `failed: why`.
    pub state: String,
}

impl Reshard {
    /// A move of `database`'s rows, starting now.
    pub fn new(database: &str) -> Self {
        Self {
            database: database.to_owned(),
            started: SystemTime::now(),
            status: Mutex::new(Status {
                phase: "starting",
                ..Status::default()
            }),
        }
    }

    /// Whether it ended (done or failed).
    pub fn finished(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// The epoch it switched to, or why it failed; `None` while it runs.
    pub fn outcome(&self) -> Option<Result<u64, String>> {
        self.lock().outcome.clone()
    }

    /// Its lines in `SHOW RESHARD`: one per piece.
    pub fn rows(&self) -> Vec<PieceRow> {
        let status = self.lock();
        let state = match &status.outcome {
            None => "running".to_owned(),
            Some(Ok(epoch)) => format!("done (epoch {epoch})"),
            Some(Err(why)) => format!("failed: {why}"),
        };
        let none = [Piece {
            table: String::new(),
            source: String::new(),
            target: String::new(),
            rows: 0,
        }];
        let pieces = match status.pieces.is_empty() {
            true => &none[..],
            false => &status.pieces[..],
        };
        (pieces.iter())
            .map(|piece| PieceRow {
                database: self.database.clone(),
                piece: piece.clone(),
                phase: status.phase,
                method: status.method.clone(),
                bytes_behind: status.behind.get(&piece.source).copied(),
                fence_ms: status.fenced.map(|d| d.as_millis()),
                state: state.clone(),
            })
            .collect()
    }

    pub(super) fn phase(&self, phase: &'static str) {
        tracing::info!(database = self.database, phase, "RESHARD");
        self.lock().phase = phase;
    }

    pub(super) fn method(&self, method: String) {
        tracing::info!(database = self.database, method, "RESHARD");
        self.lock().method = method;
    }

    pub(super) fn behind(&self, source: &str, bytes: i64) {
        self.lock().behind.insert(source.to_owned(), bytes);
    }

    pub(super) fn fenced(&self, how_long: Duration) {
        let ms = how_long.as_millis();
        tracing::info!(
            database = self.database,
            ms,
            "RESHARD: writes to the moving keys were fenced"
        );
        self.lock().fenced = Some(how_long);
    }

    pub(super) fn copied(&self, table: &str, source: &str, target: &str, rows: u64) {
        let mut status = self.lock();
        let found = (status.pieces.iter_mut())
            .find(|p| p.table == table && p.source == source && p.target == target);
        match found {
            Some(piece) => piece.rows += rows,
            None => status.pieces.push(Piece {
                table: table.to_owned(),
                source: source.to_owned(),
                target: target.to_owned(),
                rows,
            }),
        }
    }

    /// Records that the task running the move stopped without ending it (it panicked).
    pub fn abandon(&self, why: &str) {
        if !self.finished() {
            self.finish(Err(format!("the move stopped: {why}")));
        }
    }

    pub(super) fn finish(&self, outcome: Result<u64, String>) {
        match &outcome {
            Ok(epoch) => tracing::info!(database = self.database, epoch, "RESHARD done"),
            Err(why) => tracing::error!(database = self.database, why, "RESHARD failed"),
        }
        let mut status = self.lock();
        status.phase = match outcome {
            Ok(_) => "switched",
            Err(_) => status.phase,
        };
        status.outcome = Some(outcome);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}
