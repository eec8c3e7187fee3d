//! A session's clock for the metrics: how long each query (a simple Query, or an
//! extended-protocol batch up to Sync) and each transaction took, where it ran, and the
//! slow-query log.
//!
//! A query starts when its first message arrives and ends at the ReadyForQuery the client
//! sees; a transaction ends at the first ReadyForQuery that says idle. The log line names the
//! route and the statement with its literals replaced by placeholders: never a parameter
//! value, never a password.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Ran;
use crate::topology::Database;
use crate::wire::{TxStatus, tag};

/// Statement text kept for the slow-query log.
const MAX_LOGGED_SQL: usize = 300;

/// Queries in flight kept at most (a client pipelining more is measured from the oldest
/// ones on).
const MAX_PENDING: usize = 10_000;

/// Queries sent and not answered yet, oldest first: a client may pipeline many before the
/// first ReadyForQuery comes back, and each ReadyForQuery ends the oldest.
pub(super) struct Meter {
    pending: VecDeque<Pending>,
    /// An extended-protocol batch is open (its first message came, its Sync has not).
    batch_open: bool,
    transaction_started: Option<Instant>,
    /// Statement texts are kept (the slow-query log is on).
    keep_text: bool,
}

struct Pending {
    started: Instant,
    /// Where it ran, when no single backend says (a fan-out, a broadcast).
    ran: Option<Ran>,
    /// Its first statement's text, for the slow-query log.
    sql: Option<Arc<str>>,
}

impl Meter {
    /// A meter that keeps statement texts when `slow_log` is on.
    pub fn new(slow_log: bool) -> Self {
        Self {
            pending: VecDeque::new(),
            batch_open: false,
            transaction_started: None,
            keep_text: slow_log,
        }
    }

    /// A client message arrived: a Query, FunctionCall or bare Sync is one query, the
    /// messages of an extended-protocol batch up to its Sync are one.
    pub fn message(&mut self, frame_tag: u8) {
        let starts_query = match frame_tag {
            tag::QUERY | tag::FUNCTION_CALL => true,
            tag::PARSE | tag::BIND | tag::EXECUTE | tag::DESCRIBE | tag::CLOSE => {
                !std::mem::replace(&mut self.batch_open, true)
            }
            tag::SYNC => !std::mem::take(&mut self.batch_open),
            _ => false,
        };
        if starts_query {
            self.push();
        }
    }

    fn push(&mut self) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        let started = Instant::now();
        self.transaction_started.get_or_insert(started);
        self.pending.push_back(Pending {
            started,
            ran: None,
            sql: None,
        });
    }

    /// The statement text of the newest query, if it has none yet (the slow-query log names
    /// a query by its first statement).
    pub fn text(&mut self, sql: impl FnOnce() -> Arc<str>) {
        if !self.keep_text {
            return;
        }
        if let Some(pending) = self.pending.back_mut()
            && pending.sql.is_none()
        {
            pending.sql = Some(sql());
        }
    }

    /// The newest query runs on several shards.
    pub fn ran(&mut self, ran: Ran) {
        if let Some(pending) = self.pending.back_mut() {
            pending.ran = Some(ran);
        }
    }

    /// The client was sent ReadyForQuery with `status`: the oldest query is done. `held` is
    /// the backend the session holds, if any; a query the proxy answered itself ran nowhere
    /// and is not counted.
    pub fn ready(
        &mut self,
        status: TxStatus,
        held: Option<Ran>,
        database: &Database,
        slow: Option<Duration>,
    ) {
        if let Some(done) = self.pending.pop_front() {
            let took = done.started.elapsed();
            if let Some(ran) = done.ran.or(held) {
                database.meters.query(ran, took);
                if slow.is_some_and(|slow| took >= slow) {
                    database.meters.slow_statement();
                    log_slow(ran, took, database, done.sql.as_deref());
                }
            }
        }
        if status == TxStatus::Idle
            && let Some(started) = self.transaction_started.take()
        {
            database.meters.transaction(started.elapsed());
            if self.pending.is_empty() {
                return;
            }
            // Queries pipelined behind this one belong to the next transaction.
            self.transaction_started = self.pending.front().map(|p| p.started);
        }
    }
}

