//! The fence of an online move (`RESHARD`): which statements must wait while rows change
//! shard, and how the mover knows that no statement routed before it went up is still running.
//!
//! One fence per database, kept across reloads, so sessions on every epoch see it. Each
//! session registers once ([`Fence::register`]) and, before a statement looks at the fence,
//! marks its [`Registration`] with the fence's generation, until its transaction ends. The
//! mover raises the fence, then [`Fence::drain`]s: it starts a generation and waits until no
//! session is marked with an older one. A statement that checked the fence before it went up
//! has therefore finished (committed or rolled back) before the mover copies a row, and one
//! that checks it after sees it. On the request path that costs a load of the generation and
//! two stores to the session's own registration per transaction, and one load per statement
//! while no move runs: nothing shared is written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ShardMap;
use crate::router::{Hint, Params, Plan, Route, Router, Target};

/// Where a move stands, as sessions must see it.
#[derive(Clone)]
pub enum FenceState {
    /// No move: nothing waits.
    Down,
    /// Rows are being copied: writes to keys that change shard wait.
    Writes(Arc<Moving>),
    /// The move commits: every statement on map tables waits until the new map serves.
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
    /// A state other than [`FenceState::Down`]: statements are checked.
    raised: AtomicBool,
    /// This proxy lost its lease in the fleet ([`Fence::lapse`]).
    lapsed: AtomicBool,
    /// How many times it did.
    lapses: AtomicU64,
    /// Rows are being copied or committed ([`FenceState::Writes`], [`FenceState::Switching`]).
    moving: AtomicBool,
    /// Sessions on this epoch or later need no check ([`FenceState::Switched`]).
    settled_from: AtomicU64,
    generation: AtomicU64,
    registered: Mutex<Vec<Weak<AtomicU64>>>,
    state: watch::Sender<FenceState>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            raised: AtomicBool::new(false),
            lapsed: AtomicBool::new(false),
            lapses: AtomicU64::new(0),
            moving: AtomicBool::new(false),
            settled_from: AtomicU64::new(u64::MAX),
            generation: AtomicU64::new(1),
            registered: Mutex::default(),
            state: watch::channel(FenceState::Down).0,
        }
    }
}

/// A session's registration with its database's fence: the generation it entered in while a
/// transaction of it runs, 0 between transactions.
pub struct Registration(Arc<AtomicU64>);

impl Registration {
    /// Whether the session is marked (a transaction of it runs, or a statement is in flight).
    pub fn is_entered(&self) -> bool {
        self.0.load(SeqCst) != 0
    }

