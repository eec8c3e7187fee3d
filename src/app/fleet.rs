//! This proxy's part in its fleet ([`crate::control::fleet`]): for each database, a task
//! renews the proxy's lease every second and follows the move another proxy of the fleet
//! runs — it raises this proxy's fence as the move's coordinator goes from step to step,
//! waits for its own sessions to drain, acknowledges, and takes up the new map once the move
//! committed.
//!
//! A proxy that has not renewed its lease (`fleet_lease`) for as long as it lasts, by its own
//! clock, fences itself out:
//! every statement on the database's map tables waits until it renews, because another proxy
//! may meanwhile have moved rows without it. The server's record of the lease runs out later
//! than that (it starts when the renewal runs, not when it was sent), and the coordinator
//! waits a [`GRACE`](crate::control::fleet::GRACE) beyond it, so a proxy the coordinator
//! stops waiting for writes nothing. A proxy starts fenced out, until its first renewal says
//! whether a move runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Reloader;
use crate::config::ShardMap;
use crate::control::ControlConn;
use crate::control::fleet::{Ack, FleetMove, Member, Step};
use crate::control::map_record;
use crate::reshard::leftovers::{self, Undecided};
use crate::reshard::mover::{DRAIN_WAIT, SWITCH_WAIT};
use crate::topology::fence::{Fence, FenceState, Moving};

/// How often the lease is renewed while no move runs (more often for a lease shorter than
/// five of these).
const BEAT: Duration = Duration::from_secs(1);

