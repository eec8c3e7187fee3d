//! The raw forms of the settings that protect backends from clients and drain them at
//! shutdown: `limits.rate_limit` and the `shutdown` section.
//!
//! Part of the config stage, like the rest of `raw`: file formats and defaults only, never a
//! judgement of values (`validate` does that).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

/// `limits.rate_limit`: a token bucket per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rate limit: a mapping with `statements_per_second` and optional `burst`"
)]
pub struct RawRateLimit {
    /// `limits.rate_limit.statements_per_second`: the sustained rate each user may run
    /// statements at (greater than 0; fractions allowed, e.g. 0.5).
    pub statements_per_second: f64,
    /// `limits.rate_limit.burst`: statements a user may run at once after being quiet
    /// (default: one second's worth, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The `shutdown` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the shutdown section: a mapping with `drain_timeout`"
)]
pub struct RawShutdown {
    /// `shutdown.drain_timeout`: after SIGTERM/SIGINT, how long clients inside a transaction
    /// may take to finish it before they are disconnected and their transactions rolled back
    /// (default `30s`; `0s` disconnects everyone at once).
    pub drain_timeout: HumanDuration,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30).into(),
        }
    }
}
