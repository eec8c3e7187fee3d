//! Distributed deadlock detection. Two transactions spanning shards that lock rows on two
//! shards in opposite orders wait for each other forever, and no PostgreSQL sees the cycle:
//! each server sees only its half. So every backend of a transaction spanning shards holds a
//! shared transaction-level advisory lock named by the transaction's tag
//! ([`SpanTicket::tag_sql`]); `pg_locks` then shows, on every shard, which server process
//! belongs to which spanning transaction, whichever proxy of a fleet runs it.
//!
//! A tag taken after a savepoint goes with a `ROLLBACK TO` it, so the proxy also remembers
//! which server process on which shard each of its own spanning transactions uses
//! ([`SpanTicket::note_backend`]); the detector trusts that for its own transactions and
//! `pg_locks` for every other proxy's.
//!
//! A task per database polls every primary, every `transactions.deadlock_check_interval`
//! while some transaction of this proxy spans shards: who waits for whom
//! (`pg_blocking_pids`), and the tags. From that wait-for graph (see `cycles`) it picks, in
//! each cycle whose waits are on two shards or more, the transaction with the largest tag.
//! A victim found in two polls in a row (a real deadlock does not go away by itself) and
//! owned by this proxy is cancelled: the proxy sends a CancelRequest to whatever it runs,
//! and its session reports the cancel as `40P01` (deadlock detected), naming the cycle. Every
//! proxy picks the same victims from the same graph, so each cycle loses one transaction
//! whichever proxies run its parts. Cycles on one shard are left to that server's own
//! detector, and a client's own `lock_timeout` is left alone.

pub mod cycles;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use self::cycles::{Party, Victim, Wait};
use super::ControlConn;
use super::EpochTask;
use crate::backend::{CancelSlot, send_cancel};
use crate::config::BackendUri;
use crate::counters::{Counters, Event};

/// The first key of the advisory locks that tag spanning transactions (`ShGd`); the second
/// is the transaction's tag.
const TAG_CLASS: i32 = 0x5368_4764;

/// The longest one poll of a primary may take.
const POLL_LIMIT: Duration = Duration::from_secs(2);

/// Who waits for whom on one server, and the tags of the spanning transactions involved.
fn waits_sql() -> String {
    format!(
        "WITH tags AS (SELECT pid, objid::int8 AS tag FROM pg_locks \
           WHERE locktype = 'advisory' AND classid = {TAG_CLASS} AND objsubid = 2 AND granted) \
         SELECT w.pid, b.pid, wt.tag, bt.tag \
         FROM pg_stat_activity w \
         CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid) \
         LEFT JOIN tags wt ON wt.pid = w.pid \
         LEFT JOIN tags bt ON bt.pid = b.pid \
         WHERE w.wait_event_type = 'Lock'"
    )
}

/// This proxy's transactions spanning shards of one database (kept across shard-map
/// reloads): the detector cancels the ones it picks as victims.
#[derive(Debug)]
pub struct SpanRegistry {
    spans: Mutex<HashMap<u32, Span>>,
    next_tag: AtomicU32,
}

#[derive(Debug, Clone)]
struct Span {
    cancel: CancelSlot,
    victim: Arc<Mutex<Option<String>>>,
    backends: Arc<Mutex<HashSet<Backend>>>,
}

/// A server process of a spanning transaction: shard name and process id.
type Backend = (Arc<str>, i32);

impl Default for SpanRegistry {
    fn default() -> Self {
        // Tags start at a random place so proxies of a fleet hand out different ones.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            spans: Mutex::default(),
            next_tag: AtomicU32::new(seed as u32),
        }
    }
}

