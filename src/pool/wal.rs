//! How far a server's WAL is known to have gone, for causal replica reads: on a primary, the
//! position that covers every write acknowledged through this proxy; on a replica, what it has
//! replayed. Readers wait here (bounded) for a position; the control plane's prober
//! (`control::causal`) learns positions when someone needs a fresher one.
//!
//! A primary's position covers the writes acknowledged before the probe that read it was
//! sent: the probe asks `pg_current_wal_insert_lsn()`, which is past every commit that has
//! returned. So a write costs nothing (no round trip is added to its acknowledgement, and no
//! probe runs until a read needs one); a read that follows writes waits for the next probe,
//! which all such reads share. Pure state: nothing here connects anywhere.

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

/// One server's WAL position as far as causal reads are concerned.
#[derive(Debug, Default)]
pub struct WalClock {
    state: Mutex<State>,
    /// Wakes readers when the position (or the writes it covers) moved.
    moved: Notify,
    /// Wakes the prober when a reader needs more than is known.
    wanted: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Writes acknowledged to clients through this proxy (a primary's), counted.
    acked: u64,
    /// How many of those the known position covers.
    covered: u64,
    /// The highest WAL position known: inserted (a primary), replayed (a replica).
    lsn: u64,
    /// Readers waiting for more than is known.
    waiting: usize,
    /// A position readers asked for without waiting (they read elsewhere meanwhile).
    wanted: u64,
    /// Acknowledgements readers asked to have covered (a primary's).
    wanted_covered: u64,
    /// Probes started, and the newest one that answered (by the order they started).
    probes_started: u64,
    probes_done: u64,
    /// A probe readers wait for: one started after they began (`global` reads).
    wanted_probe: u64,
}

/// A probe on its way: what it will cover when it answers.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    id: u64,
    covered: u64,
}

impl WalClock {
    /// A write on this primary was acknowledged to its client (no probe yet: the next read
    /// that needs it asks for one).
    pub fn write_acked(&self) {
        self.lock().acked += 1;
    }

    /// For the prober: a probe is about to be sent; it covers the writes acknowledged so far.
    pub fn probe_starting(&self) -> Probe {
        let mut state = self.lock();
        state.probes_started += 1;
        Probe {
            id: state.probes_started,
            covered: state.acked,
        }
    }

    /// `probe` found the server at `lsn`.
    pub fn learned(&self, probe: Probe, lsn: u64) {
        let mut state = self.lock();
        state.covered = state.covered.max(probe.covered);
        state.probes_done = state.probes_done.max(probe.id);
        state.lsn = state.lsn.max(lsn);
        drop(state);
        self.moved.notify_waiters();
    }

    /// A check or probe of a replica found it had replayed `lsn`.
    pub fn observed(&self, lsn: u64) {
        let mut state = self.lock();
        state.lsn = state.lsn.max(lsn);
        drop(state);
        self.moved.notify_waiters();
    }

    /// The server's position as learnt by a probe started after this call (so past every
    /// commit that returned before it, whoever made it); `None` if none answered by
    /// `deadline`. Concurrent callers share the probe.
    pub async fn current(&self, deadline: Instant) -> Option<u64> {
        let needed = {
            let mut state = self.lock();
            let needed = state.probes_started + 1;
            state.wanted_probe = state.wanted_probe.max(needed);
            needed
        };
        self.wait(deadline, |s| (s.probes_done >= needed).then_some(s.lsn))
            .await
    }

    /// The position covering every write acknowledged so far, if a probe has learnt it (one
    /// lock: the common case of a read with no write since the last probe). Otherwise asks
    /// the prober for one, and returns the acknowledgements it must cover.
    pub fn covering_now(&self) -> Result<u64, u64> {
        let mut state = self.lock();
        if state.covered >= state.acked {
            return Ok(state.lsn);
        }
        let needed = state.acked;
        if state.wanted_covered < needed {
            state.wanted_covered = needed;
            drop(state);
            self.wanted.notify_one();
        }
        Err(needed)
    }

    /// The position covering every write acknowledged before this call, once a probe has
    /// learnt it; `None` if none did by `deadline`.
    pub async fn covering(&self, deadline: Instant) -> Option<u64> {
        let needed = match self.covering_now() {
            Ok(lsn) => return Some(lsn),
            Err(needed) => needed,
        };
        self.wait(deadline, |s| (s.covered >= needed).then_some(s.lsn))
            .await
    }

