//! What a client is told when something fails, in one shape for every stage.
//!
//! Each stage has its own `thiserror` enum with typed context; each of those knows its
//! SQLSTATE and who is at fault, and converts into an [`ErrorReport`]. The session is the one
//! place that turns a report into an `ErrorResponse` on the wire.

use std::borrow::Cow;

/// Who caused an error: tells operators where to look and clients whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client sent something wrong (bad password, malformed message, unknown database).
    Client,
    /// A backend failed or is unreachable; retrying later may succeed.
    Backend,
    /// The proxy itself is saturated or hit an internal error.
    Proxy,
}

/// `ErrorResponse` severity, as in the protocol's `S`/`V` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    /// The protocol spelling of this severity.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// A client-visible error: what goes into an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// ERROR or FATAL.
    pub severity: Severity,
    /// Five-character SQLSTATE (ours are constants; a backend's are passed through).
    pub code: Cow<'static, str>,
    /// Primary human-readable message.
    pub message: String,
    /// Optional detail line.
    pub detail: Option<String>,
    /// Optional hint: what the client can do about it (the protocol's `H` field).
    pub hint: Option<String>,
    /// Who is at fault.
    pub blame: Blame,
}

impl ErrorReport {
    /// An ERROR-severity report.
    pub fn error(
        code: impl Into<Cow<'static, str>>,
        blame: Blame,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
            blame,
        }
    }

    /// A FATAL-severity report: the connection closes after it.
    pub fn fatal(
        code: impl Into<Cow<'static, str>>,
        blame: Blame,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Fatal,
            ..Self::error(code, blame, message)
        }
    }

    /// The same report, ending the session.
    pub fn into_fatal(self) -> Self {
        Self {
            severity: Severity::Fatal,
            ..self
        }
    }

    /// Adds a detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// SQLSTATE codes the proxy itself raises (PostgreSQL Appendix A).
pub mod sqlstate {
    /// Statement or construct the proxy does not support.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// A value (a shard key) that is not valid for its type.
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    /// The proxy's configuration (a directory table) is wrong.
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    /// A statement too large to encode.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// A statement sent after an error in the same transaction.
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    /// A named object (a shard in a hint) that does not exist.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// Connection to a backend failed.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// A connection was lost during COMMIT: whether that shard committed is unknown.
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
    /// Could not establish a connection (startup).
    pub const CONNECTION_EXCEPTION: &str = "08000";
    /// Malformed message from the client.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// Pool exhausted or connection limit reached.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// Wrong password.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// Authentication failed for another reason.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// Unknown database.
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// Not allowed (a non-admin user at the admin console).
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A command the admin console does not know.
    pub const SYNTAX_ERROR: &str = "42601";
    /// A shard-map reload asked for from the admin console was rejected.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// Prepared statement name already in use.
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    /// Server shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// A login while the proxy shuts down.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// A client idle outside a transaction for too long.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// A client idle inside a transaction for too long.
    pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &str = "25P03";
    /// A configured limit (a user's statement rate) was exceeded.
    pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
    /// Statement cancelled.
    pub const QUERY_CANCELED: &str = "57014";
    /// A transaction that rolled back instead of committing.
    pub const TRANSACTION_ROLLBACK: &str = "40000";
    /// A lock cycle (here: across shards) was broken by failing this transaction.
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// Internal proxy error.
    pub const INTERNAL_ERROR: &str = "XX000";
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ErrorReport {}
