//! This proxy's part in its fleet ([`crate::control::fleet`]): for each database, a task
//! renews the proxy's lease every second and follows the fleet's move (`following`): another
//! proxy's, raising this proxy's fence as its coordinator goes from step to step, draining
//! its own sessions, acknowledging, and taking up the new map once it committed; one left
//! part-way, by this proxy or by a coordinator whose lease lapsed (`own`).
//!
//! A proxy that has not renewed its lease (`fleet_lease`) for as long as it lasts, by its own
//! clock, fences itself out (a watchdog, whatever the renewals are doing): every statement on
//! the database's map tables waits until it renews, because another proxy may meanwhile have
//! moved rows without it. The server's record of the lease runs out later than that (it
//! starts when the renewal runs, not when it was sent), and the coordinator waits a
//! [`GRACE`](crate::control::fleet::GRACE) beyond it, so a proxy the coordinator stops
//! waiting for starts no statement on map tables. A proxy starts fenced out, until its first
//! renewal says whether a move runs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Reloader;
use crate::control::ControlConn;
use crate::control::fleet::{Ack, Beat, Member};
use crate::topology::fence::Fence;

mod following;
mod own;

use following::Following;

/// How often the lease is renewed while no move runs (more often for a lease shorter than
/// five of these).
const BEAT: Duration = Duration::from_secs(1);

/// How often it is renewed while a move of another proxy runs: each step waits for it.
const BEAT_DURING_MOVE: Duration = Duration::from_millis(50);

/// How often the lease's end is looked at: the proxy fences itself out at most this late.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// How long a stopping proxy tries to take itself out of the fleet's table (otherwise its
/// lease runs out by itself).
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// A name for this proxy in its fleet, unique among the proxies of one process too.
pub fn proxy_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "proxy".into());
    let nth = STARTED.fetch_add(1, Ordering::Relaxed);
    format!("{host}:{}:{nth}", std::process::id())
}

/// The tasks that keep this proxy in its fleet.
pub(super) struct Membership {
    leave: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Membership {
    /// Takes this proxy out of the fleet's table, once its sessions ended (a coordinator
    /// stops waiting for it at once, not when its lease runs out).
    pub(super) async fn leave(self) {
        let _ = self.leave.send(true);
        let all = futures::future::join_all(self.tasks);
        let _ = tokio::time::timeout(LEAVE_WAIT, all).await;
    }
}

/// Starts renewing this proxy's lease for every database of `topology`, when it belongs to a
/// fleet; until the first renewal, statements on map tables wait (see the module doc).
pub(super) fn join(reloader: &Arc<Reloader>, topology: &crate::topology::Topology) -> Membership {
    let (leave, left) = watch::channel(false);
    let databases: Vec<(String, Arc<Fence>)> = (topology.databases().into_iter())
        .map(|database| (database.name.clone(), database.fence.clone()))
        .collect();
    let mut tasks = Vec::new();
    for (name, fence) in databases {
        if reloader.member(&name).is_none() {
            continue;
        }
        fence.lapse(true);
        let (reloader, left) = (reloader.clone(), left.clone());
        tasks.push(tokio::spawn(follow(reloader, name, fence, left)));
    }
    Membership { leave, tasks }
}

/// Renews the lease and follows moves for `database` until told to leave the fleet.
async fn follow(
    reloader: Arc<Reloader>,
    database: String,
    fence: Arc<Fence>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<(Member, ControlConn)> = None;
    let renewed = Arc::new(Renewed::default());
    let watchdog = tokio::spawn(watch_lease(
        fence.clone(),
        database.clone(),
        renewed.clone(),
    ));
    let mut following: Option<Following> = None;
    let mut failing = false;
    while let Some(member) = reloader.member(&database) {
        renewed.lease.store(millis(member.lease), Relaxed);
        let sent = renewed.now();
        let ack = following.as_ref().map(|f| f.ack.clone());
        let beat = tokio::select! {
            _ = shutdown.changed() => break,
            beat = beat(&member, &mut conn, ack.as_ref()) => beat,
        };
        let was_failing = std::mem::replace(&mut failing, beat.is_err());
        match beat {
            Ok(read) => {
                renewed.at.store(sent, Relaxed);
                let lapsed = fence.is_lapsed();
                let read = (read, lapsed);
                let out = following::follow(&reloader, &member, &fence, &mut following, read).await;
                // A renewal that took most of the lease may have run out already.
                fence.lapse(out || renewed.lapsed());
            }
            Err(why) if !was_failing => {
                tracing::warn!(
                    database,
                    why,
                    "could not renew this proxy's lease in the fleet"
                );
            }
            Err(_) => {}
        }
        let every = match following.as_ref().is_some_and(Following::is_active) {
            true => BEAT_DURING_MOVE,
            false => BEAT.min(member.lease / 5),
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    watchdog.abort();
    if let Some((member, conn)) = conn {
        member.leave(&conn).await;
    }
}

/// When the lease was last renewed (the moment the renewal was sent), in milliseconds since
/// `started`, and how long it lasts.
struct Renewed {
    started: Instant,
    /// `u64::MAX`: never.
    at: AtomicU64,
    lease: AtomicU64,
}

impl Default for Renewed {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            at: AtomicU64::new(u64::MAX),
            lease: AtomicU64::new(0),
        }
    }
}

impl Renewed {
    fn now(&self) -> u64 {
        millis(self.started.elapsed())
    }

    /// Whether the lease ran out by this proxy's clock.
    fn lapsed(&self) -> bool {
        let at = self.at.load(Relaxed);
        at == u64::MAX || self.now() >= at.saturating_add(self.lease.load(Relaxed))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Fences the proxy out as soon as its lease runs out, whatever the renewals are doing (one
/// may be waiting for an answer, or for a drain).
async fn watch_lease(fence: Arc<Fence>, database: String, renewed: Arc<Renewed>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if renewed.lapsed() && !fence.is_lapsed() {
            tracing::error!(
                database,
                "this proxy's lease in the fleet lapsed: statements on sharded tables wait until it renews"
            );
            fence.lapse(true);
        }
    }
}

/// Renews on the connection kept in `conn` (made again for another control primary).
async fn beat(
    member: &Member,
    conn: &mut Option<(Member, ControlConn)>,
    ack: Option<&Ack>,
) -> Result<Beat, String> {
    let mut kept = match conn.take() {
        Some((was, kept)) if was.primary == member.primary => Some(kept),
        _ => None,
    };
    let read = member.beat(&mut kept, ack).await;
    *conn = kept.map(|kept| (member.clone(), kept));
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_lapses_when_never_renewed_or_once_it_ran_out() {
        let renewed = Renewed::default();
        assert!(renewed.lapsed(), "never renewed");
        renewed.lease.store(50, Relaxed);
        renewed.at.store(renewed.now(), Relaxed);
        assert!(!renewed.lapsed(), "just renewed");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(renewed.lapsed(), "ran out");
    }
}