    /// Unmarks the session: everything it ran has ended.
    pub fn leave(&self) {
        self.0.store(0, SeqCst);
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
    /// Registers a session, once (see the module doc).
    pub fn register(&self) -> Registration {
        let registration = Arc::new(AtomicU64::new(0));
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if registered.len() >= 64 && registered.len().is_power_of_two() {
            registered.retain(|weak| weak.strong_count() > 0);
        }
        registered.push(Arc::downgrade(&registration));
        Registration(registration)
    }

    /// Marks a session before a statement of it looks at the fence.
    pub fn enter(&self, session: &Registration) {
        session.0.store(self.generation.load(SeqCst), SeqCst);
    }

    /// What `statement` must do now. Cheap while no move runs.
    pub fn verdict(&self, statement: &Routed<'_>) -> Verdict {
        let lapsed = self.lapsed.load(SeqCst);
        if !self.raised.load(SeqCst) && !lapsed {
            return Verdict::Clear;
        }
        if lapsed && !statement.plan.names_no_map_table() {
            return Verdict::Blocked;
        }
        if statement.epoch >= self.settled_from.load(SeqCst) {
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

    /// Whether rows are being copied or committed now, or the lease lapsed (what a statement
    /// may wait for).
    pub fn is_moving(&self) -> bool {
        self.moving.load(SeqCst) || self.lapsed.load(SeqCst)
    }

    /// Whether this proxy lost its lease in the fleet (see [`Fence::lapse`]).
    pub fn is_lapsed(&self) -> bool {
        self.lapsed.load(SeqCst)
    }

    /// Marks this proxy's lease in its fleet lapsed (`true`) or renewed (`false`). While it
    /// is lapsed, another proxy may move rows without this one hearing of it, so every
    /// statement on map tables waits, whatever the state: the proxy has fenced itself out.
    pub fn lapse(&self, lapsed: bool) {
        if self.lapsed.swap(lapsed, SeqCst) == lapsed {
            return;
        }
        if lapsed {
            self.lapses.fetch_add(1, SeqCst);
        }
        // Statements waiting at the fence look again.
        self.state.send_modify(|_| {});
    }

    /// How many times this proxy's lease lapsed: a transaction under way across a lapse
    /// cannot commit (see `session::fence`).
    pub fn lapses(&self) -> u64 {
        self.lapses.load(SeqCst)
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
        let moving = matches!(state, FenceState::Writes(_) | FenceState::Switching(_));
        let settled_from = match &state {
            FenceState::Switched { epoch, .. } => *epoch,
            _ => u64::MAX,
        };
        self.state.send_replace(state);
        self.settled_from.store(settled_from, SeqCst);
        self.moving.store(moving, SeqCst);
        self.raised.store(raised, SeqCst);
    }

    /// Waits until no session is marked with a generation from before now, at most
    /// `timeout`; how many still were when it ran out otherwise.
    pub async fn drain(&self, timeout: Duration) -> Result<(), usize> {
        let current = self.generation.fetch_add(1, SeqCst) + 1;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let out = self.marked_before(current);
            if out == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(out);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn marked_before(&self, generation: u64) -> usize {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        registered.retain(|weak| weak.strong_count() > 0);
        (registered.iter())
            .filter_map(Weak::upgrade)
            .filter(|session| (1..generation).contains(&session.load(SeqCst)))
            .count()
    }
}

/// Whether `statement` may touch rows whose shard differs between its map and the move's.
/// A statement on moving tables passes only when it runs on one shard, the same in both maps,
/// without a hint (a hint names a shard, not the rows' place): a key it narrows to that shard
/// does not move. Anything else that names a moving table (several shards, no key, DDL, a
/// COPY, a key update, text the router could not read) counts as moving.
fn moves(moving: &Moving, statement: &Routed<'_>) -> bool {
    if !names_moving_table(moving, statement.plan) {
        return false;
    }
    if statement.hint.is_some() || statement.plan.hint.is_some() {
        return true;
    }
    let new = match statement.params {
        Some(params) => {
            let plan = moving.router.plan(statement.sql);
            moving.router.route(&plan, params, None)
        }
        None => moving.router.route_simple(statement.sql, None),
    };
    let Ok(new) = new else {
        return true;
    };
    let name = |router: &Router, id: crate::config::ShardId| router.map().shard(id).name.clone();
    match (statement.route, &new) {
        (Route::Shard(old), Route::Shard(new)) => {
            name(statement.router, *old) != name(&moving.router, *new)
        }
        (Route::Split(old), Route::Split(new)) => {
            split_by_name(old, statement.router.map()) != split_by_name(new, moving.router.map())
        }
        _ => true,
    }
}

/// Whether `plan` names a table whose rows move, or may (a target that names no table).
fn names_moving_table(moving: &Moving, plan: &Plan) -> bool {
    let moves = |table: &str| moving.tables.iter().any(|t| t == table);
    plan.parts.iter().any(|part| match &part.target {
        Target::Anywhere | Target::DefaultShard => false,
        Target::Keyed(keyed) | Target::MovesRows(keyed) => moves(&keyed.table),
        Target::Insert(rows) => moves(&rows.table),
        Target::CopyIn(copy) => moves(&copy.table),
        Target::Unparsed(mentions)
        | Target::TooDeep { mentions, .. }
        | Target::TooLarge { mentions, .. } => mentions.iter().any(|t| moves(t)),
        Target::EveryShard | Target::Scatter(_) | Target::Refused(_) => true,
    })
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
