//! What the control plane last saw of a server, read on every replica checkout.
//!
//! The checker (`control::health`) writes an [`Observed`] after each check; a pool whose
//! replica is unreachable, promoted or lagging stops serving reads until a later check finds
//! it healthy again. Primaries are watched for their WAL position, which tells when a
//! replica has replayed a session's writes (read-your-writes without a round trip per
//! write). A check that got no reply in time marks the server as stopped answering, which
//! wakes the work waiting on it (see [`Liveness`]). Pure state: nothing here connects anywhere.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Liveness;

/// The last check of one server, the WAL positions of its recent checks, and whether it
/// stopped answering.
#[derive(Debug)]
pub struct ServerHealth {
    checks: Mutex<Checks>,
    /// True from a check that got no reply until one that did.
    stopped: watch::Sender<bool>,
    /// Its WAL position as causal reads need it (see `pool::wal`).
    wal: super::WalClock,
}

impl Default for ServerHealth {
    fn default() -> Self {
        Self {
            checks: Mutex::default(),
            stopped: watch::Sender::new(false),
            wal: super::WalClock::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Checks {
    last: Option<Observed>,
    /// (when, WAL position) of recent checks, oldest first, for [`ServerHealth::lsn_as_of`].
    positions: std::collections::VecDeque<(Instant, u64)>,
}

/// Checks whose positions are remembered (a few lag bounds' worth at the usual interval).
const POSITIONS_KEPT: usize = 128;

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// When its query was sent: the WAL position it reports is at least the server's at
    /// that moment.
    pub at: Instant,
    /// What it found.
    pub verdict: Verdict,
    /// WAL position: replayed (`pg_last_wal_replay_lsn`) by a replica, inserted
    /// (`pg_current_wal_insert_lsn`, past every commit that has returned, even with
    /// `synchronous_commit = off`) by a primary; `None` if it did not say.
    pub lsn: Option<u64>,
    /// A replica's replay lag at this check (see `control::health`); `None` for a primary or a
    /// failed check.
    pub lag: Option<Duration>,
}

/// Whether a replica may serve reads, and why not.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Reachable, in recovery, within the lag bound.
    Healthy,
    /// Could not be queried.
    Unreachable(String),
    /// Connected (or not) but did not answer the check within its timeout (the value): a
    /// stopped or wedged server. Work waiting on it is abandoned.
    Hung(Duration),
    /// `pg_is_in_recovery()` is false: it was promoted, or is not a replica at all.
    NotInRecovery,
    /// Replaying this far behind its primary.
    Lagging(Duration),
}

impl ServerHealth {
    /// Records a check; a [`Verdict::Hung`] one wakes every [`Liveness`] of the server.
    pub fn record(&self, observed: Observed) {
        let hung = matches!(observed.verdict, Verdict::Hung(_));
        self.stopped.send_if_modified(|stopped| {
            let changed = *stopped != hung;
            *stopped = hung;
            changed
        });
        let mut checks = self.lock();
        if let Some(lsn) = observed.lsn {
            if checks.positions.len() >= POSITIONS_KEPT {
                checks.positions.pop_front();
            }
            checks.positions.push_back((observed.at, lsn));
        }
        checks.last = Some(observed);
    }

    /// Its WAL position as causal reads need it.
    pub fn wal(&self) -> &super::WalClock {
        &self.wal
    }

    /// The last check, if any.
    pub fn last(&self) -> Option<Observed> {
        self.lock().last.clone()
    }

