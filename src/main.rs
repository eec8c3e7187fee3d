//! The `shardgate` binary: parse the command line, set up logging, hand over to the library.
//! The only place `anyhow` is used.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shardgate::app::Proxy;
use shardgate::cli::{CheckArgs, Cli, Command, PlanArgs, RouteArgs};
use shardgate::config::{self, ConfigError};
use shardgate::control::preflight;
use shardgate::moves::{self, explain};
use shardgate::reshard;
use shardgate::router::{Params, Router};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => return check(&args),
        Command::Route(args) => return route(&args),
        Command::Plan(args) => return plan(&args),
        Command::Run(arg) => run(&arg.config),
        Command::Demo(args) => shardgate::demo::run(args).map_err(anyhow::Error::new),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shardgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `shardgate check`: validates the configuration and its shard maps; with `--connect`,
/// also checks every shard's primary. Exit 1 on any problem.
fn check(args: &CheckArgs) -> ExitCode {
    let path = &args.config.config;
    let config = match config::load_config(path) {
        Ok(config) => config,
        Err(error) => return refuse(path, error),
    };
    let shards: usize = (config.databases.iter())
        .map(|d| d.shard_map.shards.len())
        .sum();
    println!(
        "{}: ok ({} database(s), {} shard(s), {} user(s))",
        path.display(),
        config.databases.len(),
        shards,
        config.users.len()
    );
    if !args.connect {
        return ExitCode::SUCCESS;
    }
    match check_primaries(&config) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(problems) => {
            eprintln!(
                "{}: {problems} problem(s) with shard primaries",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("shardgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to every shard's primary of `config`: one line per primary (stdout when fit,
/// stderr with the problem otherwise). Returns how many have a problem.
fn check_primaries(config: &config::Config) -> anyhow::Result<usize> {
    let runtime = one_shot_runtime()?;
    let checks = runtime.block_on(preflight::check_primaries(config));
    let mut problems = 0;
    for check in checks {
        match check.outcome {
            Ok(max) => println!("{}: ok (max_prepared_transactions {max})", check.primary),
            Err(problem) => {
                problems += 1;
                eprintln!("{problem}");
            }
        }
    }
    Ok(problems)
}

/// Prints why a config or shard-map file was refused (every problem, with its YAML path).
fn refuse(path: &Path, error: ConfigError) -> ExitCode {
    match error {
        ConfigError::Invalid(problems) => {
            eprint!("{}", config::render_problems(&problems));
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
        }
        error => eprintln!("{error}"),
    }
    ExitCode::FAILURE
}

/// `shardgate route`: plans and routes one statement text with a configured database's map,
/// connecting nowhere. Exit 1 when the proxy would refuse it.
fn route(args: &RouteArgs) -> ExitCode {
    let path = &args.config.config;
    let config = match config::load_config(path) {
        Ok(config) => config,
        Err(error) => return refuse(path, error),
    };
    let database = match &args.database {
        Some(name) => config.database(name),
        None => config.databases.first(),
    };
    let Some(database) = database else {
        let names: Vec<&str> = config.databases.iter().map(|d| d.name.as_str()).collect();
        let wanted = args.database.as_deref().unwrap_or_default();
        eprintln!(
            "shardgate: no database {wanted:?} in {} (configured: {})",
            path.display(),
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let router = Router::new(&database.shard_map);
    let values: Vec<Option<String>> = (args.params.iter())
        .map(|value| (value != "NULL").then(|| value.clone()))
        .collect();
    let explanation = explain::explain(&router, &args.sql, &Params::from_text(&values));
    emit(&explanation);
    match explanation.route {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `shardgate plan`: what replacing the `--old` shard map by `--new` moves. Exit 1, listing
/// every problem, when either map is invalid.
fn plan(args: &PlanArgs) -> ExitCode {
    match (
        config::load_shard_map(&args.old),
        config::load_shard_map(&args.new),
    ) {
        (Ok(old), Ok(new)) => {
            let report = moves::diff(&old, &new);
            emit(&report);
            if !args.connect || !report.moves_rows() {
                return ExitCode::SUCCESS;
            }
            match stored_rows_moved(&old, &new, &report) {
                Ok(stored) => {
                    emit(reshard::stored_lines(&stored).join("\n") + "\n");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("shardgate: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        (old, new) => {
            for (path, result) in [(&args.old, old), (&args.new, new)] {
                if let Err(error) = result {
                    refuse(path, error);
                }
            }
            eprintln!("shardgate: edit refused: fix the shard map(s) above first");
            ExitCode::FAILURE
        }
    }
}

/// Asks `old`'s primaries which stored rows the edit moves (`shardgate plan --connect`).
fn stored_rows_moved(
    old: &config::ShardMap,
    new: &config::ShardMap,
    report: &moves::MoveReport,
) -> anyhow::Result<Vec<reshard::StoredRows>> {
    let runtime = one_shot_runtime()?;
    let timeout = std::time::Duration::from_secs(5);
    Ok(runtime.block_on(reshard::stored_rows_moved(old, new, report, timeout)))
}

/// A single-threaded runtime for a command that connects somewhere once.
fn one_shot_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Writes a command's output to stdout. A reader that went away (`| head -1`) has what it
/// wanted: that is not worth a panic, so write errors are ignored.
fn emit(output: impl std::fmt::Display) {
    let _ = write!(std::io::stdout().lock(), "{output}");
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = config::load_config(path).map_err(|e| match e {
        ConfigError::Invalid(problems) => anyhow::anyhow!(
            "invalid configuration:\n{}",
            config::render_problems(&problems)
        ),
        other => anyhow::Error::new(other),
    })?;
    shardgate::app::init_tracing(&config.log);
    let runtime = shardgate::app::runtime(&config).context("starting the async runtime")?;
    runtime.block_on(async {
        let proxy = Proxy::bind(&config).await?;
        shardgate::app::shutdown_signal().await;
        tracing::info!("shutting down (a second SIGINT/SIGTERM closes every client at once)");
        let drain = config.shutdown.drain_timeout;
        (proxy.shutdown_until(drain, shardgate::app::shutdown_signal())).await;
        Ok(())
    })
}
