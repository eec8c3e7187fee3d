//! Server health on the control plane: a task per replica that asks it, every
//! `replicas.check_interval`, whether it is still a replica and how far behind it is, and a
//! task per primary that reads its WAL position, through bb8-postgres, recorded in the pool's
//! [`ServerHealth`].
//!
//! A replica that cannot be reached, was promoted, or lags more than `replicas.max_lag` is taken
//! out of read rotation until a check finds it fit again; clients never wait for a check. The
//! task ends when the pool it reports to is gone (its topology was replaced without it). It
//! never touches the row path.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;

use crate::config::{BackendUri, ReplicaSettings};
use crate::pool::{Observed, ServerHealth, Verdict};

/// How far behind a replica is and where it is, in one round trip. Lag is 0 while it has
/// replayed everything it received (an idle primary sends nothing, which is not lag).
const CHECK_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_last_wal_receive_lsn() IS NULL \
            OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
          ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
     END::float8, \
     (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::text";

/// Where a primary's WAL is: with a replica's replayed position, this tells whether the
/// replica has a session's writes.
const PRIMARY_SQL: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text";

/// Which kind of server a watcher checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Read replica: recovery, lag, replayed position.
    Replica,
    /// Primary: its WAL position only.
    Primary,
}

/// Starts watching the server at `uri` for as long as `health` is alive. Needs a tokio
/// runtime; without one (command-line tools that build a topology) nothing is watched.
pub fn watch(
    watched: Watched,
    endpoint: Arc<str>,
    uri: &BackendUri,
    health: &Arc<ServerHealth>,
    settings: &ReplicaSettings,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let timeout = settings
        .check_interval
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let config = super::client_config(uri, "shardgate health", timeout);
    let pool = bb8::Pool::builder()
        .max_size(1)
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build_unchecked(PostgresConnectionManager::new(config, NoTls));
    let watcher = Watcher {
        watched,
        endpoint,
        pool,
        health: Arc::downgrade(health),
        settings: settings.clone(),
    };
    runtime.spawn(watcher.run());
}

struct Watcher {
    watched: Watched,
    endpoint: Arc<str>,
    pool: bb8::Pool<PostgresConnectionManager<NoTls>>,
    health: Weak<ServerHealth>,
    settings: ReplicaSettings,
}

impl Watcher {
    async fn run(self) {
        let mut ticks = tokio::time::interval(self.settings.check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let observed = self.check().await;
            let Some(health) = self.health.upgrade() else {
                return; // The pool is gone.
            };
            let before = health.last().map(|o| o.verdict);
            let kind = |v: &Verdict| std::mem::discriminant(v);
            if before.as_ref().map(kind) != Some(kind(&observed.verdict)) {
                self.log_change(before.as_ref(), &observed.verdict);
            }
            health.record(observed);
        }
    }

    async fn check(&self) -> Observed {
        let at = Instant::now();
        let (verdict, lsn) = match self.query().await {
            Ok((_, _, lsn)) if self.watched == Watched::Primary => (Verdict::Healthy, lsn),
            Ok((false, _, lsn)) => (Verdict::NotInRecovery, lsn),
            Ok((true, lag, lsn)) if lag > self.settings.max_lag => (Verdict::Lagging(lag), lsn),
            Ok((true, _, lsn)) => (Verdict::Healthy, lsn),
            Err(why) => (Verdict::Unreachable(why), None),
        };
        Observed { at, verdict, lsn }
    }

    async fn query(&self) -> Result<(bool, Duration, Option<u64>), String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        if self.watched == Watched::Primary {
            let row = (client.query_one(PRIMARY_SQL, &[]).await).map_err(describe)?;
            let lsn: Option<String> = row.get(0);
            return Ok((false, Duration::ZERO, lsn.and_then(|t| t.parse().ok())));
        }
        let row = (client.query_one(CHECK_SQL, &[]).await).map_err(describe)?;
        let in_recovery: bool = row.get(0);
        let lag: f64 = row.get(1);
        let lsn: Option<String> = row.get(2);
        let lag = Duration::try_from_secs_f64(lag.max(0.0)).unwrap_or(Duration::MAX);
        Ok((in_recovery, lag, lsn.and_then(|text| text.parse().ok())))
    }

    fn log_change(&self, before: Option<&Verdict>, now: &Verdict) {
        let endpoint = &*self.endpoint;
        if self.watched == Watched::Primary {
            // A primary's reachability is the pool's business; only its position is read here.
            return tracing::debug!(endpoint, verdict = ?now, "primary checked");
        }
        match now {
            Verdict::Healthy if before.is_some() => {
                tracing::info!(endpoint, "replica is healthy again and serves reads");
            }
            Verdict::Healthy => tracing::debug!(endpoint, "replica is healthy"),
            unfit => tracing::warn!(endpoint, verdict = ?unfit, "replica taken out of reads"),
        }
    }
}

/// A check failure in words: the server's own message when it sent one.
fn describe(error: tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}
