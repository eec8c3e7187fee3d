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
use crate::config::{BackendUri, TransactionSettings};
use crate::control::two_phase::{DECISIONS_DDL, PreparedId};
use crate::counters::Counters;

/// How long recovery's question waits for a coordinator transaction still running.
const DECISION_LOCK_TIMEOUT_MS: u64 = 1000;

/// A database's recovery task; dropping it (with its shard map's epoch) stops the task.
#[derive(Debug)]
pub struct RecoveryTask(tokio::task::JoinHandle<()>);

impl Drop for RecoveryTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shards (by name) known to have the table of decisions. Until recovery has created it
/// on a shard, a commit coordinated there creates it itself, inside its transaction.
#[derive(Debug, Default)]
pub struct DecisionTables(std::sync::Mutex<HashSet<String>>);

impl DecisionTables {
    /// Whether shard `name` has the table.
    pub fn ready(&self, name: &str) -> bool {
        self.lock().contains(name)
    }

    fn mark(&self, name: &str) {
        self.lock().insert(name.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts recovery over `shards` (each shard's name and primary), counting what it ends in
/// `counters` and the tables of decisions it made sure of in `tables`. `None` without a tokio
/// runtime (tools that build a topology recover nothing).
pub fn start(
    shards: Vec<(String, BackendUri)>,
    settings: TransactionSettings,
    connect_timeout: Duration,
    counters: Arc<Counters>,
    tables: Arc<DecisionTables>,
) -> Option<RecoveryTask> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let task = runtime.spawn(async move {
        loop {
            let outcome = recover_once(&shards, &settings, connect_timeout, &tables).await;
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
    Some(RecoveryTask(task))
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Prepared transactions ended (committed or rolled back).
    pub ended: u64,
    /// Of those, committed.
    pub committed: u64,
    /// Shards that could not be reached.
    pub unreachable: u64,
}

/// One run over `shards`: see the module doc.
async fn recover_once(
    shards: &[(String, BackendUri)],
    settings: &TransactionSettings,
    connect_timeout: Duration,
    tables: &DecisionTables,
) -> Recovered {
    let mut out = Recovered::default();
    let mut clients = HashMap::new();
    for (name, uri) in shards {
        let Some(client) = connect(uri, connect_timeout).await else {
            out.unreachable += 1;
            continue;
        };
        if !tables.ready(name) {
            match client.client.batch_execute(DECISIONS_DDL).await {
                Ok(()) => tables.mark(name),
                Err(e) => {
                    tracing::warn!(shard = %name, error = %e, "cannot create shardgate.commit_decisions")
                }
            }
        }
        clients.insert(name.as_str(), client);
    }
    let mut in_use = Vec::new();
    let mut decisions: HashMap<String, Option<bool>> = HashMap::new();
    for (name, client) in &clients {
        for (id, old) in prepared(&client.client, settings.recover_after).await {
            in_use.push(id.decision.id.clone());
            if !old {
                continue;
            }
            let key = id.decision.id.clone();
            let decision = match decisions.get(&key) {
                Some(known) => *known,
                None => {
                    let coordinator = clients.get(id.decision.coordinator.as_str());
                    let decided = match coordinator {
                        Some(c) => decide(&c.client, &id).await,
                        None => None,
                    };
                    decisions.insert(key, decided);
                    decided
                }
            };
            let Some(commit) = decision else { continue };
            match client.client.batch_execute(&id.finish_sql(commit)).await {
                Ok(()) => {
                    out.ended += 1;
                    out.committed += u64::from(commit);
                    tracing::warn!(shard = %name, transaction = %id, commit, "recovery ended a prepared transaction");
                }
                Err(e) => {
                    tracing::debug!(shard = %name, transaction = %id, error = %e, "recovery could not end a prepared transaction")
                }
            }
        }
    }
    if out.unreachable == 0 {
        forget_decisions(&clients, &in_use, settings.recover_after).await;
    }
    out
}

async fn connect(uri: &BackendUri, timeout: Duration) -> Option<ControlConn> {
    let config = super::client_config(uri, "shardgate recovery", timeout);
    ControlConn::open(&config, timeout).await.ok()
}

/// Shardgate's prepared transactions in the database, each with whether it is older than
/// `recover_after`.
async fn prepared(
    client: &tokio_postgres::Client,
    recover_after: Duration,
) -> Vec<(PreparedId, bool)> {
    let sql = format!(
        "SELECT gid, (prepared < now() - interval '{} milliseconds')::text FROM pg_prepared_xacts \
         WHERE database = current_database() AND gid LIKE 'shardgate:%'",
        recover_after.as_millis()
    );
    let Ok(messages) = client.simple_query(&sql).await else {
        return Vec::new();
    };
    (messages.iter())
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                let id = PreparedId::parse(row.get(0)?)?;
                Some((id, row.get(1) == Some("true")))
            }
            _ => None,
        })
        .collect()
}

/// The coordinator's decision for `id`'s transaction: recorded, or recorded now as an abort
/// (its coordinator never decided); `None` while its coordinator transaction still runs, or
/// when the coordinator cannot answer.
async fn decide(coordinator: &tokio_postgres::Client, id: &PreparedId) -> Option<bool> {
    let sql = id.decision.resolve_sql(DECISION_LOCK_TIMEOUT_MS);
    let messages = coordinator.simple_query(&sql).await.ok()?;
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
        "DELETE FROM shardgate.commit_decisions WHERE decided_at < now() - interval '{} milliseconds' \
         AND id NOT IN ({keep})",
        recover_after.as_millis()
    );
    for client in clients.values() {
        let _ = client.client.batch_execute(&sql).await;
    }
}
