//! The control plane: connections that are not the row path. bb8-postgres pools and plain
//! tokio-postgres connections for look-ups, notifications and health: directory tables
//! (`directory`), replica health and lag (`health`), the WAL positions causal replica
//! reads wait on (`causal`), and the commit decisions of atomic commits across shards, with
//! the recovery that finishes them (`two_phase`, `recovery`).

pub mod causal;
pub mod directory;
pub mod health;
pub mod recovery;
pub mod two_phase;

use crate::config::BackendUri;

/// A tokio-postgres config for `uri`, named so operators can tell control-plane sessions
/// apart in `pg_stat_activity`.
pub(crate) fn client_config(
    uri: &BackendUri,
    application_name: &str,
    connect_timeout: std::time::Duration,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&uri.host)
        .port(uri.port)
        .user(&uri.user)
        .dbname(&uri.database)
        .application_name(application_name)
        .connect_timeout(connect_timeout);
    if let Some(password) = &uri.password {
        config.password(password);
    }
    config
}
