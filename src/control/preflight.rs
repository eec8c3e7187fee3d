//! Checks of every shard's primary before serving (`shardgate check --connect`): that it can
//! be reached, and, with atomic commit on (`transactions.atomic`), that it allows prepared
//! transactions, without which a transaction or statement writing on several shards cannot
//! commit. The wording of that last problem is shared with `/ready` ([`PrimaryProblem`]).
//!
//! Part of the control plane: one short tokio-postgres connection per primary, each bounded
//! by `pool.connect_timeout`; never the row path, and it changes nothing on the servers.

use std::fmt;
use std::time::Duration;

use super::{ControlConn, client_config};
use crate::config::{BackendUri, Config, Shard};

/// What the check found on one shard's primary.
#[derive(Debug)]
pub struct PrimaryCheck {
    /// Where: database, shard and (without its password) the primary's URI.
    pub primary: Primary,
    /// Its `max_prepared_transactions`, or why it is a problem.
    pub outcome: Result<u64, PrimaryProblem>,
}

/// One shard's primary, named as operators see it elsewhere (`app/s0 primary`).
#[derive(Debug, Clone)]
pub struct Primary {
    /// The database of the configuration.
    pub database: String,
    /// The shard.
    pub shard: String,
    /// Its primary.
    pub uri: BackendUri,
}

impl fmt::Display for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // BackendUri renders without its password.
        write!(f, "{}/{} primary ({})", self.database, self.shard, self.uri)
    }
}

/// Why a shard's primary is not fit to serve.
#[derive(Debug, thiserror::Error)]
pub enum PrimaryProblem {
    /// It refused the connection, or the login failed.
    #[error("{primary} is not reachable: {}", with_causes(source))]
    Unreachable {
        /// Which primary.
        primary: Primary,
        /// The connection's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// It did not answer in time (connecting, or the query after).
    #[error("{primary} is not reachable: no answer within {waited:?}")]
    NoAnswer {
        /// Which primary.
        primary: Primary,
        /// How long the check waited.
        waited: Duration,
    },
    /// `SHOW max_prepared_transactions` failed or answered something that is not a count.
    #[error("{primary}: cannot read max_prepared_transactions: {why}")]
    Unreadable {
        /// Which primary.
        primary: Primary,
        /// What went wrong.
        why: Unreadable,
    },
    /// Atomic commit is on and the primary allows no prepared transactions.
    #[error(
        "{database}/{shard}: max_prepared_transactions is 0, so transactions and statements \
         that write on several shards cannot commit (set it above 0, or \
         transactions.atomic: false)"
    )]
    NoPreparedTransactions {
        /// The database of the configuration.
        database: String,
        /// The shard.
        shard: String,
    },
}

/// Why `max_prepared_transactions` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// The query failed.
    #[error("{}", with_causes(.0))]
    Query(#[from] tokio_postgres::Error),
    /// The answer is not a number.
    #[error("{0:?} is not a count")]
    NotACount(String),
}

/// Checks the primary of every shard of every database of `config`, all at once; one entry
/// per shard, in configuration order.
pub async fn check_primaries(config: &Config) -> Vec<PrimaryCheck> {
    let atomic = config.transactions.atomic;
    let timeout = config.pool.connect_timeout;
    let shards = (config.databases.iter()).flat_map(|db| {
        db.shard_map
            .shards
            .iter()
            .map(move |shard| (&db.name, shard))
    });
    let checks = shards.map(|(database, shard)| async move {
        let primary = primary_of(database, shard);
        let outcome = check_primary(&primary, atomic, timeout).await;
        PrimaryCheck { primary, outcome }
    });
    futures::future::join_all(checks).await
}

fn primary_of(database: &str, shard: &Shard) -> Primary {
    Primary {
        database: database.to_owned(),
        shard: shard.name.clone(),
        uri: shard.primary.clone(),
    }
}

/// Connects to `primary` and reads its `max_prepared_transactions`, which must be above 0
/// when `atomic`; each step is bounded by `timeout`.
async fn check_primary(
    primary: &Primary,
    atomic: bool,
    timeout: Duration,
) -> Result<u64, PrimaryProblem> {
    let no_answer = || PrimaryProblem::NoAnswer {
        primary: primary.clone(),
        waited: timeout,
    };
    let config = client_config(&primary.uri, "shardgate check", timeout);
    let conn = ControlConn::open(&config, timeout)
        .await
        .map_err(|e| match e {
            Some(source) => PrimaryProblem::Unreachable {
                primary: primary.clone(),
                source,
            },
            None => no_answer(),
        })?;
    let ask = tokio::time::timeout(timeout, conn.max_prepared_transactions());
    let value = ask.await.map_err(|_| no_answer())?;
    let value = value.map_err(|why| PrimaryProblem::Unreadable {
        primary: primary.clone(),
        why,
    })?;
    if atomic && value == 0 {
        return Err(PrimaryProblem::NoPreparedTransactions {
            database: primary.database.clone(),
            shard: primary.shard.clone(),
        });
    }
    Ok(value)
}

/// `error` and its causes, `: `-separated: a tokio-postgres error alone says only "error
/// connecting to server", its cause says why (refused, no such host, the server's FATAL).
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let causes = std::iter::successors(Some(error), |e| e.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_without_prepared_transactions_is_named_with_what_to_set() {
        let problem = PrimaryProblem::NoPreparedTransactions {
            database: "app".into(),
            shard: "s1".into(),
        };
        let text = problem.to_string();
        assert!(
            text.starts_with("app/s1: max_prepared_transactions is 0"),
            "{text}"
        );
        assert!(
            text.contains("set it above 0, or transactions.atomic: false"),
            "{text}"
        );
    }

    #[test]
    fn a_primary_is_named_without_its_password() {
        let primary = Primary {
            database: "app".into(),
            shard: "s0".into(),
            uri: BackendUri::parse("postgres://app:secret@db0:5433/app").unwrap(),
        };
        let problem = PrimaryProblem::NoAnswer {
            primary,
            waited: Duration::from_secs(5),
        };
        let text = problem.to_string();
        assert_eq!(
            text,
            "app/s0 primary (postgres://app@db0:5433/app) is not reachable: no answer within 5s"
        );
    }
}
