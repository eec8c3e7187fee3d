//! PostgreSQL wire framing and the handful of messages the proxy reads or writes.
//!
//! Pure functions over byte buffers: no sockets, no `await`, no allocation sized by a length
//! prefix before the bytes have arrived. Everything else in the proxy forwards frames as opaque
//! bytes; this module is where the few fields we must look at (statement names, SQL text,
//! transaction status, SQLSTATE) are read and where synthesized messages are encoded.
//! Message layouts follow the PostgreSQL docs, "Message Formats" (protocol 3.0).

mod backend;
pub mod copy_rows;
pub mod encode;
mod frame;
mod frontend;
#[cfg(test)]
mod fuzz;
pub mod oids;
pub mod pgoutput;
mod reader;
mod startup;

pub use backend::{
    BackendKeyData, ParameterStatus, command_tag, data_row_text, ends_connection, error_fields,
    error_report,
};
pub use frame::{FrameHeader, HEADER_LEN, WireError, peek_header};
pub use frontend::{
    Bind, BindRest, Parse, StatementOrPortal, Target, execute_fields, execute_portal, query_text,
};
pub(crate) use reader::Reader;
pub use startup::{MAX_STARTUP_PACKET, StartupPacket, parse_startup_packet};

/// Message tags, named so match arms read as protocol (PostgreSQL docs, "Message Formats").
pub mod tag {
    // Frontend.
    /// Simple query.
    pub const QUERY: u8 = b'Q';
    /// Extended protocol: Parse.
    pub const PARSE: u8 = b'P';
    /// Extended protocol: Bind.
    pub const BIND: u8 = b'B';
    /// Extended protocol: Execute.
    pub const EXECUTE: u8 = b'E';
    /// Extended protocol: Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Extended protocol: Close.
    pub const CLOSE: u8 = b'C';
    /// Extended protocol: Sync.
    pub const SYNC: u8 = b'S';
    /// Extended protocol: Flush.
    pub const FLUSH: u8 = b'H';
    /// Function call (fast-path).
    pub const FUNCTION_CALL: u8 = b'F';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// Password, SASLInitialResponse, SASLResponse.
    pub const PASSWORD: u8 = b'p';
    /// COPY data (both directions).
    pub const COPY_DATA: u8 = b'd';
    /// COPY done (both directions).
    pub const COPY_DONE: u8 = b'c';
    /// COPY failed (frontend).
    pub const COPY_FAIL: u8 = b'f';

    // Backend.
    /// Authentication request or result.
    pub const AUTHENTICATION: u8 = b'R';
    /// Cancel key.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// Bind finished.
    pub const BIND_COMPLETE: u8 = b'2';
    /// Close finished.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// A statement finished.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// COPY FROM STDIN started.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// COPY TO STDOUT started.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// COPY BOTH started (replication).
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// One row.
    pub const DATA_ROW: u8 = b'D';
    /// Empty query string.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// Error.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// Fast-path function result.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// Protocol version negotiation.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// Describe answered: no rows.
    pub const NO_DATA: u8 = b'n';
    /// Notice.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// LISTEN/NOTIFY notification.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// Describe statement answered: parameter types.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// A reported run-time parameter changed.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// Parse finished.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// Execute stopped at its row limit.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// Ready for a new query; carries the transaction status.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// Row layout.
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Transaction status byte of ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

impl TxStatus {
    /// Reads a ReadyForQuery status byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }

    /// The status byte on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}
