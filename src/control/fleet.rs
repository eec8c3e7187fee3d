//! Several proxies in front of the same shards: who is alive, and where a `RESHARD` stands.
//!
//! Two tables on the default shard's primary of a database's map (RESHARD never changes the
//! default shard, so every proxy of the fleet finds them in the same place, before and after
//! a move): `shardgate.fleet_proxies` holds one row per proxy with a lease it renews every
//! second and the step of the move it acknowledged; `shardgate.fleet_moves` holds the move of
//! the fleet's map, if any, with the step its coordinator reached. The coordinator goes on
//! from a step only when every proxy whose lease is live acknowledged it; a proxy that cannot
//! renew its lease fences itself out (its statements on sharded tables wait) before its
//! lease runs out, so a proxy the coordinator stops waiting for starts no statement on them
//! (a transaction it began before may still commit: README, "Several proxies").
//!
//! Every change of a move's step is a compare-and-set on its row, by the proxy the row names
//! as its coordinator: when a coordinator's lease lapses before it decided, another proxy
//! abandons its move, and the coordinator's next step fails. Its decision to commit is
//! recorded in the same transaction as the step to [`Step::Committing`], so a move is
//! abandoned or committed, never both; a decided move only goes forward (by its coordinator,
//! or by another proxy that claims it once the coordinator's lease lapsed), and the step to
//! [`Step::Switched`] records the new map in force in the same transaction.

use std::time::Duration;

use super::ControlConn;
use crate::config::BackendUri;

/// Creates the tables once (the advisory lock lets proxies starting at once take turns).
const DDL: &str = "SELECT pg_advisory_xact_lock(hashtext('shardgate.fleet')); \
     CREATE SCHEMA IF NOT EXISTS shardgate; \
     CREATE TABLE IF NOT EXISTS shardgate.fleet_proxies (\
     fleet text NOT NULL, database text NOT NULL, proxy text NOT NULL, \
     lease_until timestamptz NOT NULL, move text, step text, problem text, \
     PRIMARY KEY (fleet, database, proxy)); \
     CREATE TABLE IF NOT EXISTS shardgate.fleet_moves (\
     fleet text NOT NULL, database text NOT NULL, stamp text NOT NULL, \
     coordinator text NOT NULL, step text NOT NULL, tables text[] NOT NULL, map text NOT NULL, \
     version bigint, PRIMARY KEY (fleet, database)); \
     REVOKE ALL ON shardgate.fleet_proxies, shardgate.fleet_moves FROM PUBLIC";

const EXISTS: &str = "SELECT to_regclass('shardgate.fleet_moves') IS NOT NULL \
     AND to_regclass('shardgate.maps_in_force') IS NOT NULL";

/// Every question on the control connection ends on the server too when it runs out.
const TIMEOUTS: &str = "SET statement_timeout = 2000; SET lock_timeout = 2000";

/// Renews the lease with what the proxy acknowledges, and reads the fleet's move: whether its
/// coordinator's lease is live (or lapsed less than [`GRACE`] ago) is read in the same
/// snapshot. The move's row is read locked (`FOR SHARE`), so a step being taken right now is
/// seen once it committed: the coordinator, waiting for acknowledgements from then on, sees
/// this renewal, and this proxy sees the step.
const BEAT: &str = "WITH renewed AS (\
     INSERT INTO shardgate.fleet_proxies AS p \
     (fleet, database, proxy, lease_until, move, step, problem) \
     VALUES ($1, $2, $3, now() + $4::float8 * interval '1 second', $5, $6, $7) \
     ON CONFLICT (fleet, database, proxy) DO UPDATE SET lease_until = EXCLUDED.lease_until, \
     move = EXCLUDED.move, step = EXCLUDED.step, problem = EXCLUDED.problem) \
     SELECT m.stamp, m.coordinator, m.step, m.tables, m.map, EXISTS (\
     SELECT 1 FROM shardgate.fleet_proxies c WHERE c.fleet = m.fleet \
     AND c.database = m.database AND c.proxy = m.coordinator \
     AND c.lease_until > now() - $8::float8 * interval '1 second'), m.version \
     FROM shardgate.fleet_moves m WHERE m.fleet = $1 AND m.database = $2 FOR SHARE OF m";

/// The map recorded in force for the fleet's database here (`map_record`).
const RECORD: &str = "SELECT version, map FROM shardgate.maps_in_force \
     WHERE fleet = $1 AND database = $2";

