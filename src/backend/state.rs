//! The settings of a server session, as the proxy knows them, with a fingerprint so that
//! "is this backend already set up the way this client needs?" is one integer comparison.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Reported parameters the server owns; a client cannot set them.
const SERVER_OWNED: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
];

/// Whether the reported parameter `name` is the server's own (no client can set it).
pub fn is_server_owned(name: &str) -> bool {
    SERVER_OWNED.contains(&name)
}

/// A server setting the proxy applied for a client, kept so the next client gets a clean slate
/// and the same client gets the same state on any backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Setting {
    /// Applied with `set_config(name, value, false)`.
    Value(String),
    /// Applied by replaying the client's own statement (e.g. `SET search_path TO a, b`).
    Statement(Arc<str>),
}

/// Reported parameters (from ParameterStatus) and other settings of one session. Mutations go
/// through methods so the cached fingerprint can never go stale.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// Shared by the clients and backends that saw the same reports (a client's copy costs
    /// nothing until it changes a reported parameter).
    reported: Arc<BTreeMap<String, String>>,
    applied: BTreeMap<String, Setting>,
    fingerprint: Cell<Option<u64>>,
}

impl SessionState {
    /// A state with these reported parameters and nothing applied.
    pub fn with_reported(reported: Arc<BTreeMap<String, String>>) -> Self {
        Self {
            reported,
            ..Self::default()
        }
    }

    /// Reported parameters by the server's spelling of their names.
    pub fn reported(&self) -> &BTreeMap<String, String> {
        &self.reported
    }

    /// The reported parameters, shared.
    pub fn shared_reported(&self) -> Arc<BTreeMap<String, String>> {
        self.reported.clone()
    }

    /// Non-reported settings by lower-case name.
    pub fn applied(&self) -> &BTreeMap<String, Setting> {
        &self.applied
    }

    /// Whether `name` is a reported parameter (case-insensitive, as GUC names are).
    pub fn is_reported(&self, name: &str) -> bool {
        self.reported.keys().any(|k| k.eq_ignore_ascii_case(name))
    }

    /// The server reported a value.
    pub fn report(&mut self, name: &str, value: &str) {
        if self.reported.get(name).map(String::as_str) != Some(value) {
            Arc::make_mut(&mut self.reported).insert(name.to_owned(), value.to_owned());
            self.fingerprint.set(None);
        }
    }

    /// A non-reported setting took effect.
    pub fn apply(&mut self, name: String, setting: Setting) {
        self.applied.insert(name, setting);
        self.fingerprint.set(None);
    }

    /// A non-reported setting was reset.
    pub fn reset(&mut self, name: &str) {
        self.applied.remove(name);
        self.fingerprint.set(None);
    }

    /// Every non-reported setting was reset (RESET ALL, DISCARD ALL).
    pub fn reset_all(&mut self) {
        self.applied.clear();
        self.fingerprint.set(None);
    }

    /// Takes another state's non-reported settings (after they were applied here).
    pub fn copy_applied(&mut self, other: &SessionState) {
        self.applied.clone_from(&other.applied);
        self.fingerprint.set(None);
    }

    /// A digest of everything a client can set: states equal but for the server's own
    /// parameters have equal fingerprints (a replica's `in_hot_standby` is not the primary's,
    /// and no client can change either, so a replica serving a client is already in step).
    pub fn fingerprint(&self) -> u64 {
        if let Some(fingerprint) = self.fingerprint.get() {
            return fingerprint;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        let settable = (self.reported.iter()).filter(|(name, _)| !is_server_owned(name));
        settable.for_each(|entry| entry.hash(&mut hasher));
        self.applied.hash(&mut hasher);
        let fingerprint = hasher.finish();
        self.fingerprint.set(Some(fingerprint));
        fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_every_change() {
        let mut a = SessionState::default();
        let mut b = SessionState::default();
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.report("DateStyle", "ISO, MDY");
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.report("DateStyle", "ISO, MDY");
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.apply("work_mem".into(), Setting::Value("64MB".into()));
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.copy_applied(&a);
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.reset("work_mem");
        b.reset_all();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn parameters_the_server_owns_leave_the_fingerprint_alone() {
        let mut primary = SessionState::default();
        let mut replica = SessionState::default();
        primary.report("in_hot_standby", "off");
        replica.report("in_hot_standby", "on");
        replica.report("server_version", "15.9");
        assert_eq!(primary.fingerprint(), replica.fingerprint());
        replica.report("TimeZone", "UTC");
        assert_ne!(primary.fingerprint(), replica.fingerprint());
    }
}
