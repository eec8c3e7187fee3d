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
use crate::control::map_record::Recorded;
use crate::moves;
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
/// fenced out (it cannot tell where rows are). `lapsed`: the proxy starts, or its lease
/// lapsed, so it may have missed a move (see [`reconcile`]).
pub(super) async fn follow(
    reloader: &Reloader,
    member: &Member,
    fence: &Arc<Fence>,
    following: &mut Option<Following>,
    (read, lapsed): (Beat, bool),
) -> bool {
    if lapsed && !reconcile(reloader, member, fence, read.record.as_ref()).await {
        return true;
    }
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
        _ => match start_following(reloader, &member.database, &found) {
            Some(started) => started,
            None => return false,
        },
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
/// before this proxy saw a step of it counts as carried out: the map recorded in force says
/// what serves (`reconcile`).
fn start_following(reloader: &Reloader, database: &str, found: &FleetMove) -> Option<Following> {
    reloader.map_in_force(database)?;
    let mut started = read_map(reloader, database, found);
    if found.step >= Step::Switched {
        started.step_done(found.step);
    }
    Some(started)
}

/// Makes this proxy's map place rows as the fleet's record says, when it may have missed a
/// move (its first renewal, or one after its lease lapsed): a record whose map would move
/// stored rows relative to the map in force here was written by a move this proxy did not
/// follow, and serves from now on. Whether this proxy may serve (`false`: the record cannot
/// be read with this proxy's file).
async fn reconcile(
    reloader: &Reloader,
    member: &Member,
    fence: &Fence,
    record: Option<&(i64, String)>,
) -> bool {
    let database = &member.database;
    let (Some((version, text)), Some(in_force)) = (record, reloader.map_in_force(database)) else {
        return true;
    };
    let recorded = reloader.recorded_map(database, text);
    let recorded = match recorded {
        Ok(map) => map,
        Err(why) => {
            tracing::error!(
                database,
                why,
                "this proxy cannot serve the shard map recorded in force for its fleet: it holds statements on sharded tables back"
            );
            return false;
        }
    };
    let report = moves::diff(&in_force, &recorded);
    if report.moves_rows() {
        let moved: Vec<String> = (report.tables.iter())
            .flat_map(|moved| moved.tables.iter().cloned())
            .collect();
        match reloader.switch_to(database, recorded.clone(), None).await {
            Ok(epoch) => {
                tracing::warn!(
                    database,
                    epoch,
                    "this proxy missed a RESHARD of its fleet: the map recorded in force serves"
                );
                let moving = Arc::new(Moving::new(&recorded, moved));
                fence.set(FenceState::Switched { epoch, moving });
            }
            Err(why) => {
                tracing::error!(database, why, "the map recorded in force cannot serve");
                return false;
            }
        }
    }
    let text = text.clone();
    let recorded = Recorded {
        version: *version,
        text,
    };
    reloader.note_record(database, recorded).await;
    true
}

/// A new following of `found`: its map read with this proxy's own passwords, or the problem.
fn read_map(reloader: &Reloader, database: &str, found: &FleetMove) -> Following {
    let to = reloader.recorded_map(database, &found.map);
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
