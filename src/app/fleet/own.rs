//! Moves of the fleet that their coordinator left part-way: this proxy's own, when its
//! `RESHARD` ended before the fleet's record did (the control table did not answer, or the
//! shards did not take their `COMMIT PREPARED`), and another proxy's whose lease lapsed. The
//! fleet's record decides: a move not decided yet is abandoned and its prepared transactions
//! rolled back (it can no longer decide); a decided one is claimed, committed everywhere and
//! switched, with the new map recorded in force.

use std::sync::Arc;
use std::time::Duration;

use super::Reloader;
use crate::config::ShardMap;
use crate::control::fleet::{FleetMove, Member, Step};
use crate::control::map_record::{self, Recorded};
use crate::moves;
use crate::reshard::leftovers;
use crate::topology::fence::{Fence, FenceState, Moving};

/// How long ending a move's prepared transactions may take before the next renewal tries
/// again (a shard that does not answer holds them up).
const END_WAIT: Duration = Duration::from_secs(5);

/// The steps of a move that has not decided.
const UNDECIDED: [Step; 3] = [Step::Announced, Step::Fence, Step::Switching];

/// This proxy's move `found`, whose `RESHARD` ended: abandons it, finishes its commit, or
/// (abandoned while its transactions' outcome was unknown) rolls back what it prepared and
/// lowers the fence it left up.
pub(super) async fn finish(reloader: &Reloader, member: &Member, fence: &Fence, found: &FleetMove) {
    match found.step {
        step if UNDECIDED.contains(&step) => abandon(reloader, member, found).await,
        Step::Committing => finish_commit(reloader, member, fence, found).await,
        Step::Abandoned if matches!(fence.state(), FenceState::Writes(_)) => {
            let nothing_left = roll_back(reloader, member, found).await;
            if nothing_left {
                fence.set(FenceState::Down);
            }
        }
        _ => {}
    }
}

/// Another proxy's move `found`, whose coordinator's lease lapsed: abandons it before it
/// decided, or claims it after (only a proxy that can serve its map: it finishes it).
pub(super) async fn take_over(
    reloader: &Reloader,
    member: &Member,
    fence: &Fence,
    found: &FleetMove,
) {
    match found.step {
        step if UNDECIDED.contains(&step) => {
            tracing::warn!(
                coordinator = found.coordinator,
                "the coordinator of a RESHARD lost its lease before it decided: the move is abandoned"
            );
            abandon(reloader, member, found).await;
        }
        Step::Committing if maps(reloader, member, found).is_some() => {
            match member.claim(&found.stamp, &found.coordinator).await {
                Ok(()) => {
                    tracing::warn!(
                        coordinator = found.coordinator,
                        "the coordinator of a RESHARD lost its lease after it decided: this proxy finishes the move"
                    );
                    finish_commit(reloader, member, fence, found).await;
                }
                Err(why) => tracing::debug!(why, "another proxy finishes the RESHARD"),
            }
        }
        _ => {}
    }
}

/// Marks `found` abandoned (it can no longer decide), then rolls back what it prepared.
async fn abandon(reloader: &Reloader, member: &Member, found: &FleetMove) {
    let coordinator = &found.coordinator;
    let abandoned = member.advance(&found.stamp, coordinator, &UNDECIDED, Step::Abandoned);
    if let Err(why) = abandoned.await {
        return tracing::warn!(why, "could not abandon a RESHARD left part-way");
    }
    roll_back(reloader, member, found).await;
}

/// Rolls back what the abandoned move `found` prepared; whether nothing of it is left.
async fn roll_back(reloader: &Reloader, member: &Member, found: &FleetMove) -> bool {
    let Some((old, new)) = maps(reloader, member, found) else {
        return false;
    };
    match end_move(member, [&old, &new], found, "ROLLBACK PREPARED").await {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(
                why,
                "an abandoned RESHARD's prepared transactions stay until the next renewal, RESHARD or start"
            );
            false
        }
    }
}

/// Commits what the decided move `found` prepared, marks it switched with the new map
/// recorded in force, and serves that map; asked again at the next renewal when a shard or
/// the control table does not answer.
async fn finish_commit(reloader: &Reloader, member: &Member, fence: &Fence, found: &FleetMove) {
    let Some((old, new)) = maps(reloader, member, found) else {
        return;
    };
    let committed = end_move(member, [&old, &new], found, "COMMIT PREPARED").await;
    if let Err(why) = committed {
        return tracing::warn!(why, "a decided RESHARD waits for its shards to commit");
    }
    let record = map_record::write_sql(&member.fleet, &member.database, &found.map);
    let version = match member.switch(&found.stamp, &record).await {
        Ok(version) => version,
        Err(why) => return tracing::warn!(why, "a decided RESHARD waits for the fleet's table"),
    };
    let database = &member.database;
    // The coordinator may have switched its own map before it lost the fleet's table.
    if moves::diff(&old, &new).moves_rows() {
        match reloader.switch_to(database, new.clone(), None).await {
            Ok(epoch) => {
                let moving = Arc::new(Moving::new(&new, found.tables.clone()));
                fence.set(FenceState::Switched { epoch, moving });
            }
            Err(why) => return tracing::error!(why, "a finished RESHARD's map cannot serve"),
        }
    }
    let text = found.map.clone();
    reloader
        .note_record(database, Recorded { version, text })
        .await;
    tracing::info!(
        stamp = found.stamp,
        database,
        "this proxy finished a RESHARD left part-way"
    );
}

/// Ends what move `found` prepared on the primaries of both maps with `command`, within
/// [`END_WAIT`] (renewals wait meanwhile).
async fn end_move(
    member: &Member,
    maps: [&ShardMap; 2],
    found: &FleetMove,
    command: &str,
) -> Result<(), String> {
    let ended = leftovers::end_move(&maps, &found.stamp, command, member.timeout);
    match tokio::time::timeout(END_WAIT, ended).await {
        Ok(ended) => ended,
        Err(_) => Err(format!("{command} took more than {} s", END_WAIT.as_secs())),
    }
}

/// The map in force here and the one `found` moves to (with this proxy's passwords).
fn maps(reloader: &Reloader, member: &Member, found: &FleetMove) -> Option<(ShardMap, ShardMap)> {
    let database = &member.database;
    let new = reloader.recorded_map(database, &found.map);
    match (reloader.map_in_force(database), new) {
        (Some(old), Ok(new)) => Some((old, new)),
        (_, Err(why)) => {
            tracing::error!(
                why,
                "cannot finish a RESHARD left part-way: its map cannot be read"
            );
            None
        }
        (None, _) => None,
    }
}
