//! Multi-statement simple queries whose statements need different shards (`insert …; insert
//! …;` over two keys, a script mixing tables): each statement runs on its own shard, in
//! order, as one transaction. PostgreSQL runs such a query as one implicit transaction that
//! stops at the first error; so does the proxy, with the client's transaction when it has
//! one, or with an implicit transaction of its own (see `implicit`). The client gets every
//! statement's results in order, then one ReadyForQuery.

use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Refusal;
use super::local::{Control, begins_transaction, transaction_control};
use super::replies::{Expect, Synthetic};
use super::savepoints::savepoint_command;
use super::statements::{session_effects, split_statements};
use super::{Session, internal};
use crate::error::Unsupported;
use crate::router::Route;
use crate::wire::TxStatus;

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Runs the statements of `sql` one by one, each where it routes, as one transaction.
    pub(super) async fn run_per_statement(&mut self, sql: &str) -> Result<(), Refusal> {
        self.check_runs_apart(sql)?;
        if self.client_status != TxStatus::Idle {
            // The client's transaction: a failure aborts it, as in PostgreSQL.
            self.run_statements(sql).await?;
            self.push(Expect::synthetic(Synthetic::ReadyForQuery));
            return Ok(());
        }
        self.begin_implicit_query();
        let outcome = self.run_statements(sql).await;
        self.end_implicit_query(outcome).await
    }

    /// Statements that change the session or control the transaction cannot be spread over
    /// shards this way (savepoint commands of the client's transaction can: each runs on
    /// every shard): refused, by name, before anything runs.
    fn check_runs_apart(&self, sql: &str) -> Result<(), Refusal> {
        let in_transaction = self.client_status != TxStatus::Idle;
        let controls = transaction_control(sql);
        let savepoints_only = controls.iter().all(|c| *c == Control::Savepoint);
        let refusal = if !(controls.is_empty() || savepoints_only && in_transaction)
            || split_statements(sql).any(begins_transaction)
        {
            Unsupported::TransactionControlAmongShards
        } else if !session_effects(sql).is_empty() {
            Unsupported::SessionStateAmongShards
        } else {
            return Ok(());
        };
        Err(Refusal::Statement(self.unsupported(refusal)))
    }

    /// Runs each statement where it routes and waits for its results, stopping at the first
    /// that fails (the server's error, already forwarded) or cannot run (the error returned).
    async fn run_statements(&mut self, sql: &str) -> Result<(), Refusal> {
        for statement in split_statements(sql) {
            if savepoint_command(statement).is_some() {
                self.before_transaction_control(statement).await?;
            }
            let routed = self.route_sql(statement, None).await?;
            if let Some((parts, rows)) = self.spread_parts(statement, &routed.route)? {
                self.run_spread(statement, parts, rows).await?;
                continue;
            }
            let shard = match routed.route {
                Route::Anywhere => None,
                Route::Shard(shard) => Some(shard),
                Route::Scatter(shards) => {
                    self.read_shards(statement, shards, routed.writes).await?;
                    continue;
                }
                Route::MoveRows(sources) => {
                    let sent = super::key_move::Sent::Query;
                    self.move_rows(statement, sources, &sent).await?;
                    continue;
                }
                route => self.shard_for_route(route)?,
            };
            self.note_writes(shard, routed.writes);
            self.ensure_backend(shard).await?;
            frontend::query(statement, &mut self.bufs.to_backend)
                .map_err(|e| internal(e.to_string()))?;
            self.push(Expect::QueryPart);
            self.wait_for_replies().await?;
            if self.backend_status == TxStatus::Failed {
                break; // PostgreSQL skips the rest of the query.
            }
        }
        Ok(())
    }
}
