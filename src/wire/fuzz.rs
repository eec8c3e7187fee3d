//! "Arbitrary bytes never panic", with bytes shaped like messages: bodies built from the
//! pieces decoders read (C strings, counts, lengths, raw bytes), so the fuzz reaches the fields
//! past the first one, as plain random bytes rarely do; whole frames with every tag; startup
//! packets with a plausible length and every code. Test-only.

use proptest::prelude::*;

use super::*;
use crate::error::Blame;

/// One field of a message body. Counts and lengths are often small or -1 (NULL), so that a
/// decoder goes on to read what they announce.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(1u8..=255, 0..12).prop_map(|mut s| {
            s.push(0);
            s
        }),
        (-2i16..6).prop_map(|n| n.to_be_bytes().to_vec()),
        any::<i16>().prop_map(|n| n.to_be_bytes().to_vec()),
        (-2i32..16).prop_map(|n| n.to_be_bytes().to_vec()),
        any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(piece(), 0..10).prop_map(|pieces| pieces.concat())
}

/// Every decoder the proxy applies to a body from a client or a backend.
fn decode_all(body: &[u8]) {
    let _ = Parse::decode(body);
    if let Ok(bind) = Bind::decode(body) {
        let _ = BindRest::decode(&body[bind.rest_offset..]);
    }
    let _ = BindRest::decode(body);
    let _ = Target::decode_describe(body);
    let _ = Target::decode_close(body);
    let _ = execute_portal(body);
    let _ = execute_fields(body);
    let _ = query_text(body);
    let _ = ParameterStatus::decode(body);
    let _ = BackendKeyData::decode(body);
    let _ = command_tag(body);
    let _ = error_fields(body);
    let _ = error_report(body, Blame::Backend);
}

proptest! {
    #[test]
    fn shaped_bodies_never_panic(body in body()) {
        decode_all(&body);
    }

    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        decode_all(&bytes);
    }

    /// A frame's header either names a length that covers at least itself, or is an error.
    #[test]
    fn frames_never_panic(tag in any::<u8>(), len in any::<u32>(), body in body()) {
        let mut frame = vec![tag];
        frame.extend(len.to_be_bytes());
        frame.extend(&body);
        if let Ok(Some(header)) = peek_header(&frame) {
            prop_assert!(header.total_len >= HEADER_LEN);
            if let Some(whole) = frame.get(HEADER_LEN..header.total_len) {
                decode_all(whole);
            }
        }
    }

    /// Startup packets with a length that fits and any code, known or not.
    #[test]
    fn startup_packets_never_panic(
        code in prop_oneof![Just(196_608i32), Just(80_877_102), Just(80_877_103),
                            Just(80_877_104), any::<i32>()],
        body in body(),
        extra in 0u32..3,
    ) {
        let len = (8 + body.len()) as u32;
        let mut packet = (len + extra).to_be_bytes().to_vec();
        packet.extend(code.to_be_bytes());
        packet.extend(&body);
        if let Ok(Some((_, used))) = parse_startup_packet(&packet) {
            prop_assert_eq!(used, len as usize, "a packet uses what its length says");
        }
    }
}
