//! The `SHOW` commands: each reads live state and returns it as text rows.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Reply;
use crate::admin::AdminContext;
use crate::config::Placement;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::moves::explain::{explain, strategy_text};
use crate::reshard::HeldEdit;
use crate::router::Params;
use crate::topology::Role;

fn rows(columns: &[&'static str], rows: Vec<Vec<Option<String>>>, tag: &str) -> Reply {
    let count = rows.len();
    Reply::Rows {
        columns: columns.to_vec(),
        rows,
        tag: format!("{tag} {count}"),
    }
}

fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

/// `SHOW SHARDS`: every shard with its servers and whether they are up.
pub fn shards(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        let map = database.router.map();
        for shard in &map.shards {
            let servers = database.servers();
            let of_shard = servers.iter().filter(|s| s.shard == shard.name);
            let replicas_up = of_shard
                .clone()
                .filter(|s| s.role == Role::Replica && s.pool.health().serves_reads())
                .filter(|s| !s.pool.is_down())
                .count();
            let primary_up = database.primary(shard.id).health().is_up();
            let reads = if database.reads_from_replicas(shard.id) {
                "replica"
            } else {
                "primary"
            };
            out.push(vec![
                text(&database.name),
                text(&shard.name),
                text(format!("{}:{}", shard.primary.host, shard.primary.port)),
                text(shard.replicas.len()),
                text(replicas_up),
                text(reads),
                text(primary_up),
                text(shard.id == map.default_shard),
            ]);
        }
    }
    rows(
        &[
            "database",
            "shard",
            "primary",
            "replicas",
            "replicas_serving",
            "reads",
            "primary_up",
            "default",
        ],
        out,
        "SHOW",
    )
}

/// `SHOW POOLS`: each server's pool: size, connections in use and idle, waiting sessions,
/// paused, health and lag; the replica-safe reads it served, how many of them waited for a
/// WAL position first and for how long in all, and (a primary) how many came because no
/// replica caught up in time.
pub fn pools(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        for server in database.servers() {
            let stats = server.pool.stats();
            let health = server.pool.health();
            let reads = server.pool.meters().reads();
            out.push(vec![
                text(&database.name),
                text(server.shard),
                text(&server.endpoint),
                text(server.role.as_str()),
                text(stats.size),
                text(stats.in_use),
                text(stats.idle),
                text(stats.waiting),
                text(server.pool.is_paused()),
                text(health.is_up()),
                health.lag().map(|lag| format!("{:.3}", lag.as_secs_f64())),
                text(reads.served),
                text(reads.causal_waits),
                text(format!("{:.3}", reads.causal_wait_seconds * 1000.0)),
                text(reads.causal_fallbacks),
            ]);
        }
    }
    rows(
        &[
            "database",
            "shard",
            "endpoint",
            "role",
            "size",
            "in_use",
            "idle",
            "waiting",
            "paused",
            "up",
            "lag_seconds",
            "reads",
            "causal_waits",
            "causal_wait_ms",
            "causal_fallbacks",
        ],
        out,
        "SHOW",
    )
}

/// `SHOW CLIENTS`: every connected client.
pub fn clients(admin: &AdminContext) -> Reply {
    let out = (admin.clients.clients().iter())
        .map(|client| {
            vec![
                text(client.id),
                text(&client.user),
                text(&client.database),
                client.peer.map(|p| p.to_string()),
                text(client.state().name()),
                text(timestamp(client.connected_at)),
            ]
        })
        .collect();
    rows(
        &["id", "user", "database", "address", "state", "connected_at"],
        out,
        "SHOW",
    )
}

/// `SHOW SERVERS`: every open backend connection.
pub fn servers(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        for server in database.servers() {
            for row in server.pool.servers() {
                out.push(vec![
                    text(&database.name),
                    text(server.shard),
                    text(&server.endpoint),
                    text(row.pid),
                    text(if row.in_use { "active" } else { "idle" }),
                    text(timestamp(row.connected_at)),
                ]);
            }
        }
    }
    rows(
        &[
            "database",
            "shard",
            "endpoint",
            "pid",
            "state",
            "connected_at",
        ],
        out,
        "SHOW",
    )
}

