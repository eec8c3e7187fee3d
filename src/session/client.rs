//! Frames from the client: each is forwarded, rewritten, or answered by the proxy, and its
//! expected reply is queued.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::replies::{Expect, Synthetic, Undo};
use super::statements::{self, SessionEffect};
use super::{Ending, Session, internal};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::router::Statement;
use crate::wire::{self, Bind, Close, Describe, Parse, StatementOrPortal, encode, peek_header, tag};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Handles every complete frame the client has sent so far.
    pub(super) async fn on_client_data(&mut self) -> Result<(), Ending> {
        while !self.terminated {
            let header = peek_header(&self.bufs.client_in).map_err(|e| protocol_violation(e.to_string()))?;
            let Some(header) = header else { break };
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
            tag::EXECUTE => self.forward(&frame, Statement::Opaque, Expect::Execute).await,
            tag::FUNCTION_CALL => self.forward(&frame, Statement::Opaque, Expect::FunctionCall).await,
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
                return Err(protocol_violation(format!("invalid frontend message type {:?}", other as char)));
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
        let effects = statements::session_effects(sql);
        self.note_pins(&effects);
        self.ensure_backend(Statement::Sql(sql)).await?;
        self.bufs.to_backend.extend_from_slice(frame);
        self.push(Expect::Query {
            visible: true,
            effects,
            failed: false,
        });
        Ok(())
    }

    async fn on_parse(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let parse = Parse::parse(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.note_pins(&statements::session_effects(parse.query));
        self.ensure_backend(Statement::Sql(parse.query)).await?;
        if parse.name.is_empty() {
            self.bufs.to_backend.extend_from_slice(frame);
            self.push(Expect::Parse {
                visible: true,
                undo: Undo::default(),
            });
            return Ok(());
        }
        let Some(prepared) = self.statements.register(parse.name, parse.query, parse.param_types) else {
            return Err(Refusal::Statement(ErrorReport::error(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                Blame::Client,
                format!("prepared statement \"{}\" already exists", parse.name),
            )));
        };
        let client_name = Some(parse.name.into());
        let conn = self.backend.as_deref_mut().expect("ensured above");
        if conn.prepared.contains(&prepared.backend_name) {
            self.push(Expect::Synthetic {
                message: Synthetic::ParseComplete,
                undo: Undo {
                    client_name,
                    backend_name: None,
                },
            });
            return Ok(());
        }
        conn.prepared.insert(prepared.backend_name.clone());
        frontend::parse(&prepared.backend_name, &prepared.query, prepared.param_types.iter().copied(), &mut self.bufs.to_backend)
            .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
        self.push(Expect::Parse {
            visible: true,
            undo: Undo {
                client_name,
                backend_name: Some(prepared.backend_name.clone()),
            },
        });
        Ok(())
    }

    async fn on_bind(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let bind = Bind::parse(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
        self.ensure_backend(Statement::Opaque).await?;
        match self.backend_statement_name(bind.statement)? {
            Some(name) => encode::bind_renamed(&mut self.bufs.to_backend, bind.portal, &name, &body(frame)[bind.rest_offset..]),
            None => self.bufs.to_backend.extend_from_slice(frame),
        }
        self.push(Expect::Bind);
        Ok(())
    }

    async fn on_describe(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let describe = Describe::parse(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
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
    fn backend_statement_name(&mut self, name: &str) -> Result<Option<std::sync::Arc<str>>, Refusal> {
        let Some(prepared) = (!name.is_empty()).then(|| self.statements.get(name)).flatten().cloned() else {
            return Ok(None);
        };
        let conn = self.backend.as_deref_mut().expect("caller ensured a backend");
        if conn.prepared.insert(prepared.backend_name.clone()) {
            frontend::parse(&prepared.backend_name, &prepared.query, prepared.param_types.iter().copied(), &mut self.bufs.to_backend)
                .map_err(|e| Refusal::Statement(internal(e.to_string())))?;
            self.push(Expect::Parse {
                visible: false,
                undo: Undo {
                    client_name: None,
                    backend_name: Some(prepared.backend_name.clone()),
                },
            });
        }
        Ok(Some(prepared.backend_name.clone()))
    }

    /// Close of a named statement is answered by the proxy: the backend keeps the statement
    /// for other clients. Portals and the unnamed statement belong to the backend.
    async fn on_close(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        let close = Close::parse(body(frame)).map_err(|e| Refusal::violation(e.to_string()))?;
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

    async fn forward(&mut self, frame: &[u8], statement: Statement<'_>, expect: Expect) -> Result<(), Refusal> {
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
                Synthetic::Error(report) => encode::error_response(&mut self.bufs.to_client, &report),
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

fn protocol_violation(message: String) -> Ending {
    Ending::Fatal(ErrorReport::fatal(sqlstate::PROTOCOL_VIOLATION, Blame::Client, message))
}

fn body(frame: &[u8]) -> &[u8] {
    &frame[wire::HEADER_LEN..]
}
