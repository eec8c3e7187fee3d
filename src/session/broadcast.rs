//! Statements that run on several shards' primaries: DDL and writes to reference tables
//! (every shard), writes the map allows to broadcast, and multi-row INSERTs split by shard,
//! from a simple Query or an extended-protocol portal (`portal` below).
//! The execute stage (`execute::broadcast`) runs them; this file takes the backends, says how
//! they commit (in two phases when `transactions.atomic` is on and several shards run the
//! statement inside transactions), and keeps the session's view of them right.
//!
//! Inside a transaction (the client's, or the implicit one of an extended-protocol batch or a
//! multi-statement query, see `implicit`) the statement runs on the transaction's own backend
//! of each shard, joining the shards it had not reached yet, and commits with it: the
//! transaction spans those shards from then on (see `spanning`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::client::Refusal;
use super::scatter::backends::ReadBackend;
use super::statements::{SessionEffect, next_word, session_effects, split_statements};
use super::transaction::Phase;
use crate::backend::BackendConn;
use crate::config::ShardId;
use crate::config::ShardMap;
use crate::control::two_phase::Decision;
use crate::counters::Event;
use crate::error::ErrorReport;
use crate::error::Unsupported;
use crate::execute::broadcast::{
    Atomic, Commit, How, Leg, LegFailed, LegStatement, Ran, Rows, Wrapping, broadcast,
    broadcast_in_transaction,
};
use crate::pool::{Checkout, Liveness};
use crate::topology::Database;
use crate::wire::{TxStatus, encode};

