//! Simple-protocol Query messages: forwarded with their session effects noted, except SQL-level
//! PREPARE/EXECUTE/DEALLOCATE, whose statement names are rewritten (see `sql_prepared`).

use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::broadcast::Parts;
use super::client::{Refusal, body, duplicate_statement};
use super::replies::{Expect, Synthetic, Undo};
use super::sql_prepared::{SqlCommand, parse_sql_command};
use super::statements;
use super::{Session, cold, internal};
use crate::config::ShardId;
use crate::error::{ErrorReport, Unsupported};
use crate::execute::broadcast::{LegStatement, Rows};
use crate::router::{Params, Route, execute_arguments};
use crate::wire::{self, TxStatus};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    pub(super) async fn on_query(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let sql = wire::query_text(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.meter.text(|| sql.into());
        self.schema_changed |= statements::changes_schema(sql);
        if self.answer_locally(sql)? {
            return Ok(());
        }
        self.check_aborted_pending_transaction()?;
        self.before_transaction_control(sql).await?;
        if self.savepoints_among_statements(sql) {
            return cold(self.run_per_statement(sql)).await;
        }
        if let Some(command) = single_sql_command(sql)
            && self.on_sql_command(command).await?
        {
            return Ok(());
        }
        if self.on_cursor_command(sql)? {
            return Ok(());
        }
        let routed = self.route_sql(sql, None).await?;
        if let Some((parts, rows)) = self.spread_parts(sql, &routed.route)? {
            return cold(self.run_on_shards(sql, parts, rows)).await;
        }
        let shard = match routed.route {
            Route::Scatter(shards) => {
                return cold(self.query_shards(sql, shards, routed.writes)).await;
            }
            Route::PerStatement => return cold(self.run_per_statement(sql)).await,
            Route::MoveRows(sources) => return cold(self.query_moving_rows(sql, sources)).await,
            Route::CopyIn(shards) => return cold(self.copy_into_shards(sql, shards)).await,
            route => self.shard_for_route(route)?,
        };
        self.note_writes(shard, routed.writes);
        self.note_savepoints_among_statements(sql);
        let effects = statements::session_effects(sql);
        self.settings_everywhere(sql, &effects).await?;
        match shard {
            Some(shard) if self.may_use_replica(routed.writes, !effects.is_empty()) => {
                self.ensure_read_backend(shard).await?;
                self.note_replica_query(shard, frame);
            }
            _ => {
                self.leave_replica().await?;
                self.ensure_backend(shard).await?;
            }
        }
        self.note_pins(&effects);
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Query {
            visible: true,
            effects,
            failed: false,
            undo: Undo::default(),
        });
        Ok(())
    }

    /// What each primary runs of `sql` when `route` spreads it over several (DDL and
    /// reference-table writes, UPDATE/DELETE on several shards, a split INSERT), and what the
    /// shards hold; `None` for routes that run elsewhere.
    pub(super) fn spread_parts(
        &self,
        sql: &str,
        route: &Route,
    ) -> Result<Option<(Parts, Rows)>, ErrorReport> {
        let simple = |(shard, sql)| (shard, LegStatement::Simple(sql));
        let every = |shards: &[ShardId]| -> Parts {
            (shards.iter())
                .map(|&s| simple((s, sql.to_owned())))
                .collect()
        };
        Ok(Some(match route {
            Route::Broadcast(shards) => (every(shards), Rows::Disjoint),
            Route::Replicate(shards) => {
                let router = &self.env.database.router;
                let parts = router.replicated(sql, shards).into_iter().map(simple);
                (parts.collect(), Rows::Copies)
            }
            Route::Split(groups) => {
                let router = &self.env.database.router;
                let parts = (router.split_insert(sql, groups)).map_err(|e| self.route_failed(e))?;
                (parts.into_iter().map(simple).collect(), Rows::Disjoint)
            }
            _ => return Ok(None),
        }))
    }

    /// Runs a SQL-level PREPARE/EXECUTE/DEALLOCATE with the name rewritten. Returns false when
    /// the statement should go through unchanged (an unknown name: the server's error is right).
    async fn on_sql_command(&mut self, command: SqlCommand<'_>) -> Result<bool, Refusal> {
        if self.client_status == TxStatus::Failed {
            return Ok(false); // The server answers 25P02, as it should.
        }
        match command {
            SqlCommand::Prepare { name, rest } => {
                let known = self.env.database.known_statements.clone();
                let naming = |base| known.current_name(base);
                let Some(prepared) = self.sql_statements.register(&name, rest, naming) else {
                    return Err(Refusal::Statement(duplicate_statement(&name)));
                };
                let conn = self.ensure_backend(None).await?;
                if !conn.prepared.insert(prepared.backend_name.clone()) {
                    self.answer_command("PREPARE");
                    return Ok(true);
                }
                let undo = Undo {
                    backend_name: Some(prepared.backend_name.clone()),
                    sql_name: Some(name),
                    client_name: None,
                };
                self.send_query(&prepared.prepare_sql, true, undo)?;
            }
            SqlCommand::Execute { name, rest } => {
                let Some(prepared) = self.sql_statements.get(&name) else {
                    return Ok(false);
                };
                let arguments = execute_arguments(rest);
                let params = Params::from_text(&arguments);
                let constants = !arguments.is_empty() || rest.trim().is_empty();
                let routed = match self.route_sql(&prepared.query, Some(&params)).await {
                    Ok(routed) => routed,
                    // Its key is an expression, which only a server evaluates.
                    Err(_) if !constants => {
                        let refusal = Unsupported::ExecuteArgumentsNotConstant;
                        return Err(Refusal::Statement(self.unsupported(refusal)));
                    }
                    Err(report) => return Err(Refusal::Statement(report)),
                };
                if let Route::Scatter(shards) = &routed.route {
                    // The proxy merges it: the statement runs with the arguments in place.
                    let Some(sql) = prepared.with_arguments(&arguments) else {
                        let shards = shards.len();
                        let refusal = Unsupported::ScatterFromSqlPrepared { shards };
                        return Err(Refusal::Statement(self.unsupported(refusal)));
                    };
                    let (shards, writes) = (shards.clone(), routed.writes);
                    cold(self.query_shards(&sql, shards, writes)).await?;
                    return Ok(true);
                }
                let shard = self.shard_for_route(routed.route)?;
                self.note_writes(shard, routed.writes);
                self.leave_replica().await?;
                let conn = self.ensure_backend(shard).await?;
                if conn.prepared.insert(prepared.backend_name.clone()) {
                    let undo = Undo {
                        backend_name: Some(prepared.backend_name.clone()),
                        ..Undo::default()
                    };
                    self.send_query(&prepared.prepare_sql, false, undo)?;
                }
                self.send_query(
                    &format!("EXECUTE {}{rest}", prepared.backend_name),
                    true,
                    Undo::default(),
                )?;
                self.batch
                    .bound_since_ready
                    .push(prepared.backend_name.clone());
            }
            SqlCommand::Deallocate { name } => {
                let known = self.sql_statements.remove(&name) | self.statements.remove(&name);
                if !known {
                    return Ok(false);
                }
                self.answer_command("DEALLOCATE");
            }
        }
        Ok(true)
    }

    fn send_query(&mut self, sql: &str, visible: bool, undo: Undo) -> Result<(), Refusal> {
        frontend::query(sql, &mut self.bufs.to_backend)
            .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
        self.push(Expect::Query {
            visible,
            effects: Vec::new(),
            failed: false,
            undo,
        });
        Ok(())
    }

    /// Completes a simple query the proxy answered itself, in order with earlier replies.
    pub(super) fn answer_command(&mut self, command_tag: &'static str) {
        self.push(Expect::synthetic(Synthetic::CommandComplete(command_tag)));
        self.push(Expect::synthetic(Synthetic::ReadyForQuery));
    }
}

/// A query that is exactly one SQL-level prepared-statement command.
fn single_sql_command(sql: &str) -> Option<SqlCommand<'_>> {
    let (first, _) = statements::next_word(sql)?;
    if !(first.is("prepare") || first.is("execute") || first.is("deallocate")) {
        return None; // Every statement passes here: no split in the common case.
    }
    let mut statements = statements::split_statements(sql);
    let only = statements.next()?;
    statements
        .next()
        .is_none()
        .then(|| parse_sql_command(only))
        .flatten()
}
