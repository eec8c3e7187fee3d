//! `RESHARD`: applies a held edit by moving the rows it places elsewhere, online.
//!
//! 1. **Snapshot, copy, catch up** (`stream`): each source streams its changes from a logical
//!    replication slot; the moving tables' rows are copied at the slot's snapshot into one
//!    open transaction per target, and the changes to moving keys since then are applied
//!    there, in rounds, while clients keep writing every key.
//! 2. **Fence writes** to the keys that change shard ([`FenceState::Writes`]), wait until
//!    every transaction that began before has ended (on the sources too, see `writers`),
//!    read each slot up to its source's current position, delete the moved rows from the
//!    sources, and `PREPARE TRANSACTION` every side. Nothing is visible yet, and a failure
//!    rolls all back. Writes to other keys, and all reads, go on.
//! 3. **Switch**: hold statements on map tables for the moment of the commit
//!    ([`FenceState::Switching`]), `COMMIT PREPARED` everywhere, wait for the replicas to
//!    replay it, publish the new map, and let the statements go on under it.
//!
//! When a source cannot stream (no `wal_level = logical`, a moving table without a replica
//! identity, no slot), the fence goes up first and the copy runs behind it.
//!
//! Reads never see a moved row twice or not at all: before the commit the copies are
//! invisible and the sources whole, and no statement on a map table runs across the commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_postgres::error::SqlState;

use super::coordination::{Coordination, Decided};
use super::copy::{self, Moved, Role, Side};
use super::job::Reshard;
use super::leftovers::{self, Undecided};
use super::schema;
use super::stream::{Maps, Stream};
use super::writers::OpenWriters;
use crate::config::{BackendUri, ShardMap};
use crate::control::fleet::{Member, Step};
use crate::moves::{Change, MoveReport, ShardChange};
use crate::router::Router;
use crate::topology::fence::{Fence, FenceState, Moving};

/// How long the fence waits for transactions that began before it to end.
pub const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// How long the switch waits for transactions that began during the copy to end: statements
/// on map tables wait meanwhile, so it gives up sooner (and the move with it).
pub const SWITCH_WAIT: Duration = Duration::from_secs(5);

/// The stream has caught up when a pass over every source (reading what the sources wrote
/// during the pass before) takes less than this: the fence then goes up for what is left,
/// which takes about as long.
const CAUGHT_UP: Duration = Duration::from_millis(300);

/// Catching up stops after this long even when writes keep the stream busy: the fence then
/// goes up and the rest is read behind it.
const CATCH_UP_FOR: Duration = Duration::from_secs(60);

/// How long the catch-up behind the fence may take before the move gives up (writes to the
/// moving keys wait meanwhile).
const FENCED_CATCH_UP: Duration = Duration::from_secs(30);

/// How long a side that did not commit with the others is asked again.
const COMMIT_RETRY: Duration = Duration::from_secs(300);

/// How long the switch waits for replicas to replay the move's commit.
const REPLICA_WAIT: Duration = Duration::from_secs(10);

/// What a move does: the map in force, the edit, and the tables whose rows move.
pub struct MovePlan {
    /// The map in force.
    pub old: ShardMap,
    /// The held edit.
    pub new: ShardMap,
    /// Tables whose rows change shard (co-located ones included), sorted.
    pub tables: Vec<String>,
    /// Connecting to a shard waits this long.
    pub connect_timeout: Duration,
    /// This proxy in its fleet (`None`: no fleet), whose other proxies follow the move.
    pub fleet: Option<Member>,
    /// The edited file's text, told to the fleet and recorded with the decision.
    pub map_text: Option<String>,
}

