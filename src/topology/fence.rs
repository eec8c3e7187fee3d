//! The fence of an online move (`RESHARD`): which statements must wait while rows change
//! shard, and how the mover knows that no statement routed before it went up is still running.
//!
//! One fence per database, kept across reloads, so sessions on every epoch see it. Sessions
//! take a [`Ticket`] before they look at the fence and keep it until their transaction ends;
//! the mover raises the fence, then [`Fence::drain`]s: it waits until every ticket taken
//! before the fence went up is given back. A statement that checked the fence before it went
//! up has therefore finished (committed or rolled back) before the mover copies a row, and one
//! that checks it after sees it. The cost on the request path is two uncontended lock
//! round trips per transaction and one atomic load per statement while no move runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ShardMap;
use crate::router::{Hint, Params, Plan, Route, Router};

/// Where a move stands, as sessions must see it.
#[derive(Clone, Default)]
pub enum FenceState {
    /// No move: nothing waits.
    #[default]
    Down,
    /// Rows are being copied: writes to keys that change shard wait.
    Writes(Arc<Moving>),
    /// The move commits: every statement on map tables waits (milliseconds).
    Switching(Arc<Moving>),
    /// The move committed and epoch `epoch` serves the new map: a session still on an older
    /// epoch (inside a transaction) cannot touch keys that changed shard.
    Switched {
        /// The first epoch with the new map.
        epoch: u64,
        /// What moved.
        moving: Arc<Moving>,
    },
}

/// The map a move goes to, for comparing a statement's route under both maps.
pub struct Moving {
    /// Routes with the new map (directory tables answer nothing: keys they place count as
    /// moving).
    pub router: Router,
    /// The map tables whose rows move, co-located ones included.
    pub tables: Vec<String>,
}

impl Moving {
    /// A move to `map` of `tables`' rows.
    pub fn new(map: &ShardMap, tables: Vec<String>) -> Self {
        Self {
            router: Router::new(map),
            tables,
        }
    }
}

/// Blocks the moves of one database's rows; see the module doc.
pub struct Fence {
    raised: AtomicBool,
    tickets: Mutex<Tickets>,
    state: watch::Sender<FenceState>,
}

/// Tickets out, by the generation they were taken in; each drain starts a generation.
#[derive(Default)]
struct Tickets {
    generation: u64,
    out: BTreeMap<u64, usize>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            raised: AtomicBool::new(false),
            tickets: Mutex::default(),
            state: watch::channel(FenceState::Down).0,
        }
    }
}

/// A session's registration with the fence, given back when it is dropped (at the end of the
/// session's transaction).
pub struct Ticket {
    fence: Arc<Fence>,
    generation: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut tickets = self.fence.lock();
        if let Some(out) = tickets.out.get_mut(&self.generation) {
            *out -= 1;
            if *out == 0 {
                tickets.out.remove(&self.generation);
            }
        }
    }
}

/// What a statement must do about the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Clear,
    /// It touches rows that are moving (or moved under the session's epoch): wait for the
    /// fence to move on, or refuse it inside a transaction.
    Blocked,
}

/// A statement as the session routed it, for [`Fence::verdict`].
pub struct Routed<'a> {
    /// Its text (normalized or not, as the router planned it).
    pub sql: &'a str,
    /// Its parameters (`None`: a simple Query, whose literals are parameters).
    pub params: Option<&'a Params<'a>>,
    /// The client's hint.
    pub hint: Option<&'a Hint>,
    /// The plan it was routed by.
    pub plan: &'a Plan,
    /// Its route under the session's map.
    pub route: &'a Route,
    /// The session's map.
    pub router: &'a Router,
    /// The session's epoch.
    pub epoch: u64,
    /// Whether it may write.
    pub writes: bool,
}

