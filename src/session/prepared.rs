//! Named prepared statements under transaction pooling.
//!
//! A client's statement names mean nothing to the backend it happens to get. Each statement is
//! given a backend-wide name derived from its text and parameter types, so every client that
//! prepares the same SQL shares one server-side statement per backend, and a client that moves
//! to another backend gets its statement prepared there on first use.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::statements::SessionEffect;

/// A statement as the client prepared it.
#[derive(Debug)]
pub struct Prepared {
    /// Name on every backend: `sg_` + 128-bit hash of text and types.
    pub backend_name: Arc<str>,
    /// SQL text.
    pub query: Arc<str>,
    /// Parameter type OIDs as the client gave them.
    pub param_types: Vec<u32>,
    /// Session effects of running it (a `SET` sent through the extended protocol).
    pub effects: Vec<SessionEffect>,
}

impl Prepared {
    fn new(
        backend_name: Arc<str>,
        query: &str,
        param_types: Vec<u32>,
        effects: Vec<SessionEffect>,
    ) -> Self {
        Self {
            backend_name,
            effects,
            query: query.into(),
            param_types,
        }
    }
}

/// One client's named statements.
#[derive(Debug, Default)]
pub struct PreparedStatements {
    by_name: HashMap<Arc<str>, Arc<Prepared>>,
    unnamed: Option<Arc<Prepared>>,
}

impl PreparedStatements {
    /// Registers `name`, prepared on backends as `backend_name`, with the statement's session
    /// effects (from `statements::session_effects`); `None` when the client already has a
    /// statement by that name.
    pub fn register(
        &mut self,
        name: &str,
        backend_name: Arc<str>,
        query: &str,
        param_types: Vec<u32>,
        effects: Vec<SessionEffect>,
    ) -> Option<Arc<Prepared>> {
        if self.by_name.contains_key(name) {
            return None;
        }
        let prepared = Arc::new(Prepared::new(backend_name, query, param_types, effects));
        self.by_name.insert(name.into(), prepared.clone());
        Some(prepared)
    }

    /// Records the client's latest unnamed statement.
    pub fn set_unnamed(&mut self, query: &str, param_types: Vec<u32>, effects: Vec<SessionEffect>) {
        self.unnamed = Some(Arc::new(Prepared::new(
            "".into(),
            query,
            param_types,
            effects,
        )));
    }

    /// The client's latest unnamed statement.
    pub fn unnamed(&self) -> Option<&Arc<Prepared>> {
        self.unnamed.as_ref()
    }

    /// The statement the client calls `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Prepared>> {
        self.by_name.get(name)
    }

    /// The statement a Bind or Describe names: `""` is the latest unnamed one.
    pub fn named_in_message(&self, name: &str) -> Option<&Arc<Prepared>> {
        match name {
            "" => self.unnamed(),
            name => self.get(name),
        }
    }

    /// Forgets `name` (Close, DEALLOCATE, or a Parse that failed); true if it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.by_name.clear();
        self.unnamed = None;
    }
}

/// The backend-wide name of a statement. Two independent 64-bit SipHashes make a collision
/// between different statements practically impossible; the name is never persisted, so the
/// hash only has to be stable within one process.
pub fn backend_name(query: &str, param_types: &[u32]) -> Arc<str> {
    let half = |seed: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        seed.hash(&mut hasher);
        query.hash(&mut hasher);
        param_types.hash(&mut hasher);
        hasher.finish()
    };
    format!("sg_{:016x}{:016x}", half(1), half(2)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_backend_name() {
        assert_eq!(
            backend_name("SELECT $1", &[23]),
            backend_name("SELECT $1", &[23])
        );
        assert_ne!(
            backend_name("SELECT $1", &[23]),
            backend_name("SELECT $1", &[20])
        );
        assert_ne!(backend_name("SELECT 1", &[]), backend_name("SELECT 2", &[]));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut statements = PreparedStatements::default();
        let mut register = |sql: &str| {
            (statements.register("q", backend_name(sql, &[]), sql, vec![], vec![])).is_some()
        };
        assert!(register("SELECT 1"));
        assert!(!register("SELECT 2"), "q is taken");
        statements.remove("q");
        assert!(
            statements
                .register(
                    "q",
                    backend_name("SELECT 2", &[]),
                    "SELECT 2",
                    vec![],
                    vec![]
                )
                .is_some()
        );
    }
}
