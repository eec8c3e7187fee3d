//! Recovery of atomic commits left part-way (see `control::two_phase`): a task per database
//! that, at start and every `transactions.recovery_interval`, makes sure every primary has
//! the table of decisions, ends every prepared transaction of shardgate's older than
//! `transactions.recover_after` as its coordinator decided, and deletes decisions nothing
//! refers to any more.
//!
//! Any number of proxies may run it at once over the same shards: a decision is read (or an
//! abort recorded) by one atomic statement on the coordinator, and ending a prepared
//! transaction that another proxy already ended fails harmlessly. One still being committed
//! by a live proxy is never touched: it is younger than `recover_after`, and even an older
//! one's coordinator transaction, while it runs, makes recovery's question wait (bounded by
//! a lock timeout) instead of answering it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::ControlConn;
use super::EpochTask;
use crate::config::{BackendUri, TransactionSettings};
use crate::control::two_phase::{DECISIONS_DDL, DecisionsTable, PreparedId};
use crate::counters::Counters;

/// How long recovery's question waits for a coordinator transaction still running.
const DECISION_LOCK_TIMEOUT_MS: u64 = 1000;

/// The longest one run of recovery may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What recovery knows of its shards, for the session and the operator surfaces: which
/// shards have the table of decisions (until recovery has created it on a shard, a commit
/// coordinated there creates it itself, inside its transaction), each shard's
/// `max_prepared_transactions`, and the prepared transactions its last run left in doubt.
#[derive(Debug, Default)]
pub struct RecoveryView(std::sync::Mutex<ViewState>);

#[derive(Debug, Default)]
struct ViewState {
    tables: HashSet<String>,
    max_prepared: HashMap<String, u64>,
    in_doubt: Vec<InDoubt>,
}

/// A prepared transaction of shardgate's that the last run of recovery left in place.
#[derive(Debug, Clone, PartialEq)]
pub struct InDoubt {
    /// The shard it is prepared on.
    pub shard: String,
    /// Its identifier in `pg_prepared_xacts`.
    pub transaction: String,
    /// The shard whose commit decides it.
    pub coordinator: String,
    /// How long it has been prepared.
    pub age: Duration,
    /// Why it is still there.
    pub state: &'static str,
}

impl RecoveryView {
    /// Whether shard `name` has the table of decisions, as a commit it coordinates records it.
    pub fn decisions_table(&self, name: &str) -> DecisionsTable {
        if self.lock().tables.contains(name) {
            DecisionsTable::Ready
        } else {
            DecisionsTable::Create
        }
    }

    /// Shard `name`'s `max_prepared_transactions`, once recovery has read it.
    pub fn max_prepared_transactions(&self, name: &str) -> Option<u64> {
        self.lock().max_prepared.get(name).copied()
    }