/// `SHOW STATS`: totals per database since the proxy started.
pub fn stats(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        let totals = database.meters.totals();
        let counters = database.counters.snapshot();
        let average_ms =
            |seconds: f64, n: u64| (n > 0).then(|| format!("{:.3}", seconds * 1e3 / n as f64));
        out.push(vec![
            text(&database.name),
            text(totals.queries),
            average_ms(totals.query_seconds, totals.queries),
            text(totals.transactions),
            average_ms(totals.transaction_seconds, totals.transactions),
            text(totals.routes[0]),
            text(totals.routes[1]),
            text(totals.routes[2]),
            text(totals.routes[3]),
            text(totals.routes[4]),
            text(counters.scatter_legs),
            text(counters.replica_reads),
            text(counters.primary_reads),
            text(totals.slow_statements),
            text(counters.causal_waits),
            text(counters.causal_fallbacks),
            text(counters.atomic_commits),
            text(counters.recovered_commits),
            text(counters.recovered_rollbacks),
            text(counters.cross_shard_deadlocks),
            text(counters.federated_reads),
        ]);
    }
    rows(
        &[
            "database",
            "queries",
            "avg_query_ms",
            "transactions",
            "avg_transaction_ms",
            "single_shard",
            "multi_shard",
            "broadcast",
            "fallback",
            "refused",
            "scatter_legs",
            "replica_reads",
            "primary_reads",
            "slow_queries",
            "causal_waits",
            "causal_fallbacks",
            "atomic_commits",
            "recovered_commits",
            "recovered_rollbacks",
            "cross_shard_deadlocks",
            "federated_reads",
        ],
        out,
        "SHOW",
    )
}

/// `SHOW MAP`: the shard map in force: epoch, file, and each table's placement.
pub fn map(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let held = admin.reloader.held_edits();
    let mut out = Vec::new();
    for database in topology.databases() {
        let map = database.router.map();
        let held_edit = held.iter().find(|edit| edit.database == database.name);
        let file = (admin.map_files.iter())
            .find(|(name, _)| *name == database.name)
            .map(|(_, path)| path.display().to_string());
        let mut tables: Vec<_> = map.tables.values().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for table in tables {
            let (strategy, key) = match &table.placement {
                Placement::Reference => ("reference".to_owned(), None),
                Placement::Sharded(sharding) => (
                    strategy_text(map, &sharding.strategy),
                    Some(sharding.key_column.clone()),
                ),
            };
            out.push(vec![
                text(&database.name),
                text(topology.epoch),
                file.clone(),
                text(&table.name),
                text(strategy),
                key,
                text(match table.multi_shard_writes {
                    crate::config::MultiShardWrites::Allow => "allow",
                    crate::config::MultiShardWrites::Refuse => "refuse",
                }),
                held_edit.and_then(|edit| held_change(edit, &table.name)),
            ]);
        }
    }
    rows(
        &[
            "database",
            "epoch",
            "file",
            "table",
            "strategy",
            "key",
            "multi_shard_writes",
            "held_edit",
        ],
        out,
        "SHOW",
    )
}

/// What a held edit would do to `table` (`SHOW MAP`'s `held_edit`), if it touches it.
fn held_change(edit: &HeldEdit, table: &str) -> Option<String> {
    let moves = (edit.report.tables.iter()).any(|m| m.tables.iter().any(|t| t == table));
    let stored = edit.stored.iter().any(|rows| rows.table == table);
    match (moves, stored) {
        (_, true) => text("moves stored rows (SHOW PLAN)"),
        (true, false) => text("moves keys (SHOW PLAN)"),
        (false, false) => None,
    }
}

/// `SHOW PLAN`: each held shard-map edit, as `shardgate plan` words it, and the stored rows
/// that hold it.
pub fn plan(admin: &AdminContext) -> Reply {
    let mut out = Vec::new();
    for edit in admin.reloader.held_edits() {
        let mut line = |line: String| out.push(vec![text(&edit.database), text(line)]);
        line(format!("held since {}", timestamp(edit.checked_at)));
        for moved in edit.report.to_string().lines() {
            line(moved.to_owned());
        }
        for stored in crate::reshard::stored_lines(&edit.stored) {
            line(stored);
        }
    }
    rows(&["database", "plan"], out, "SHOW")
}

/// `SHOW RESHARD`: the last move of each database, one row per table, source and target.
pub fn reshard(admin: &AdminContext) -> Reply {
    let mut out = Vec::new();
    for job in admin.reloader.reshards() {
        for row in job.rows() {
            out.push(vec![
                text(&row.database),
                text(&row.piece.table),
                text(&row.piece.source),
                text(&row.piece.target),
                text(row.phase),
                text(&row.method),
                text(row.piece.rows),
                row.bytes_behind.map(text).unwrap_or_default(),
                row.fence_ms.map(text).unwrap_or_default(),
                text(&row.state),
                text(timestamp(job.started)),
            ]);
        }
    }
    let columns = [
        "database",
        "table",
        "source",
        "target",
        "phase",
        "method",
        "rows_copied",
        "bytes_behind",
        "fence_ms",
        "state",
        "started",
    ];
    rows(&columns, out, "SHOW")
}