/// Each shard's part of a statement for several primaries, in shard order.
pub(super) type Parts = Vec<(ShardId, LegStatement)>;

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Runs `parts` (shard, SQL) of a simple Query as one statement of the client's,
    /// answered with one result and ReadyForQuery.
    pub(super) async fn run_on_shards(
        &mut self,
        sql: &str,
        parts: Parts,
        rows: Rows,
    ) -> Result<(), Refusal> {
        self.run_spread(sql, parts, rows).await?;
        self.note_ready(self.client_status);
        encode::ready_for_query(&mut self.bufs.to_client, self.client_status);
        Ok(())
    }

    /// Refuses a statement on several primaries where it cannot run: on a connection pinned
    /// to its backend.
    pub(super) fn check_spread_allowed(&self) -> Result<(), Refusal> {
        if self.pin.is_some() {
            let refusal = Unsupported::SpreadWhilePinned;
            return Err(Refusal::Statement(self.unsupported(refusal)));
        }
        Ok(())
    }

    /// Runs `parts` on their shards' primaries and writes the one result (without
    /// ReadyForQuery) to the client: inside the transaction when one is open or the
    /// statement shares a batch with messages before it, else each shard in a transaction of
    /// its own, committed before this returns.
    pub(super) async fn run_spread(
        &mut self,
        sql: &str,
        parts: Parts,
        rows: Rows,
    ) -> Result<(), Refusal> {
        self.check_spread_allowed()?;
        self.forget_columns_after(rows);
        if self.transaction_open() || !self.replies.synced() {
            return self.run_spread_in_transaction(sql, parts, rows).await;
        }
        self.wait_for_replies().await?;
        self.release();
        for (shard, _) in &parts {
            self.note_written(*shard);
        }
        (self.env.database.counters).count(Event::MultiPrimary);
        let database = self.env.database.clone();
        let how = how_to_run(&database, sql, &parts, rows);
        let mut checkouts = self
            .watched(Box::pin(checkout_all(&database, &parts)))
            .await?;
        let map = self.env.database.router.map().clone();
        let mut on = Vec::with_capacity(parts.len());
        for checkout in checkouts.iter_mut() {
            let prelude = self.settings.sync_sql(checkout).into_iter().collect();
            let (conn, liveness) = checkout.with_liveness();
            on.push((conn, liveness, prelude));
        }
        let mut legs = legs_of(&map, parts, on);
        let settings = &mut self.settings;
        let mut on_status = |conn: &mut _, name: &str, value: &str| {
            settings.on_parameter_status(name, value, conn);
        };
        let (client, bufs) = (&mut self.client, &mut self.bufs);
        let outcome = broadcast(client, bufs, &mut legs, &how, &mut on_status).await;
        self.writes_completed();
        outcome?;
        // Counted once committed (a client transaction counts once its decision is recorded).
        if matches!(how.commit, Commit::TwoPhase(_)) {
            database.counters.count(Event::AtomicCommit);
        }
        let primaries = crate::metrics::Ran::Shards(crate::topology::Role::Primary);
        self.meter.ran(primaries);
        Ok(())
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// An extended-protocol portal for several primaries: the batch it is part of is one
    /// transaction up to its Sync, as on one server, so outside a transaction it starts an
    /// implicit one (committed at the Sync, see `implicit`).
    pub(super) async fn run_spread_in_batch(
        &mut self,
        sql: &str,
        parts: Parts,
        rows: Rows,
    ) -> Result<(), Refusal> {
        self.check_spread_allowed()?;
        self.forget_columns_after(rows);
        self.start_batch_transaction().await?;
        self.run_spread_in_transaction(sql, parts, rows).await
    }

    /// Outside a transaction, with nothing of the batch sent yet, the batch becomes an
    /// implicit transaction of the proxy's, begun on each shard it reaches and ended at the
    /// Sync (with messages already sent, `reach_transaction_block` folds them into one).
    pub(super) async fn start_batch_transaction(&mut self) -> Result<(), ErrorReport> {
        if !self.transaction_open() && self.replies.synced() {
            self.wait_for_replies().await?;
            self.release();
            self.txn.phase = Phase::deferred("BEGIN".to_owned());
            self.txn.implicit = true;
        }
        Ok(())
    }

    /// DDL (a statement on every shard's copy) may change a table's columns, which an INSERT
    /// without a column list reads from the catalog: read them again next time.
    fn forget_columns_after(&self, rows: Rows) {
        if rows == Rows::Copies {
            self.env.database.table_columns.forget_all();
        }
    }

    /// Runs `parts` on the transaction's backend of each shard and writes the result, without
    /// ReadyForQuery, to the client (see [`Self::legs_in_transaction`]).
    async fn run_spread_in_transaction(
        &mut self,
        sql: &str,
        parts: Parts,
        rows: Rows,
    ) -> Result<(), Refusal> {
        let ran = self.legs_in_transaction(sql, parts, rows).await?;
        for tag in ran.tags {
            encode::command_complete(&mut self.bufs.to_client, &tag);
        }
        Ok(())
    }

    /// Runs `parts` on the transaction's backend of each shard (joining it on shards it has
    /// not reached); the transaction spans them all afterwards. The rows go to the client
    /// (or, [`Rows::Kept`], come back); the command tags come back. A failure aborts the
    /// transaction, as a failed statement does on one server.
    pub(super) async fn legs_in_transaction(
        &mut self,
        sql: &str,
        parts: Parts,
        rows: Rows,
    ) -> Result<Ran, Refusal> {
        if pins(sql) {
            let refusal = Unsupported::SpreadPinsInTransaction;
            return Err(Refusal::Statement(self.unsupported(refusal)));
        }
        self.reach_transaction_block().await?;
        let shards: Vec<ShardId> = parts.iter().map(|(shard, _)| *shard).collect();
        let mut backends = self.transaction_backends(&shards).await?;
        for shard in &shards {
            self.note_written(*shard);
        }
        (self.env.database.counters).count(Event::MultiPrimary);
        let outcome = self
            .run_in_transaction_legs(parts, &mut backends, rows)
            .await;
        let ran = match &outcome {
            Ok(_) => shards.len(),
            Err(failed) => failed.leg + 1,
        };
        let mut statuses = vec![TxStatus::InTransaction; ran];
        if let Err(failed) = &outcome {
            statuses[ran - 1] = failed.status;
        }
        let unrun = backends.split_off(ran);
        self.keep_transaction_backends(&shards[..ran], backends, &statuses);
        self.keep_unrun(&shards[ran..], unrun);
        let primaries = crate::metrics::Ran::Shards(crate::topology::Role::Primary);
        self.meter.ran(primaries);
        match outcome {
            Ok(ran) => Ok(ran),
            Err(failed) => {
                self.roll_back_parked_if_failed().await;
                Err(Refusal::Statement(failed.report))
            }
        }
    }

    /// Brings the session to where a statement of its transaction may run on several
    /// backends: everything sent answered (a batch in flight synced by the proxy inside a
    /// transaction block), and a batch outside any transaction made the implicit transaction
    /// it is on one server.
    pub(super) async fn reach_transaction_block(&mut self) -> Result<(), ErrorReport> {
        self.leave_replica().await?;
        if self.in_transaction_block() {
            return self.answer_all_sent().await;
        }
        if !self.replies.synced() && !self.transaction_open() {
            self.fold_batch_into_implicit().await?;
            return self.answer_all_sent().await;
        }
        self.wait_for_replies().await
    }

    /// Runs the legs on `backends` (the transaction's, one per part, in order).
    async fn run_in_transaction_legs(
        &mut self,
        parts: Parts,
        backends: &mut [ReadBackend],
        rows: Rows,
    ) -> Result<Ran, LegFailed> {
        let map = self.env.database.router.map().clone();
        let joining = self.joining_statements();
        let mut on = Vec::with_capacity(parts.len());
        for backend in backends.iter_mut() {
            let settings = self.settings.sync_sql(&mut backend.conn);
            let prelude = backend.prelude(settings, &joining);
            let (conn, liveness) = backend.conn.with_liveness();
            on.push((conn, liveness, prelude));
        }
        let mut legs = legs_of(&map, parts, on);
        // A CancelRequest (the client's, or the deadlock detector's) cancels every leg.
        let targets = legs.iter().map(|leg| leg.conn.cancel_target()).collect();
        self.env.cancel_slot.set_all(targets);
        let settings = &mut self.settings;
        let mut on_status = |conn: &mut _, name: &str, value: &str| {
            settings.on_parameter_status(name, value, conn);
        };
        let (client, bufs) = (&mut self.client, &mut self.bufs);
        let oids = self.env.database.catalog_oids.clone();
        let on_status = &mut on_status;
        let ran = broadcast_in_transaction(client, bufs, &mut legs, rows, oids, on_status).await;
        drop(legs);
        let held = self.backend.as_deref().map(|conn| conn.cancel_target());
        self.env.cancel_slot.set(held);
        ran
    }
}