/// A move takes the fleet's row when there is none, or when the one there ended (or its
/// coordinator's lease lapsed while it had not decided).
const ANNOUNCE: &str = "INSERT INTO shardgate.fleet_moves AS m \
     (fleet, database, stamp, coordinator, step, tables, map) \
     VALUES ($1, $2, $3, $4, 'announced', $5, $6) \
     ON CONFLICT (fleet, database) DO UPDATE SET stamp = EXCLUDED.stamp, \
     coordinator = EXCLUDED.coordinator, step = EXCLUDED.step, tables = EXCLUDED.tables, \
     map = EXCLUDED.map, version = NULL \
     WHERE m.step IN ('switched', 'abandoned') OR (m.step <> 'committing' AND NOT EXISTS (\
     SELECT 1 FROM shardgate.fleet_proxies c WHERE c.fleet = m.fleet \
     AND c.database = m.database AND c.proxy = m.coordinator \
     AND c.lease_until > now() - $7::float8 * interval '1 second'))";

const RUNNING: &str = "SELECT coordinator, step FROM shardgate.fleet_moves \
     WHERE fleet = $1 AND database = $2";

const ADVANCE: &str = "UPDATE shardgate.fleet_moves SET step = $4 \
     WHERE fleet = $1 AND database = $2 AND stamp = $3 AND step = ANY($5) AND coordinator = $6";

/// The step to switched, with the version of the map record written in the same transaction.
const SWITCHED: &str = "UPDATE shardgate.fleet_moves SET step = 'switched', version = (\
     SELECT version FROM shardgate.maps_in_force WHERE fleet = $1 AND database = $2) \
     WHERE fleet = $1 AND database = $2 AND stamp = $3 AND step = 'committing' \
     AND coordinator = $4 RETURNING version";

/// A decided move whose coordinator is gone becomes this proxy's to finish.
const CLAIM: &str = "UPDATE shardgate.fleet_moves SET coordinator = $4 \
     WHERE fleet = $1 AND database = $2 AND stamp = $3 AND step = 'committing' \
     AND coordinator = $5";

const STEP_OF: &str = "SELECT step FROM shardgate.fleet_moves \
     WHERE fleet = $1 AND database = $2 AND stamp = $3";

/// The proxies whose lease is live (or lapsed less than [`GRACE`] ago) that have not
/// acknowledged a step yet: name, what they acknowledged, and their problem.
const LAGGING: &str = "SELECT proxy, coalesce(move, ''), coalesce(step, ''), problem \
     FROM shardgate.fleet_proxies WHERE fleet = $1 AND database = $2 AND proxy <> $3 \
     AND lease_until > now() - $4::float8 * interval '1 second'";

const MEMBERS: &str = "SELECT proxy, database, lease_until > now(), \
     to_char(lease_until, 'YYYY-MM-DD HH24:MI:SS.MS TZ'), \
     coalesce(move, ''), coalesce(step, ''), coalesce(problem, '') \
     FROM shardgate.fleet_proxies WHERE fleet = $1 AND database = $2 \
     AND lease_until > now() - interval '1 hour' ORDER BY proxy";

const LEAVE: &str = "DELETE FROM shardgate.fleet_proxies \
     WHERE fleet = $1 AND database = $2 AND proxy = $3";

/// Rows of proxies gone for a day are dropped when a move is announced.
const FORGET_GONE: &str = "DELETE FROM shardgate.fleet_proxies \
     WHERE fleet = $1 AND database = $2 AND lease_until < now() - interval '1 day'";

/// A proxy whose lease lapsed this long ago counts as gone: it fenced itself out when its
/// lease ran out by its own clock (before the server's), and this much longer covers a
/// statement that was already on its way.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long one question to the control table may take.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How often the coordinator looks at the acknowledgements it waits for.
const POLL: Duration = Duration::from_millis(20);

/// Where a move of the fleet stands. Proxies acknowledge every step up to
/// [`Step::Switching`], [`Step::Switched`] and [`Step::Abandoned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Every proxy checks that it can serve the new map.
    Announced,
    /// Writes to the moving keys wait on every proxy.
    Fence,
    /// Every statement on map tables waits on every proxy: the move commits.
    Switching,
    /// The coordinator recorded its decision to commit; nothing turns it back.
    Committing,
    /// The new map is in force: proxies take it up.
    Switched,
    /// The move ended without moving anything.
    Abandoned,
}

