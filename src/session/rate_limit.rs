//! Per-user statement rate limits: one token bucket per user name, shared by every connection
//! of that user.
//!
//! Part of the session stage. The bucket is pure arithmetic over instants the caller passes
//! in, so it is tested without clocks; [`UserRates`] hands each session the shared bucket of
//! its user. It never sleeps or queues a statement: a statement over the limit is refused at
//! once, so a client that floods the proxy cannot build up work in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::RateLimit;
use crate::error::{Blame, ErrorReport, sqlstate};

/// A token bucket: holds up to `burst` tokens, refilled continuously at `rate` per second;
/// each statement takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket: a user that was quiet may run `burst` statements at once.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let burst = f64::from(limit.burst.max(1));
        Self {
            rate: limit.statements_per_second,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes a token if one is available at `now`. An instant earlier than the last one seen
    /// (another connection's clock read raced ours) adds nothing rather than going backwards.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if let Some(elapsed) = now.checked_duration_since(self.refilled_at) {
            self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
            self.refilled_at = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One user's bucket, shared by all of that user's sessions.
#[derive(Debug)]
pub struct UserRate {
    user: String,
    limit: RateLimit,
    bucket: Mutex<TokenBucket>,
}

impl UserRate {
    /// Lets one statement through, or says why not (ERROR 53400: the session goes on, and the
    /// client may retry once the bucket refills).
    pub fn admit(&self) -> Result<(), ErrorReport> {
        let admitted =
            (self.bucket.lock().unwrap_or_else(|e| e.into_inner())).try_take(Instant::now());
        if admitted {
            return Ok(());
        }
        Err(ErrorReport::error(
            sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
            Blame::Client,
            format!(
                "rate limit exceeded for user \"{}\": {} statements per second",
                self.user, self.limit.statements_per_second
            ),
        ))
    }
}

/// Every user's bucket, created on the user's first login. Users come from the config, so the
/// map is bounded by it.
#[derive(Debug)]
pub struct UserRates {
    limit: RateLimit,
    users: Mutex<HashMap<String, Arc<UserRate>>>,
}

impl UserRates {
    /// Buckets of `limit` for every user.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            users: Mutex::default(),
        }
    }

    /// The bucket `user`'s sessions share.
    pub fn for_user(&self, user: &str) -> Arc<UserRate> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let rate = users.entry(user.to_owned()).or_insert_with(|| {
            Arc::new(UserRate {
                user: user.to_owned(),
                limit: self.limit,
                bucket: Mutex::new(TokenBucket::new(self.limit, Instant::now())),
            })
        });
        rate.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(statements_per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            statements_per_second,
            burst,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_refuses() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(10.0, 3), start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(10.0, 1), start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start + ms(50)), "half a token is not one");
        assert!(bucket.try_take(start + ms(100)));
        assert!(!bucket.try_take(start + ms(100)));
    }

    #[test]
    fn a_long_pause_refills_only_up_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(100.0, 2), start);
        assert!(bucket.try_take(start) && bucket.try_take(start));
        let later = start + Duration::from_secs(3600);
        assert!(bucket.try_take(later) && bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn fractional_rates_refill_slowly() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(0.5, 1), start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start + ms(1999)));
        assert!(bucket.try_take(start + ms(2000)));
    }

    #[test]
    fn an_earlier_instant_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(limit(1.0, 1), start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start - Duration::from_secs(5)));
        assert!(!bucket.try_take(start + ms(500)));
        assert!(bucket.try_take(start + ms(1000)));
    }

    #[test]
    fn sessions_of_one_user_share_a_bucket_and_users_do_not() {
        let rates = UserRates::new(limit(0.001, 1));
        assert!(rates.for_user("a").admit().is_ok());
        let refused = rates.for_user("a").admit().unwrap_err();
        assert_eq!(refused.code, "53400");
        assert_eq!(
            refused.message,
            "rate limit exceeded for user \"a\": 0.001 statements per second"
        );
        assert!(rates.for_user("b").admit().is_ok());
    }
}
