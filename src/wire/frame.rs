//! Frame headers: a 1-byte tag and a 4-byte big-endian length that counts itself but not the tag.

/// Bytes in a frame header (tag + length).
pub const HEADER_LEN: usize = 5;

/// A frame's tag and total size on the wire (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type byte.
    pub tag: u8,
    /// Total bytes of the frame: 1 (tag) + the length field's value.
    pub total_len: usize,
}

/// Malformed bytes from a peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// A length field below its own 4 bytes.
    #[error("message {tag:?} has invalid length {len}")]
    InvalidLength {
        /// Message type byte, as a char for readable errors.
        tag: char,
        /// The length field.
        len: u32,
    },
    /// A message larger than the configured limit.
    #[error("message {tag:?} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Message type byte.
        tag: char,
        /// Announced size.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A message whose body does not match its type's layout.
    #[error("malformed {what} message")]
    Malformed {
        /// Which message.
        what: &'static str,
    },
}

/// Reads the header at the start of `buf`; `None` until 5 bytes are there. The frame itself may
/// still be incomplete: compare `total_len` with `buf.len()`.
pub fn peek_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(WireError::InvalidLength {
            tag: header[0] as char,
            len,
        });
    }
    Ok(Some(FrameHeader {
        tag: header[0],
        total_len: len as usize + 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_five_bytes() {
        assert_eq!(peek_header(b"Q\0\0\0"), Ok(None));
    }

    #[test]
    fn reads_total_length() {
        let h = peek_header(b"Q\0\0\0\x09SELECT").unwrap().unwrap();
        assert_eq!(
            h,
            FrameHeader {
                tag: b'Q',
                total_len: 10
            }
        );
    }

    #[test]
    fn rejects_short_length() {
        assert!(peek_header(b"Q\0\0\0\x03").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = peek_header(&bytes);
        }
    }
}
