//! Plan + parameter values + hint → [`Route`]: the per-execution half of routing.
//!
//! Part of the router (pure). Writes are strict: one shard, or every shard when the map
//! allows broadcast for the table, or a refusal that names the table and its key.

use super::condition::place;
use super::operand::{Params, key_value};
use super::plan::{InsertRows, Keyed, Kind, Part, Plan, Target, sharding_of};
use super::{Hint, Route, RouteError, Router};
use crate::config::{KeyValue, MultiShardWrites, ShardId};
use crate::error::Unsupported;

pub(super) fn route(
    router: &Router,
    plan: &Plan,
    params: &Params<'_>,
    hint: Option<&Hint>,
) -> Result<Route, RouteError> {
    if let Some(Hint::Shard(name)) = hint {
        return Ok(Route::Shard(router.shard_named(name)?));
    }
    let key_hint = match hint {
        Some(Hint::ShardKey(key)) => Some(key.as_str()),
        _ => None,
    };
    let mut combined = Route::Anywhere;
    for part in &plan.parts {
        let route = route_part(router, part, params, key_hint)?;
        combined = match (combined, route) {
            (Route::Anywhere, route) => route,
            (route, Route::Anywhere) => route,
            (a, b) if a == b => a,
            _ => return Ok(Route::PerStatement),
        };
    }
    Ok(combined)
}

fn route_part(
    router: &Router,
    part: &Part,
    params: &Params<'_>,
    key_hint: Option<&str>,
) -> Result<Route, RouteError> {
    let map = router.map();
    let every_shard = || map.shard_ids().collect::<Vec<_>>();
    if let Some(key) = key_hint
        && let Some(table) = hinted_table(&part.target)
    {
        let shard = shard_of_key(router, &table, key)?;
        // The statement's own key wins over a lingering hint only by agreeing with it.
        if let Ok(Route::Shard(own)) = route_part(router, part, params, None)
            && own != shard
            && !part.target.is_opaque()
        {
            let key = key.to_owned();
            return Err(Unsupported::HintDisagrees { key }.into());
        }
        return Ok(Route::Shard(shard));
    }
    Ok(match &part.target {
        Target::Anywhere => Route::Anywhere,
        Target::DefaultShard => Route::Shard(map.default_shard),
        Target::EveryShard => Route::Replicate(every_shard()),
        Target::Scatter(_) => Route::Scatter(every_shard()),
        Target::Keyed(keyed) => keyed_route(router, part.kind, keyed, params)?,
        Target::MovesRows(keyed) => moving_route(router, keyed, params)?,
        Target::Insert(rows) => insert_route(router, rows, params)?,
        Target::Unparsed(mentions) if mentions.is_empty() => Route::Shard(map.default_shard),
        Target::Unparsed(_) => Route::CurrentShardOnly,
        Target::TooDeep { mentions, .. } if mentions.is_empty() => Route::Shard(map.default_shard),
        Target::TooDeep { depth, .. } => return Err(RouteError::TooDeep(*depth)),
        Target::TooLarge { mentions, .. } if mentions.is_empty() => Route::Shard(map.default_shard),
        Target::TooLarge {
            mentions,
            size,
            max_bytes,
        } => {
            return Err(RouteError::TooLarge {
                size: *size,
                max: *max_bytes,
                table: mentions[0].clone(),
            });
        }
        Target::CopyIn(copy) => match &copy.sharding {
            Some(sharding) => Route::CopyIn(router.placer(&sharding.group).shards()),
            None => Route::CopyIn(every_shard()),
        },
        Target::Refused(refusal) => return Err(refusal.clone().into()),
    })
}

/// The sharded table whose key a `shard_key` hint stands for.
fn hinted_table(target: &Target) -> Option<String> {
    match target {
        Target::Keyed(keyed) | Target::MovesRows(keyed) => Some(keyed.table.clone()),
        Target::Insert(rows) => Some(rows.table.clone()),
        Target::Unparsed(mentions)
        | Target::TooDeep { mentions, .. }
        | Target::TooLarge { mentions, .. } => mentions.first().cloned(),
        _ => None,
    }
}

