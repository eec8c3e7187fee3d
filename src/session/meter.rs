//! A session's clock for the metrics: how long each query (a simple Query, or an
//! extended-protocol batch up to Sync) and each transaction took, where it ran, and the
//! slow-query log.
//!
//! A query starts when its first message arrives and ends at the ReadyForQuery the client
//! sees; a transaction ends at the first ReadyForQuery that says idle. The log line names the
//! route and the statement with its literals replaced by placeholders: never a parameter
//! value, never a password.

use std::time::{Duration, Instant};

use crate::admin::metrics::Ran;
use crate::router::normalize::normalize;
use crate::topology::{Database, Role};
use crate::wire::TxStatus;

/// Statement text kept for the slow-query log.
const MAX_LOGGED_SQL: usize = 300;

#[derive(Default)]
pub(super) struct Meter {
    query_started: Option<Instant>,
    transaction_started: Option<Instant>,
    /// Where the query ran when no single backend says (a fan-out, a broadcast).
    ran: Option<Ran>,
    /// The query's first statement text (capacity reused across queries).
    sql: String,
}

impl Meter {
    /// A client message that starts or continues a query; `sql` is its statement text, if it
    /// carries one.
    pub fn start(&mut self, sql: Option<&str>) {
        if self.query_started.is_none() {
            let now = Instant::now();
            self.query_started = Some(now);
            self.transaction_started.get_or_insert(now);
            self.ran = None;
            self.sql.clear();
        }
        if let Some(sql) = sql
            && self.sql.is_empty()
        {
            let mut end = MAX_LOGGED_SQL.min(sql.len());
            while !sql.is_char_boundary(end) {
                end -= 1;
            }
            self.sql.push_str(&sql[..end]);
        }
    }

    /// The query ran on several shards.
    pub fn ran(&mut self, ran: Ran) {
        self.ran = Some(ran);
    }

    /// The client was sent ReadyForQuery with `status`; `held` is the backend the session
    /// holds, if any.
    pub fn ready(
        &mut self,
        status: TxStatus,
        held: Option<Ran>,
        database: &Database,
        slow: Option<Duration>,
    ) {
        if let Some(started) = self.query_started.take() {
            let took = started.elapsed();
            if let Some(ran) = self.ran.take().or(held) {
                database.meters.query(ran, took);
                if slow.is_some_and(|slow| took >= slow) {
                    database.meters.slow_statement();
                    self.log_slow(ran, took, database);
                }
            }
        }
        if status == TxStatus::Idle
            && let Some(started) = self.transaction_started.take()
        {
            database.meters.transaction(started.elapsed());
        }
    }

    fn log_slow(&self, ran: Ran, took: Duration, database: &Database) {
        let route = match ran {
            Ran::Shard(shard, role) => {
                let name = &database.router.map().shard(shard).name;
                format!("{name} {}", role_name(role))
            }
            Ran::Shards(role) => format!("several shards ({})", role_name(role)),
        };
        tracing::warn!(
            database = %database.name,
            %route,
            duration_ms = took.as_millis() as u64,
            statement = %redacted(&self.sql),
            "slow query"
        );
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Replica => "replica",
    }
}

/// The statement with literals replaced by `$n`; only its first word when the literals cannot
/// be told apart safely.
fn redacted(sql: &str) -> String {
    if let Some((normalized, _)) = normalize(sql) {
        return normalized;
    }
    let plain = !sql.contains(['\'', '$']) && !sql.chars().any(|c| c.is_ascii_digit());
    if plain {
        return sql.to_owned();
    }
    let verb = sql.split_whitespace().next().unwrap_or("");
    format!("{verb} … (text withheld: its literals could not be separated)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_statement_carries_no_values() {
        assert_eq!(
            redacted("SELECT * FROM users WHERE user_id = 42"),
            "SELECT * FROM users WHERE user_id = $1"
        );
        assert_eq!(
            redacted("ALTER ROLE app PASSWORD 'secret'"),
            "ALTER ROLE app PASSWORD $1"
        );
        assert_eq!(redacted("SELECT now()"), "SELECT now()");
        assert!(!redacted("SELECT $$secret$$").contains("secret"));
    }
}
