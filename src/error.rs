//! What a client is told when something fails, in one shape for every stage.
//!
//! Each stage has its own `thiserror` enum with typed context; each of those knows its
//! SQLSTATE and who is at fault, and converts into an [`ErrorReport`]. The session is the one
//! place that turns a report into an `ErrorResponse` on the wire.

mod unsupported;

pub use unsupported::Unsupported;

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
    /// Sent as a NoticeResponse: the command went on.
    Warning,
}

impl Severity {
    /// The protocol spelling of this severity.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Warning => "WARNING",
        }
    }
}

/// Whether the statement that failed may run again as it is, so that the proxy (or a client
/// told so) can retry without asking what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// It may have changed something, or its outcome is unknown.
    #[default]
    Unsafe,
    /// It ran nowhere, or it only read and sent the client nothing: running it again changes
    /// nothing twice.
    Safe,
}

/// What lies under a report (an I/O error, a pool's error), kept for logs and for
/// [`std::error::Error::source`]; the client sees the report only.
#[derive(Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps the error underneath.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(std::sync::Arc::new(error))
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cause({})", self.0)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Two causes are the same when they say the same (errors have no equality of their own).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// A client-visible error: what goes into an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// ERROR or FATAL.
    pub severity: Severity,
    /// Its SQLSTATE (ours are the [`sqlstate`] constants; a backend's are passed through).
    pub code: SqlState,
    /// Primary human-readable message.
    pub message: String,
    /// Optional detail line.
    pub detail: Option<String>,
    /// Optional hint: what the client can do about it (the protocol's `H` field).
    pub hint: Option<String>,
    /// Where it happened (the protocol's `W` field: `COPY users, line 3`, a PL/pgSQL stack).
    pub context: Option<String>,
    /// Who is at fault.
    pub blame: Blame,
    /// Whether the failed statement may run again as it is.
    pub retry: Retry,
    /// The error underneath, if another error caused this one.
    pub cause: Option<Cause>,
}

impl ErrorReport {
    /// An ERROR-severity report.
    pub fn error(code: SqlState, blame: Blame, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
            blame,
            retry: Retry::Unsafe,
            cause: None,
        }
    }

    /// A FATAL-severity report: the connection closes after it.
    pub fn fatal(code: SqlState, blame: Blame, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            ..Self::error(code, blame, message)
        }
    }

    /// A WARNING-severity report, sent as a NoticeResponse (see `wire::encode`).
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(sqlstate::WARNING, Blame::Proxy, message)
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

    /// Adds where it happened.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The same report with its context rewritten by `rewrite`.
    pub fn map_context(mut self, rewrite: impl FnOnce(&str) -> String) -> Self {
        self.context = self.context.as_deref().map(rewrite);
        self
    }

    /// Marks the failed statement as safe to run again (see [`Retry`]).
    pub fn retry_safe(self) -> Self {
        self.with_retry(Retry::Safe)
    }

    /// Sets whether the failed statement may run again.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Whether the failed statement may run again as it is.
    pub fn is_retry_safe(&self) -> bool {
        self.retry == Retry::Safe
    }

    /// Records the error underneath.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Cause::new(cause));
        self
    }
}

