//! shardgate: a sharded PostgreSQL proxy.
//!
//! Applications and `psql` connect to shardgate as if it were Postgres. Each statement is routed
//! to the shard that owns its rows and runs on a pooled backend connection; rows travel back as
//! the backend's own protocol bytes.
//!
//! ```text
//!  client ──► frontend ──► session ──► router        (which shard?)
//!             (TLS, auth,   (per-client   │
//!              cancel)       loop, tx,    ▼
//!                            prepared) ─► execute ──► pool ──► backend ──► PostgreSQL
//!                                         (forward raw frames,  (bb8)   (connect, auth)
//!                                          track responses)
//! ```
//!
//! Module map, one per stage of the data flow:
//! - [`config`]: YAML → validated domain types (pure).
//! - [`wire`]: PostgreSQL framing and the few messages the proxy reads or writes (pure, no I/O).
//! - [`sql`]: one lexer for SQL text, and the bounds checked before a statement is parsed.
//! - [`frontend`]: listener, TLS negotiation, startup, client authentication, cancel requests.
//! - [`session`]: one client's loop: transaction pooling, session settings, prepared statements.
//! - [`router`]: statement → [`router::Route`] (pure).
//! - [`execute`]: moves bytes between a client and its backend without one direction ever
//!   blocking the other.
//! - [`pool`]: bb8 pools of backend connections, one per endpoint, served first come first served.
//! - [`backend`]: one server connection: connect, authenticate, what the server reported.
//! - [`control`]: the control plane: health checks, directory tables (bb8-postgres,
//!   LISTEN/NOTIFY).
//! - [`topology`]: the immutable snapshot of databases, shard maps and pools a session uses.
//! - [`moves`], [`reshard`]: what a shard-map edit moves, and holding an edit that would move
//!   stored rows until they are moved.
//! - [`merge`]: cross-shard rows → one result (order, limits, aggregates), pure.
//! - [`admin`]: the admin console and the metrics/health HTTP endpoint.
//! - [`app`]: wiring from config to a listening proxy, signals, logging.
//! - [`cli`], [`demo`]: the `shardgate` command line and its embedded default.
//! - [`local_cluster`]: real local PostgreSQL servers for the demo and the tests.
//!
//! Bottom modules every stage may use: [`error`] (the one shape of a client-visible error),
//! [`metrics`] (Prometheus counters), [`counters`] (what routing decided), [`clients`] (the
//! registry of connected clients), [`lifecycle`] (serving, draining, closing).
//!
//! Rules every module keeps:
//! - Rows of a single-shard statement are never decoded; frames are forwarded as bytes.
//! - Bytes from a client or a backend never cause a panic: decoders return `Result` and bound lengths.
//! - Arrows point down only: `frontend → session → {router, execute}`,
//!   `execute → {pool, backend, merge}`; the router plans merges that `merge` runs.
//!   `tests/layering.rs` holds the layers and fails on a reference that points up.

#![deny(missing_docs)]
// Only `local_cluster` (fork/exec as the `postgres` user, signals) may use `unsafe`.
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod backend;
pub mod cli;
pub mod clients;
pub mod config;
pub mod control;
pub mod counters;
pub mod demo;
pub mod error;
pub mod execute;
pub mod frontend;
pub mod lifecycle;
#[allow(unsafe_code)]
pub mod local_cluster;
pub mod merge;
pub mod metrics;
pub mod moves;
pub mod pool;
pub mod reshard;
pub mod router;
pub mod session;
pub mod sql;
pub mod topology;
pub mod wire;