impl SpanRegistry {
    /// Registers a transaction that starts spanning shards; `cancel` is where its session
    /// publishes the backends running its statement. Unregistered when the ticket drops.
    pub fn enter(self: &Arc<Self>, cancel: CancelSlot) -> SpanTicket {
        let victim = Arc::new(Mutex::new(None));
        let backends = Arc::new(Mutex::new(HashSet::new()));
        let mut spans = self.lock();
        let tag = loop {
            let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
            if tag != 0 && !spans.contains_key(&tag) {
                break tag;
            }
        };
        let span = Span {
            cancel,
            victim: victim.clone(),
            backends: backends.clone(),
        };
        spans.insert(tag, span);
        SpanTicket {
            tag,
            registry: self.clone(),
            victim,
            backends,
        }
    }

    /// The tag of each server process this proxy's spanning transactions use.
    fn own_backends(&self) -> HashMap<Backend, u32> {
        let spans = self.lock();
        let mut own = HashMap::new();
        for (&tag, span) in spans.iter() {
            let backends = span.backends.lock().unwrap_or_else(|e| e.into_inner());
            own.extend(backends.iter().map(|backend| (backend.clone(), tag)));
        }
        own
    }

    /// Whether no transaction of this proxy spans shards (nothing to poll for).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Marks transaction `tag` (if this proxy runs it) a victim with `detail`, and cancels
    /// what it runs. Whether it was this proxy's.
    async fn cancel(&self, tag: u32, detail: String) -> bool {
        let Some(span) = self.lock().get(&tag).cloned() else {
            return false;
        };
        *span.victim.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail);
        for target in span.cancel.get() {
            if let Err(e) = send_cancel(target).await {
                tracing::warn!(error = %e, "could not cancel a deadlock victim's statement");
            }
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Span>> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A transaction's place in the registry while it spans shards.
#[derive(Debug)]
pub struct SpanTicket {
    tag: u32,
    registry: Arc<SpanRegistry>,
    victim: Arc<Mutex<Option<String>>>,
    backends: Arc<Mutex<HashSet<Backend>>>,
}

impl SpanTicket {
    /// The statement each of the transaction's backends runs once it spans shards: a shared
    /// advisory lock (held until the transaction ends, never waited for) naming its tag.
    pub fn tag_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_xact_lock_shared({TAG_CLASS}, {})",
            self.tag as i32
        )
    }

    /// Notes that the transaction uses server process `pid` of shard `shard`.
    pub fn note_backend(&self, shard: &str, pid: i32) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if !backends.iter().any(|(s, p)| *p == pid && **s == *shard) {
            backends.insert((shard.into(), pid));
        }
    }

    /// Why the detector cancelled the transaction, once it picked it as a victim.
    pub fn victim_detail(&self) -> Option<String> {
        self.victim
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for SpanTicket {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.tag);
    }
}

/// Starts the detector over `primaries` (each shard's name and primary) every `interval`,
/// for the transactions in `registry`. `None` without a tokio runtime.
pub fn start(
    primaries: Vec<(String, BackendUri)>,
    interval: Duration,
    connect_timeout: Duration,
    registry: Arc<SpanRegistry>,
    counters: Arc<Counters>,
) -> Option<EpochTask> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let mut detector = Detector {
        servers: primaries
            .into_iter()
            .map(|(name, uri)| Server::new(name, &uri, connect_timeout))
            .collect(),
        registry,
        counters,
        suspects: HashSet::new(),
    };
    let task = runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            detector.poll().await;
        }
    });
    Some(EpochTask(task))
}

struct Detector {
    servers: Vec<Server>,
    registry: Arc<SpanRegistry>,
    counters: Arc<Counters>,
    /// Victims the last poll found: cancelled if this poll finds them again.
    suspects: HashSet<u32>,
}