/// A SQLSTATE: five ASCII letters or digits, the first two its class (PostgreSQL Appendix A).
/// Code decides by it (or by its class), never by an error's message text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// A code known when compiling (a malformed one fails the build where it is a constant).
    pub const fn from_static(code: &'static str) -> SqlState {
        let bytes = code.as_bytes();
        assert!(bytes.len() == 5, "a SQLSTATE has five characters");
        let mut out = [0u8; 5];
        let mut i = 0;
        while i < 5 {
            assert!(
                bytes[i].is_ascii_alphanumeric(),
                "a SQLSTATE is letters and digits"
            );
            out[i] = bytes[i].to_ascii_uppercase();
            i += 1;
        }
        SqlState(out)
    }

    /// A code a server or client sent; `None` unless it is five ASCII letters or digits.
    pub fn parse(code: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        (bytes.iter().all(u8::is_ascii_alphanumeric))
            .then(|| SqlState(bytes.map(|b| b.to_ascii_uppercase())))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Five ASCII bytes, checked by both constructors.
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// Its class: the first two characters (`08` connection exception, `53` resources, …).
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

impl PartialEq<str> for SqlState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Every SQLSTATE the proxy decides by or raises, in one place (PostgreSQL Appendix A).
pub mod sqlstate {
    use super::SqlState;

    /// A warning (NoticeResponse).
    pub const WARNING: SqlState = SqlState::from_static("01000");
    /// Statement or construct the proxy does not support.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState::from_static("0A000");
    /// A value (a shard key) that is not valid for its type.
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState::from_static("22P02");
    /// A relation that does not exist.
    pub const UNDEFINED_TABLE: SqlState = SqlState::from_static("42P01");
    /// The proxy's configuration (a directory table) is wrong.
    pub const CONFIG_FILE_ERROR: SqlState = SqlState::from_static("F0000");
    /// A statement too large to encode.
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState::from_static("54000");
    /// A statement nested too deeply to analyse (PostgreSQL's `statement_too_complex`).
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState::from_static("54001");
    /// A statement sent after an error in the same transaction.
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState::from_static("25P02");
    /// A statement that needs a transaction block outside one (DECLARE without HOLD).
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState::from_static("25P01");
    /// A named object (a shard in a hint) that does not exist.
    pub const UNDEFINED_OBJECT: SqlState = SqlState::from_static("42704");
    /// Connection to a backend failed.
    pub const CONNECTION_FAILURE: SqlState = SqlState::from_static("08006");
    /// A connection was lost during COMMIT: whether that shard committed is unknown.
    pub const TRANSACTION_RESOLUTION_UNKNOWN: SqlState = SqlState::from_static("08007");
    /// Could not establish a connection (startup).
    pub const CONNECTION_EXCEPTION: SqlState = SqlState::from_static("08000");
    /// Malformed message from the client.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState::from_static("08P01");
    /// COPY data that is not valid input of its format.
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState::from_static("22P04");
    /// A value that must not be NULL is (a COPY row's shard key).
    pub const NOT_NULL_VIOLATION: SqlState = SqlState::from_static("23502");
    /// Pool exhausted or connection limit reached.
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState::from_static("53300");
    /// Wrong password.
    pub const INVALID_PASSWORD: SqlState = SqlState::from_static("28P01");
    /// Authentication failed for another reason.
    pub const INVALID_AUTHORIZATION: SqlState = SqlState::from_static("28000");
    /// Unknown database.
    pub const INVALID_CATALOG_NAME: SqlState = SqlState::from_static("3D000");
    /// Not allowed (a non-admin user at the admin console).
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState::from_static("42501");
    /// A command the admin console does not know.
    pub const SYNTAX_ERROR: SqlState = SqlState::from_static("42601");
    /// A shard-map reload asked for from the admin console was rejected.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState::from_static("55000");
    /// Prepared statement name already in use.
    pub const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState::from_static("42P05");
    /// Server shutting down.
    pub const ADMIN_SHUTDOWN: SqlState = SqlState::from_static("57P01");
    /// A login while the proxy shuts down.
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState::from_static("57P03");
    /// A client idle outside a transaction for too long.
    pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState::from_static("57P05");
    /// A client idle inside a transaction for too long.
    pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: SqlState = SqlState::from_static("25P03");
    /// A configured limit (a user's statement rate) was exceeded.
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = SqlState::from_static("53400");
    /// Statement cancelled.
    pub const QUERY_CANCELED: SqlState = SqlState::from_static("57014");
    /// A transaction that rolled back instead of committing.
    pub const TRANSACTION_ROLLBACK: SqlState = SqlState::from_static("40000");
    /// A transaction that touched rows while RESHARD moved them: retry it.
    pub const SERIALIZATION_FAILURE: SqlState = SqlState::from_static("40001");
    /// A statement that waited at the RESHARD fence longer than the proxy waits.
    pub const LOCK_NOT_AVAILABLE: SqlState = SqlState::from_static("55P03");
    /// A lock cycle (here: across shards) was broken by failing this transaction.
    pub const DEADLOCK_DETECTED: SqlState = SqlState::from_static("40P01");
    /// Internal proxy error.
    pub const INTERNAL_ERROR: SqlState = SqlState::from_static("XX000");
    /// LIMIT below zero.
    pub const INVALID_ROW_COUNT_IN_LIMIT: SqlState = SqlState::from_static("2201W");
    /// OFFSET below zero.
    pub const INVALID_ROW_COUNT_IN_OFFSET: SqlState = SqlState::from_static("2201X");
    /// A value outside its type's range (int8 overflow).
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState::from_static("22003");
    /// A binary Bind parameter that does not decode.
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState::from_static("22P03");
    /// A column an option names that the statement does not use (COPY's FORCE_QUOTE).
    pub const INVALID_COLUMN_REFERENCE: SqlState = SqlState::from_static("42P10");
    /// A `$n` with no parameter.
    pub const UNDEFINED_PARAMETER: SqlState = SqlState::from_static("42P02");
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

impl std::error::Error for ErrorReport {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause: &(dyn std::error::Error + 'static) = &*self.cause.as_ref()?.0;
        Some(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_five_letters_or_digits() {
        assert_eq!(
            SqlState::parse("42p01"),
            Some(SqlState::from_static("42P01"))
        );
        for bad in ["", "4260", "426011", "42 01", "42é0", "0A00;"] {
            assert_eq!(SqlState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(sqlstate::CONNECTION_FAILURE.class(), "08");
        assert_eq!(sqlstate::CONNECTION_FAILURE, "08006");
        assert_eq!(sqlstate::CONNECTION_FAILURE.to_string(), "08006");
    }

    #[test]
    fn a_report_is_unsafe_to_retry_unless_marked_and_keeps_its_cause() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let report = ErrorReport::error(sqlstate::CONNECTION_FAILURE, Blame::Backend, "lost")
            .caused_by(reset);
        assert!(!report.is_retry_safe());
        let source = std::error::Error::source(&report).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("reset by peer"));
        let safe = report.clone().retry_safe();
        assert!(safe.is_retry_safe() && safe.cause == report.cause);
        assert_eq!(report.into_fatal().cause.map(|c| c.to_string()), source);
    }
}
