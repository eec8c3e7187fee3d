//! Reading config and shard-map files: text → raw structs → validated domain types.
//!
//! Part of the config stage and its entry point. Owns file I/O and turning YAML errors into
//! [`Problem`]s with line and column. It reads files and nothing else: no sockets, no globals,
//! no logging (callers decide how to show problems, e.g. with [`render_problems`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::raw::{RawConfig, RawShardMap};
use super::validate;
use super::{Config, ShardMap};

/// One problem found in a file, with its YAML path, so an operator can go straight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File the problem is in: the config file, or the shard-map file a database names.
    pub file: PathBuf,
    /// YAML path such as `databases[0].shard_map` or `shards[2].primary`; empty when the
    /// problem is with the whole document (a syntax error, a missing top-level key).
    pub path: String,
    /// What is wrong. Problems found by the YAML parser include `(line L, column C)`.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `FILE: PATH: MESSAGE`, or `FILE: MESSAGE` when the path is empty; one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Renders problems for a terminal: one `FILE: PATH: MESSAGE` line each, every line ending in
/// a newline (so `eprint!`, not `eprintln!`). Empty input renders as an empty string.
pub fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{problem}\n"))
        .collect()
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
///
/// Relative paths in the file (shard maps, TLS files) are resolved against the file's
/// directory, not the working directory. `Read` is returned only when the config file itself
/// cannot be read; an unreadable shard map or TLS file is a [`Problem`] in `Invalid`, listed
/// with every other problem found.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    let raw: RawConfig = parse_yaml(&text, path)?;
    let mut problems = missing_tls_files(&raw, path);
    match validate::config(&raw, path, &mut load_shard_map) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(mut found) => {
            found.append(&mut problems);
            Err(ConfigError::Invalid(found))
        }
    }
}

/// Reads and validates one shard-map file (also used on reload, and by `load_config`).
pub fn load_shard_map(path: &Path) -> Result<ShardMap, ConfigError> {
    parse_shard_map(&read(path)?, path)
}

/// Validates shard-map YAML that claims to come from `path` (for messages): tests and tools
/// that hold a map in memory.
pub fn parse_shard_map(text: &str, path: &Path) -> Result<ShardMap, ConfigError> {
    let raw: RawShardMap = parse_yaml(text, path)?;
    validate::shard_map(&raw, path).map_err(ConfigError::Invalid)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

/// Deserializes a whole file; serde stops at its first error, so this yields one problem.
fn parse_yaml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    serde_yaml::from_str(text)
        .map_err(|error| ConfigError::Invalid(vec![yaml_problem(&error, file)]))
}

/// Splits serde_yaml's `"<path>: <message> at line L column C[, context]"` back into a
/// [`Problem`] whose message ends with, or contains, `(line L, column C)`.
fn yaml_problem(error: &serde_yaml::Error, file: &Path) -> Problem {
    let mut text = error.to_string();
    if let Some(location) = error.location() {
        let (line, column) = (location.line(), location.column());
        let position = format!(" (line {line}, column {column})");
        let serde_position = format!(" at line {line} column {column}");
        text = match text.find(&serde_position) {
            Some(_) => text.replacen(&serde_position, &position, 1),
            None => text + &position,
        };
    }
    let (path, message) = split_yaml_path(&text);
    Problem {
        file: file.to_owned(),
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

/// serde_yaml writes the path before the first `": "`; a path has no spaces, while every
/// message serde or our types produce starts with words separated by spaces.
fn split_yaml_path(text: &str) -> (&str, &str) {
    match text.split_once(": ") {
        Some((path, message)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
            (path, message)
        }
        _ => ("", text),
    }
}

/// TLS files are loaded by the frontend; checking they exist here lets `shardgate check` and
/// reload catch a typo before the proxy needs them.
fn missing_tls_files(raw: &RawConfig, file: &Path) -> Vec<Problem> {
    let Some(tls) = &raw.tls else {
        return Vec::new();
    };
    let dir = validate::config_dir(file);
    [("tls.cert", &tls.cert), ("tls.key", &tls.key)]
        .into_iter()
        .filter(|(_, path)| !path.as_os_str().is_empty())
        .filter_map(|(key, path)| {
            let full = dir.join(path);
            let error = std::fs::metadata(&full).err()?;
            Some(Problem {
                file: file.to_owned(),
                path: key.to_owned(),
                message: format!("cannot read {}: {error}", full.display()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
