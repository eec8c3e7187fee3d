//! The `shardgate` binary: parse the command line, set up logging, hand over to the library.
//! The only place `anyhow` is used.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shardgate::app::Proxy;
use shardgate::cli::{Cli, Command};
use shardgate::config::{self, ConfigError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(arg) => return check(&arg.config),
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

fn check(path: &Path) -> ExitCode {
    match config::load_config(path) {
        Ok(config) => {
            let shards: usize = config
                .databases
                .iter()
                .map(|d| d.shard_map.shards.len())
                .sum();
            println!(
                "{}: ok ({} database(s), {} shard(s), {} user(s))",
                path.display(),
                config.databases.len(),
                shards,
                config.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            eprint!("{}", config::render_problems(&problems));
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
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
        tracing::info!("shutting down");
        proxy.stop().await;
        Ok(())
    })
}
