//! Server health on the control plane: a task per replica that asks it, every
//! `replicas.check_interval`, whether it is still a replica and how far behind it is, and a
//! task per primary that reads its WAL position, over one tokio-postgres connection each,
//! recorded in the pool's [`ServerHealth`].
//!
//! A replica that cannot be reached, was promoted, or lags more than `replicas.max_lag` is taken
//! out of read rotation until a check finds it fit again; clients never wait for a check. A
//! check's query is bounded by `replicas.check_timeout`, and opening its connection (kept
//! between checks, dropped after a failure) by `pool.connect_timeout`: a stopped server's
//! kernel still completes TCP handshakes, so only a reply is proof of life. A check without
//! one marks the server [`Verdict::Hung`], which also wakes the statements waiting on it
//! (see `pool::Liveness`). So a server that stops answering is marked within
//! `check_interval + check_timeout`: a check in flight when it stops times out
//! `check_timeout` after it began; otherwise the next one begins within `check_interval`
//! (`check_interval + connect_timeout` if it stops while its check connection is reopened).
//! The task ends when the pool it reports to is gone (its topology was replaced without it).
//! It never touches the row path.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::ControlConn;

use crate::config::{BackendUri, ReplicaSettings};
use crate::pool::{Observed, ServerHealth, Verdict};

/// Whether a replica is one, and how far it has received and replayed the primary's WAL, in
/// one round trip. Its lag is how long ago it had received WAL it still has not replayed
/// (see [`Received`]), not the age of its last replayed commit: a quiet primary still writes
/// WAL (checkpoints) that carries no commit, and an idle primary sends nothing.
const CHECK_SQL: &str = "SELECT pg_is_in_recovery(), \
     (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::text, \
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
    connect_timeout: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let config = super::client_config(uri, "shardgate health", connect_timeout);
    let watcher = Watcher {
        received: Received::default(),
        watched,
        endpoint,
        config,
        connect_timeout,
        conn: None,
        health: Arc::downgrade(health),
        settings: settings.clone(),
    };
    runtime.spawn(watcher.run());
}

/// WAL positions a replica reported as received, with when: the oldest one still ahead of
/// what it has replayed tells how far behind it is.
#[derive(Debug, Default)]
struct Received(std::collections::VecDeque<(Instant, u64)>);

impl Received {
    /// Records a check at `at` and returns the replica's lag: how long ago it had already
    /// received WAL it has not replayed by now (zero when it replayed all it had).
    fn lag(&mut self, at: Instant, received: u64, replayed: u64, keep: Duration) -> Duration {
        self.0
            .retain(|(seen, lsn)| *lsn > replayed && at.duration_since(*seen) <= keep);
        if received > replayed && self.0.back().is_none_or(|(_, lsn)| *lsn < received) {
            self.0.push_back((at, received));
        }
        self.0
            .front()
            .map_or(Duration::ZERO, |(seen, _)| at.duration_since(*seen))
    }
}

struct Watcher {
    received: Received,
    watched: Watched,
    endpoint: Arc<str>,
    config: tokio_postgres::Config,
    /// How long opening `conn` may take.
    connect_timeout: Duration,
    /// Kept between checks; dropped after any failed one, so a check never queues behind a
    /// reply an earlier one is still owed.
    conn: Option<ControlConn>,
    health: Weak<ServerHealth>,
    settings: ReplicaSettings,
}