impl Step {
    /// Its name in the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Announced => "announced",
            Step::Fence => "fence",
            Step::Switching => "switching",
            Step::Committing => "committing",
            Step::Switched => "switched",
            Step::Abandoned => "abandoned",
        }
    }

    /// Every step, in the order a move goes through them.
    pub const ALL: [Step; 6] = [
        Step::Announced,
        Step::Fence,
        Step::Switching,
        Step::Committing,
        Step::Switched,
        Step::Abandoned,
    ];

    /// The step named `name`.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

/// The fleet's move, as a heartbeat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetMove {
    /// The move's stamp (its slots' and prepared transactions' names carry it).
    pub stamp: String,
    /// The proxy that runs it.
    pub coordinator: String,
    /// Where it stands.
    pub step: Step,
    /// The tables whose rows move.
    pub tables: Vec<String>,
    /// The map it moves to, as recorded ([`super::map_record::redact`]).
    pub map: String,
    /// Whether the coordinator's lease is live (or lapsed less than [`GRACE`] ago).
    pub coordinator_live: bool,
    /// The version of the map record the step to [`Step::Switched`] wrote.
    pub version: Option<i64>,
}

/// What a renewal of the lease reads.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    /// The fleet's move, if any.
    pub fleet_move: Option<FleetMove>,
    /// The map recorded in force on the control primary: version and text (redacted).
    pub record: Option<(i64, String)>,
}

/// What a proxy acknowledges of a move: the step it reached, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The move.
    pub stamp: String,
    /// The last step this proxy carried out.
    pub step: Step,
    /// Why it cannot carry out the next one.
    pub problem: Option<String>,
}

/// A row of `SHOW FLEET`.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The proxy's name.
    pub proxy: String,
    /// The database.
    pub database: String,
    /// Whether its lease is live.
    pub live: bool,
    /// When its lease runs out (the server's clock).
    pub lease_until: String,
    /// The move it acknowledged, its step, and its problem ('' when none).
    pub acknowledged: (String, String, String),
}

/// One proxy's place in its fleet, for one database.
#[derive(Debug, Clone)]
pub struct Member {
    /// The fleet (`fleet` in the config).
    pub fleet: String,
    /// The database clients connect to.
    pub database: String,
    /// This proxy's name in the fleet.
    pub proxy: String,
    /// Where the tables are: the primary of the map's default shard.
    pub primary: BackendUri,
    /// How long a renewal of this proxy's lease lasts.
    pub lease: Duration,
    /// Connecting waits this long.
    pub timeout: Duration,
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

impl Member {
    /// Connects to the control primary, creating the tables when they are missing.
    pub(crate) async fn connect(&self) -> Result<ControlConn, String> {
        let conn = ControlConn::connect(&self.primary, "shardgate fleet", self.timeout).await?;
        answer(conn.client.batch_execute(TIMEOUTS)).await?;
        let exists: bool = answer(conn.client.query_one(EXISTS, &[])).await?.get(0);
        if !exists {
            let ddl = format!("{DDL}; {}", super::map_record::TABLE_DDL);
            answer(conn.client.batch_execute(&ddl)).await?;
        }
        Ok(conn)
    }

