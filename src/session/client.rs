//! Frames from the client: each is forwarded, rewritten, or answered by the proxy, and its
//! expected reply is queued.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::prepared;
use super::replies::{Expect, Synthetic, Undo};
use super::sql_prepared::{SqlCommand, parse_sql_command};
use super::statements::{self, SessionEffect};
use super::{Ending, Session, internal};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::router::Statement;
use crate::wire::{
    self, Bind, Close, Describe, Parse, StatementOrPortal, TxStatus, encode, peek_header, tag,
};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Handles every complete frame the client has sent so far.
    pub(super) async fn on_client_data(&mut self) -> Result<(), Ending> {
        while !self.terminated {
            if self.copy_data_remaining > 0 {
                self.stream_copy_data(self.copy_data_remaining);
                if self.copy_data_remaining > 0 {
                    break;
                }
                continue;
            }
            let header =
                peek_header(&self.bufs.client_in).map_err(|e| protocol_violation(e.to_string()))?;
            let Some(header) = header else { break };
            if header.tag == tag::COPY_DATA && self.backend.is_some() && !self.skip_until_sync {
                self.stream_copy_data(header.total_len);
                continue;
            }
            if header.total_len > self.env.max_message_bytes {
                return Err(protocol_violation(format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    header.total_len, self.env.max_message_bytes
                )));
            }
            if self.bufs.client_in.len() < header.total_len {
                break;
            }
            let frame = self.bufs.client_in.split_to(header.total_len);
            self.on_client_frame(header.tag, frame).await?;
        }
        Ok(())
    }

    /// CopyData goes to the backend as it arrives, without waiting for whole frames, so COPY
    /// rows of any size need no buffering and no message-size limit.
    fn stream_copy_data(&mut self, frame_left: usize) {
        let n = frame_left.min(self.bufs.client_in.len());
        let chunk = self.bufs.client_in.split_to(n);
        self.bufs.to_backend.extend_from_slice(&chunk);
        self.copy_data_remaining = frame_left - n;
    }

    async fn on_client_frame(&mut self, frame_tag: u8, frame: BytesMut) -> Result<(), Ending> {
        if self.skip_until_sync && frame_tag != tag::SYNC {
            return Ok(());
        }
        let outcome = match frame_tag {
            tag::QUERY => self.on_query(&frame).await,
            tag::PARSE => self.on_parse(&frame).await,
            tag::BIND => self.on_bind(&frame).await,
            tag::DESCRIBE => self.on_describe(&frame).await,
            tag::CLOSE => self.on_close(&frame).await,
            tag::EXECUTE => {
                let effects = self.portal_effects(&frame);
                self.forward(&frame, Statement::Opaque, Expect::Execute(effects))
                    .await
            }
            tag::FUNCTION_CALL => {
                self.forward(&frame, Statement::Opaque, Expect::FunctionCall)
                    .await
            }
            tag::SYNC => self.on_sync(&frame),
            tag::FLUSH | tag::COPY_DATA => {
                self.forward_if_held(&frame);
                Ok(())
            }
            tag::COPY_DONE | tag::COPY_FAIL => {
                if self.forward_if_held(&frame) {
                    self.replies.push(Expect::CopyEnd);
                }
                Ok(())
            }
            tag::TERMINATE => {
                self.terminated = true;
                Ok(())
            }
            other => {
                return Err(protocol_violation(format!(
                    "invalid frontend message type {:?}",
                    other as char
                )));
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(Refusal::Statement(report)) => {
                self.refuse(frame_tag, report);
                Ok(())
            }
            Err(Refusal::Session(ending)) => Err(ending),
        }
    }

    /// Answers a message the proxy cannot run (no backend to be had, say) the way a server
    /// answers a failed one: the error, then ReadyForQuery or skipping to Sync.
    fn refuse(&mut self, frame_tag: u8, report: ErrorReport) {
        tracing::warn!(code = %report.code, error = %report.message, "statement refused");
        if self.backend.is_none() && self.replies.is_empty() {
            encode::error_response(&mut self.bufs.to_client, &report);
            if frame_tag == tag::QUERY {
                encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            } else {
                self.skip_until_sync = true;
            }
            return;
        }
        self.push(Expect::Synthetic {
            message: Synthetic::Error(report),
            undo: Undo::default(),
        });
        if frame_tag != tag::QUERY {
            self.skip_until_sync = true;
        }
    }

    async fn on_query(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let sql = wire::query_text(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        if let Some(command) = single_sql_command(sql)
            && self.on_sql_command(sql, command).await?
        {
            return Ok(());
        }
        let effects = statements::session_effects(sql);
        self.note_pins(&effects);
        self.ensure_backend(Statement::Sql(sql)).await?;
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Query {
            visible: true,
            effects,
            failed: false,
            undo: Undo::default(),
        });
        Ok(())
    }

    /// Runs a SQL-level PREPARE/EXECUTE/DEALLOCATE with the name rewritten. Returns false when
    /// the statement should go through unchanged (an unknown name: the server's error is right).
    async fn on_sql_command(
        &mut self,
        sql: &str,
        command: SqlCommand<'_>,
    ) -> Result<bool, Refusal> {
        if self.client_status == TxStatus::Failed {
            return Ok(false); // The server answers 25P02, as it should.
        }
        match command {
            SqlCommand::Prepare { name, rest } => {
                let Some(prepared) = self.sql_statements.register(&name, rest) else {
                    return Err(Refusal::Statement(duplicate_statement(&name)));
                };
                let conn = self.ensure_backend(Statement::Sql(sql)).await?;
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
                let conn = self.ensure_backend(Statement::Sql(sql)).await?;
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
    fn answer_command(&mut self, command_tag: &'static str) {
        self.push(Expect::Synthetic {
            message: Synthetic::CommandComplete(command_tag),
            undo: Undo::default(),
        });
        self.push(Expect::Synthetic {
            message: Synthetic::ReadyForQuery,
            undo: Undo::default(),
        });
    }

    async fn on_parse(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let parse = Parse::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.note_pins(&statements::session_effects(parse.query));
        if !parse.name.is_empty()
            && self.backend.is_none()
            && let Some(answered) = self.parse_known_statement(&parse)
        {
            return answered;
        }
        self.ensure_backend(Statement::Sql(parse.query)).await?;
        if parse.name.is_empty() {
            self.statements.set_unnamed(parse.query, parse.param_types);
            self.unnamed_on_backend = true;
            self.bufs.to_backend.extend_from_slice(frame);
            self.push(Expect::Parse {
                visible: true,
                undo: Undo::default(),
            });
            return Ok(());
        }
        let Some(prepared) = self
            .statements
            .register(parse.name, parse.query, parse.param_types)
        else {
            return Err(Refusal::Statement(duplicate_statement(parse.name)));
        };
        let client_name = Some(parse.name.into());
        let conn = self.backend.as_deref_mut().expect("ensured above");
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
        frontend::parse(
            &prepared.backend_name,
            &prepared.query,
            prepared.param_types.iter().copied(),
            &mut self.bufs.to_backend,
        )
        .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
        self.push(Expect::Parse {
            visible: true,
            undo: Undo {
                client_name,
                backend_name: Some(prepared.backend_name.clone()),
                sql_name: None,
            },
        });
        Ok(())
    }

    /// A Parse outside a transaction of a statement some backend already accepted: registered
    /// and answered without taking a backend; it is prepared where it is first bound.
    fn parse_known_statement(&mut self, parse: &Parse<'_>) -> Option<Result<(), Refusal>> {
        let backend_name = prepared::backend_name(parse.query, &parse.param_types);
        if !self.env.database.known_statements.contains(&backend_name) {
            return None;
        }
        if self
            .statements
            .register(parse.name, parse.query, parse.param_types.clone())
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

    async fn on_bind(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let bind = Bind::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.ensure_backend(Statement::Opaque).await?;
        self.remember_portal_effects(bind.portal, bind.statement);
        match self.backend_statement_name(bind.statement)? {
            Some(name) => encode::bind_renamed(
                &mut self.bufs.to_backend,
                bind.portal,
                &name,
                &body(frame)[bind.rest_offset..],
            ),
            None => self.bufs.to_backend.extend_from_slice(frame),
        }
        self.push(Expect::Bind);
        Ok(())
    }

    /// A portal bound from a `SET` statement changes the session when it is executed.
    fn remember_portal_effects(&mut self, portal: &str, statement: &str) {
        let prepared = match statement {
            "" => self.statements.unnamed(),
            name => self.statements.get(name),
        };
        match prepared.filter(|p| !p.effects.is_empty()) {
            Some(p) => {
                let effects = p.effects.clone();
                self.portal_effects.insert(portal.to_owned(), effects);
            }
            None => {
                self.portal_effects.remove(portal);
            }
        }
    }

    /// Effects of the portal an Execute runs (empty for almost every statement).
    fn portal_effects(&self, frame: &[u8]) -> Vec<SessionEffect> {
        wire::execute_portal(body(frame))
            .ok()
            .and_then(|portal| self.portal_effects.get(portal))
            .cloned()
            .unwrap_or_default()
    }

    async fn on_describe(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let describe =
            Describe::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.ensure_backend(Statement::Opaque).await?;
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
        let conn = self
            .backend
            .as_deref_mut()
            .expect("caller ensured a backend");
        if conn.prepared.insert(prepared.backend_name.clone()) {
            frontend::parse(
                &prepared.backend_name,
                &prepared.query,
                prepared.param_types.iter().copied(),
                &mut self.bufs.to_backend,
            )
            .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
            self.push(Expect::Parse {
                visible: false,
                undo: Undo {
                    backend_name: Some(prepared.backend_name.clone()),
                    ..Undo::default()
                },
            });
        }
        Ok(Some(prepared.backend_name.clone()))
    }

    /// Drivers parse the unnamed statement in one round trip and bind it in the next (sqlx,
    /// pgjdbc): if the client has since moved to another backend, parse it there first.
    fn restore_unnamed(&mut self) -> Result<(), Refusal> {
        if self.unnamed_on_backend {
            return Ok(());
        }
        let Some(unnamed) = self.statements.unnamed().cloned() else {
            return Ok(());
        };
        frontend::parse(
            "",
            &unnamed.query,
            unnamed.param_types.iter().copied(),
            &mut self.bufs.to_backend,
        )
        .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
        self.push(Expect::Parse {
            visible: false,
            undo: Undo::default(),
        });
        self.unnamed_on_backend = true;
        Ok(())
    }

    /// Close of a named statement is answered by the proxy: the backend keeps the statement
    /// for other clients. Portals and the unnamed statement belong to the backend.
    async fn on_close(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let close = Close::decode(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        let named_statement = close.kind == StatementOrPortal::Statement && !close.name.is_empty();
        if named_statement || self.backend.is_none() {
            self.statements.remove(close.name);
            self.push(Expect::Synthetic {
                message: Synthetic::CloseComplete,
                undo: Undo::default(),
            });
            return Ok(());
        }
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Close);
        Ok(())
    }

    fn on_sync(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        self.skip_until_sync = false;
        if self.backend.is_none() && self.replies.is_empty() {
            encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
            return Ok(());
        }
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Sync);
        Ok(())
    }

    async fn forward(
        &mut self,
        frame: &[u8],
        statement: Statement<'_>,
        expect: Expect,
    ) -> Result<(), Refusal> {
        self.ensure_backend(statement).await?;
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(expect);
        Ok(())
    }

    /// Forwards a message that needs no backend of its own (Flush, COPY data); without a
    /// backend there is nothing to flush or copy into, so it is dropped as a server would.
    fn forward_if_held(&mut self, frame: &[u8]) -> bool {
        if self.backend.is_none() {
            return false;
        }
        self.bufs.to_backend.extend_from_slice(frame);
        true
    }

    /// Queues an expected reply; answers the proxy writes itself go out as soon as they are due.
    pub(super) fn push(&mut self, expect: Expect) {
        if let Some(undo) = self.replies.push(expect) {
            self.apply_undo(undo);
        }
        self.write_due_synthetics();
    }

    pub(super) fn write_due_synthetics(&mut self) {
        for message in self.replies.take_synthetics() {
            match message {
                Synthetic::ParseComplete => encode::parse_complete(&mut self.bufs.to_client),
                Synthetic::CloseComplete => encode::close_complete(&mut self.bufs.to_client),
                Synthetic::Error(report) => {
                    encode::error_response(&mut self.bufs.to_client, &report)
                }
                Synthetic::CommandComplete(command_tag) => {
                    encode::command_complete(&mut self.bufs.to_client, command_tag)
                }
                Synthetic::ReadyForQuery => {
                    encode::ready_for_query(&mut self.bufs.to_client, self.client_status)
                }
            }
        }
    }

    fn note_pins(&mut self, effects: &[SessionEffect]) {
        for effect in effects {
            if let SessionEffect::Pin(reason) = effect {
                if self.pin.is_none() {
                    tracing::debug!(?reason, "client pinned to its backend");
                }
                self.pin.get_or_insert(*reason);
            }
        }
    }
}

/// Why a client message was not run.
pub(super) enum Refusal {
    /// This statement fails; the session goes on.
    Statement(ErrorReport),
    /// The session must end.
    Session(Ending),
}

impl Refusal {
    fn violation(message: String) -> Self {
        Refusal::Session(protocol_violation(message))
    }
}

impl From<ErrorReport> for Refusal {
    fn from(report: ErrorReport) -> Self {
        Refusal::Statement(report)
    }
}

fn duplicate_statement(name: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::DUPLICATE_PREPARED_STATEMENT,
        Blame::Client,
        format!("prepared statement \"{name}\" already exists"),
    )
}

/// A query that is exactly one SQL-level prepared-statement command.
fn single_sql_command(sql: &str) -> Option<SqlCommand<'_>> {
    let mut statements = statements::split_statements(sql);
    let only = statements.next()?;
    statements
        .next()
        .is_none()
        .then(|| parse_sql_command(only))
        .flatten()
}

fn protocol_violation(message: String) -> Ending {
    Ending::Fatal(ErrorReport::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        Blame::Client,
        message,
    ))
}

fn body(frame: &[u8]) -> &[u8] {
    &frame[wire::HEADER_LEN..]
}
