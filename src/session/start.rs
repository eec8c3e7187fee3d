//! The end of a client's startup: its parameters are applied on a backend, and the client is
//! told the server's real parameter values, the proxy's cancel key and ReadyForQuery.

use tokio::io::{AsyncRead, AsyncWrite};

use super::replies::Expect;
use super::settings::{ClientSettings, parse_options};
use super::{Session, internal};
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::execute::{self, PumpEvent};
use crate::router::Statement;
use crate::wire::{TxStatus, encode};

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Applies the startup parameters and sends the client what a server sends after
    /// AuthenticationOk. An error here is FATAL, as in PostgreSQL.
    pub(super) async fn start(
        &mut self,
        startup: Vec<(String, String)>,
    ) -> Result<(), ErrorReport> {
        let settings = startup_settings(startup);
        self.ensure_backend(Statement::Opaque)
            .await
            .map_err(ErrorReport::into_fatal)?;
        let conn = self.backend.as_deref_mut().expect("ensured above");
        // Undo whatever the backend's previous client changed, then apply this client's startup.
        self.settings = ClientSettings::at_connect(conn);
        let mut sql = self.settings.sync_sql(conn).unwrap_or_default();
        for (name, value) in &settings {
            sql.push_str(&format!(
                "SELECT pg_catalog.set_config({}, {}, false);",
                literal(name),
                literal(value)
            ));
        }
        if !sql.is_empty() {
            postgres_protocol::message::frontend::query(&sql, &mut self.bufs.to_backend)
                .map_err(|e| internal(e.to_string()))?;
            self.replies.push(Expect::hidden_query());
            self.wait_for_replies().await?;
        }
        if let Some(report) = self.replay_error.take() {
            return Err(report.into_fatal());
        }
        let conn = self.backend.as_deref_mut().expect("ensured above");
        self.settings = ClientSettings::after_startup(conn, &settings);
        self.settings.mark_applied(conn);
        for (name, value) in self.settings.reported() {
            encode::parameter_status(&mut self.bufs.to_client, name, value);
        }
        let key = self.env.cancel_key;
        encode::backend_key_data(&mut self.bufs.to_client, key.pid, key.secret);
        encode::ready_for_query(&mut self.bufs.to_client, TxStatus::Idle);
        self.release_if_done();
        Ok(())
    }

    /// Pumps the backend only (the client waits) until every queued reply has arrived.
    async fn wait_for_replies(&mut self) -> Result<(), ErrorReport> {
        while !self.replies.is_empty() {
            let backend = self.backend.as_deref_mut();
            let event = execute::pump(&mut self.client, backend, &mut self.bufs, false).await;
            match event {
                Ok(PumpEvent::BackendData) => {
                    self.on_backend_data().map_err(|_| lost())?;
                }
                _ => return Err(lost()),
            }
        }
        Ok(())
    }
}

fn lost() -> ErrorReport {
    ErrorReport::fatal(
        sqlstate::CONNECTION_FAILURE,
        Blame::Backend,
        "server connection lost during startup",
    )
}

/// Startup parameters that set session settings, with `options` expanded.
fn startup_settings(startup: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    for (name, value) in startup {
        if name == "options" {
            settings.extend(parse_options(&value));
        } else if !NOT_SETTINGS.contains(&name.as_str()) {
            settings.push((name, value));
        }
    }
    settings
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