    /// Whether the position reaches `lsn` by `deadline`.
    pub async fn reaches(&self, lsn: u64, deadline: Instant) -> bool {
        self.wait(deadline, |s| (s.lsn >= lsn).then_some(()))
            .await
            .is_some()
    }

    /// Asks the prober to learn whether the position reached `lsn`, without waiting for it:
    /// a read that went elsewhere meanwhile, so that later ones find the answer.
    pub fn want(&self, lsn: u64) {
        let mut state = self.lock();
        if lsn > state.lsn && lsn > state.wanted {
            state.wanted = lsn;
            drop(state);
            self.wanted.notify_one();
        }
    }

    /// Whether the position is known to be at `lsn` or past it, without waiting.
    pub fn has_reached(&self, lsn: u64) -> bool {
        self.lock().lsn >= lsn
    }

    /// For the prober: until someone needs a fresher position.
    pub async fn until_wanted(&self) {
        self.wanted.notified().await;
    }

    /// For the prober: whether readers wait, or asked for a position (or for acknowledged
    /// writes to be covered) that is not known yet.
    pub fn is_wanted(&self) -> bool {
        let state = self.lock();
        state.waiting > 0
            || state.wanted_covered > state.covered
            || state.wanted > state.lsn
            || state.wanted_probe > state.probes_done
    }

    async fn wait<T>(&self, deadline: Instant, done: impl Fn(&State) -> Option<T>) -> Option<T> {
        let _waiting = Waiting::new(self);
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if let Some(value) = done(&self.lock()) {
                return Some(value);
            }
            self.wanted.notify_one();
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return done(&self.lock());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a reader as waiting for as long as it exists (its wait may be dropped mid-way).
struct Waiting<'a>(&'a WalClock);

impl<'a> Waiting<'a> {
    fn new(clock: &'a WalClock) -> Self {
        clock.lock().waiting += 1;
        Waiting(clock)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_read_after_a_write_waits_for_a_probe_sent_after_it() {
        let clock = Arc::new(WalClock::default());
        assert_eq!(
            clock.covering(soon()).await,
            Some(0),
            "no write: nothing to wait for"
        );
        clock.write_acked();
        assert!(!clock.is_wanted(), "no probe until a read needs one");
        assert_eq!(clock.covering_now(), Err(1));
        assert!(clock.is_wanted());
        let reader = tokio::spawn({
            let clock = clock.clone();
            async move { clock.covering(soon()).await }
        });
        // A probe sent before the write was acknowledged does not cover it.
        let early = Probe { id: 1, covered: 0 };
        clock.learned(early, 100);
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        let probe = clock.probe_starting();
        clock.learned(probe, 120);
        assert_eq!(reader.await.unwrap(), Some(120));
        assert!(!clock.is_wanted());
    }

    #[tokio::test]
    async fn a_global_read_waits_for_a_probe_started_after_it_began() {
        let clock = Arc::new(WalClock::default());
        let before = clock.probe_starting();
        let reader = tokio::spawn({
            let clock = clock.clone();
            async move { clock.current(soon()).await }
        });
        tokio::task::yield_now().await;
        clock.learned(before, 10);
        tokio::task::yield_now().await;
        assert!(
            !reader.is_finished(),
            "a probe started before the read does not do"
        );
        assert!(clock.is_wanted());
        let after = clock.probe_starting();
        clock.learned(after, 20);
        assert_eq!(reader.await.unwrap(), Some(20));
        assert!(!clock.is_wanted());
    }

    #[test]
    fn a_position_wanted_without_waiting_keeps_the_prober_asking_until_it_is_reached() {
        let clock = WalClock::default();
        clock.observed(100);
        clock.want(90);
        assert!(!clock.is_wanted(), "already reached");
        clock.want(150);
        assert!(clock.is_wanted());
        clock.observed(149);
        assert!(clock.is_wanted());
        clock.observed(150);
        assert!(!clock.is_wanted());
    }

    #[tokio::test]
    async fn waits_end_at_their_deadline_and_leave_no_waiter_behind() {
        let clock = WalClock::default();
        clock.write_acked();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(clock.covering(deadline).await, None);
        let probe = clock.probe_starting();
        clock.learned(probe, 50);
        assert!(
            !clock.is_wanted(),
            "the timed-out reader is no longer waiting"
        );
        assert!(
            !clock
                .reaches(60, Instant::now() + Duration::from_millis(5))
                .await
        );
        clock.observed(70);
        assert!(clock.reaches(60, soon()).await && clock.has_reached(70));
    }
}
