//! The end of a client's startup: its parameters are applied on a backend, and the client is
//! told the server's real parameter values, the proxy's cancel key and ReadyForQuery.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::settings::{ClientSettings, parse_options, set_config_sql};
use crate::error::ErrorReport;
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
        let shard = self.env.database.router.map().default_shard;
        let mut conn = (self.checkout_primary(shard).await).map_err(ErrorReport::into_fatal)?;
        // Undo whatever the backend's previous client changed, then apply this client's startup.
        self.settings = ClientSettings::at_connect(&conn);
        let mut sql = self.settings.sync_sql(&mut conn).unwrap_or_default();
        self.use_backend(shard, conn, TxStatus::Idle);
        for (name, value) in &settings {
            sql.push_str(&set_config_sql(name, value));
        }
        if !sql.is_empty() {
            self.run_hidden(&sql)
                .await
                .map_err(ErrorReport::into_fatal)?;
        }
        let conn = self.backend_in_use().map_err(ErrorReport::into_fatal)?;
        self.settings = ClientSettings::after_startup(conn, &settings);
        for (name, value) in self.settings.reported() {
            encode::parameter_status(&mut self.bufs.to_client, name, value);
        }
        let key = self.env.cancel_key;
        encode::backend_key_data(&mut self.bufs.to_client, key.pid, key.secret);
        encode::ready_for_query(&mut self.bufs.to_client, TxStatus::Idle);
        self.release_if_done();
        Ok(())
    }
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
