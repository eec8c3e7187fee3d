//! Values computed from a statement text (its routing plan, its scatter plan), kept by text
//! so a statement is parsed once, not on every execution.
//!
//! Part of the router. Bounded: when full it starts over, which keeps memory flat when clients
//! send endless distinct texts (literals inlined) at the cost of re-parsing hot ones once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Most values kept per cache.
const MAX_ENTRIES: usize = 10_000;

/// Longest statement text cached; longer ones (bulk INSERTs) are planned every time.
pub(super) const MAX_CACHED_TEXT: usize = 16 * 1024;

/// Values by SQL text; `V` is cheap to clone (an `Arc`, or a `Result` of one).
pub(super) struct TextCache<V>(Mutex<HashMap<Box<str>, V>>);

impl<V> Default for TextCache<V> {
    fn default() -> Self {
        TextCache(Mutex::new(HashMap::new()))
    }
}

impl<V: Clone> TextCache<V> {
    /// The cached value of `sql`, or the one `make` builds (then cached).
    pub(super) fn get_or_insert(&self, sql: &str, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.lock().get(sql) {
            return value.clone();
        }
        // Made outside the lock: a slow parse never blocks other sessions' lookups.
        let value = make();
        if sql.len() <= MAX_CACHED_TEXT {
            let mut values = self.lock();
            if values.len() >= MAX_ENTRIES {
                values.clear();
            }
            values.insert(sql.into(), value.clone());
        }
        value
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