impl MovePlan {
    /// The move from `old` to `new` (compared in `report`), or why RESHARD cannot make it.
    pub fn new(
        old: ShardMap,
        new: ShardMap,
        report: &MoveReport,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let by_hand = "; move those rows by hand and RELOAD FORCE";
        for change in &report.shards {
            if let ShardChange::Renamed { from, to, .. } = change {
                return Err(format!(
                    "RESHARD does not rename shards ({from} -> {to}){by_hand}"
                ));
            }
            if let ShardChange::Repointed { name, .. } = change {
                return Err(format!(
                    "RESHARD does not move shard {name} to another server{by_hand}"
                ));
            }
        }
        if let Some((from, to)) = &report.default_shard {
            return Err(format!(
                "RESHARD does not change the default shard ({from} -> {to}){by_hand}"
            ));
        }
        let mut tables = Vec::new();
        for moved in &report.tables {
            match &moved.change {
                Change::Hash(_) | Change::Range(_) | Change::Directory(_) => {
                    tables.extend(moved.tables.iter().cloned());
                }
                other => {
                    return Err(format!(
                        "RESHARD moves rows between the shards of a hash, range or directory placement; {}: {}{by_hand}",
                        moved.tables.join(", "),
                        change_name(other)
                    ));
                }
            }
        }
        if tables.is_empty() {
            return Err("the edit moves no rows".into());
        }
        tables.sort();
        Ok(Self {
            old,
            new,
            tables,
            connect_timeout,
            fleet: None,
            map_text: None,
        })
    }
}

fn change_name(change: &Change) -> String {
    match change {
        Change::Added { .. } => "joins the map".into(),
        Change::Removed { .. } => "leaves the map".into(),
        Change::EveryRow { why } => format!("every row moves ({why})"),
        Change::Reference { copy_to } => {
            format!("a reference table copied to {}", copy_to.join(", "))
        }
        Change::Hash(_) | Change::Range(_) | Change::Directory(_) => "moves".into(),
    }
}

/// Publishes the new map once the rows moved: the epoch it is in force from.
pub type Switch<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<u64, String>> + Send + 'a>;

/// Runs the move (see the module doc) and records its outcome in `job`.
pub async fn run(job: &Reshard, plan: &MovePlan, fence: &Fence, switch: Switch<'_>) {
    let mut lower = LowerOnDrop(Some(fence));
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let fleet = Coordination {
        member: plan.fleet.clone(),
        stamp: stamp.to_string(),
    };
    let outcome = run_phases(job, plan, (fence, &fleet), &mut lower, switch, stamp).await;
    if outcome.is_err() {
        let undecided = [
            Step::Announced,
            Step::Fence,
            Step::Switching,
            Step::Abandoned,
        ];
        fleet.abandon(&undecided).await;
    }
    job.finish(outcome);
}

/// Lowers the fence when the move ends before anything committed (an error, a panic, the
/// task dropped); disarmed once the first side commits, after which the move only goes on.
struct LowerOnDrop<'a>(Option<&'a Fence>);

impl Drop for LowerOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(fence) = self.0.take() {
            fence.set(FenceState::Down);
        }
    }
}

/// This proxy's fence and the fleet's view of the move.
type Fences<'a> = (&'a Fence, &'a Coordination);

async fn run_phases(
    job: &Reshard,
    plan: &MovePlan,
    fences: Fences<'_>,
    lower: &mut LowerOnDrop<'_>,
    switch: Switch<'_>,
    stamp: u128,
) -> Result<u64, String> {
    let moving = Arc::new(Moving::new(&plan.new, plan.tables.clone()));
    let routers = (Router::new(&plan.old), Router::new(&plan.new));
    let maps = Maps {
        old: &routers.0,
        new: &routers.1,
    };
    job.phase("announce");
    (fences.1)
        .announce(&plan.tables, plan.map_text.as_deref())
        .await?;
    // What an earlier move left (prepared transactions holding rows' locks, slots holding
    // WAL) ends first; only now that this move holds the fleet's record, so that no move of
    // another proxy (or of this one) is between its PREPAREs and its decision.
    let both = [&plan.old, &plan.new];
    leftovers::resolve(&both, Undecided::RollBack, plan.connect_timeout).await;
    job.phase("snapshot");
    let targets = targets_with_tables(plan, &maps).await?;
    let mut copy = match start_streams(plan, stamp).await {
        Ok(streams) => {
            job.method("logical replication".into());
            let started = (streams, targets);
            let copied = stream_and_copy(job, plan, &maps, fences, &moving, started).await;
            // Caught up (or failed): the slots are done with either way.
            end_streams(&copied).await;
            copied.map_err(|(_, why)| why)?
        }
        Err(why) => {
            job.method(format!("fenced copy ({why})"));
            copy_fenced(job, plan, &maps, fences, &moving, targets).await?
        }
    };
    let prepared = prepare(plan, &mut copy, stamp).await?;
    let epoch = commit(job, plan, fences, lower, switch, moving, prepared).await;
    job.fenced(copy.fenced_at.elapsed());
    epoch
}

