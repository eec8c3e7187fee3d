//! Who may start a session: the per-user connection limit, logins during shutdown, and the
//! per-session limits each admitted client is given.
//!
//! Part of the frontend stage. [`Admission`] owns the state shared by every connection of a
//! proxy for these limits (per-user connection counts, per-user statement buckets, the
//! lifecycle phase). It decides at login only; what happens inside a session is the
//! session's `limits` module.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::backend::CancelSlot;
use crate::config::Limits;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::session::{Phase, SessionLimits, StatementTimer, UserRates};

/// Login-time limits and the state they share across connections.
pub struct Admission {
    limits: Limits,
    per_user: Mutex<HashMap<String, usize>>,
    rates: Option<UserRates>,
    phase: watch::Sender<Phase>,
}

/// A user's place among its connections; dropping it frees the place.
pub struct UserSlot<'a> {
    admission: &'a Admission,
    user: String,
}

impl Admission {
    /// Admission under `limits`, in the `Serving` phase.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limits: limits.clone(),
            per_user: Mutex::default(),
            rates: limits.rate_limit.map(UserRates::new),
            phase: watch::channel(Phase::Serving).0,
        }
    }

    /// The lifecycle phase every session watches; the proxy moves it on at shutdown.
    pub fn phase(&self) -> &watch::Sender<Phase> {
        &self.phase
    }

    /// Lets `user` in, or says why not: the proxy is shutting down (57P03, as PostgreSQL
    /// answers logins then), or the user has `max_connections_per_user` sessions already
    /// (53300, PostgreSQL's wording for a role's connection limit).
    pub fn admit(&self, user: &str) -> Result<UserSlot<'_>, ErrorReport> {
        if *self.phase.borrow() != Phase::Serving {
            return Err(ErrorReport::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                Blame::Proxy,
                "the database system is shutting down",
            ));
        }
        let mut per_user = self.lock();
        let count = per_user.entry(user.to_owned()).or_insert(0);
        if self
            .limits
            .max_connections_per_user
            .is_some_and(|limit| *count >= limit)
        {
            return Err(ErrorReport::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                Blame::Client,
                format!("too many connections for role \"{user}\""),
            ));
        }
        *count += 1;
        Ok(UserSlot {
            admission: self,
            user: user.to_owned(),
        })
    }

    /// Sessions `user` has open right now.
    #[cfg(test)]
    pub fn user_connections(&self, user: &str) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }

    /// Sessions open right now, every user's together. Unlike the connection count it leaves
    /// out connections still in startup, which a shutdown need not wait for: they are refused
    /// when they get here.
    pub fn sessions(&self) -> usize {
        self.lock().values().sum()
    }

    /// The limits a session of `user` runs under; its statement timer cancels through `slot`.
    pub fn session_limits(&self, user: &str, slot: CancelSlot) -> SessionLimits {
        SessionLimits {
            idle_in_transaction_timeout: self.limits.idle_in_transaction_timeout,
            client_idle_timeout: self.limits.client_idle_timeout,
            rate: self.rates.as_ref().map(|rates| rates.for_user(user)),
            phase: self.phase.subscribe(),
            timer: StatementTimer::new(self.limits.statement_timeout, slot),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.per_user.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        let mut per_user = self.admission.lock();
        if let Some(count) = per_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(per_user: Option<usize>) -> Limits {
        Limits {
            max_message_bytes: 1 << 20,
            startup_timeout: Duration::from_secs(1),
            max_client_connections: 100,
            max_merge_bytes: 1 << 20,
            max_statement_bytes: 1 << 20,
            max_connections_per_user: per_user,
            statement_timeout: None,
            idle_in_transaction_timeout: None,
            client_idle_timeout: None,
            rate_limit: None,
        }
    }

    #[test]
    fn a_user_over_its_limit_is_refused_until_one_leaves() {
        let admission = Admission::new(&limits(Some(2)));
        let first = admission.admit("a").unwrap();
        let _second = admission.admit("a").unwrap();
        let refused = admission.admit("a").err().unwrap();
        assert_eq!(refused.code, "53300");
        assert_eq!(refused.message, "too many connections for role \"a\"");
        assert!(admission.admit("b").is_ok(), "other users are not counted");
        assert_eq!(admission.sessions(), 2, "b's slot was dropped at once");
        drop(first);
        assert_eq!(admission.user_connections("a"), 1);
        assert!(admission.admit("a").is_ok());
    }

    #[test]
    fn no_logins_once_shutdown_starts() {
        let admission = Admission::new(&limits(None));
        assert!(admission.admit("a").is_ok());
        admission.phase().send_replace(Phase::Draining);
        assert_eq!(admission.admit("a").err().unwrap().code, "57P03");
    }
}
