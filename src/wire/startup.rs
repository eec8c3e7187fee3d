//! The untagged packets a connection opens with: StartupMessage, SSLRequest, GSSENCRequest and
//! CancelRequest (PostgreSQL docs, "Message Formats": they carry a length and a code, no tag).

use super::WireError;
use super::reader::Reader;

/// Longest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;

/// One opening packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// A client wants to log in.
    Startup {
        /// Protocol major version (3).
        major: u16,
        /// Protocol minor version the client asks for.
        minor: u16,
        /// Name/value pairs: `user`, `database`, `application_name`, …
        params: Vec<(String, String)>,
    },
    /// A client asks to cancel the query another of its connections is running.
    Cancel {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: i32,
    },
    /// The client wants TLS.
    SslRequest,
    /// The client wants GSSAPI encryption.
    GssEncRequest,
}

/// Parses the packet at the start of `buf`; `Ok(None)` until all of it has arrived. Returns
/// the packet and how many bytes it took.
pub fn parse_startup_packet(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, WireError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(WireError::InvalidLength {
            tag: '\0',
            len: len as u32,
        });
    }
    let Some(packet) = buf.get(4..len) else {
        return Ok(None);
    };
    Ok(Some((decode(packet)?, len)))
}

fn decode(packet: &[u8]) -> Result<StartupPacket, WireError> {
    let mut r = Reader::new(packet, "startup packet");
    let code = r.i32()?;
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            let mut r = Reader::new(packet, "CancelRequest");
            r.i32()?;
            Ok(StartupPacket::Cancel {
                pid: r.i32()?,
                secret: r.i32()?,
            })
        }
        _ => decode_startup(code, &mut r),
    }
}

fn decode_startup(code: i32, r: &mut Reader<'_>) -> Result<StartupPacket, WireError> {
    let major = (code >> 16) as u16;
    let minor = (code & 0xffff) as u16;
    if major != 3 {
        return Err(WireError::Malformed {
            what: "StartupMessage (unsupported protocol version)",
        });
    }
    let mut params = Vec::new();
    loop {
        let name = r.cstr()?;
        if name.is_empty() {
            break;
        }
        params.push((name.to_owned(), r.cstr()?.to_owned()));
    }
    Ok(StartupPacket::Startup {
        major,
        minor,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn reads_startup_params() {
        let bytes = startup(&[("user", "app"), ("database", "db")]);
        let (packet, used) = parse_startup_packet(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let StartupPacket::Startup { params, minor, .. } = packet else {
            panic!()
        };
        assert_eq!(minor, 0);
        assert_eq!(params[0], ("user".into(), "app".into()));
    }

    #[test]
    fn waits_for_whole_packet() {
        let bytes = startup(&[("user", "app")]);
        assert_eq!(parse_startup_packet(&bytes[..bytes.len() - 1]), Ok(None));
    }

    #[test]
    fn reads_ssl_and_cancel() {
        let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
        assert_eq!(
            parse_startup_packet(&ssl).unwrap().unwrap().0,
            StartupPacket::SslRequest
        );
        let mut cancel = vec![0, 0, 0, 16, 4, 210, 22, 46];
        cancel.extend(7i32.to_be_bytes());
        cancel.extend(9i32.to_be_bytes());
        let (packet, _) = parse_startup_packet(&cancel).unwrap().unwrap();
        assert_eq!(packet, StartupPacket::Cancel { pid: 7, secret: 9 });
    }

    #[test]
    fn rejects_huge_and_tiny_lengths() {
        assert!(parse_startup_packet(&[0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_startup_packet(&[0, 0, 0, 2]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = parse_startup_packet(&bytes);
        }
    }
}