/// The open transactions of a move once its rows are copied (and deleted from the sources):
/// ready to prepare.
struct Copied {
    targets: HashMap<String, Side>,
    sources: Vec<(Side, BackendUri)>,
    streams: Vec<Stream>,
    /// When writes to the moving keys began to wait.
    fenced_at: tokio::time::Instant,
}

/// The move's transactions on the targets that lack a moving table, opened with the table
/// created in them (see `schema`); the other targets open as rows go there.
async fn targets_with_tables(
    plan: &MovePlan,
    maps: &Maps<'_>,
) -> Result<HashMap<String, Side>, String> {
    let missing = schema::missing(maps, &plan.tables, plan.connect_timeout).await?;
    let mut targets = HashMap::new();
    for name in missing.keys() {
        copy::open_target(&mut targets, maps.new, name, plan.connect_timeout).await?;
        schema::create(&targets[name], &missing).await?;
    }
    Ok(targets)
}

/// Starts a stream on every source, or says why one cannot (then none is used).
async fn start_streams(plan: &MovePlan, stamp: u128) -> Result<Vec<(Stream, Side)>, String> {
    let mut streams = Vec::new();
    for (index, shard) in plan.old.shards.iter().enumerate() {
        let name = format!("{}{stamp}_{index}", leftovers::PREFIX);
        let source = (shard.name.as_str(), &shard.primary);
        match Stream::start(source, &plan.tables, &plan.new, &name, plan.connect_timeout).await {
            Ok(started) => streams.push(started),
            Err(why) => {
                for (stream, _) in &streams {
                    stream.finish().await;
                }
                return Err(why);
            }
        }
    }
    Ok(streams)
}

/// Copies with the fence down, each source at its slot's snapshot; catches up with the
/// changes; raises the fence, reads each slot up to its source's current position, and
/// deletes the moved rows from the sources.
async fn stream_and_copy(
    job: &Reshard,
    plan: &MovePlan,
    maps: &Maps<'_>,
    fences: Fences<'_>,
    moving: &Arc<Moving>,
    (started, mut targets): (Vec<(Stream, Side)>, HashMap<String, Side>),
) -> Result<Copied, (Vec<Stream>, String)> {
    let (mut streams, sources): (Vec<Stream>, Vec<Side>) = started.into_iter().unzip();
    let mut moved = Vec::new();
    job.phase("copy");
    for source in &sources {
        match copy_source(job, maps, plan, source, &mut targets).await {
            Ok(tables) => moved.push(tables),
            Err(why) => return Err((streams, why)),
        }
    }
    job.phase("catch-up");
    let timeout = plan.connect_timeout;
    let caught_up = catch_up(job, maps, &mut streams, &mut targets, timeout).await;
    if let Err(why) = caught_up {
        return Err((streams, why));
    }
    let fenced_at = tokio::time::Instant::now();
    if let Err(why) = raise_fence(job, plan, fences, moving).await {
        return Err((streams, why));
    }
    let behind = Behind {
        sources: &sources,
        moved: &mut moved,
        targets: &mut targets,
    };
    if let Err(why) = finish_behind_the_fence(job, maps, &mut streams, behind, timeout).await {
        return Err((streams, why));
    }
    let uris = plan.old.shards.iter().map(|shard| shard.primary.clone());
    Ok(Copied {
        targets,
        sources: sources.into_iter().zip(uris).collect(),
        streams,
        fenced_at,
    })
}