fn log_slow(ran: Ran, took: Duration, database: &Database, sql: Option<&str>) {
    let route = match ran {
        Ran::Shard(shard, role) => {
            let name = &database.router.map().shard(shard).name;
            format!("{name} {}", role.as_str())
        }
        Ran::Shards(role) => format!("several shards ({})", role.as_str()),
    };
    tracing::warn!(
        database = %database.name,
        %route,
        duration_ms = took.as_millis() as u64,
        statement = %redacted(sql.unwrap_or("")),
        "slow query"
    );
}

/// The statement as the slow-query log shows it: every literal (strings in every spelling,
/// dollar-quoted bodies, numbers) replaced by `?` and comments dropped, so no value the client
/// sent appears; placeholders (`$1`) and quoted identifiers stay. At most
/// [`MAX_LOGGED_SQL`] characters.
fn redacted(sql: &str) -> String {
    use crate::sql::lexer::{TokenKind, tokens};
    let mut out = String::with_capacity(sql.len().min(MAX_LOGGED_SQL));
    let mut after_number = None;
    for token in tokens(sql) {
        if out.len() >= MAX_LOGGED_SQL {
            break;
        }
        let text = token.text(sql);
        match token.kind {
            TokenKind::String(_) => redact_string(&mut out, text),
            // An identifier left open could hold anything: none of it is shown.
            TokenKind::Unterminated if text.starts_with('"') || is_unicode_ident(text) => {
                out.push_str("\"?\"")
            }
            TokenKind::Unterminated if text.starts_with("/*") => out.push(' '),
            TokenKind::Unterminated if text.starts_with('$') => out.push_str("$$?$$"),
            TokenKind::Unterminated => redact_string(&mut out, text),
            TokenKind::DollarString => out.push_str("$$?$$"),
            TokenKind::LineComment | TokenKind::BlockComment => out.push(' '),
            TokenKind::Number => out.push('?'),
            // `0x1F`, `1_000`: the rest of a number in a spelling the lexer splits.
            TokenKind::Word if after_number == Some(token.start) => {}
            _ => push_capped(&mut out, text),
        }
        after_number = (token.kind == TokenKind::Number).then_some(token.end);
    }
    out
}

/// Whether `text` opens a Unicode-escaped quoted identifier (`U&"…`).
fn is_unicode_ident(text: &str) -> bool {
    text.get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("u&\""))
}

/// A string constant as `'?'`, keeping its prefix (`E`, `U&`, …).
fn redact_string(out: &mut String, text: &str) {
    out.push_str(&text[..text.find('\'').unwrap_or(0)]);
    out.push_str("'?'");
}

/// Appends `text`, cut at [`MAX_LOGGED_SQL`].
fn push_capped(out: &mut String, text: &str) {
    let room = MAX_LOGGED_SQL.saturating_sub(out.len());
    let mut cut = room.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push_str(&text[..cut]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_statement_carries_no_values() {
        let cases = [
            (
                "SELECT * FROM users WHERE user_id = 42",
                "SELECT * FROM users WHERE user_id = ?",
            ),
            (
                "ALTER ROLE app PASSWORD 'secret'",
                "ALTER ROLE app PASSWORD '?'",
            ),
            ("SELECT now()", "SELECT now()"),
            ("SELECT $$secret$$, $tag$a $$ b$tag$", "SELECT $$?$$, $$?$$"),
            ("SELECT E'it\\'s', 'o''k'", "SELECT E'?', '?'"),
            (
                "SELECT DATE '1999-12-31', x1, \"a'b\"",
                "SELECT DATE '?', x1, \"a'b\"",
            ),
            (
                "SELECT 1.5e-3, .5 -- secret\nFROM t",
                "SELECT ?, ?  \nFROM t",
            ),
            ("SELECT /* a /* nested */ secret */ $1", "SELECT   $1"),
            ("SELECT 'unterminated", "SELECT '?'"),
            ("SELECT \"x, 'secret', 42", "SELECT \"?\""),
            ("SELECT U&\"x 42", "SELECT \"?\""),
            (
                "SELECT 0x1F, 1_000, U&'d\\0061t', B'0101'",
                "SELECT ?, ?, U&'?', B'?'",
            ),
        ];
        for (sql, shown) in cases {
            assert_eq!(redacted(sql), shown, "{sql}");
        }
    }

    #[test]
    fn a_long_statement_is_cut() {
        let sql = format!("SELECT {}", "a, ".repeat(500));
        assert!(redacted(&sql).len() <= MAX_LOGGED_SQL + 4);
    }
}