impl Watcher {
    async fn run(mut self) {
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
            if let (Watched::Replica, Some(replayed)) = (self.watched, observed.lsn) {
                health.wal().observed(replayed);
            }
            health.record(observed);
        }
    }

    async fn check(&mut self) -> Observed {
        let at = Instant::now();
        let replica = self.watched == Watched::Replica;
        let answer = self.query(at).await;
        if answer.is_err() {
            self.conn = None;
        }
        let (verdict, lsn, lag) = match answer {
            Ok((_, _, lsn)) if !replica => (Verdict::Healthy, lsn, None),
            Ok((false, _, lsn)) => (Verdict::NotInRecovery, lsn, None),
            Ok((true, lag, lsn)) if lag > self.settings.max_lag => {
                (Verdict::Lagging(lag), lsn, Some(lag))
            }
            Ok((true, lag, lsn)) => (Verdict::Healthy, lsn, Some(lag)),
            Err(Failure::Error(why)) => (Verdict::Unreachable(why), None, None),
            Err(Failure::NoReply(waited)) => (Verdict::Hung(waited), None, None),
        };
        Observed {
            at,
            verdict,
            lsn,
            lag,
        }
    }

    /// The connection, opened if there is none (within `pool.connect_timeout`, as data
    /// connections: a login costs a SCRAM round of CPU on both sides).
    async fn client(&mut self) -> Result<&tokio_postgres::Client, Failure> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.open().await?,
        };
        Ok(&self.conn.insert(conn).client)
    }

    async fn open(&self) -> Result<ControlConn, Failure> {
        let limit = self.connect_timeout;
        let opened = ControlConn::open(&self.config, limit).await;
        opened.map_err(|e| e.map_or(Failure::NoReply(limit), describe))
    }

    async fn query(&mut self, at: Instant) -> Result<(bool, Duration, Option<u64>), Failure> {
        let (watched, limit) = (self.watched, self.settings.check_timeout);
        let client = self.client().await?;
        if watched == Watched::Primary {
            let row = ask(client, PRIMARY_SQL, limit).await?;
            let lsn: Option<String> = row.get(0);
            return Ok((false, Duration::ZERO, lsn.and_then(|t| t.parse().ok())));
        }
        let row = ask(client, CHECK_SQL, limit).await?;
        let in_recovery: bool = row.get(0);
        let position = |index: usize| row.get::<_, Option<String>>(index)?.parse().ok();
        let (received, replayed): (Option<u64>, Option<u64>) = (position(1), position(2));
        // Not streaming (archive recovery): nothing says it lags.
        let keep = self.settings.max_lag * 4;
        let lag = match (received, replayed) {
            (Some(received), Some(replayed)) => self.received.lag(at, received, replayed, keep),
            _ => Duration::ZERO,
        };
        Ok((in_recovery, lag, replayed))
    }

    fn log_change(&self, before: Option<&Verdict>, now: &Verdict) {
        let endpoint = &*self.endpoint;
        if let Verdict::Hung(waited) = now {
            return tracing::warn!(
                endpoint,
                ?waited,
                "server stopped answering its health check; its work is abandoned and it takes no new work"
            );
        }
        if matches!(before, Some(Verdict::Hung(_))) {
            tracing::info!(endpoint, "server answers its health check again");
        }
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

/// Runs a check's query; no reply within `limit` is a failure of its own kind.
async fn ask(
    client: &tokio_postgres::Client,
    sql: &str,
    limit: Duration,
) -> Result<tokio_postgres::Row, Failure> {
    match tokio::time::timeout(limit, client.query_one(sql, &[])).await {
        Ok(row) => row.map_err(describe),
        Err(_) => Err(Failure::NoReply(limit)),
    }
}

/// Why a check failed.
enum Failure {
    /// An answer that is an error: refused, closed, not allowed (the server is alive or gone).
    Error(String),
    /// No answer within the check timeout.
    NoReply(Duration),
}

/// A check failure in words: the server's own message when it sent one.
fn describe(error: tokio_postgres::Error) -> Failure {
    Failure::Error(match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_wal_received_and_not_replayed() {
        let mut received = Received::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let keep = Duration::from_secs(60);
        // Caught up: no lag, however old the last commit.
        assert_eq!(received.lag(at(0), 100, 100, keep), Duration::ZERO);
        // WAL arrives and is replayed before the next check: never lag.
        assert_eq!(received.lag(at(1000), 200, 150, keep), Duration::ZERO);
        assert_eq!(received.lag(at(2000), 200, 200, keep), Duration::ZERO);
        // Replay stalls: the lag grows from when the unreplayed WAL was first seen.
        assert_eq!(received.lag(at(3000), 300, 200, keep), Duration::ZERO);
        assert_eq!(
            received.lag(at(4000), 400, 200, keep),
            Duration::from_secs(1)
        );
        assert_eq!(
            received.lag(at(5000), 400, 300, keep),
            Duration::from_secs(1)
        );
        assert_eq!(received.lag(at(6000), 400, 400, keep), Duration::ZERO);
    }
}