/// Reads the slots in passes until a pass takes under [`CAUGHT_UP`] (or [`CATCH_UP_FOR`]
/// has gone by), with the fence down.
async fn catch_up(
    job: &Reshard,
    maps: &Maps<'_>,
    streams: &mut [Stream],
    targets: &mut HashMap<String, Side>,
    timeout: Duration,
) -> Result<(), String> {
    let catching_up = tokio::time::Instant::now();
    loop {
        let pass = tokio::time::Instant::now();
        for stream in streams.iter_mut() {
            stream.catch_up(maps, targets, None, timeout).await?;
            if let Some(bytes) = stream.bytes_behind().await {
                job.behind(&stream.shard, bytes);
            }
        }
        if pass.elapsed() < CAUGHT_UP || catching_up.elapsed() > CATCH_UP_FOR {
            return Ok(());
        }
    }
}

/// The sources' transactions, what they gave away and the targets', behind the fence.
struct Behind<'a> {
    sources: &'a [Side],
    moved: &'a mut [Vec<Moved>],
    targets: &'a mut HashMap<String, Side>,
}

/// With the fence up: applies what the sources committed up to now, checks that nothing
/// writes a moving key past the fence, and deletes the moved rows from every source at once.
async fn finish_behind_the_fence(
    job: &Reshard,
    maps: &Maps<'_>,
    streams: &mut [Stream],
    behind: Behind<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    for stream in streams.iter_mut() {
        read_to_now(stream, maps, behind.targets, timeout).await?;
        job.behind(&stream.shard, 0);
    }
    let caught_up = started.elapsed();
    for (tables, stream) in behind.moved.iter_mut().zip(streams.iter_mut()) {
        for table in tables.iter_mut() {
            let streamed = stream.keys.remove(&table.table).unwrap_or_default();
            table.keys.extend(streamed);
        }
    }
    // The deletes read at a snapshot taken now. A write the fence did not hold back (another
    // proxy, a direct connection) that committed since the catch-up would be deleted unseen
    // or left behind: one read of the slots up to after that snapshot must find nothing.
    for source in behind.sources {
        source.snapshot_for_deletes().await?;
    }
    for stream in streams.iter_mut() {
        let applied = stream.applied;
        read_to_now(stream, maps, behind.targets, timeout).await?;
        if stream.applied != applied {
            return Err(past_the_fence(&stream.shard));
        }
    }
    let checked = started.elapsed();
    // A row changed after the snapshot makes its delete fail (serialization failure).
    let deletes = (behind.sources.iter().zip(behind.moved.iter()))
        .map(|(source, tables)| delete_moved(source, tables));
    futures::future::try_join_all(deletes).await?;
    tracing::info!(
        changes_applied = streams.iter().map(|stream| stream.applied).sum::<u64>(),
        catch_up_ms = caught_up.as_millis(),
        check_ms = (checked - caught_up).as_millis(),
        delete_ms = (started.elapsed() - checked).as_millis(),
        "RESHARD: behind the fence"
    );
    Ok(())
}

async fn end_streams(copied: &Result<Copied, (Vec<Stream>, String)>) {
    let streams = match copied {
        Ok(copied) => &copied.streams,
        Err((streams, _)) => streams,
    };
    for stream in streams {
        stream.finish().await;
    }
}

fn past_the_fence(shard: &str) -> String {
    format!(
        "shard {shard}: a moving key was written past the fence (by another proxy or a direct connection?); nothing moved"
    )
}

/// Applies the changes `stream`'s source committed before its current WAL position, for at
/// most [`FENCED_CATCH_UP`].
async fn read_to_now(
    stream: &mut Stream,
    maps: &Maps<'_>,
    targets: &mut HashMap<String, Side>,
    timeout: Duration,
) -> Result<(), String> {
    let position = stream.position().await?;
    let deadline = tokio::time::Instant::now() + FENCED_CATCH_UP;
    while stream
        .catch_up(maps, targets, Some(&position), timeout)
        .await?
        > 0
    {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "shard {}: the changes behind the fence took more than {} s to apply; nothing moved",
                stream.shard,
                FENCED_CATCH_UP.as_secs()
            ));
        }
    }
    Ok(())
}