impl Fence {
    /// Registers a session before it looks at the fence (see the module doc).
    pub fn enter(self: &Arc<Self>) -> Ticket {
        let mut tickets = self.lock();
        let generation = tickets.generation;
        *tickets.out.entry(generation).or_default() += 1;
        Ticket {
            fence: self.clone(),
            generation,
        }
    }

    /// What `statement` must do now. Cheap while no move runs.
    pub fn verdict(&self, statement: &Routed<'_>) -> Verdict {
        if !self.raised.load(SeqCst) {
            return Verdict::Clear;
        }
        let blocked = match &*self.state.borrow() {
            FenceState::Down => false,
            FenceState::Writes(moving) => statement.writes && moves(moving, statement),
            FenceState::Switching(_) => !statement.plan.names_no_map_table(),
            FenceState::Switched { epoch, moving } => {
                statement.epoch < *epoch && moves(moving, statement)
            }
        };
        match blocked {
            true => Verdict::Blocked,
            false => Verdict::Clear,
        }
    }

    /// Changes of state, for a statement waiting at the fence.
    pub fn subscribe(&self) -> watch::Receiver<FenceState> {
        self.state.subscribe()
    }

    /// The state now.
    pub fn state(&self) -> FenceState {
        self.state.borrow().clone()
    }

    /// Moves the fence to `state` (the mover).
    pub fn set(&self, state: FenceState) {
        let raised = !matches!(state, FenceState::Down);
        self.state.send_replace(state);
        self.raised.store(raised, SeqCst);
    }

    /// Waits until every ticket taken before now is given back, at most `timeout`; the number
    /// still out when it ran out otherwise.
    pub async fn drain(&self, timeout: Duration) -> Result<(), usize> {
        let current = {
            let mut tickets = self.lock();
            tickets.generation += 1;
            tickets.generation
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let out: usize = self.lock().out.range(..current).map(|(_, n)| n).sum();
            if out == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(out);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `statement` touches keys whose shard differs between its map and the move's.
fn moves(moving: &Moving, statement: &Routed<'_>) -> bool {
    if statement.plan.names_no_map_table() {
        return false;
    }
    let new = match statement.params {
        Some(params) => {
            let plan = moving.router.plan(statement.sql);
            moving.router.route(&plan, params, statement.hint)
        }
        None => moving.router.route_simple(statement.sql, statement.hint),
    };
    let Ok(new) = new else {
        return true;
    };
    let (old_map, new_map) = (statement.router.map(), moving.router.map());
    match (statement.route, &new) {
        (Route::Anywhere, Route::Anywhere) | (Route::PerStatement, Route::PerStatement) => false,
        (Route::CopyIn(_), Route::CopyIn(_)) => (statement.router.copy_in(statement.sql))
            .is_none_or(|copy| moving.tables.contains(&copy.table)),
        (Route::Split(old), Route::Split(new)) => {
            split_by_name(old, old_map) != split_by_name(new, new_map)
        }
        (old, new) => match (shard_names(old, old_map), shard_names(new, new_map)) {
            (Some(old), Some(new)) => old != new,
            _ => true,
        },
    }
}

/// The shard names a route runs on, sorted; `None` for routes the fence cannot compare
/// (they count as moving).
fn shard_names(route: &Route, map: &ShardMap) -> Option<Vec<String>> {
    let ids = match route {
        Route::Shard(shard) => std::slice::from_ref(shard),
        Route::Scatter(shards) | Route::Broadcast(shards) | Route::Replicate(shards) => shards,
        _ => return None,
    };
    let mut names: Vec<String> = ids.iter().map(|id| map.shard(*id).name.clone()).collect();
    names.sort();
    Some(names)
}

fn split_by_name(
    split: &[(crate::config::ShardId, Vec<usize>)],
    map: &ShardMap,
) -> Vec<(String, Vec<usize>)> {
    let mut named: Vec<_> = (split.iter())
        .map(|(id, rows)| (map.shard(*id).name.clone(), rows.clone()))
        .collect();
    named.sort();
    named
}

#[cfg(test)]
mod tests;