/// `SHOW FLEET`: the proxies of this proxy's fleet, their leases and what they acknowledged
/// of the last move.
pub async fn fleet(admin: &AdminContext) -> Reply {
    let (me, listed) = match admin.reloader.fleet().await {
        Ok(found) => found,
        Err(why) => {
            return Reply::Error(ErrorReport::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                Blame::Proxy,
                format!("SHOW FLEET: {why}"),
            ));
        }
    };
    let out = (listed.into_iter())
        .map(|proxy| {
            let (stamp, step, problem) = proxy.acknowledged;
            vec![
                text(&proxy.database),
                text(&proxy.proxy),
                text(proxy.proxy == me),
                text(proxy.live),
                text(proxy.lease_until),
                text(stamp),
                text(step),
                text(problem),
            ]
        })
        .collect();
    let columns = [
        "database",
        "proxy",
        "this",
        "live",
        "lease_until",
        "move",
        "step",
        "problem",
    ];
    rows(&columns, out, "SHOW")
}

/// `SHOW ROUTE <sql>`: where each database's router sends the statement, and why: the same
/// words as `shardgate route`.
pub fn route(admin: &AdminContext, sql: &str) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        let explanation = explain(&database.router, sql, &Params::none());
        for line in explanation.to_string().lines() {
            out.push(vec![text(&database.name), text(line)]);
        }
    }
    rows(&["database", "route"], out, "SHOW")
}

/// `SHOW TRANSACTIONS`: prepared transactions of atomic commits that the last run of
/// recovery left in place (in doubt), with why.
pub fn transactions(admin: &AdminContext) -> Reply {
    let topology = admin.topology();
    let mut out = Vec::new();
    for database in topology.databases() {
        for left in database.recovery.in_doubt() {
            out.push(vec![
                text(&database.name),
                text(&left.shard),
                text(&left.transaction),
                text(&left.coordinator),
                text(format!("{:.1}", left.age.as_secs_f64())),
                text(left.state),
            ]);
        }
    }
    let columns = [
        "database",
        "shard",
        "transaction",
        "coordinator",
        "age_seconds",
        "state",
    ];
    rows(&columns, out, "SHOW")
}

/// `SHOW HELP`: the commands.
pub fn help() -> Reply {
    let commands = [
        ("SHOW SHARDS", "shards, their servers and health"),
        (
            "SHOW POOLS",
            "connection pools: in use, idle, waiting, paused, lag",
        ),
        ("SHOW CLIENTS", "connected clients"),
        ("SHOW SERVERS", "open backend connections"),
        ("SHOW STATS", "totals per database since start"),
        (
            "SHOW TRANSACTIONS",
            "prepared transactions of atomic commits still in doubt",
        ),
        (
            "SHOW MAP",
            "the shard map in force: epoch, file, tables, held edits",
        ),
        (
            "SHOW PLAN",
            "held shard-map edits: what they move, the stored rows that hold them",
        ),
        (
            "SHOW RESHARD",
            "the last RESHARD of each database: one row per table, source and target",
        ),
        ("SHOW ROUTE <sql>", "where a statement would run, and why"),
        (
            "SHOW FLEET",
            "the proxies of this proxy's fleet: leases, what they acknowledged of a RESHARD",
        ),
        (
            "RELOAD",
            "read the shard maps again (edits moving stored rows are held)",
        ),
        (
            "RELOAD FORCE",
            "read them again and apply held edits as they are (rows stay put)",
        ),
        (
            "RESHARD [database]",
            "apply the held edit by moving its rows online, then switch the map",
        ),
        (
            "PAUSE [database [shard]]",
            "hold new work for the pools, wait for work in flight",
        ),
        ("RESUME [database [shard]]", "let paused pools serve again"),
    ];
    let out = commands
        .iter()
        .map(|(command, does)| vec![text(command), text(does)])
        .collect();
    rows(&["command", "description"], out, "SHOW")
}

/// `2026-12-01 08:30:00 UTC`, from a system time (the console has no time zone setting).
fn timestamp(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, in_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |secs| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(timestamp(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp(at(1_796_113_845)), "2026-12-01 08:30:45 UTC");
    }
}