fn keyed_route(
    router: &Router,
    kind: Kind,
    keyed: &Keyed,
    params: &Params<'_>,
) -> Result<Route, RouteError> {
    let sharding = &keyed.sharding;
    let placer = router.placer(&sharding.group);
    let narrowed = (keyed.condition).shards(&keyed.table, placer, sharding.key_type, params)?;
    let shards = narrowed.clone().unwrap_or_else(|| placer.shards());
    match shards.as_slice() {
        // No row can match (a NULL key): any shard gives the same empty answer.
        [] => return Ok(Route::Shard(placer.shards()[0])),
        [one] => return Ok(Route::Shard(*one)),
        _ => {}
    }
    if kind == Kind::Read {
        return Ok(Route::Scatter(shards));
    }
    if keyed.multi_shard_writes == MultiShardWrites::Allow {
        return Ok(Route::Broadcast(shards));
    }
    let (table, key) = (keyed.table.clone(), sharding.key_column.clone());
    Err(match narrowed {
        None => Unsupported::WriteWithoutKey { table, key },
        Some(shards) => Unsupported::WriteToSeveralShards {
            table,
            key,
            shards: shards.len(),
        },
    }
    .into())
}

/// The shards holding the rows an UPDATE of the shard key moves (several only where the map
/// allows writes to several shards).
fn moving_route(router: &Router, keyed: &Keyed, params: &Params<'_>) -> Result<Route, RouteError> {
    let sharding = &keyed.sharding;
    let placer = router.placer(&sharding.group);
    let narrowed = (keyed.condition).shards(&keyed.table, placer, sharding.key_type, params)?;
    let shards = narrowed.unwrap_or_else(|| placer.shards());
    if shards.len() > 1 && keyed.multi_shard_writes == MultiShardWrites::Refuse {
        let (table, key) = (keyed.table.clone(), sharding.key_column.clone());
        return Err(Unsupported::ShardKeyChange { table, key }.into());
    }
    Ok(Route::MoveRows(shards))
}

/// The shard of `key` (text, as PostgreSQL prints it) in sharded table `table`.
pub(super) fn shard_of_key(router: &Router, table: &str, key: &str) -> Result<ShardId, RouteError> {
    let Some(sharding) = sharding_of(router.map(), table) else {
        let table = table.to_owned();
        return Err(Unsupported::HintWithoutShardedTable { table }.into());
    };
    let key = KeyValue::parse_text(sharding.key_type, key)?;
    place(table, router.placer(&sharding.group), &key)
}

/// The shard of key value `key` in sharded table `table`.
pub(super) fn shard_of_value(
    router: &Router,
    table: &str,
    key: &KeyValue,
) -> Result<ShardId, RouteError> {
    let Some(sharding) = sharding_of(router.map(), table) else {
        let table = table.to_owned();
        return Err(Unsupported::HintWithoutShardedTable { table }.into());
    };
    place(table, router.placer(&sharding.group), key)
}

/// The shard every row of an INSERT belongs to, or the rows of each shard.
fn insert_route(
    router: &Router,
    rows: &InsertRows,
    params: &Params<'_>,
) -> Result<Route, RouteError> {
    let sharding = &rows.sharding;
    let placer = router.placer(&sharding.group);
    let mut groups: Vec<(ShardId, Vec<usize>)> = Vec::new();
    for (row, operand) in rows.keys.iter().enumerate() {
        let Some(key) = key_value(operand, sharding.key_type, params)? else {
            return Err(Unsupported::NullKeyInInsert {
                table: rows.table.clone(),
                key: sharding.key_column.clone(),
                row: row + 1,
            }
            .into());
        };
        let shard = place(&rows.table, placer, &key)?;
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, indexes)) => indexes.push(row),
            None => groups.push((shard, vec![row])),
        }
    }
    groups.sort_by_key(|(shard, _)| *shard);
    match groups.as_slice() {
        [] => Err(Unsupported::InsertWithoutRows {
            table: rows.table.clone(),
        }
        .into()),
        [(one, _)] => Ok(Route::Shard(*one)),
        _ => Ok(Route::Split(groups)),
    }
}
