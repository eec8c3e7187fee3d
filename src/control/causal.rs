//! Probes that keep the WAL positions causal reads wait on fresh (see `pool::wal`): a task per
//! server, idle until a reader needs more than is known.
//!
//! On a primary it asks `pg_current_wal_insert_lsn()` when a read needs a position covering
//! writes acknowledged since its last answer (never for writes alone), and records which
//! acknowledgements the answer covers; all the reads waiting then share that one probe. On a replica it asks
//! `pg_last_wal_replay_lsn()` while reads want a fresher position, at most every
//! [`REPLAY_POLL`] (back to back, the probes cost the 2-core test machine about a tenth of its
//! throughput in one run: see `bench/RESULTS.md`), so the health check's interval is never the
//! floor of a read after a write.
//! Each task keeps one tokio-postgres connection, reopened after a failure; a query that gets
//! no reply within `replicas.check_timeout` counts as one. A failed probe leaves the position
//! where it was: the readers waiting on it run out their `reads.causal_wait` and read the
//! primary. The task ends when the pool it reports to is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::ControlConn;
use super::health::Watched;
use crate::config::BackendUri;
use crate::pool::ServerHealth;

/// Where a primary's WAL is: past every commit that has returned.
const PRIMARY_SQL: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text";

/// What a replica has replayed (NULL on a server that is not one).
const REPLICA_SQL: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::text";

/// How often a replica is asked while reads want a fresher position (the timer's grain).
const REPLAY_POLL: Duration = Duration::from_millis(1);

/// After a failed probe, the next one waits this long (the server may be down for a while).
const AFTER_FAILURE: Duration = Duration::from_millis(200);

/// Starts probing the server at `uri` for as long as `health` is alive (needs a tokio runtime;
/// command-line tools without one probe nothing).
pub fn probe(
    watched: Watched,
    uri: &BackendUri,
    health: &Arc<ServerHealth>,
    connect_timeout: Duration,
    query_timeout: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let prober = Prober {
        watched,
        config: super::client_config(uri, "shardgate causal", connect_timeout),
        connect_timeout,
        query_timeout,
        health: Arc::downgrade(health),
        client: None,
    };
    runtime.spawn(prober.run());
}

struct Prober {
    watched: Watched,
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    query_timeout: Duration,
    health: Weak<ServerHealth>,
    client: Option<ControlConn>,
}

impl Prober {
    async fn run(mut self) {
        // Connected before the first read needs a position, so that read waits for one query.
        let _ = self.client().await;
        loop {
            let Some(health) = self.health.upgrade() else {
                return;
            };
            if !health.wal().is_wanted() {
                // Wakes at least every second, so a replaced pool's task ends soon after it.
                let wanted = async { health.wal().until_wanted().await };
                let idle = tokio::time::timeout(Duration::from_secs(1), wanted);
                drop(idle.await);
                continue;
            }
            let probe = health.wal().probe_starting();
            match self.position().await {
                Some(lsn) if self.watched == Watched::Primary => {
                    health.wal().learned(probe, lsn);
                }
                Some(lsn) => {
                    health.wal().observed(lsn);
                    tokio::time::sleep(REPLAY_POLL).await;
                }
                None => {
                    self.client = None;
                    tokio::time::sleep(AFTER_FAILURE).await;
                }
            }
        }
    }

    /// The server's position, or `None` if it could not be had in time.
    async fn position(&mut self) -> Option<u64> {
        let sql = match self.watched {
            Watched::Primary => PRIMARY_SQL,
            Watched::Replica => REPLICA_SQL,
        };
        let limit = self.query_timeout;
        let client = self.client().await?;
        let row = tokio::time::timeout(limit, client.query_one(sql, &[]));
        let row = row.await.ok()?.ok()?;
        let text: Option<String> = row.get(0);
        text?.parse().ok()
    }

    async fn client(&mut self) -> Option<&tokio_postgres::Client> {
        if self.client.is_none() {
            let config = &self.config;
            self.client = ControlConn::open(config, self.connect_timeout).await.ok();
        }
        self.client.as_ref().map(|c| &c.client)
    }
}