/// Raises the fence, then copies and deletes source by source.
async fn copy_fenced(
    job: &Reshard,
    plan: &MovePlan,
    maps: &Maps<'_>,
    fences: Fences<'_>,
    moving: &Arc<Moving>,
    mut targets: HashMap<String, Side>,
) -> Result<Copied, String> {
    let fenced_at = tokio::time::Instant::now();
    raise_fence(job, plan, fences, moving).await?;
    job.phase("copy");
    let timeout = plan.connect_timeout;
    let mut sources = Vec::new();
    for shard in &plan.old.shards {
        let source = Side::open(&shard.name, &shard.primary, Role::Source, None, timeout).await?;
        let moved = copy_source(job, maps, plan, &source, &mut targets).await?;
        delete_moved(&source, &moved).await?;
        sources.push((source, shard.primary.clone()));
    }
    Ok(Copied {
        targets,
        sources,
        streams: Vec::new(),
        fenced_at,
    })
}

/// Holds back writes to the moving keys on this proxy and every other of the fleet, and
/// waits until every transaction that began before has ended (the fleet's, and those on the
/// sources that wrote a moving table outside its fences).
async fn raise_fence(
    job: &Reshard,
    plan: &MovePlan,
    (fence, fleet): Fences<'_>,
    moving: &Arc<Moving>,
) -> Result<(), String> {
    job.phase("fence");
    fence.set(FenceState::Writes(moving.clone()));
    fleet.step(Step::Announced, Step::Fence, DRAIN_WAIT).await?;
    // Every live proxy of the fleet holds writes to the moving keys back from here on; what
    // wrote a moving table before, elsewhere, is waited for too (see `writers`).
    let writers = plan.old.shards.iter().map(|shard| {
        let (name, uri) = (&shard.name, &shard.primary);
        OpenWriters::on(name, uri, &plan.tables, plan.connect_timeout)
    });
    let writers = futures::future::try_join_all(writers).await?;
    drain(fence, DRAIN_WAIT, "began before the fence").await?;
    let waits = writers.into_iter().map(|writers| {
        if !writers.is_empty() {
            tracing::info!(
                shard = writers.shard(),
                transactions = writers.len(),
                "RESHARD: waiting for transactions that wrote a moving table before the fence"
            );
        }
        writers.wait(DRAIN_WAIT)
    });
    futures::future::try_join_all(waits).await.map(|_| ())
}

/// Copies every moving table's rows that leave `source`.
async fn copy_source(
    job: &Reshard,
    maps: &Maps<'_>,
    plan: &MovePlan,
    source: &Side,
    targets: &mut HashMap<String, Side>,
) -> Result<Vec<Moved>, String> {
    let mut moved = Vec::new();
    for table in &plan.tables {
        let routers = (maps.old, maps.new);
        let timeout = plan.connect_timeout;
        let copied = copy::copy_table(job, routers, table, source, targets, timeout).await?;
        moved.extend(copied);
    }
    Ok(moved)
}

/// Deletes what moved from `source`: every table is copied before any row is deleted, so a
/// cascade from one table's delete removes rows that are already on their target.
async fn delete_moved(source: &Side, moved: &[Moved]) -> Result<(), String> {
    for table in moved.iter().rev() {
        copy::delete_moved(source, table).await?;
    }
    Ok(())
}

/// Prepares every side (targets first); any failure rolls back what was prepared.
async fn prepare(
    plan: &MovePlan,
    copied: &mut Copied,
    stamp: u128,
) -> Result<Vec<Prepared>, String> {
    let mut prepared = Vec::new();
    let targets = std::mem::take(&mut copied.targets)
        .into_values()
        .map(|side| {
            let uri = plan
                .new
                .shard_by_name(&side.shard)
                .map(|s| s.primary.clone());
            (side, uri, "in")
        });
    let sources = std::mem::take(&mut copied.sources)
        .into_iter()
        .map(|(side, uri)| (side, Some(uri), "out"));
    for (side, uri, way) in targets.chain(sources) {
        let gid = format!("{}{stamp}_{}_{way}", leftovers::PREFIX, side.shard);
        let prepare = format!("PREPARE TRANSACTION {}", crate::sql::quote::literal(&gid));
        let done = side.conn.client.batch_execute(&prepare).await;
        if let Err(error) = done {
            roll_back(plan, &prepared).await;
            return Err(copy::on(&side.shard, error));
        }
        if let Some(uri) = uri {
            prepared.push(Prepared {
                shard: side.shard.clone(),
                uri,
                gid,
            });
        }
    }
    Ok(prepared)
}