    /// The WAL position of the last check sent at or before `moment`: everything the server
    /// had written by then is at or below it (`None` if no check is that old).
    pub fn lsn_as_of(&self, moment: Instant) -> Option<u64> {
        let checks = self.lock();
        let before = checks.positions.iter().rev().find(|(at, _)| *at <= moment);
        before.map(|(_, lsn)| *lsn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A subscription for work about to wait on the server (`endpoint` names it in errors).
    pub fn liveness(&self, endpoint: Arc<str>) -> Liveness {
        Liveness::new(self.stopped.subscribe(), endpoint)
    }

    /// Whether the last check got no reply in time: no new work should be sent there.
    pub fn is_hung(&self) -> bool {
        *self.stopped.borrow()
    }

    /// The primary's WAL position as first seen by a check sent after `moment`: every commit
    /// completed before `moment` is at or below it. `None` until such a check ran.
    pub fn lsn_after(&self, moment: Instant) -> Option<u64> {
        let last = self.last()?;
        (last.at > moment).then_some(last.lsn).flatten()
    }

    /// Whether the replica had replayed up to `lsn` at its last check.
    pub fn replayed(&self, lsn: u64) -> bool {
        self.last()
            .and_then(|o| o.lsn)
            .is_some_and(|replayed| replayed >= lsn)
    }

    /// Whether the last check reached the server and found it in its role (a lagging replica
    /// is up; `false` before the first check, so readiness waits for one).
    pub fn is_up(&self) -> bool {
        let checks = self.lock();
        let verdict = checks.last.as_ref().map(|o| &o.verdict);
        matches!(verdict, Some(Verdict::Healthy | Verdict::Lagging(_)))
    }

    /// A replica's replay lag at its last check.
    pub fn lag(&self) -> Option<Duration> {
        self.lock().last.as_ref().and_then(|o| o.lag)
    }

    /// False when the last check found the replica unfit; true before the first check (the
    /// pool's breaker still protects clients from an unreachable server).
    pub fn serves_reads(&self) -> bool {
        let checks = self.lock();
        checks
            .last
            .as_ref()
            .is_none_or(|o| o.verdict == Verdict::Healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_healthy_or_unchecked_replica_serves_reads() {
        let health = ServerHealth::default();
        assert!(health.serves_reads());
        let observe = |verdict| Observed {
            at: Instant::now(),
            verdict,
            lsn: None,
            lag: None,
        };
        health.record(observe(Verdict::Lagging(Duration::from_secs(30))));
        assert!(!health.serves_reads());
        health.record(observe(Verdict::NotInRecovery));
        assert!(!health.serves_reads());
        health.record(observe(Verdict::Healthy));
        assert!(health.serves_reads());
    }

    #[tokio::test]
    async fn a_check_without_reply_wakes_the_work_waiting_on_the_server_until_one_answers() {
        let health = ServerHealth::default();
        let mut waiting = health.liveness("app/s0 primary".into());
        let observe = |verdict| Observed {
            at: Instant::now(),
            verdict,
            lsn: None,
            lag: None,
        };
        health.record(observe(Verdict::Unreachable("refused".into())));
        assert!(!health.is_hung(), "a refusal is an answer");
        health.record(observe(Verdict::Hung(Duration::from_secs(2))));
        assert!(health.is_hung() && !health.is_up() && !health.serves_reads());
        tokio::time::timeout(Duration::from_secs(5), waiting.stopped())
            .await
            .expect("the waiter wakes");
        health.record(observe(Verdict::Healthy));
        assert!(!health.is_hung() && !waiting.is_stopped());
    }

    #[test]
    fn a_replica_is_fresh_for_a_write_once_it_replayed_past_a_later_primary_position() {
        let (primary, replica) = (ServerHealth::default(), ServerHealth::default());
        let wrote = Instant::now();
        assert_eq!(primary.lsn_after(wrote), None, "no check since the write");
        let seen = |lsn| Observed {
            at: Instant::now(),
            verdict: Verdict::Healthy,
            lsn: Some(lsn),
            lag: None,
        };
        #[allow(clippy::disallowed_methods)] // a plain test thread, no runtime
        std::thread::sleep(Duration::from_millis(2));
        primary.record(seen(500));
        assert_eq!(primary.lsn_after(wrote), Some(500));
        replica.record(seen(499));
        assert!(!replica.replayed(500));
        replica.record(seen(500));
        assert!(replica.replayed(500));
        assert_eq!(primary.lsn_as_of(wrote), None, "no check that old");
        assert_eq!(primary.lsn_as_of(Instant::now()), Some(500));
    }
}
