//! The control plane: connections that are not the row path. bb8-postgres pools and plain
//! tokio-postgres connections for look-ups, notifications and health: directory tables
//! (`directory`), replica health and lag (`health`), the WAL positions causal replica
//! reads wait on (`causal`), the commit decisions of atomic commits across shards, with
//! the recovery that finishes them (`two_phase`, `recovery`), cycles of lock waits across
//! shards (`deadlock`), the federation database that answers the reads the merge cannot
//! compute (`federation`), the catalog oids a client is shown (`catalog_oids`), the leases of a fleet's proxies and the steps of its `RESHARD`
//! (`fleet`), the shard map recorded in force (`map_record`), and the checks of every primary
//! that `shardgate check --connect` runs (`preflight`).

pub mod catalog_oids;
pub mod causal;
pub mod deadlock;
pub mod directory;
pub mod federation;
pub mod fleet;
pub mod health;
pub mod map_record;
pub mod preflight;
pub mod recovery;
pub mod two_phase;

/// A control-plane task of one shard map's epoch (recovery, the deadlock detector, the
/// catalog reader): dropping it, with its epoch's topology, stops the task.
#[derive(Debug)]
pub struct EpochTask(tokio::task::JoinHandle<()>);

impl Drop for EpochTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

use std::time::Duration;

use tokio_postgres::NoTls;

use crate::config::BackendUri;

/// A control-plane connection. Dropping it ends its connection task at once, even when the
/// server owes it a reply (a tokio-postgres connection would otherwise wait for that reply
/// as long as the server is stopped).
pub(crate) struct ControlConn {
    pub(crate) client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlConn {
    /// Connects with `config` within `timeout`: `Err(None)` when it ran out first.
    pub(crate) async fn open(
        config: &tokio_postgres::Config,
        timeout: Duration,
    ) -> Result<Self, Option<tokio_postgres::Error>> {
        let connect = tokio::time::timeout(timeout, config.connect(NoTls));
        let (client, connection) = connect.await.map_err(|_| None)?.map_err(Some)?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { client, task })
    }

    /// Connects to `uri` as `application_name` within `timeout`; why not, in words.
    pub(crate) async fn connect(
        uri: &BackendUri,
        application_name: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let config = client_config(uri, application_name, timeout);
        Self::open(&config, timeout).await.map_err(|error| {
            error.map_or_else(|| format!("no answer in {timeout:?}"), |e| e.to_string())
        })
    }

    /// The server's `max_prepared_transactions` (0: no two-phase commit there).
    pub(crate) async fn max_prepared_transactions(&self) -> Result<u64, preflight::Unreadable> {
        let row = (self.client)
            .query_one("SHOW max_prepared_transactions", &[])
            .await?;
        let text: String = row.try_get(0)?;
        text.parse()
            .map_err(|_| preflight::Unreadable::NotACount(text))
    }
}

/// A tokio-postgres config for `uri`, named so operators can tell control-plane sessions
/// apart in `pg_stat_activity`.
pub(crate) fn client_config(
    uri: &BackendUri,
    application_name: &str,
    connect_timeout: std::time::Duration,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&uri.host)
        .port(uri.port)
        .user(&uri.user)
        .dbname(&uri.database)
        .application_name(application_name)
        .connect_timeout(connect_timeout);
    if let Some(password) = &uri.password {
        config.password(password);
    }
    config
}
