//! Rules for the settings that protect backends from clients (per-user connections,
//! statement and idle timeouts, rate limits) and for the `shutdown` section.
//!
//! Part of the config stage: pure checks that report every problem with its YAML path.

use std::time::Duration;

use super::{Problems, optional_timeout};
use crate::config::raw::{RawLimits, RawRateLimit, RawShutdown};
use crate::config::{RateLimit, ShutdownSettings};

/// The validated protection part of `limits`, merged into [`crate::config::Limits`].
pub(super) struct ClientLimits {
    pub(super) max_connections_per_user: Option<usize>,
    pub(super) statement_timeout: Option<Duration>,
    pub(super) idle_in_transaction_timeout: Option<Duration>,
    pub(super) client_idle_timeout: Option<Duration>,
    pub(super) rate_limit: Option<RateLimit>,
}

/// Checks the protection keys of `limits`; `None` when any of them is invalid (each problem
/// recorded).
pub(super) fn client_limits(raw: &RawLimits, problems: &mut Problems) -> Option<ClientLimits> {
    if raw.max_connections_per_user == Some(0) {
        problems.add(
            "limits.max_connections_per_user",
            "must be at least 1 (or null for no limit)",
        );
    }
    let statement_timeout =
        optional_timeout(problems, "limits.statement_timeout", &raw.statement_timeout);
    let idle_in_transaction_timeout = optional_timeout(
        problems,
        "limits.idle_in_transaction_timeout",
        &raw.idle_in_transaction_timeout,
    );
    let client_idle_timeout = optional_timeout(
        problems,
        "limits.client_idle_timeout",
        &raw.client_idle_timeout,
    );
    let rate_limit = match &raw.rate_limit {
        None => Some(None),
        Some(rate) => rate_limit(rate, problems).map(Some),
    };
    if raw.max_connections_per_user == Some(0) {
        return None;
    }
    Some(ClientLimits {
        max_connections_per_user: raw.max_connections_per_user,
        statement_timeout: statement_timeout?,
        idle_in_transaction_timeout: idle_in_transaction_timeout?,
        client_idle_timeout: client_idle_timeout?,
        rate_limit: rate_limit?,
    })
}

/// A token bucket must refill (a rate of 0 would refuse everything forever, which is what
/// removing the user is for) and hold at least one statement.
fn rate_limit(raw: &RawRateLimit, problems: &mut Problems) -> Option<RateLimit> {
    let rate = raw.statements_per_second;
    let mut valid = true;
    if !(rate.is_finite() && rate > 0.0) {
        let message = format!("{rate} is not a number of statements greater than 0");
        problems.add("limits.rate_limit.statements_per_second", message);
        valid = false;
    }
    if raw.burst == Some(0) {
        problems.add("limits.rate_limit.burst", "must be at least 1");
        valid = false;
    }
    // One second's worth by default, so a steady client at the rate is never refused.
    let burst = raw
        .burst
        .unwrap_or_else(|| rate.ceil().clamp(1.0, u32::MAX as f64) as u32);
    valid.then_some(RateLimit {
        statements_per_second: rate,
        burst,
    })
}

/// `shutdown.drain_timeout` may be 0: stop at once, rolling back every open transaction.
pub(super) fn shutdown(raw: &RawShutdown, problems: &mut Problems) -> Option<ShutdownSettings> {
    let drain_timeout = problems.check("shutdown.drain_timeout", raw.drain_timeout.parse())?;
    Some(ShutdownSettings { drain_timeout })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn limits(yaml: &str) -> (Option<ClientLimits>, Vec<String>) {
        let raw: RawLimits = serde_yaml::from_str(yaml).expect("test YAML parses");
        let mut problems = Problems::new(Path::new("shardgate.yaml"));
        let limits = client_limits(&raw, &mut problems);
        let found = problems.finish(()).err().unwrap_or_default();
        let found = found.iter().map(|p| format!("{}: {}", p.path, p.message));
        (limits, found.collect())
    }

    #[test]
    fn everything_is_off_by_default() {
        let (limits, problems) = limits("{}");
        assert!(problems.is_empty());
        let limits = limits.unwrap();
        assert_eq!(limits.max_connections_per_user, None);
        assert_eq!(limits.statement_timeout, None);
        assert_eq!(limits.idle_in_transaction_timeout, None);
        assert_eq!(limits.client_idle_timeout, None);
        assert_eq!(limits.rate_limit, None);
    }

    #[test]
    fn values_are_read() {
        let yaml = "{max_connections_per_user: 3, statement_timeout: 2s, \
                    idle_in_transaction_timeout: 500ms, client_idle_timeout: 10m, \
                    rate_limit: {statements_per_second: 2.5}}";
        let limits = limits(yaml).0.unwrap();
        assert_eq!(limits.max_connections_per_user, Some(3));
        assert_eq!(limits.statement_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            limits.idle_in_transaction_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(limits.client_idle_timeout, Some(Duration::from_secs(600)));
        let rate = limits.rate_limit.unwrap();
        assert_eq!((rate.statements_per_second, rate.burst), (2.5, 3));
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path() {
        let yaml = "{max_connections_per_user: 0, statement_timeout: 0s, \
                    client_idle_timeout: soon, rate_limit: {statements_per_second: 0, burst: 0}}";
        let (limits, problems) = limits(yaml);
        assert!(limits.is_none());
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "limits.max_connections_per_user",
                "limits.statement_timeout",
                "limits.client_idle_timeout",
                "limits.rate_limit.statements_per_second",
                "limits.rate_limit.burst",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn drain_timeout_defaults_to_30s_and_may_be_zero() {
        let mut problems = Problems::new(Path::new("shardgate.yaml"));
        let default = shutdown(&RawShutdown::default(), &mut problems).unwrap();
        assert_eq!(default.drain_timeout, Duration::from_secs(30));
        let raw: RawShutdown = serde_yaml::from_str("{drain_timeout: 0s}").unwrap();
        assert_eq!(
            shutdown(&raw, &mut problems).unwrap().drain_timeout,
            Duration::ZERO
        );
    }
}
