//! SQL text before and around the parser: one lexer for every reader that needs less than a
//! parse, and the bounds that keep a statement from taking the process down.
//!
//! A leaf (pure, no I/O): the router, the session and the logs use it; it uses nothing of
//! theirs. sqlparser itself is called by the router, only after [`bounds`] said the
//! statement's tree is shallow enough, and on a stack [`on_stack_for`] made big enough.

pub mod bounds;
pub mod lexer;
pub mod quote;

/// Deepest statement (by [`bounds::depth`]) the proxy parses. PostgreSQL itself refuses a
/// chain of about 10,000 `+` with 54001 (its 2 MB `max_stack_depth`); past this a statement is
/// sent on untouched where its route needs nothing from inside it, and refused otherwise.
pub const MAX_DEPTH: usize = 10_000;

/// Depth up to which a statement is planned on the caller's stack (a tokio worker's 2 MiB).
pub const SHALLOW: usize = 128;

/// Stack bytes a deep statement gets per level of [`bounds::depth`]: what planning, printing
/// and dropping one level of the deepest tree measured took in a debug build, doubled. The
/// stack is mapped lazily (only the pages touched cost memory), so this is address space:
/// at most about 160 MiB for a statement at [`MAX_DEPTH`].
const STACK_PER_LEVEL: usize = 16 * 1024;

/// Runs `work` (parsing and walking a statement whose [`bounds::depth`] is `depth`) on a stack
/// that fits that depth: the caller's for shallow statements, a fresh one for deep ones.
/// Callers refuse statements deeper than their limit before calling.
pub fn on_stack_for<R>(depth: usize, work: impl FnOnce() -> R) -> R {
    if depth <= SHALLOW {
        return work();
    }
    let size = (depth + SHALLOW).saturating_mul(STACK_PER_LEVEL);
    stacker::grow(size, work)
}