/// Switches: holds every statement on map tables, records the decision, commits every side,
/// waits for the replicas and publishes the new map.
async fn commit(
    job: &Reshard,
    plan: &MovePlan,
    (fence, fleet): Fences<'_>,
    lower: &mut LowerOnDrop<'_>,
    switch: Switch<'_>,
    moving: Arc<Moving>,
    prepared: Vec<Prepared>,
) -> Result<u64, String> {
    job.phase("switch");
    fence.set(FenceState::Switching(moving.clone()));
    let switching = async {
        fleet
            .step(Step::Fence, Step::Switching, SWITCH_WAIT)
            .await?;
        drain(fence, SWITCH_WAIT, "began during the copy").await
    };
    if let Err(why) = switching.await {
        roll_back(plan, &prepared).await;
        return Err(why);
    }
    let Some((first, rest)) = prepared.split_first() else {
        return Err("nothing was prepared".into());
    };
    // The decision first: a proxy that stops from here on leaves a move that is committed
    // everywhere by whoever finds its transactions (`leftovers`), never half of it.
    let decisions = &plan.old.shard(plan.old.default_shard).primary;
    let stamp = fleet.stamp.as_str();
    match fleet.decide(decisions, plan.connect_timeout).await {
        Decided::Yes => {}
        Decided::No(why) => {
            roll_back(plan, &prepared).await;
            return Err(format!(
                "cannot record the move's decision: {why}; nothing moved"
            ));
        }
        Decided::Unknown(why) => {
            // Neither commit nor roll back: whoever reads the decision ends it that way.
            fence.set(FenceState::Writes(moving));
            lower.0 = None;
            return Err(format!(
                "cannot tell whether the move's decision was recorded ({why}); its prepared transactions end the way the record says, by this proxy once the fleet's table answers, or at the next start or RESHARD"
            ));
        }
    }
    if let Err(why) = end_prepared(plan, first, "COMMIT PREPARED").await {
        // Turning back needs the decision gone first (and, in a fleet, is never done: another
        // proxy may be finishing the move); otherwise the move stays decided and prepared,
        // and whoever finds it next commits it.
        let timeout = plan.connect_timeout;
        let withdrawn =
            fleet.may_withdraw() && leftovers::forget_decision(decisions, stamp, timeout).await;
        if !withdrawn {
            // Writes to the moving keys stay held back: under the old map they would land
            // beside rows that are about to move.
            fence.set(FenceState::Writes(moving));
            lower.0 = None;
            return Err(format!(
                "{why}; the move is decided but not committed: its prepared transactions are committed when the shards answer (by this proxy in a fleet), or at the next start or RESHARD"
            ));
        }
        roll_back(plan, &prepared).await;
        return Err(format!("{why}; nothing moved"));
    }
    // Committed somewhere: from here on the move only goes forward.
    lower.0 = None;
    let mut pending = Vec::new();
    for side in rest {
        if let Err(why) = end_prepared(plan, side, "COMMIT PREPARED").await {
            pending.push((side, why));
        }
    }
    wait_for_replicas(plan, &prepared).await;
    let epoch = switch().await?;
    fence.set(FenceState::Switched { epoch, moving });
    fleet.switched(plan.map_text.as_deref()).await;
    commit_pending(job, plan, pending).await?;
    leftovers::forget_decision(decisions, stamp, plan.connect_timeout).await;
    Ok(epoch)
}

