//! The `shardgate` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A sharded PostgreSQL proxy.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve clients with the given configuration.
    Run(ConfigArg),
    /// Validate a configuration and the shard maps it names; exit 1 on any problem.
    Check(ConfigArg),
    /// Start local PostgreSQL shards (primary + streaming replicas) and a proxy in front of them.
    Demo(DemoArgs),
}

/// The configuration file `run` and `check` read.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "SHARDGATE_CONFIG",
        default_value = "config/shardgate.yaml"
    )]
    pub config: PathBuf,
}

/// Options of `shardgate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port the proxy listens on.
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// Number of shards (the demo map places data on s0 and s1, so at least two).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub shards: u16,
    /// Streaming replicas per shard.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=4))]
    pub replicas: u16,
    /// Directory for the clusters, config and map (a temporary one by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the directory when the demo stops.
    #[arg(long)]
    pub keep: bool,
}
