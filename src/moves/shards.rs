//! Which shards an edit adds, removes, renames or points at another server, and which
//! tables hold rows on a shard that goes away.
//!
//! Part of the router stage (pure). Shards are matched by name; a removed name whose primary
//! (host, port, database) an added name now uses is reported as a rename. Never prints or
//! keeps a backend's credentials.

use super::{Maps, ShardChange};
use crate::config::{BackendUri, Placement, Shard, ShardId, ShardMap};
use crate::router::strategy::Placer;

/// Shard names in the new map only, sorted.
pub(super) fn added_names(maps: Maps<'_>) -> Vec<String> {
    let mut added: Vec<String> = (maps.new.shards.iter())
        .filter(|shard| maps.old.shard_by_name(&shard.name).is_none())
        .map(|shard| shard.name.clone())
        .collect();
    added.sort();
    added
}

/// Added, removed, renamed and repointed shards, in that order.
pub(super) fn changes(maps: Maps<'_>) -> Vec<ShardChange> {
    let mut added = added_names(maps);
    let mut gone = Vec::new();
    let mut repointed = Vec::new();
    for shard in &maps.old.shards {
        let Some(now) = maps.new.shard_by_name(&shard.name) else {
            gone.push(removed(maps, shard, &mut added));
            continue;
        };
        let (old, new) = (primary(&shard.primary), primary(&now.primary));
        if old != new {
            let name = shard.name.clone();
            repointed.push(ShardChange::Repointed { name, old, new });
        }
    }
    let mut changes: Vec<ShardChange> = added.into_iter().map(ShardChange::Added).collect();
    changes.append(&mut gone);
    changes.append(&mut repointed);
    changes
}

/// A shard of the old map that the new one lacks: renamed when an added name (taken out of
/// `added`) has its primary, else removed.
fn removed(maps: Maps<'_>, shard: &Shard, added: &mut Vec<String>) -> ShardChange {
    let holds = tables_on(maps.old, shard.id);
    let server = primary(&shard.primary);
    let twin = added.iter().position(|name| {
        let new = maps.new.shard_by_name(name);
        new.is_some_and(|new| primary(&new.primary) == server)
    });
    match twin {
        Some(index) => ShardChange::Renamed {
            from: shard.name.clone(),
            to: added.remove(index),
            holds,
        },
        None => ShardChange::Removed {
            name: shard.name.clone(),
            holds,
        },
    }
}

/// `host:port/database`: which server and database, never the credentials.
fn primary(uri: &BackendUri) -> String {
    format!("{}/{}", uri.address(), uri.database)
}

/// Sharded tables of `map` that place rows on `shard`, sorted.
fn tables_on(map: &ShardMap, shard: ShardId) -> Vec<String> {
    let mut tables: Vec<String> = (map.tables.values())
        .filter(|table| match &table.placement {
            Placement::Sharded(sharding) => {
                Placer::build(&sharding.strategy).shards().contains(&shard)
            }
            Placement::Reference => false,
        })
        .map(|table| table.name.clone())
        .collect();
    tables.sort();
    tables
}