impl Detector {
    async fn poll(&mut self) {
        if self.registry.is_empty() {
            self.suspects.clear();
            return;
        }
        let polls = self.servers.iter_mut().enumerate().map(|(i, s)| s.waits(i));
        let mut waits: Vec<Wait> = futures::future::join_all(polls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let seen_here_only = self.name_own(&mut waits);
        let found = cycles::victims(&waits, &seen_here_only);
        let suspects = found.iter().map(|victim| victim.tag).collect();
        let previous = std::mem::replace(&mut self.suspects, suspects);
        for victim in found.iter().filter(|v| previous.contains(&v.tag)) {
            let detail = self.describe(victim);
            if self.registry.cancel(victim.tag, detail.clone()).await {
                tracing::warn!(cycle = %detail, "cancelled a transaction in a cycle of lock waits across shards");
                self.counters.count(Event::CrossShardDeadlock);
            }
        }
    }

    /// Names this proxy's spanning transactions in `waits` by what it knows of their server
    /// processes (a tag lost to a `ROLLBACK TO` leaves them untagged in `pg_locks`); returns
    /// the tags named so, which no other proxy sees.
    fn name_own(&self, waits: &mut [Wait]) -> HashSet<u32> {
        let own = self.registry.own_backends();
        let mut named_here = HashSet::new();
        let mut name = |party: Party| match party {
            Party::Process { shard, pid } => {
                let server: Arc<str> = self.servers[shard].name.as_str().into();
                match own.get(&(server, pid)) {
                    Some(&tag) => {
                        named_here.insert(tag);
                        Party::Spanning(tag)
                    }
                    None => party,
                }
            }
            spanning => spanning,
        };
        for wait in waits.iter_mut() {
            wait.waiter = name(wait.waiter);
            wait.blocker = name(wait.blocker);
        }
        named_here
    }

    /// The cycle, as the victim's error detail tells it.
    fn describe(&self, victim: &Victim) -> String {
        let name = |party: Party| match party {
            Party::Spanning(tag) if tag == victim.tag => "this transaction".to_owned(),
            Party::Spanning(tag) => format!("transaction {tag:08x} (spanning shards)"),
            Party::Process { pid, .. } => format!("process {pid}"),
        };
        let steps: Vec<String> = (victim.cycle.iter())
            .map(|wait| {
                let shard = &self.servers[wait.shard].name;
                format!(
                    "on shard {shard}, {} waits for {}",
                    name(wait.waiter),
                    name(wait.blocker)
                )
            })
            .collect();
        format!(
            "Lock waits across shards form a cycle: {}.",
            steps.join("; ")
        )
    }
}

/// One primary the detector polls, over a connection kept between polls.
struct Server {
    name: String,
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    conn: Option<ControlConn>,
}

impl Server {
    fn new(name: String, uri: &BackendUri, connect_timeout: Duration) -> Self {
        let config = super::client_config(uri, "shardgate deadlock detector", connect_timeout);
        Self {
            name,
            config,
            connect_timeout,
            conn: None,
        }
    }

    /// Its lock waits, as shard number `index`; none when it cannot answer (its cycles wait
    /// for the next poll).
    async fn waits(&mut self, index: usize) -> Vec<Wait> {
        match tokio::time::timeout(POLL_LIMIT, self.read_waits(index)).await {
            Ok(Ok(waits)) => waits,
            Ok(Err(e)) => {
                tracing::debug!(shard = %self.name, error = %e, "deadlock detector poll failed");
                self.conn = None;
                Vec::new()
            }
            Err(_) => {
                self.conn = None;
                Vec::new()
            }
        }
    }

    async fn read_waits(&mut self, index: usize) -> Result<Vec<Wait>, tokio_postgres::Error> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = ControlConn::open(&self.config, self.connect_timeout)
                .await
                .ok();
        }
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let messages = conn.client.simple_query(&waits_sql()).await?;
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => wait_of(row, index),
                _ => None,
            })
            .collect())
    }
}

/// One row of [`waits_sql`]: waiter pid, blocker pid, and their tags when they have one.
fn wait_of(row: &tokio_postgres::SimpleQueryRow, shard: usize) -> Option<Wait> {
    let party = |pid: usize, tag: usize| -> Option<Party> {
        match row.get(tag) {
            Some(tag) => Some(Party::Spanning(tag.parse::<u32>().ok()?)),
            None => Some(Party::Process {
                shard,
                pid: row.get(pid)?.parse().ok()?,
            }),
        }
    };
    Some(Wait {
        shard,
        waiter: party(0, 2)?,
        blocker: party(1, 3)?,
    })
}
