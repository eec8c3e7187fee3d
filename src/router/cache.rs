//! Plans by statement text, so a statement is parsed once, not on every execution.
//!
//! Part of the router. Bounded: when full it starts over, which keeps memory flat when clients
//! send endless distinct texts (literals inlined) at the cost of re-parsing hot ones once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Plan;

/// Most plans kept per router.
const MAX_PLANS: usize = 10_000;

/// Longest statement text cached; longer ones (bulk INSERTs) are planned every time.
pub(super) const MAX_CACHED_TEXT: usize = 16 * 1024;

/// Plans by SQL text.
#[derive(Default)]
pub(super) struct PlanCache(Mutex<HashMap<Box<str>, Arc<Plan>>>);

impl PlanCache {
    /// The cached plan of `sql`, or the one `make` builds (then cached).
    pub(super) fn get_or_insert(&self, sql: &str, make: impl FnOnce() -> Plan) -> Arc<Plan> {
        if let Some(plan) = self.lock().get(sql) {
            return plan.clone();
        }
        // Planned outside the lock: a slow parse never blocks other sessions' lookups.
        let plan = Arc::new(make());
        if sql.len() <= MAX_CACHED_TEXT {
            let mut plans = self.lock();
            if plans.len() >= MAX_PLANS {
                plans.clear();
            }
            plans.insert(sql.into(), plan.clone());
        }
        plan
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Plan>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