/// Commits what did not commit with the rest (a shard that was down), for as long as
/// [`COMMIT_RETRY`] allows; the map already switched, and these rows stay locked until then.
async fn commit_pending(
    job: &Reshard,
    plan: &MovePlan,
    mut pending: Vec<(&Prepared, String)>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + COMMIT_RETRY;
    while !pending.is_empty() {
        job.phase("commit pending");
        if tokio::time::Instant::now() >= deadline {
            let left: Vec<String> = (pending.iter())
                .map(|(side, why)| format!("{} ({why})", side.gid))
                .collect();
            return Err(format!(
                "the new map is in force, but these prepared transactions did not commit; COMMIT PREPARED them by hand: {}",
                left.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut still = Vec::new();
        for (side, _) in pending {
            if let Err(why) = end_prepared(plan, side, "COMMIT PREPARED").await {
                still.push((side, why));
            }
        }
        pending = still;
    }
    Ok(())
}

async fn drain(fence: &Fence, wait: Duration, what: &str) -> Result<(), String> {
    fence.drain(wait).await.map_err(|open| {
        format!(
            "{open} transaction(s) that {what} still open after {} s; nothing moved",
            wait.as_secs()
        )
    })
}

/// A prepared transaction of the move: its shard (by name, in the old map or the new) and
/// global id.
struct Prepared {
    shard: String,
    uri: BackendUri,
    gid: String,
}

/// Ends one prepared transaction with `command`, asking its shard again while it blinks. A
/// transaction that no longer exists is ended: an earlier attempt whose reply was lost ended
/// it, or `leftovers` did, the way the move decided (commits run only after the decision is
/// recorded, and nothing rolls back a decided move).
async fn end_prepared(plan: &MovePlan, side: &Prepared, command: &str) -> Result<(), String> {
    let sql = format!("{command} {}", crate::sql::quote::literal(&side.gid));
    let mut last = String::new();
    for _ in 0..5 {
        match copy::connect(&side.uri, plan.connect_timeout).await {
            Ok(conn) => match conn.client.batch_execute(&sql).await {
                Ok(()) => return Ok(()),
                Err(error) if error.code() == Some(&SqlState::UNDEFINED_OBJECT) => return Ok(()),
                Err(error) => last = copy::on(&side.shard, error),
            },
            Err(why) => last = format!("shard {}: {why}", side.shard),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("{}: {last}", side.gid))
}

async fn roll_back(plan: &MovePlan, prepared: &[Prepared]) {
    for side in prepared {
        if let Err(why) = end_prepared(plan, side, "ROLLBACK PREPARED").await {
            tracing::error!(
                why,
                "RESHARD could not roll back a prepared transaction; ROLLBACK PREPARED it by hand"
            );
        }
    }
}

/// Waits (at most [`REPLICA_WAIT`]) until the replicas of every shard the move wrote to in
/// the new map have replayed its commit, so that no replica read misses or doubles a row.
async fn wait_for_replicas(plan: &MovePlan, prepared: &[Prepared]) {
    let deadline = tokio::time::Instant::now() + REPLICA_WAIT;
    for side in prepared {
        let Some(shard) = plan.new.shard_by_name(&side.shard) else {
            continue;
        };
        if shard.replicas.is_empty() {
            continue;
        }
        let Ok(primary) = copy::connect(&shard.primary, plan.connect_timeout).await else {
            continue;
        };
        let lsn = primary
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .ok()
            .map(|row| row.get::<_, String>(0));
        let Some(lsn) = lsn else { continue };
        for replica in &shard.replicas {
            if !replayed(replica, &lsn, deadline, plan.connect_timeout).await {
                tracing::warn!(
                    shard = shard.name,
                    lsn,
                    "RESHARD: a replica did not replay the move in time; its reads may lag"
                );
            }
        }
    }
}

async fn replayed(
    replica: &BackendUri,
    lsn: &str,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> bool {
    let Ok(conn) = copy::connect(replica, timeout).await else {
        return false;
    };
    let sql = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn";
    while tokio::time::Instant::now() < deadline {
        let reached = conn.client.query_one(sql, &[&lsn]).await;
        if reached.is_ok_and(|row| row.get::<_, Option<bool>>(0) == Some(true)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