    /// The prepared transactions the last run left in doubt.
    pub fn in_doubt(&self) -> Vec<InDoubt> {
        self.lock().in_doubt.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts recovery over `shards` (each shard's name and primary), counting what it ends in
/// `counters` and telling `view` what it sees. `None` without a tokio runtime (tools that
/// build a topology recover nothing).
pub fn start(
    shards: Vec<(String, BackendUri)>,
    settings: TransactionSettings,
    connect_timeout: Duration,
    counters: Arc<Counters>,
    view: Arc<RecoveryView>,
) -> Option<EpochTask> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let task = runtime.spawn(async move {
        loop {
            let run = recover_once(&shards, &settings, connect_timeout, &view);
            // A server that stopped answering must not stall recovery of the others for good.
            let Ok(outcome) = tokio::time::timeout(RUN_LIMIT, run).await else {
                tracing::warn!(
                    "a run of recovery got no answer within {RUN_LIMIT:?}; trying again"
                );
                tokio::time::sleep(settings.recovery_interval).await;
                continue;
            };
            if outcome.ended > 0 || outcome.unreachable > 0 {
                tracing::info!(
                    committed = outcome.committed,
                    rolled_back = outcome.ended - outcome.committed,
                    unreachable_shards = outcome.unreachable,
                    "recovery of prepared transactions"
                );
            }
            counters.recovered(outcome.committed, outcome.ended - outcome.committed);
            tokio::time::sleep(settings.recovery_interval).await;
        }
    });
    Some(EpochTask(task))
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Recovered {
    /// Prepared transactions ended (committed or rolled back).
    ended: u64,
    /// Of those, committed.
    committed: u64,
    /// Shards that could not be reached.
    unreachable: u64,
}

/// One run over `shards`: see the module doc.
async fn recover_once(
    shards: &[(String, BackendUri)],
    settings: &TransactionSettings,
    connect_timeout: Duration,
    view: &RecoveryView,
) -> Recovered {
    let mut out = Recovered::default();
    let mut clients = HashMap::new();
    for (name, uri) in shards {
        match open_shard(name, uri, connect_timeout, view).await {
            Some(client) => drop(clients.insert(name.as_str(), client)),
            None => out.unreachable += 1,
        }
    }
    let mut in_use = Vec::new();
    let mut in_doubt = Vec::new();
    for (name, client) in &clients {
        for (id, age) in prepared(&client.client).await {
            in_use.push(id.decision.id.clone());
            let old = age >= settings.recover_after;
            match settle(name, &client.client, &clients, &id, old).await {
                Ok(commit) => {
                    out.ended += 1;
                    out.committed += u64::from(commit);
                }
                Err(state) => in_doubt.push(InDoubt {
                    shard: name.to_string(),
                    transaction: id.to_string(),
                    coordinator: id.decision.coordinator.clone(),
                    age,
                    state,
                }),
            }
        }
    }
    view.lock().in_doubt = in_doubt;
    if out.unreachable == 0 {
        forget_decisions(&clients, &in_use, settings.recover_after).await;
    }
    out
}

/// Ends prepared transaction `id` on shard `name` (through `client`) as its coordinator,
/// one of `clients`, decided, if it is `old` enough for recovery to touch: `Ok(committed)`,
/// or `Err(why it stays)`. Asking again for a transaction with parts on several shards is
/// harmless: the first answer recorded the decision.
async fn settle(
    name: &str,
    client: &tokio_postgres::Client,
    clients: &HashMap<&str, ControlConn>,
    id: &PreparedId,
    old: bool,
) -> Result<bool, &'static str> {
    if !old {
        return Err("recent: left to the proxy committing it");
    }
    match decide(clients, id).await {
        Some(commit) if end(name, client, id, commit).await => Ok(commit),
        Some(_) => Err("decided, not ended yet"),
        None => Err("coordinator still committing, or unreachable"),
    }
}

/// A connection to shard `name`'s primary, with its table of decisions made sure of and its
/// `max_prepared_transactions` read; `None` when it cannot be reached.
async fn open_shard(
    name: &str,
    uri: &BackendUri,
    timeout: Duration,
    view: &RecoveryView,
) -> Option<ControlConn> {
    let config = super::client_config(uri, "shardgate recovery", timeout);
    let conn = ControlConn::open(&config, timeout).await.ok()?;
    if view.decisions_table(name) == DecisionsTable::Create {
        match conn.client.batch_execute(DECISIONS_DDL).await {
            Ok(()) => drop(view.lock().tables.insert(name.to_owned())),
            Err(e) => {
                let why = "cannot create shardgate.commit_decisions";
                tracing::warn!(shard = %name, error = %e, "{why}");
            }
        }
    }
    if let Ok(value) = conn.max_prepared_transactions().await {
        view.lock().max_prepared.insert(name.to_owned(), value);
    }
    Some(conn)
}

/// Ends `id` on shard `name` as decided; whether it did (another proxy may have first).
async fn end(name: &str, client: &tokio_postgres::Client, id: &PreparedId, commit: bool) -> bool {
    match client.batch_execute(&id.finish_sql(commit)).await {
        Ok(()) => {
            let what = "recovery ended a prepared transaction";
            tracing::warn!(shard = %name, transaction = %id, commit, "{what}");
            true
        }
        Err(e) => {
            let what = "recovery could not end a prepared transaction";
            tracing::debug!(shard = %name, transaction = %id, error = %e, "{what}");
            false
        }
    }
}

/// Shardgate's prepared transactions in the database, each with how long it has been
/// prepared.
async fn prepared(client: &tokio_postgres::Client) -> Vec<(PreparedId, Duration)> {
    let sql = "SELECT gid, extract(epoch FROM now() - prepared)::float8::text \
               FROM pg_prepared_xacts \
               WHERE database = current_database() AND gid LIKE 'shardgate:%'";
    let Ok(messages) = client.simple_query(sql).await else {
        return Vec::new();
    };
    (messages.iter())
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                let id = PreparedId::parse(row.get(0)?)?;
                let seconds: f64 = row.get(1)?.parse().ok()?;
                Some((id, Duration::from_secs_f64(seconds.max(0.0))))
            }
            _ => None,
        })
        .collect()
}

/// The decision for `id`'s transaction, asked of its coordinator (one of `clients`):
/// recorded, or recorded now as an abort (its coordinator never decided); `None` while its
/// coordinator transaction still runs, or when the coordinator cannot answer.
async fn decide(clients: &HashMap<&str, ControlConn>, id: &PreparedId) -> Option<bool> {
    let coordinator = clients.get(id.decision.coordinator.as_str())?;
    let sql = id.decision.resolve_sql(DECISION_LOCK_TIMEOUT_MS);
    let messages = coordinator.client.simple_query(&sql).await.ok()?;
    let rows = messages.iter().filter_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    });
    rows.last().map(|committed| committed == "t")
}

/// Deletes decisions older than `recover_after` that no prepared transaction refers to.
async fn forget_decisions(
    clients: &HashMap<&str, ControlConn>,
    in_use: &[String],
    recover_after: Duration,
) {
    let keep = in_use
        .iter()
        .map(|id| format!("'{id}'"))
        .chain(std::iter::once("''".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "DELETE FROM shardgate.commit_decisions \
         WHERE decided_at < now() - interval '{} milliseconds' AND id NOT IN ({keep})",
        recover_after.as_millis()
    );
    for client in clients.values() {
        let _ = client.client.batch_execute(&sql).await;
    }
}
