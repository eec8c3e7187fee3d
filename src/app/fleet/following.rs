//! Following a move of the fleet: another proxy's, step by step (raise this proxy's fence,
//! drain, acknowledge, take the new map); this proxy's own when its `RESHARD` ended without
//! finishing it (`own`); one whose coordinator is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Reloader;
use super::own;
use crate::config::ShardMap;
use crate::control::fleet::{Ack, Beat, FleetMove, Member, Step};
use crate::control::map_record::{self, Recorded};
use crate::reshard::mover::{DRAIN_WAIT, SWITCH_WAIT};
use crate::topology::fence::{Fence, FenceState, Moving};

/// A move of another proxy this one follows.
pub(super) struct Following {
    /// What this proxy acknowledges of it.
    pub(super) ack: Ack,
    /// The map it moves to and what moves, once this proxy could read them.
    to: Option<(ShardMap, Arc<Moving>)>,
    /// A drain of this proxy's sessions before a step is acknowledged.
    draining: Option<(Step, JoinHandle<Result<(), usize>>)>,
    /// An earlier move may have committed without this proxy taking its map, and the map
    /// recorded in force could not be read: it stays fenced out until this move's map serves.
    missed_commit: bool,
}

impl Following {
    /// Whether the move still runs (this proxy renews faster meanwhile).
    pub(super) fn is_active(&self) -> bool {
        self.ack.step < Step::Switched
    }

    fn step_done(&mut self, step: Step) {
        self.ack.step = step;
        self.ack.problem = None;
    }
}

/// Carries out what the fleet's move asks of this proxy now; whether this proxy must stay
/// fenced out (it cannot tell where rows are).
pub(super) async fn follow(
    reloader: &Reloader,
    member: &Member,
    fence: &Arc<Fence>,
    following: &mut Option<Following>,
    read: Beat,
) -> bool {
    let Some(found) = read.fleet_move else {
        *following = None;
        return false;
    };
    if found.coordinator == member.proxy {
        *following = None;
        if !reloader.moving(&member.database) {
            own::finish(reloader, member, fence, &found).await;
        }
        return false;
    }
    let current = match following.take() {
        Some(kept) if kept.ack.stamp == found.stamp => kept,
        earlier => {
            let record = read.record.as_ref();
            match start_following(reloader, member, fence, &found, (earlier, record)).await {
                Some(started) => started,
                None => return false,
            }
        }
    };
    let current = following.insert(current);
    if let Some(step) = finished_drain(current).await {
        current.step_done(step);
    }
    let out = match found.step {
        Step::Announced => false,
        Step::Fence | Step::Switching | Step::Committing => fence_for(fence, current, &found),
        Step::Switched => take_new_map(reloader, member, fence, current, &found).await,
        Step::Abandoned => {
            stand_down(fence, current);
            false
        }
    };
    if !found.coordinator_live {
        own::take_over(reloader, member, fence, &found).await;
    }
    out || current.missed_commit
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
    found: &FleetMove,
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
            if let Some(version) = found.version {
                let text = found.map.clone();
                let recorded = Recorded { version, text };
                reloader.note_record(&member.database, recorded).await;
            }
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

/// Starts following `found` (`None`: the database left the config). A move that ended
/// before this proxy saw a step of it counts as carried out, unless it switched to a map
/// newer than the one this proxy serves (then that map serves). An `earlier` move this
/// proxy fenced for and did not see end is settled first, by the map `record`ed in force.
async fn start_following(
    reloader: &Reloader,
    member: &Member,
    fence: &Fence,
    found: &FleetMove,
    (earlier, record): (Option<Following>, Option<&(i64, String)>),
) -> Option<Following> {
    let database = &member.database;
    reloader.map_in_force(database)?;
    let mut started = read_map(reloader, database, found);
    if let Some(earlier) = earlier.filter(|e| e.missed_commit || fenced_for(e)) {
        started.missed_commit = !settle_missed(reloader, database, fence, earlier, record).await;
    }
    let known = reloader.known_record(database).await.map(|r| r.version);
    let newer = found.version.is_some_and(|v| known.is_none_or(|k| k < v));
    if found.step == Step::Abandoned || (found.step == Step::Switched && !newer) {
        started.step_done(found.step);
    }
    Some(started)
}

/// Whether this proxy raised its fence for `following` and did not see the move end.
fn fenced_for(following: &Following) -> bool {
    (Step::Fence..=Step::Committing).contains(&following.ack.step)
}

/// The move this proxy fenced for ended unseen: when the map `record`ed in force is newer
/// than the one this proxy knows, that move committed and its map serves from now on;
/// otherwise nothing moved and the fence comes down. Whether it is settled.
async fn settle_missed(
    reloader: &Reloader,
    database: &str,
    fence: &Fence,
    earlier: Following,
    record: Option<&(i64, String)>,
) -> bool {
    let known = reloader.known_record(database).await.map(|r| r.version);
    let newer = record.filter(|(version, _)| known.is_none_or(|k| k < *version));
    let Some((version, text)) = newer else {
        if matches!(
            fence.state(),
            FenceState::Writes(_) | FenceState::Switching(_)
        ) {
            fence.set(FenceState::Down);
        }
        return true;
    };
    let map = reloader
        .file_text(database)
        .and_then(|file| map_record::with_file_secrets(text, &file))
        .and_then(|text| reloader.parse_map(database, &text));
    let switched = match map {
        Ok(map) => reloader.switch_to(database, map, None).await,
        Err(why) => Err(why),
    };
    match (switched, earlier.to) {
        (Ok(epoch), Some((_, moving))) => {
            fence.set(FenceState::Switched { epoch, moving });
        }
        (Ok(_), None) => fence.set(FenceState::Down),
        (Err(why), _) => {
            tracing::error!(
                database,
                why,
                "this proxy missed how the fleet's last RESHARD ended and cannot serve the map recorded since: it holds statements on sharded tables back until a move's map serves (or a restart)"
            );
            return false;
        }
    }
    let text = text.clone();
    reloader
        .note_record(
            database,
            Recorded {
                version: *version,
                text,
            },
        )
        .await;
    true
}

/// A new following of `found`: its map read with this proxy's own passwords, or the problem.
fn read_map(reloader: &Reloader, database: &str, found: &FleetMove) -> Following {
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
    Following {
        ack: Ack {
            stamp: found.stamp.clone(),
            step: Step::Announced,
            problem,
        },
        to,
        draining: None,
        missed_commit: false,
    }
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
