//! Session settings that must follow a client from backend to backend.
//!
//! Reported parameters (client_encoding, DateStyle, TimeZone, application_name, …) are tracked
//! from the server's own ParameterStatus messages, so the client's view is always what the
//! server said. Other settings come from startup parameters and from SET statements, which are
//! staged until their transaction commits. When a client gets a backend, [`ClientSettings::sync_sql`]
//! says what to run there so the backend matches the client and carries nothing over from the
//! previous client.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use super::statements::SessionEffect;
use crate::backend::{BackendConn, SessionState, Setting, is_server_owned};
use crate::sql::quote;

/// One client's settings.
#[derive(Debug, Default)]
pub struct ClientSettings {
    /// What the client's session is set to (reported parameters as the client last saw them).
    state: SessionState,
    /// Effects of statements in the open transaction.
    staged: Vec<SessionEffect>,
}

impl ClientSettings {
    /// A digest of every setting, for caches of what depends on them (a `*`'s columns
    /// depend on search_path).
    pub fn fingerprint(&self) -> u64 {
        self.state.fingerprint()
    }

    /// Whether the client made serializable its default isolation: a hot standby refuses
    /// such transactions, so its reads stay on primaries.
    pub fn serializable_by_default(&self) -> bool {
        self.default_isolation().contains("serializable")
    }

    /// Whether transactions start above READ COMMITTED (one snapshot for the transaction).
    pub fn isolated_by_default(&self) -> bool {
        above_read_committed(&self.default_isolation())
    }

    /// `default_transaction_isolation` as the client set it, lower-cased (empty: not set).
    fn default_isolation(&self) -> String {
        use crate::backend::Setting;
        let setting = self.state.applied().get("default_transaction_isolation");
        let text = match setting {
            Some(Setting::Value(value)) => value.as_str(),
            Some(Setting::Statement(statement)) => statement,
            None => return String::new(),
        };
        text.to_ascii_lowercase()
    }

    /// The settings every connection to this server starts with: what a new client gets
    /// before its own startup parameters.
    pub fn at_connect(conn: &BackendConn) -> Self {
        Self {
            state: SessionState::with_reported(conn.reported_at_connect.clone()),
            staged: Vec::new(),
        }
    }

    /// Settings of a client whose startup parameters were just applied on `conn`, which now
    /// holds exactly them.
    pub fn after_startup(conn: &mut BackendConn, startup: &[(String, String)]) -> Self {
        let mut state = SessionState::with_reported(conn.state.shared_reported());
        for (name, value) in startup {
            if !conn.state.is_reported(name) {
                state.apply(name.to_ascii_lowercase(), Setting::Value(value.clone()));
            }
        }
        conn.state.copy_applied(&state);
        Self {
            state,
            staged: Vec::new(),
        }
    }

    /// Reported parameters, for the client's startup.
    pub fn reported(&self) -> &BTreeMap<String, String> {
        self.state.reported()
    }

    /// The server reported a new value on the client's backend.
    pub fn on_parameter_status(&mut self, name: &str, value: &str, conn: &mut BackendConn) {
        self.state.report(name, value);
        conn.state.report(name, value);
    }

    /// SQL that makes `conn` match this client, or `None` when it already does. Records the
    /// non-reported settings as applied; reported ones update through ParameterStatus.
    pub fn sync_sql(&self, conn: &mut BackendConn) -> Option<String> {
        // The common case, one comparison: the backend's last client had the same settings.
        if conn.state.fingerprint() == self.state.fingerprint() {
            return None;
        }
        let mut sql = String::new();
        for (name, value) in self.state.reported() {
            let settable = !is_server_owned(name);
            if settable && conn.state.reported().get(name) != Some(value) {
                sql.push_str(&set_config_sql(name, value));
            }
        }
        let applied = self.state.applied();
        for name in conn
            .state
            .applied()
            .keys()
            .filter(|n| !applied.contains_key(*n))
        {
            let _ = write!(sql, "RESET {};", quote::ident(name));
        }
        for (name, setting) in applied {
            if conn.state.applied().get(name) != Some(setting) {
                append_setting(&mut sql, name, setting);
            }
        }
        conn.state.copy_applied(&self.state);
        (!sql.is_empty()).then_some(sql)
    }

    /// Stages the effects of a statement that succeeded inside the current transaction.
    pub fn stage(&mut self, effects: Vec<SessionEffect>) {
        self.staged.extend(effects);
    }

    /// The transaction ended: keep staged settings if it committed, drop them if not.
    pub fn end_transaction(&mut self, committed: bool, conn: &mut BackendConn) {
        let staged = std::mem::take(&mut self.staged);
        if !committed {
            return;
        }
        for effect in staged {
            self.apply(effect, conn);
        }
    }

    fn apply(&mut self, effect: SessionEffect, conn: &mut BackendConn) {
        match effect {
            SessionEffect::Set { name, .. } if conn.state.is_reported(&name) => {}
            SessionEffect::Set { name, statement } => {
                let setting = Setting::Statement(statement);
                conn.state.apply(name.clone(), setting.clone());
                self.state.apply(name, setting);
            }
            SessionEffect::Reset { name } => {
                conn.state.reset(&name);
                self.state.reset(&name);
            }
            SessionEffect::ResetAll | SessionEffect::DiscardAll => {
                conn.state.reset_all();
                self.state.reset_all();
            }
            SessionEffect::DeallocateAll
            | SessionEffect::Pin(_)
            | SessionEffect::UntrackedSetting => {}
        }
    }
}

fn append_setting(sql: &mut String, name: &str, setting: &Setting) {
    match setting {
        Setting::Value(value) => {
            sql.push_str(&set_config_sql(name, value));
        }
        Setting::Statement(statement) => {
            let _ = write!(sql, "{};", Arc::clone(statement));
        }
    }
}

/// `SELECT pg_catalog.set_config(name, value, false);`: sets a parameter from its text form,
/// exactly as a startup parameter or postgresql.conf would (lists such as search_path included).
pub(super) fn set_config_sql(name: &str, value: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config({}, {}, false);",
        quote::literal(name),
        quote::literal(value)
    )
}

/// Splits a startup `options` value (`-c name=value --name=value`, backslash escapes a space)
/// into settings (PostgreSQL docs, "options" in libpq's connection parameters).
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)))
            }
            c => word.push(c),
        }
    }
    words.extend((!word.is_empty()).then_some(word));
    let mut settings = Vec::new();
    let mut iter = words.into_iter();
    while let Some(w) = iter.next() {
        let pair = match w.as_str() {
            "-c" => iter.next(),
            _ => w
                .strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_owned),
        };
        if let Some((name, value)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            settings.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    settings
}

/// Whether `isolation` (a level, or a statement naming one) reads one snapshot for the whole
/// transaction: REPEATABLE READ or SERIALIZABLE.
pub fn above_read_committed(isolation: &str) -> bool {
    let isolation = isolation.to_ascii_lowercase();
    isolation.contains("repeatable") || isolation.contains("serializable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libpq_options() {
        let parsed =
            parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB -c x=a\\ b");
        assert_eq!(
            parsed,
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "64MB".into()),
                ("x".into(), "a b".into()),
            ]
        );
    }
}
