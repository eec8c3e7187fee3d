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
    /// Validate a configuration and the shard maps it names (offline, unless --connect);
    /// exit 1 on any problem.
    Check(CheckArgs),
    /// Start local PostgreSQL shards (primary + streaming replicas) and a proxy in front of them.
    Demo(DemoArgs),
    /// Show where a statement would run and why (connects nowhere); exit 1 if it is refused.
    Route(RouteArgs),
    /// Show what replacing one shard map by another moves; exit 1 if either map is invalid.
    Plan(PlanArgs),
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

/// Options of `shardgate check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The configuration to check.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also connect to every shard's primary (as the configuration's backend URIs say) and
    /// report each one that cannot be reached and, with transactions.atomic on, each whose
    /// max_prepared_transactions is 0 (two-phase commit needs it above 0). Changes nothing
    /// on the servers; each connection is bounded by pool.connect_timeout.
    #[arg(long)]
    pub connect: bool,
}

/// Options of `shardgate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port the proxy listens on.
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// Port of the metrics endpoint (`/metrics`, `/health`, `/ready`).
    #[arg(long, default_value_t = 9187)]
    pub metrics_port: u16,
    /// Backend connections per server (`pool.size`); a small pool shows transaction pooling
    /// serving more clients than connections.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pool_size: u32,
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

/// Options of `shardgate route`.
#[derive(Debug, Clone, clap::Args)]
pub struct RouteArgs {
    /// The configuration whose shard map routes the statement.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The statement text, exactly as a client would send it (several statements allowed).
    pub sql: String,
    /// Value of the next parameter ($1, $2, …) in text format; the word NULL is SQL NULL.
    #[arg(long = "param", short = 'p', value_name = "VALUE")]
    pub params: Vec<String>,
    /// Database whose shard map routes (default: the first one configured).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
}

/// Options of `shardgate plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The shard map in service now.
    #[arg(long, value_name = "FILE")]
    pub old: PathBuf,
    /// The edited shard map.
    #[arg(long, value_name = "FILE")]
    pub new: PathBuf,
    /// Also ask the old map's primaries which of the moved keys hold rows: what a running
    /// proxy asks before it applies the edit (it holds an edit that moves stored rows).
    /// Reads only; each connection is bounded by 5 s.
    #[arg(long)]
    pub connect: bool,
}
