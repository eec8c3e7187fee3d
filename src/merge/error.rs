//! Part of the merge stage (pure): why a merge fails, and what the client is told.
//!
//! Owns [`MergeError`] and its report: PostgreSQL's SQLSTATE and words where PostgreSQL
//! itself would raise the same error (LIMIT must not be negative, bigint out of range), a
//! `shardgate:` message and the proxy's blame where the merge is the one refusing. It never
//! decides whether a merge is possible; the modules that find the problem build the error.

use super::window::Clause;
use crate::error::{Blame, ErrorReport, sqlstate};

/// What the merge was holding when it ran out of buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffered {
    /// The groups of a GROUP BY (or an aggregate's MIN/MAX rows).
    GroupBy,
    /// The keys of a SELECT DISTINCT already sent.
    Distinct,
}

impl std::fmt::Display for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Buffered::GroupBy => "GROUP BY",
            Buffered::Distinct => "DISTINCT",
        })
    }
}

/// Why a merge cannot produce a correct result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A construct or type the merge cannot combine exactly.
    #[error("{0}")]
    Unsupported(String),
    /// A shard sent bytes that do not match their RowDescription or type.
    #[error("a shard sent a malformed {0}")]
    Malformed(&'static str),
    /// The plan or the executor's calls do not fit the shards' results (a proxy bug).
    #[error("the merge plan does not fit the shards' results: {0}")]
    Contract(String),
    /// The buffered groups or keys passed [`MergeLimits::max_buffered_bytes`].
    #[error("the cross-shard {what} result exceeded the proxy's buffer of {limit} bytes")]
    BufferExceeded {
        /// What was buffered.
        what: Buffered,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A negative LIMIT or OFFSET, in PostgreSQL's words.
    #[error("{0} must not be negative")]
    Negative(Clause),
    /// `$n` without a parameter.
    #[error("there is no parameter ${0}")]
    NoParameter(usize),
    /// A binary parameter that does not decode as its type.
    #[error("incorrect binary data format in bind parameter {0}")]
    BadBinaryParameter(usize),
    /// A constant's text that its type does not accept, in PostgreSQL's words.
    #[error("invalid input syntax for type {type_name}: \"{text}\"")]
    InvalidInput {
        /// The type's SQL name.
        type_name: &'static str,
        /// The text.
        text: String,
    },
    /// A constant outside its type's range, in PostgreSQL's words.
    #[error("value \"{text}\" is out of range for type {type_name}")]
    ValueOutOfRange {
        /// The type's SQL name.
        type_name: &'static str,
        /// The text.
        text: String,
    },
    /// A FORCE_QUOTE column the COPY does not copy, in PostgreSQL's words.
    #[error("FORCE_QUOTE column \"{0}\" not referenced by COPY")]
    NotCopied(String),
    /// A computed value outside its type's range, with PostgreSQL's message.
    #[error("{0}")]
    OutOfRange(&'static str),
}

impl MergeError {
    /// The error the client sees: PostgreSQL's SQLSTATE and words where PostgreSQL would
    /// raise the same error, `shardgate:` where the proxy is the one refusing.
    pub fn report(&self) -> ErrorReport {
        let (code, blame) = match self {
            MergeError::Unsupported(_) => (sqlstate::FEATURE_NOT_SUPPORTED, Blame::Client),
            MergeError::Malformed(_) => (sqlstate::PROTOCOL_VIOLATION, Blame::Backend),
            MergeError::Contract(_) => (sqlstate::INTERNAL_ERROR, Blame::Proxy),
            MergeError::BufferExceeded { .. } => (sqlstate::PROGRAM_LIMIT_EXCEEDED, Blame::Proxy),
            MergeError::Negative(Clause::Limit) => {
                (sqlstate::INVALID_ROW_COUNT_IN_LIMIT, Blame::Client)
            }
            MergeError::Negative(Clause::Offset) => {
                (sqlstate::INVALID_ROW_COUNT_IN_OFFSET, Blame::Client)
            }
            MergeError::NoParameter(_) => (sqlstate::UNDEFINED_PARAMETER, Blame::Client),
            MergeError::NotCopied(_) => (sqlstate::INVALID_COLUMN_REFERENCE, Blame::Client),
            MergeError::BadBinaryParameter(_) => {
                (sqlstate::INVALID_BINARY_REPRESENTATION, Blame::Client)
            }
            MergeError::InvalidInput { .. } => {
                (sqlstate::INVALID_TEXT_REPRESENTATION, Blame::Client)
            }
            MergeError::ValueOutOfRange { .. } | MergeError::OutOfRange(_) => {
                (sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, Blame::Client)
            }
        };
        let message = match self {
            MergeError::Unsupported(_)
            | MergeError::Malformed(_)
            | MergeError::Contract(_)
            | MergeError::BufferExceeded { .. } => format!("shardgate: {self}"),
            _ => self.to_string(),
        };
        ErrorReport::error(code, blame, message)
    }
}