    /// Renews this proxy's lease from now (the server's clock) with what it acknowledges, on
    /// `conn` (connected when `None`, dropped on an error); what it read.
    pub(crate) async fn beat(
        &self,
        conn: &mut Option<ControlConn>,
        ack: Option<&Ack>,
    ) -> Result<Beat, String> {
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let client = &conn.as_ref().expect("connected").client;
        let seconds = self.lease.as_secs_f64();
        let (stamp, step, problem) = match ack {
            Some(ack) => (
                Some(&ack.stamp),
                Some(ack.step.as_str()),
                ack.problem.as_ref(),
            ),
            None => (None, None, None),
        };
        let grace = GRACE.as_secs_f64();
        let params: [Param<'_>; 8] = [
            &self.fleet,
            &self.database,
            &self.proxy,
            &seconds,
            &stamp,
            &step,
            &problem,
            &grace,
        ];
        let keys: [Param<'_>; 2] = [&self.fleet, &self.database];
        let asked = async {
            let renewed = answer(client.query(BEAT, &params)).await?;
            let record = answer(client.query_opt(RECORD, &keys)).await?;
            Ok::<_, String>((renewed, record))
        };
        let (renewed, record) = match asked.await {
            Ok(read) => read,
            Err(why) => {
                *conn = None;
                return Err(why);
            }
        };
        let fleet_move = match renewed.first() {
            None => None,
            Some(row) => {
                let step: String = row.get(2);
                Some(FleetMove {
                    stamp: row.get(0),
                    coordinator: row.get(1),
                    step: Step::parse(&step).ok_or_else(|| format!("unknown step {step:?}"))?,
                    tables: row.get(3),
                    map: row.get(4),
                    coordinator_live: row.get(5),
                    version: row.get(6),
                })
            }
        };
        Ok(Beat {
            fleet_move,
            record: record.map(|row| (row.get(0), row.get(1))),
        })
    }

    /// Makes this proxy the coordinator of move `stamp` of `tables` to `map` (redacted); why
    /// not when another move of the fleet's map runs.
    pub async fn announce(&self, stamp: &str, tables: &[String], map: &str) -> Result<(), String> {
        let conn = self.connect().await?;
        let params: [Param<'_>; 2] = [&self.fleet, &self.database];
        answer(conn.client.execute(FORGET_GONE, &params)).await?;
        let grace = GRACE.as_secs_f64();
        let params: [Param<'_>; 7] = [
            &self.fleet,
            &self.database,
            &stamp,
            &self.proxy,
            &tables,
            &map,
            &grace,
        ];
        if answer(conn.client.execute(ANNOUNCE, &params)).await? == 1 {
            return Ok(());
        }
        let params: [Param<'_>; 2] = [&self.fleet, &self.database];
        let running = answer(conn.client.query_opt(RUNNING, &params)).await?;
        let (coordinator, step) = running.map_or_else(Default::default, |row| {
            (row.get::<_, String>(0), row.get::<_, String>(1))
        });
        Err(format!(
            "proxy {coordinator} of the fleet is moving rows of database {:?} (step {step}); one RESHARD at a time",
            self.database
        ))
    }

    /// Moves move `stamp` of `coordinator` from one of `from` to `to`; why not when it is no
    /// longer at one of them (another proxy abandoned or claimed it).
    pub async fn advance(
        &self,
        stamp: &str,
        coordinator: &str,
        from: &[Step],
        to: Step,
    ) -> Result<(), String> {
        let conn = self.connect().await?;
        self.advance_on(&conn, (stamp, coordinator), from, to).await
    }

    async fn advance_on(
        &self,
        conn: &ControlConn,
        (stamp, coordinator): (&str, &str),
        from: &[Step],
        to: Step,
    ) -> Result<(), String> {
        let from: Vec<&str> = from.iter().map(|step| step.as_str()).collect();
        let params: [Param<'_>; 6] = [
            &self.fleet,
            &self.database,
            &stamp,
            &to.as_str(),
            &from,
            &coordinator,
        ];
        match answer(conn.client.execute(ADVANCE, &params)).await? {
            1 => Ok(()),
            _ => Err(format!(
                "the fleet's record of the move is no longer at step {} (another proxy abandoned it when this proxy's lease lapsed?)",
                from.join("/")
            )),
        }
    }

    /// Waits until every other proxy of the fleet whose lease is live acknowledged `step` of
    /// move `stamp`, at most `wait`; why not (a proxy's problem, or who did not answer).
    pub async fn wait_for(&self, stamp: &str, step: Step, wait: Duration) -> Result<(), String> {
        let conn = self.connect().await?;
        let deadline = tokio::time::Instant::now() + wait;
        let grace = GRACE.as_secs_f64();
        let params: [Param<'_>; 4] = [&self.fleet, &self.database, &self.proxy, &grace];
        loop {
            let rows = answer(conn.client.query(LAGGING, &params)).await?;
            let mut lagging = Vec::new();
            for row in &rows {
                let (proxy, move_, acked) = (
                    row.get::<_, String>(0),
                    row.get::<_, String>(1),
                    row.get::<_, String>(2),
                );
                let problem: Option<String> = row.get(3);
                if move_ != stamp {
                    lagging.push(proxy);
                    continue;
                }
                if let Some(problem) = problem {
                    return Err(format!("proxy {proxy} of the fleet: {problem}"));
                }
                let acked = Step::parse(&acked);
                if acked == Some(Step::Abandoned) {
                    return Err(format!("proxy {proxy} of the fleet abandoned the move"));
                }
                if acked.is_none_or(|acked| acked < step) {
                    lagging.push(proxy);
                }
            }
            if lagging.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "proxies of the fleet did not acknowledge step {} in {} s: {}",
                    step.as_str(),
                    wait.as_secs(),
                    lagging.join(", ")
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Moves `stamp` from [`Step::Switching`] to [`Step::Committing`] and runs `decision` (the
    /// statement that records the decision to commit) in the same transaction.
    pub async fn decide(&self, stamp: &str, decision: &str) -> Result<(), String> {
        let conn = self.connect().await?;
        answer(conn.client.batch_execute("BEGIN")).await?;
        let decided = async {
            let from = [Step::Switching];
            let own = (stamp, self.proxy.as_str());
            self.advance_on(&conn, own, &from, Step::Committing).await?;
            answer(conn.client.batch_execute(decision)).await?;
            answer(conn.client.batch_execute("COMMIT")).await
        };
        in_transaction(&conn, decided).await
    }

    /// The step move `stamp` is at, read on a connection of its own (after a step whose
    /// outcome was not heard); `None` when no such move is recorded.
    pub async fn step_of(&self, stamp: &str) -> Result<Option<Step>, String> {
        let conn = self.connect().await?;
        let params: [Param<'_>; 3] = [&self.fleet, &self.database, &stamp];
        let row = answer(conn.client.query_opt(STEP_OF, &params)).await?;
        Ok(row.and_then(|row| Step::parse(&row.get::<_, String>(0))))
    }

    /// Makes this proxy the coordinator of the decided move `stamp` of `coordinator` (whose
    /// lease lapsed); why not when another proxy claimed it first or it moved on.
    pub async fn claim(&self, stamp: &str, coordinator: &str) -> Result<(), String> {
        let conn = self.connect().await?;
        let params: [Param<'_>; 5] = [
            &self.fleet,
            &self.database,
            &stamp,
            &self.proxy,
            &coordinator,
        ];
        match answer(conn.client.execute(CLAIM, &params)).await? {
            1 => Ok(()),
            _ => Err("the move was claimed by another proxy, or moved on".into()),
        }
    }

    /// Moves this proxy's decided move `stamp` to [`Step::Switched`] and runs `record` (the
    /// statements that record the new map in force) in the same transaction; the record's
    /// version.
    pub async fn switch(&self, stamp: &str, record: &str) -> Result<i64, String> {
        let conn = self.connect().await?;
        answer(conn.client.batch_execute("BEGIN")).await?;
        let mut version = 0;
        let switched = async {
            answer(conn.client.batch_execute(record)).await?;
            let params: [Param<'_>; 4] = [&self.fleet, &self.database, &stamp, &self.proxy];
            match answer(conn.client.query_opt(SWITCHED, &params)).await? {
                Some(row) => version = row.get::<_, Option<i64>>(0).unwrap_or_default(),
                None => return Err("the move is no longer this proxy's to switch".into()),
            }
            answer(conn.client.batch_execute("COMMIT")).await
        };
        in_transaction(&conn, switched).await?;
        Ok(version)
    }

    /// Takes this proxy out of the fleet as it stops: no move waits for its lease to run out.
    pub(crate) async fn leave(&self, conn: &ControlConn) {
        let params: [Param<'_>; 3] = [&self.fleet, &self.database, &self.proxy];
        if let Err(why) = answer(conn.client.execute(LEAVE, &params)).await {
            tracing::warn!(why, "could not take this proxy out of the fleet's table");
        }
    }

    /// The fleet's proxies of this database seen in the last hour.
    pub async fn members(&self) -> Result<Vec<Listed>, String> {
        let conn = self.connect().await?;
        let params: [Param<'_>; 2] = [&self.fleet, &self.database];
        let rows = answer(conn.client.query(MEMBERS, &params)).await?;
        Ok(rows
            .iter()
            .map(|row| Listed {
                proxy: row.get(0),
                database: row.get(1),
                live: row.get(2),
                lease_until: row.get(3),
                acknowledged: (row.get(4), row.get(5), row.get(6)),
            })
            .collect())
    }
}

/// Runs `steps` (which end with COMMIT) inside the transaction opened on `conn`; rolls back
/// when one fails.
async fn in_transaction(
    conn: &ControlConn,
    steps: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let outcome = steps.await;
    if outcome.is_err() {
        let _ = answer(conn.client.batch_execute("ROLLBACK")).await;
    }
    outcome
}

/// `asked`'s answer within [`ANSWER_WAIT`], errors in words.
async fn answer<T>(
    asked: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_WAIT, asked).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the fleet's control table gave no answer in {ANSWER_WAIT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn steps_are_named_and_ordered_as_a_move_goes() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert!(Step::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Step::parse("fenced"), None);
    }
}
