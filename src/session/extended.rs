//! Extended-protocol messages that name prepared statements: Parse, Bind, Describe and Close
//! are rewritten to backend-wide statement names, re-prepared where the client's statement is
//! missing, or answered by the proxy (see `prepared`).

use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::broadcast::Parts;
use super::client::{Refusal, body, duplicate_statement};
use super::local::is_begin;
use super::prepared::{self, Prepared};
use super::replies::{Expect, Synthetic, Undo};
use super::scatter::{Held, MoveWrite, ScatterRead, SpreadWrite};
use super::statements::{self, SessionEffect};
use super::{Session, internal};
use crate::config::ShardId;
use crate::execute::broadcast::{LegStatement, Rows};
use crate::router::{Params, Route};
use crate::wire::{self, Bind, BindRest, Parse, StatementOrPortal, Target, encode};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    pub(super) async fn on_parse(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let parse = Parse::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.meter.text(|| parse.query.into());
        if is_begin(parse.query) && self.can_defer_begin() {
            let effects = statements::session_effects(parse.query);
            return self.defer_parse(&parse, effects);
        }
        // One scan of the SQL: for pinning now, and for a SET's effect when it is executed.
        let effects = statements::session_effects(parse.query);
        self.note_pins(&effects);
        // While a move runs, a statement is prepared where its Bind lands: a backend taken
        // now would keep a Bind that the fence blocks from waiting for the new map.
        let fenced = self.env.database.fence.is_moving();
        let shard = match self.shard_before_bind(parse.query).filter(|_| !fenced) {
            // A read that may go to a replica is prepared where its Bind lands.
            Some(Some(shard)) if self.may_read_from_replica_later(shard, parse.query, &effects) => {
                return self.defer_parse(&parse, effects);
            }
            Some(shard) => shard,
            // Its shard is known at Bind: prepared there, even when a transaction holds a
            // backend of another shard now (the transaction may move there).
            None if self.backend.is_none() => return self.defer_parse(&parse, effects),
            // Inside a transaction the statement is prepared on its backend now. (Deferring
            // it to its Bind's shard, as above, would let the transaction move shards in the
            // middle of a pipeline; a driver pipelining a transaction lost a row that way.)
            None => None,
        };
        if !parse.name.is_empty()
            && self.backend.is_none()
            && let Some(answered) = self.parse_known_statement(&parse, &effects)
        {
            return answered;
        }
        self.ensure_backend(shard).await?;
        if parse.name.is_empty() {
            self.statements
                .set_unnamed(parse.query, parse.param_types, effects);
            self.batch.unnamed_on_backend = true;
            self.bufs.to_backend.extend_from_slice(frame);
            self.push(Expect::Parse {
                visible: true,
                undo: Undo::default(),
            });
            return Ok(());
        }
        let backend_name = self.statement_name(parse.query, &parse.param_types);
        let Some(prepared) = self.statements.register(
            parse.name,
            backend_name,
            parse.query,
            parse.param_types,
            effects,
        ) else {
            return Err(Refusal::Statement(duplicate_statement(parse.name)));
        };
        let client_name = Some(parse.name.into());
        let conn = self.backend_in_use()?;
        if conn.prepared.contains(&prepared.backend_name) {
            self.push(Expect::Synthetic {
                message: Synthetic::ParseComplete,
                undo: Undo {
                    client_name,
                    ..Undo::default()
                },
            });
            return Ok(());
        }
        conn.prepared.insert(prepared.backend_name.clone());
        let undo = Undo {
            client_name,
            backend_name: Some(prepared.backend_name.clone()),
            sql_name: None,
        };
        self.send_parse(&prepared.backend_name, &prepared, true, undo)?;
        Ok(())
    }

    /// A Parse whose shard depends on its parameters, with no backend held: registered and
    /// answered now, prepared on the backend its first Bind routes to (an error in the SQL
    /// then answers that Bind).
    fn defer_parse(
        &mut self,
        parse: &Parse<'_>,
        effects: Vec<SessionEffect>,
    ) -> Result<(), Refusal> {
        if parse.name.is_empty() {
            (self.statements).set_unnamed(parse.query, parse.param_types.clone(), effects);
            self.batch.unnamed_on_backend = false;
        } else if (self.statements)
            .register(
                parse.name,
                self.statement_name(parse.query, &parse.param_types),
                parse.query,
                parse.param_types.clone(),
                effects,
            )
            .is_none()
        {
            return Err(Refusal::Statement(duplicate_statement(parse.name)));
        }
        let client_name = (!parse.name.is_empty()).then(|| parse.name.into());
        self.push(Expect::Synthetic {
            message: Synthetic::ParseComplete,
            undo: Undo {
                client_name,
                ..Undo::default()
            },
        });
        Ok(())
    }

    /// A Parse outside a transaction of a statement some backend already accepted: registered
    /// and answered without taking a backend; it is prepared where it is first bound.
    fn parse_known_statement(
        &mut self,
        parse: &Parse<'_>,
        effects: &[SessionEffect],
    ) -> Option<Result<(), Refusal>> {
        let backend_name = self.statement_name(parse.query, &parse.param_types);
        if !self.env.database.known_statements.contains(&backend_name) {
            return None;
        }
        if self
            .statements
            .register(
                parse.name,
                backend_name,
                parse.query,
                parse.param_types.clone(),
                effects.to_vec(),
            )
            .is_none()
        {
            return Some(Err(Refusal::Statement(duplicate_statement(parse.name))));
        }
        self.push(Expect::Synthetic {
            message: Synthetic::ParseComplete,
            undo: Undo {
                client_name: Some(parse.name.into()),
                ..Undo::default()
            },
        });
        Some(Ok(()))
    }

    pub(super) async fn on_bind(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let bind = Bind::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.forget_left_portal(bind.portal);
        if self.has_left_portals() && self.bind_kept_cursor_command(&bind, frame)? {
            return Ok(());
        }
        let statement = self.statements.named_in_message(bind.statement);
        // One scan of the SQL per Bind: a BEGIN is deferred, or opens a block in this batch.
        let begins = statement.is_some_and(|s| is_begin(&s.query));
        if let Some(statement) = statement.filter(|_| begins && self.can_defer_begin()) {
            let query = statement.query.clone();
            self.bind_deferred_begin(bind.portal, &query);
            return Ok(());
        }
        let shard = match statement.cloned() {
            Some(statement) => {
                self.meter.text(|| statement.query.clone());
                self.schema_changed |= super::statements::changes_schema(&statement.query);
                self.txn.begun_in_batch |= begins;
                self.before_transaction_control(&statement.query).await?;
                self.settings_everywhere(&statement.query, &statement.effects)
                    .await?;
                let rest = &body(frame)[bind.rest_offset..];
                let params = Params::from_bind(rest, &statement.param_types)
                    .map_err(|e| Refusal::violation(e.to_string()))?;
                let routed = self.route_sql(&statement.query, Some(&params)).await?;
                match routed.route {
                    Route::Scatter(shards) => {
                        if !self.replies.synced() && self.in_transaction_block() {
                            self.answer_all_sent().await?;
                        }
                        let split = BindRest::decode(rest)
                            .map_err(|e| Refusal::violation(e.to_string()))?;
                        let read = ScatterRead {
                            sql: statement.query.to_string(),
                            param_types: statement.param_types.clone(),
                            params: split.params.to_vec(),
                            result_formats: split.result_formats,
                            shards,
                            writes: routed.writes,
                            copy_out: None,
                            max_rows: None,
                        }
                        .copied_out(&self.env.database.router);
                        return self.bind_shards(bind.portal, read);
                    }
                    Route::MoveRows(sources) => {
                        let moving = MoveWrite {
                            sql: statement.query.to_string(),
                            sources,
                            param_types: statement.param_types.clone(),
                            bind_rest: rest.to_vec(),
                        };
                        return self.bind_primaries(bind.portal, Held::Move(moving));
                    }
                    Route::CopyIn(shards) => {
                        let sql = statement.query.to_string();
                        return self.bind_primaries(bind.portal, Held::Copy(sql, shards));
                    }
                    route @ (Route::Broadcast(_) | Route::Replicate(_) | Route::Split(_)) => {
                        let write = self.spread_write(&statement, rest, route)?;
                        return self.bind_primaries(bind.portal, Held::Write(write));
                    }
                    route => {
                        let shard = self.shard_for_route(route)?;
                        self.note_writes(shard, routed.writes);
                        let effects = !statement.effects.is_empty();
                        let replica = self.may_use_replica(routed.writes, effects)
                            && self.bind_is_self_contained();
                        (shard, replica)
                    }
                }
            }
            None => (None, false), // The server reports the unknown statement.
        };
        match shard {
            (Some(shard), true) => self.ensure_read_backend(shard).await?,
            (shard, _) => {
                self.leave_replica().await?;
                self.ensure_backend(shard).await?;
            }
        }
        self.remember_portal_effects(bind.portal, bind.statement);
        match self.backend_statement_name(bind.statement)? {
            Some(name) => {
                let rest = &body(frame)[bind.rest_offset..];
                encode::bind_renamed(&mut self.bufs.to_backend, bind.portal, &name, rest);
                self.batch.bound_since_ready.push(name);
            }
            None => self.bufs.to_backend.extend_from_slice(frame),
        }
        self.push(Expect::Bind);
        Ok(())
    }

    /// How a bound statement for several primaries runs on each: the client's Parse and Bind
    /// on every shard (DDL, reference-table writes, UPDATE/DELETE over several shards), or,
    /// for a multi-row INSERT split by shard, each shard's rows with only their parameters.
    fn spread_write(
        &self,
        statement: &Prepared,
        bind_rest: &[u8],
        route: Route,
    ) -> Result<SpreadWrite, Refusal> {
        let sql = statement.query.to_string();
        let bound = |sql: String, param_types: Vec<u32>, bind_rest: Vec<u8>| LegStatement::Bound {
            sql,
            param_types,
            bind_rest,
            describe: false,
        };
        let every = |shards: Vec<ShardId>| -> Parts {
            let part = bound(
                sql.clone(),
                statement.param_types.clone(),
                bind_rest.to_vec(),
            );
            shards.into_iter().map(|s| (s, part.clone())).collect()
        };
        let (parts, rows) = match route {
            Route::Broadcast(shards) => (every(shards), Rows::Disjoint),
            Route::Replicate(shards) => {
                let parts = self.env.database.router.replicated(&sql, &shards);
                let types = &statement.param_types;
                let bound_on =
                    |(shard, sql)| (shard, bound(sql, types.clone(), bind_rest.to_vec()));
                (parts.into_iter().map(bound_on).collect(), Rows::Copies)
            }
            Route::Split(groups) => {
                let router = &self.env.database.router;
                let split = router.split_insert_bound(&sql, &groups);
                let split = split.map_err(|e| self.route_failed(e))?;
                let rest =
                    BindRest::decode(bind_rest).map_err(|e| Refusal::violation(e.to_string()))?;
                let types = &statement.param_types;
                let mut parts = Vec::with_capacity(split.len());
                for part in split {
                    let chosen = rest.select(&part.params);
                    let chosen = chosen.map_err(|e| Refusal::violation(e.to_string()))?;
                    let param_types = (part.params.iter())
                        .map(|&i| types.get(i).copied().unwrap_or(0))
                        .collect();
                    parts.push((part.shard, bound(part.sql, param_types, chosen)));
                }
                (parts, Rows::Disjoint)
            }
            _ => return Err(Refusal::Statement(internal("not a spread route".into()))),
        };
        Ok(SpreadWrite { sql, parts, rows })
    }

    /// A portal bound from a `SET` statement changes the session when it is executed.
    fn remember_portal_effects(&mut self, portal: &str, statement: &str) {
        let prepared = self.statements.named_in_message(statement);
        match prepared.filter(|p| !p.effects.is_empty()) {
            Some(p) => {
                let effects = p.effects.clone();
                self.batch.portal_effects.insert(portal.to_owned(), effects);
            }
            None => {
                self.batch.portal_effects.remove(portal);
            }
        }
    }

    /// Effects of the portal an Execute runs (empty for almost every statement).
    pub(super) fn portal_effects(&self, frame: &[u8]) -> Vec<SessionEffect> {
        wire::execute_portal(body(frame))
            .ok()
            .and_then(|portal| self.batch.portal_effects.get(portal))
            .cloned()
            .unwrap_or_default()
    }

    /// A Bind of a FETCH, MOVE or CLOSE of a cursor the proxy keeps (psycopg 3's named
    /// cursors): held and answered at its Execute. Returns whether it was one.
    fn bind_kept_cursor_command(&mut self, bind: &Bind<'_>, frame: &[u8]) -> Result<bool, Refusal> {
        let statement = self.statements.named_in_message(bind.statement);
        let Some(query) = statement.map(|s| s.query.clone()) else {
            return Ok(false);
        };
        let Some(command) = self.kept_cursor_command(&query) else {
            return Ok(false);
        };
        let rest = &body(frame)[bind.rest_offset..];
        let split = BindRest::decode(rest).map_err(|e| Refusal::violation(e.to_string()))?;
        self.bind_cursor_command(bind.portal, command, split.result_formats)?;
        Ok(true)
    }

    pub(super) async fn on_describe(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let describe =
            Target::decode_describe(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        if describe.kind == StatementOrPortal::Portal
            && (self.describe_deferred_begin(describe.name) || self.describe_left_portal(frame))
        {
            return Ok(());
        }
        let query = match (describe.kind, describe.name) {
            (StatementOrPortal::Statement, name) => self.statements.named_in_message(name),
            (StatementOrPortal::Portal, _) => None,
        };
        let query = query.map(|statement| statement.query.clone());
        let shard = query.and_then(|query| self.shard_before_bind(&query).flatten());
        if shard.is_none() && self.backend.is_none() && self.txn.phase.is_deferred() {
            // Describing a statement says nothing about where the transaction will run: do
            // it on a backend outside the client's deferred BEGIN.
            let deferred = std::mem::take(&mut self.txn.phase);
            let ensured = self.ensure_backend(None).await.map(|_| ());
            self.txn.phase = deferred;
            ensured?;
        } else {
            self.ensure_backend(shard).await?;
        }
        let renamed = match describe.kind {
            StatementOrPortal::Statement => self.backend_statement_name(describe.name)?,
            StatementOrPortal::Portal => None,
        };
        match renamed {
            Some(name) => frontend::describe(b'S', &name, &mut self.bufs.to_backend)
                .map_err(|e| Refusal::Statement(internal(e.to_string())))?,
            None => self.bufs.to_backend.extend_from_slice(frame),
        }
        self.push(Expect::Describe);
        Ok(())
    }

    /// The backend-side name of the client's statement `name`, prepared on the current backend
    /// first if it is not there yet (the reply to that Parse is hidden). `None` for the unnamed
    /// statement and for names the client never prepared, which go through unchanged so the
    /// server reports them as it would.
    fn backend_statement_name(
        &mut self,
        name: &str,
    ) -> Result<Option<std::sync::Arc<str>>, Refusal> {
        if name.is_empty() {
            self.restore_unnamed()?;
            return Ok(None);
        }
        let Some(prepared) = self.statements.get(name).cloned() else {
            return Ok(None);
        };
        let conn = self.backend_in_use()?;
        if conn.prepared.insert(prepared.backend_name.clone()) {
            let undo = Undo {
                backend_name: Some(prepared.backend_name.clone()),
                ..Undo::default()
            };
            self.send_parse(&prepared.backend_name, &prepared, false, undo)?;
        }
        Ok(Some(prepared.backend_name.clone()))
    }

    /// The backend name a Parse of `query` with `param_types` gets now.
    fn statement_name(&self, query: &str, param_types: &[u32]) -> std::sync::Arc<str> {
        let base = prepared::backend_name(query, param_types);
        self.env.database.known_statements.current_name(base)
    }

    /// Sends a Parse of `statement` under `name` and queues its reply (hidden unless the
    /// client sent this Parse itself).
    fn send_parse(
        &mut self,
        name: &str,
        statement: &Prepared,
        visible: bool,
        undo: Undo,
    ) -> Result<(), Refusal> {
        let types = statement.param_types.iter().copied();
        frontend::parse(name, &statement.query, types, &mut self.bufs.to_backend)
            .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
        self.push(Expect::Parse { visible, undo });
        Ok(())
    }

    /// Drivers parse the unnamed statement in one round trip and bind it in the next (sqlx,
    /// pgjdbc): if the client has since moved to another backend, parse it there first.
    fn restore_unnamed(&mut self) -> Result<(), Refusal> {
        if self.batch.unnamed_on_backend {
            return Ok(());
        }
        let Some(unnamed) = self.statements.unnamed().cloned() else {
            return Ok(());
        };
        self.send_parse("", &unnamed, false, Undo::default())?;
        self.batch.unnamed_on_backend = true;
        Ok(())
    }

    /// Close of a named statement is answered by the proxy: the backend keeps the statement
    /// for other clients. Portals and the unnamed statement belong to the backend.
    pub(super) async fn on_close(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let close =
            Target::decode_close(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        if self.close_left_portal(&close) {
            return Ok(());
        }
        let named_statement = close.kind == StatementOrPortal::Statement && !close.name.is_empty();
        if named_statement || self.backend.is_none() {
            self.statements.remove(close.name);
            self.push(Expect::synthetic(Synthetic::CloseComplete));
            return Ok(());
        }
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Close);
        Ok(())
    }
}

/// Whether `sql` may return rows from a write (`RETURNING`, as a whole word anywhere: a
/// string containing the word is refused too, which only costs a clear error).
pub(super) fn returns_rows(sql: &str) -> bool {
    (sql.split(|c: char| !(c.is_alphanumeric() || c == '_')))
        .any(|word| word.eq_ignore_ascii_case("returning"))
}
