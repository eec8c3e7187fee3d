//! Reading config and shard-map files (placeholder until the config slice lands).
use std::path::{Path, PathBuf};

use super::{Config, ShardMap};

/// One problem found in a file, with its YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File the problem is in.
    pub file: PathBuf,
    /// YAML path such as `databases[0].shard_map` (line/column when serde reports one).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Files were read but are invalid; every problem is listed.
    #[error("{} problem(s) in configuration", .0.len())]
    Invalid(Vec<Problem>),
}

/// Reads and validates a config file and every shard map it names.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let _ = path;
    unimplemented!()
}

/// Reads and validates one shard-map file.
pub fn load_shard_map(path: &Path) -> Result<ShardMap, ConfigError> {
    let _ = path;
    unimplemented!()
}