/// How often it is renewed while a move of another proxy runs: each step waits for it.
const BEAT_DURING_MOVE: Duration = Duration::from_millis(50);

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
    let mut tasks = Vec::new();
    for database in topology.databases() {
        if reloader.member(&database.name).is_none() {
            continue;
        }
        database.fence.lapse(true);
        let (reloader, left) = (reloader.clone(), left.clone());
        let (name, fence) = (database.name.clone(), database.fence.clone());
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
    let mut renewed: Option<Instant> = None;
    let mut following: Option<Following> = None;
    let mut failing = false;
    loop {
        let Some(member) = reloader.member(&database) else {
            return;
        };
        let sent = Instant::now();
        let lapse_at = renewed.map_or(sent, |at| at + member.lease);
        let beat = {
            let ack = following.as_ref().map(|f| f.ack.clone());
            let beat = beat(&member, &mut conn, ack.as_ref());
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(lapse_at), if !fence.is_lapsed() => {
                    lapse(&fence, &database);
                    continue;
                }
                beat = beat => beat,
            }
        };
        let was_failing = std::mem::replace(&mut failing, beat.is_err());
        match beat {
            Ok(found) => {
                renewed = Some(sent);
                let out = follow_move(&reloader, &member, &fence, &mut following, found).await;
                fence.lapse(out);
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
        if Instant::now() >= renewed.map_or(sent, |at| at + member.lease) {
            lapse(&fence, &database);
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
    if let Some((member, conn)) = conn {
        member.leave(&conn).await;
    }
}

/// Renews on the connection kept in `conn` (made again for another control primary).
async fn beat(
    member: &Member,
    conn: &mut Option<(Member, ControlConn)>,
    ack: Option<&Ack>,
) -> Result<Option<FleetMove>, String> {
    let mut kept = match conn.take() {
        Some((was, kept)) if was.primary == member.primary => Some(kept),
        _ => None,
    };
    let found = member.beat(&mut kept, ack).await;
    *conn = kept.map(|kept| (member.clone(), kept));
    found
}

fn lapse(fence: &Fence, database: &str) {
    if !fence.is_lapsed() {
        tracing::error!(
            database,
            "this proxy's lease in the fleet lapsed: statements on sharded tables wait until it renews"
        );
    }
    fence.lapse(true);
}

/// A move of another proxy this one follows.
struct Following {
    /// What this proxy acknowledges of it.
    ack: Ack,
    /// The map it moves to and what moves, once this proxy could read them.
    to: Option<(ShardMap, Arc<Moving>)>,
    /// The map in force when it was announced (its old map).
    from: ShardMap,
    /// A drain of this proxy's sessions before a step is acknowledged.
    draining: Option<(Step, JoinHandle<Result<(), usize>>)>,
    /// An earlier move may have committed without this proxy taking its map: it stays
    /// fenced out until this move's map serves.
    missed_commit: bool,
}

impl Following {
    /// Whether the move still runs (this proxy beats faster meanwhile).
    fn is_active(&self) -> bool {
        self.ack.step < Step::Switched
    }

    fn step_done(&mut self, step: Step) {
        self.ack.step = step;
        self.ack.problem = None;
    }
}

/// Carries out the step `found` is at (a move of another proxy); whether this proxy must stay
/// fenced out (it cannot tell which keys move).
async fn follow_move(
    reloader: &Reloader,
    member: &Member,
    fence: &Arc<Fence>,
    following: &mut Option<Following>,
    found: Option<FleetMove>,
) -> bool {
    let Some(found) = found.filter(|found| found.coordinator != member.proxy) else {
        *following = None;
        return false;
    };
    let earlier = match following.take() {
        Some(kept) if kept.ack.stamp == found.stamp => Ok(kept),
        other => Err(other),
    };
    let current = match earlier {
        Ok(kept) => kept,
        // A move that ended before this proxy saw it: the map record says what serves.
        Err(None) if found.step >= Step::Switched => return false,
        Err(earlier) => {
            let Some(mut started) = start_following(reloader, &member.database, &found) else {
                return false;
            };
            // An earlier move this proxy fenced for and did not see end may have committed:
            // until a move's new map serves, this proxy cannot tell where its rows are.
            started.missed_commit = earlier.is_some_and(|earlier| {
                earlier.missed_commit
                    || (Step::Fence..=Step::Committing).contains(&earlier.ack.step)
            });
            if started.missed_commit {
                tracing::error!(
                    database = member.database,
                    "this proxy did not see how the fleet's last RESHARD ended: it waits for the next one to switch (or a restart) before it serves sharded tables"
                );
            }
            started
        }
    };
    let current = following.insert(current);
    if let Some(step) = finished_drain(current).await {
        current.step_done(step);
    }
    let out = current.missed_commit
        || match found.step {
            Step::Announced => false,
            Step::Fence | Step::Switching | Step::Committing => fence_for(fence, current, &found),
            Step::Switched => take_new_map(reloader, member, fence, current).await,
            Step::Abandoned => {
                stand_down(fence, current);
                false
            }
        };
    if found.step == Step::Committing && !found.coordinator_live && current.to.is_some() {
        take_over_commit(member, current, &found.stamp).await;
    }
    let unfinished = [Step::Announced, Step::Fence, Step::Switching];
    if !found.coordinator_live && unfinished.contains(&found.step) {
        match member
            .advance(&found.stamp, &unfinished, Step::Abandoned)
            .await
        {
            Ok(()) => tracing::warn!(
                coordinator = found.coordinator,
                "the coordinator of a RESHARD lost its lease before it decided: the move is abandoned"
            ),
            Err(why) => {
                tracing::warn!(why, "could not abandon a RESHARD whose coordinator is gone")
            }
        }
    }
    out
}

/// Raises this proxy's fence as far as `found`'s step asks, draining before it acknowledges;
/// whether it must fence itself out instead (it cannot read the new map).
fn fence_for(fence: &Arc<Fence>, current: &mut Following, found: &FleetMove) -> bool {
    let Some((_, moving)) = &current.to else {
        return true;
    };
    let draining = current.draining.as_ref().map(|(step, _)| *step);
    let acked = current.ack.step;
    if found.step >= Step::Switching {
        if acked < Step::Switching && draining != Some(Step::Switching) {
            fence.set(FenceState::Switching(moving.clone()));
            current.draining = Some((Step::Switching, drain(fence, SWITCH_WAIT)));
        }
    } else if acked < Step::Fence && draining.is_none() {
        fence.set(FenceState::Writes(moving.clone()));
        current.draining = Some((Step::Fence, drain(fence, DRAIN_WAIT)));
    }
    false
}

/// The move committed: serves its map from the next epoch on; whether this proxy must stay
/// fenced out (the map cannot serve).
async fn take_new_map(
    reloader: &Reloader,
    member: &Member,
    fence: &Fence,
    current: &mut Following,
) -> bool {
    if current.ack.step >= Step::Switched {
        return false;
    }
    let Some((map, moving)) = current.to.clone() else {
        return true;
    };
    match reloader.switch_to(&member.database, map, None).await {
        Ok(epoch) => {
            fence.set(FenceState::Switched { epoch, moving });
            current.step_done(Step::Switched);
            current.missed_commit = false;
            false
        }
        Err(why) => {
            current.ack.problem = Some(why);
            true
        }
    }
}

/// The move was abandoned: lowers what this proxy raised for it.
fn stand_down(fence: &Fence, current: &mut Following) {
    if current.ack.step == Step::Abandoned {
        return;
    }
    if let Some((_, draining)) = current.draining.take() {
        draining.abort();
    }
    if matches!(
        fence.state(),
        FenceState::Writes(_) | FenceState::Switching(_)
    ) {
        fence.set(FenceState::Down);
    }
    current.step_done(Step::Abandoned);
}

/// Starts following `found`: reads the map it moves to with this proxy's own passwords
/// (`None`: the database left the config).
fn start_following(reloader: &Reloader, database: &str, found: &FleetMove) -> Option<Following> {
    let from = reloader.map_in_force(database)?;
    let to = reloader
        .file_text(database)
        .and_then(|file| map_record::with_file_secrets(&found.map, &file))
        .and_then(|text| reloader.parse_map(database, &text));
    let (to, problem) = match to {
        Ok(map) => {
            let moving = Arc::new(Moving::new(&map, found.tables.clone()));
            (Some((map, moving)), None)
        }
        Err(why) => {
            let why = format!("cannot serve the map RESHARD moves to: {why}");
            tracing::error!(
                database,
                why,
                "this proxy cannot follow the fleet's RESHARD"
            );
            (None, Some(why))
        }
    };
    Some(Following {
        ack: Ack {
            stamp: found.stamp.clone(),
            step: Step::Announced,
            problem,
        },
        to,
        from,
        draining: None,
        missed_commit: false,
    })
}

/// Drains `fence` in a task, so that renewals go on meanwhile.
fn drain(fence: &Arc<Fence>, wait: Duration) -> JoinHandle<Result<(), usize>> {
    let fence = fence.clone();
    tokio::spawn(async move { fence.drain(wait).await })
}

/// The step whose drain ended well, if one did; a drain that ran out becomes the problem
/// this proxy acknowledges.
async fn finished_drain(current: &mut Following) -> Option<Step> {
    let (step, task) = current.draining.take_if(|(_, task)| task.is_finished())?;
    match task.await {
        Ok(Ok(())) => Some(step),
        Ok(Err(open)) => {
            current.ack.problem = Some(format!(
                "{open} transaction(s) on this proxy still open after the fence went up"
            ));
            None
        }
        Err(error) => {
            current.ack.problem = Some(error.to_string());
            None
        }
    }
}

/// The coordinator decided to commit and lost its lease: commits what it prepared (its
/// decision is recorded) and marks the move switched, so that every proxy takes the new map.
async fn take_over_commit(member: &Member, current: &Following, stamp: &str) {
    let Some((to, _)) = &current.to else { return };
    let ended = leftovers::resolve(&[&current.from, to], Undecided::Leave, member.timeout).await;
    let open = ended
        .iter()
        .any(|line| line.contains("failed") || line.contains("left"));
    if open {
        return;
    }
    match member
        .advance(stamp, &[Step::Committing], Step::Switched)
        .await
    {
        Ok(()) => tracing::warn!(
            stamp,
            "the coordinator of a RESHARD lost its lease after it decided: this proxy committed the move"
        ),
        Err(why) => tracing::warn!(why, "could not finish a RESHARD whose coordinator is gone"),
    }
}
