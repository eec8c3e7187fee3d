//! The console's commands: parse one Query's text and run it.

use std::time::{Duration, Instant};

use super::{Reply, show};
use crate::admin::AdminContext;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::reshard::HeldEdit;

/// How long `PAUSE` waits for connections in use to come back before it says so (the pools
/// stay paused either way).
const PAUSE_DRAIN_WAIT: Duration = Duration::from_secs(60);

/// Runs one console command.
pub async fn run(admin: &AdminContext, sql: &str) -> Reply {
    let text = sql.trim().trim_end_matches(';').trim();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    let rest: Vec<&str> = words.collect();
    match first.as_str() {
        "" => Reply::Done("EMPTY".into()),
        "SHOW" if rest.len() == 1 && rest[0].eq_ignore_ascii_case("FLEET") => {
            show::fleet(admin).await
        }
        "SHOW" => show_command(admin, text, &rest),
        "RELOAD" if rest.is_empty() => reload(admin, false).await,
        "RELOAD" if rest.len() == 1 && rest[0].eq_ignore_ascii_case("FORCE") => {
            reload(admin, true).await
        }
        "RESHARD" if rest.len() <= 1 => reshard(admin, rest.first()).await,
        "PAUSE" => pause(admin, &rest).await,
        "RESUME" => resume(admin, &rest),
        // Drivers set session options after login (pgjdbc: extra_float_digits); the console
        // has no settings, so it takes them and changes nothing.
        "SET" | "RESET" => Reply::Done(first),
        _ => unknown(text),
    }
}

fn show_command(admin: &AdminContext, text: &str, rest: &[&str]) -> Reply {
    let what = rest
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    match (what.as_str(), rest.len()) {
        ("SHARDS", 1) => show::shards(admin),
        ("POOLS", 1) => show::pools(admin),
        ("CLIENTS", 1) => show::clients(admin),
        ("SERVERS", 1) => show::servers(admin),
        ("STATS", 1) => show::stats(admin),
        ("TRANSACTIONS", 1) => show::transactions(admin),
        ("MAP", 1) => show::map(admin),
        ("PLAN", 1) => show::plan(admin),
        ("RESHARD", 1) => show::reshard(admin),
        ("HELP", 1) => show::help(),
        ("ROUTE", n) if n > 1 => {
            // Everything after the word ROUTE, as typed.
            let at = text.to_ascii_uppercase().find("ROUTE").unwrap_or(0) + "ROUTE".len();
            show::route(admin, text[at..].trim())
        }
        _ => unknown(text),
    }
}

fn unknown(text: &str) -> Reply {
    Reply::Error(ErrorReport::error(
        sqlstate::SYNTAX_ERROR,
        Blame::Client,
        format!("unknown admin console command {text:?}; try SHOW HELP"),
    ))
}

async fn reload(admin: &AdminContext, force: bool) -> Reply {
    match admin.reloader.reload_maps(force).await {
        Ok(reloaded) if reloaded.held.is_empty() => {
            let epoch = reloaded.epoch;
            tracing::info!(epoch, force, "shard maps reloaded from the admin console");
            Reply::Done("RELOAD".into())
        }
        Ok(reloaded) => Reply::Warned {
            warning: held_warning(&reloaded.held),
            tag: "RELOAD".into(),
        },
        Err(error) => Reply::Error(ErrorReport::error(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            Blame::Proxy,
            format!("{error}\nthe previous shard maps stay in force"),
        )),
    }
}

/// `RESHARD [database]`: moves the held edit's rows and switches the map; answers when the
/// move ended.
async fn reshard(admin: &AdminContext, database: Option<&&str>) -> Reply {
    let database = database.map(|name| name.to_string());
    let failed = |why: String| {
        Reply::Error(ErrorReport::error(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            Blame::Proxy,
            format!("RESHARD: {why}"),
        ))
    };
    match admin.reloader.reshard(database).await {
        Ok(job) => match job.outcome() {
            Some(Ok(_)) => Reply::Done("RESHARD".into()),
            Some(Err(why)) => failed(format!("{why}; the shard map in force stays")),
            None => failed("the move stopped before it ended".into()),
        },
        Err(why) => failed(why),
    }
}

/// The warning a `RELOAD` that held edits answers with.
fn held_warning(held: &[std::sync::Arc<HeldEdit>]) -> ErrorReport {
    let summaries: Vec<String> = held.iter().map(|edit| edit.summary()).collect();
    ErrorReport::warning(format!(
        "{}; the shard map in force stays",
        summaries.join("; ")
    ))
    .with_hint(
        "SHOW PLAN shows what the edit moves. Move those rows or revert the edit; \
         RELOAD FORCE applies it as it is, leaving the rows where they are.",
    )
}

/// The pools `PAUSE`/`RESUME` act on: every pool, a database's, or one shard's
/// (`PAUSE [database [shard]]`); an error names what does not exist.
fn selected_pools(
    admin: &AdminContext,
    args: &[&str],
) -> Result<Vec<crate::pool::EndpointPool>, ErrorReport> {
    if args.len() > 2 {
        return Err(ErrorReport::error(
            sqlstate::SYNTAX_ERROR,
            Blame::Client,
            "usage: PAUSE [database [shard]] / RESUME [database [shard]]",
        ));
    }
    let topology = admin.topology();
    let missing =
        |what: String| ErrorReport::error(sqlstate::UNDEFINED_OBJECT, Blame::Client, what);
    let mut pools = Vec::new();
    let mut found_database = args.is_empty();
    let mut found_shard = args.len() < 2;
    for database in topology.databases() {
        if args.first().is_some_and(|name| *name != database.name) {
            continue;
        }
        found_database = true;
        for server in database.servers() {
            if args.get(1).is_some_and(|shard| *shard != server.shard) {
                continue;
            }
            found_shard = true;
            pools.push(server.pool.clone());
        }
    }
    if !found_database {
        return Err(missing(format!("no database is named {:?}", args[0])));
    }
    if !found_shard {
        return Err(missing(format!(
            "database {:?} has no shard {:?}",
            args[0], args[1]
        )));
    }
    Ok(pools)
}

/// Pauses the selected pools: sessions that need a connection of them wait (no error, no
/// disconnect), and the command returns once the connections in use came back, so the
/// servers can be stopped for maintenance.
async fn pause(admin: &AdminContext, args: &[&str]) -> Reply {
    let pools = match selected_pools(admin, args) {
        Ok(pools) => pools,
        Err(report) => return Reply::Error(report),
    };
    for pool in &pools {
        pool.set_paused(true);
    }
    tracing::warn!(pools = pools.len(), "pools paused from the admin console");
    let deadline = Instant::now() + PAUSE_DRAIN_WAIT;
    loop {
        let in_use: usize = pools.iter().map(|p| p.stats().in_use).sum();
        if in_use == 0 {
            return Reply::Done("PAUSE".into());
        }
        if Instant::now() >= deadline {
            return Reply::Error(ErrorReport::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                Blame::Client,
                format!(
                    "paused, but {in_use} server connection(s) are still in use after {}s \
                     (long transactions or session-pooled clients); run PAUSE again to wait more",
                    PAUSE_DRAIN_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn resume(admin: &AdminContext, args: &[&str]) -> Reply {
    match selected_pools(admin, args) {
        Ok(pools) => {
            for pool in &pools {
                pool.set_paused(false);
            }
            tracing::info!(pools = pools.len(), "pools resumed from the admin console");
            Reply::Done("RESUME".into())
        }
        Err(report) => Reply::Error(report),
    }
}