/// One leg per part, on the connection (with its liveness and the hidden queries it runs
/// first) at the same place in `on`.
fn legs_of<'a>(
    map: &'a ShardMap,
    parts: Parts,
    on: Vec<(&'a mut BackendConn, &'a mut Liveness, Vec<String>)>,
) -> Vec<Leg<'a>> {
    (parts.into_iter().zip(on))
        .map(|((shard, statement), (conn, liveness, prelude))| Leg {
            shard: &map.shard(shard).name,
            conn,
            liveness,
            prelude,
            statement,
        })
        .collect()
}

/// Primaries of every shard, taken in shard order (so concurrent broadcasts cannot each hold a
/// backend another one waits for).
async fn checkout_all(
    database: &Database,
    parts: &[(ShardId, LegStatement)],
) -> Result<Vec<Checkout>, ErrorReport> {
    let mut checkouts = Vec::with_capacity(parts.len());
    for (shard, _) in parts {
        let pool = database.primary(*shard);
        checkouts.push(pool.checkout().await.map_err(|e| e.report())?);
    }
    Ok(checkouts)
}

/// How `sql`, run as `parts` on their shards, runs and commits: in two phases when it runs
/// inside transactions on several shards and `transactions.atomic` is on, coordinated by the
/// first part's shard. What PostgreSQL cannot prepare (temporary objects, LISTEN, cursors
/// WITH HOLD: the statements that pin a session) commits in one phase, as it always did.
fn how_to_run(
    database: &Database,
    sql: &str,
    parts: &[(ShardId, LegStatement)],
    rows: Rows,
) -> How {
    let wrapping = wrapping(sql);
    let atomic = database.atomic_commit
        && wrapping == Wrapping::Transaction
        && parts.len() > 1
        && !pins(sql);
    let commit = match parts.first() {
        Some((coordinator, _)) if atomic => {
            let name = &database.router.map().shard(*coordinator).name;
            let table = database.recovery.decisions_table(name);
            let decision = Decision::new(name);
            Commit::TwoPhase(Atomic { decision, table })
        }
        _ => Commit::OnePhase,
    };
    How {
        wrapping,
        rows,
        commit,
        oids: database.catalog_oids.clone(),
    }
}

/// Whether `sql` creates state bound to its server session, which PREPARE TRANSACTION refuses.
fn pins(sql: &str) -> bool {
    (session_effects(sql).iter()).any(|effect| matches!(effect, SessionEffect::Pin(_)))
}

/// Statements PostgreSQL refuses to run inside a transaction block run on each shard alone; so
/// does a LOCK outside one, which PostgreSQL refuses there (`25P01`), as it should be.
fn wrapping(sql: &str) -> Wrapping {
    let outside = split_statements(sql).any(|statement| {
        let mut words = std::iter::successors(next_word(statement), |(_, rest)| next_word(rest));
        let first = words.next().map(|(w, _)| w);
        let leading = |k: &str| first.is_some_and(|w| w.is(k));
        leading("vacuum")
            || leading("lock")
            || leading("reindex") && statement.to_ascii_lowercase().contains("concurrently")
            || words.take(4).any(|(w, _)| w.is("concurrently"))
    });
    if outside {
        Wrapping::Autocommit
    } else {
        Wrapping::Transaction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_cannot_run_in_a_transaction_are_recognized() {
        assert_eq!(
            wrapping("CREATE INDEX CONCURRENTLY i ON users (name)"),
            Wrapping::Autocommit
        );
        assert_eq!(wrapping("DROP INDEX CONCURRENTLY i"), Wrapping::Autocommit);
        assert_eq!(wrapping("VACUUM users"), Wrapping::Autocommit);
        assert_eq!(wrapping("LOCK TABLE users"), Wrapping::Autocommit);
        assert_eq!(
            wrapping("CREATE INDEX i ON users (name)"),
            Wrapping::Transaction
        );
        assert_eq!(
            wrapping("INSERT INTO countries VALUES ('concurrently')"),
            Wrapping::Transaction
        );
    }

    #[test]
    fn what_postgresql_cannot_prepare_is_recognized() {
        assert!(pins("CREATE TEMP TABLE users (id int)"));
        assert!(pins("LISTEN jobs; INSERT INTO countries VALUES (1)"));
        assert!(!pins("CREATE TABLE users (id int)"));
        assert!(!pins("INSERT INTO users (id) VALUES (1), (2)"));
    }
}
