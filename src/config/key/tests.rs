use super::*;
use proptest::prelude::*;

const ALL_TYPES: [KeyType; 6] = [
    KeyType::Integer,
    KeyType::Text,
    KeyType::Uuid,
    KeyType::Date,
    KeyType::Timestamp,
    KeyType::TimestampTz,
];

fn parse(key_type: KeyType, text: &str) -> KeyValue {
    KeyValue::parse_text(key_type, text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn invalid(key_type: KeyType, text: &str) -> bool {
    matches!(
        KeyValue::parse_text(key_type, text),
        Err(KeyError::Invalid { .. })
    )
}

#[test]
fn type_names_and_aliases() {
    for key_type in ALL_TYPES {
        assert_eq!(KeyType::from_name(&key_type.to_string()), Some(key_type));
    }
    for (name, expected) in [
        ("BIGINT", KeyType::Integer),
        ("int2", KeyType::Integer),
        ("Character Varying", KeyType::Text),
        ("bpchar", KeyType::Text),
        ("timestamp without time zone", KeyType::Timestamp),
        ("TIMESTAMP WITH TIME ZONE", KeyType::TimestampTz),
    ] {
        assert_eq!(KeyType::from_name(name), Some(expected), "{name}");
    }
    assert_eq!(KeyType::from_name("numeric"), None);
    assert_eq!(KeyType::from_name("character  varying"), None);
}

#[test]
fn integers_in_postgres_text_form() {
    assert_eq!(parse(KeyType::Integer, " +42\n"), KeyValue::Integer(42));
    assert_eq!(parse(KeyType::Integer, "-0"), KeyValue::Integer(0));
    let min = parse(KeyType::Integer, "-9223372036854775808");
    assert_eq!(min, KeyValue::Integer(i64::MIN));
    for bad in [
        "",
        " ",
        "+",
        "4 2",
        "9223372036854775808",
        "0x10",
        "1e3",
        "1.0",
        "١٢",
    ] {
        assert!(invalid(KeyType::Integer, bad), "{bad:?}");
    }
}

#[test]
fn one_key_however_it_is_written() {
    let expected = KeyValue::Integer(42);
    let ways = [
        KeyValue::parse_text(KeyType::Integer, "42"),
        KeyValue::parse_text(KeyType::Integer, " 042 "),
        KeyValue::from_binary(KeyType::Integer, OID_INT2, &42i16.to_be_bytes()),
        KeyValue::from_binary(KeyType::Integer, OID_INT4, &42i32.to_be_bytes()),
        KeyValue::from_binary(KeyType::Integer, OID_INT8, &42i64.to_be_bytes()),
        KeyValue::from_binary(KeyType::Integer, 0, &42i32.to_be_bytes()),
        KeyValue::from_binary(KeyType::Integer, 0, &42i64.to_be_bytes()),
    ];
    for way in ways {
        assert_eq!(way, Ok(expected.clone()));
    }
    let negative = KeyValue::from_binary(KeyType::Integer, OID_INT2, &(-2i16).to_be_bytes());
    assert_eq!(negative, Ok(KeyValue::Integer(-2)));
}

#[test]
fn uuids_as_postgres_reads_them() {
    let standard = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let expected = parse(KeyType::Uuid, standard);
    for form in [
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
    ] {
        assert_eq!(parse(KeyType::Uuid, form), expected, "{form}");
    }
    assert_eq!(expected.to_string(), standard);
    for bad in [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
        "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ] {
        assert!(invalid(KeyType::Uuid, bad), "{bad:?}");
    }
}

#[test]
fn dates_are_days_since_2000() {
    for (text, days) in [
        ("2000-01-01", 0),
        ("1999-12-31", -1),
        ("2026-01-01", 9497),
        ("2024-02-29", 8825),
        ("2000-02-29", 59),
        ("0001-01-01", -730_119),
        ("9999-12-31", 2_921_939),
        (" 2026-1-1 ", 9497),
    ] {
        assert_eq!(parse(KeyType::Date, text), KeyValue::Date(days), "{text}");
    }
    for bad in [
        "2023-02-29",
        "1900-02-29",
        "2026-13-01",
        "2026-04-31",
        "2026-00-10",
        "0000-01-01",
        "26-01-01",
        "20261-01-01",
        "2026-01-01 10:00",
        "infinity",
        "today",
        "2026/01/01",
    ] {
        assert!(invalid(KeyType::Date, bad), "{bad:?}");
    }
}

#[test]
fn timestamps_are_microseconds_since_2000() {
    let midnight_2026 = 9497 * MICROS_PER_DAY;
    for (text, micros) in [
        ("2000-01-01 00:00:00.000001", 1),
        ("1999-12-31 23:59:59.9", -100_000),
        ("2026-01-01", midnight_2026),
        ("2026-01-01T01:02", midnight_2026 + 3_720_000_000),
        ("2026-01-01 01:02:03.5+05:30", midnight_2026 + 3_723_500_000),
        ("2026-01-01 00:00:00 UTC", midnight_2026),
    ] {
        assert_eq!(
            parse(KeyType::Timestamp, text),
            KeyValue::Timestamp(micros),
            "{text}"
        );
    }
    for bad in [
        "2026-01-01 24:00",
        "2026-01-01 10:60",
        "2026-01-01 10:00:60",
        "2026-01-01 10",
        "2026-01-01 10:00:00.1234567",
        "2026-01-01T",
        "2026-01-01 10:00 Europe/Paris",
        "2026-01-01 10:00+16",
        "infinity",
        "-infinity",
        "now",
        "epoch",
    ] {
        assert!(invalid(KeyType::Timestamp, bad), "{bad:?}");
    }
}

#[test]
fn timestamptz_needs_an_offset_and_becomes_utc() {
    let utc = parse(KeyType::TimestampTz, "2026-01-01 00:00:00Z");
    assert_eq!(utc, KeyValue::Timestamp(9497 * MICROS_PER_DAY));
    for same in [
        "2026-01-01 02:00:00+02",
        "2026-01-01 02:00+02:00",
        "2025-12-31 18:30:00-0530",
        "2026-01-01 00:00:00 utc",
    ] {
        assert_eq!(parse(KeyType::TimestampTz, same), utc, "{same}");
    }
    for local in ["2026-01-01 00:00:00", "2026-01-01"] {
        let error = KeyValue::parse_text(KeyType::TimestampTz, local);
        assert!(matches!(error, Err(KeyError::NoTimeZone { .. })), "{local}");
    }
}

#[test]
fn display_is_postgres_text_form_and_parses_back() {
    for (key_type, text, shown) in [
        (KeyType::Integer, "+007", "7"),
        (KeyType::Text, " a b ", " a b "),
        (
            KeyType::Uuid,
            "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
        (KeyType::Date, "2024-2-29", "2024-02-29"),
        (
            KeyType::Timestamp,
            "2024-02-29T23:59",
            "2024-02-29 23:59:00",
        ),
        (
            KeyType::Timestamp,
            "1999-12-31 23:59:59.120000",
            "1999-12-31 23:59:59.12",
        ),
        (
            KeyType::Timestamp,
            "0001-01-01 00:00:00.000001",
            "0001-01-01 00:00:00.000001",
        ),
        (
            KeyType::TimestampTz,
            "2026-01-01 01:00+01",
            "2026-01-01 00:00:00",
        ),
    ] {
        let value = parse(key_type, text);
        assert_eq!(value.to_string(), shown, "{text}");
        let again_type = match key_type {
            KeyType::TimestampTz => KeyType::Timestamp,
            other => other,
        };
        assert_eq!(parse(again_type, shown), value, "{shown}");
    }
}

#[test]
fn canonical_bytes_are_frozen() {
    let cases: [(KeyValue, &[u8]); 5] = [
        (KeyValue::Integer(258), &[0, 0, 0, 0, 0, 0, 1, 2]),
        (KeyValue::Text("é".into()), &[0xc3, 0xa9]),
        (KeyValue::Uuid([7; 16]), &[7; 16]),
        (KeyValue::Date(-1), &[0xff; 4]),
        (KeyValue::Timestamp(1), &[0, 0, 0, 0, 0, 0, 0, 1]),
    ];
    for (value, expected) in cases {
        let mut out = vec![9];
        value.canonical_bytes(&mut out);
        assert_eq!(out.get(1..), Some(expected), "{value:?}");
    }
}

#[test]
fn binary_parameters_of_the_wrong_type_are_refused() {
    let refused = |key_type, oid, bytes: &[u8]| {
        let result = KeyValue::from_binary(key_type, oid, bytes);
        matches!(result, Err(KeyError::Binary { oid: o, len, .. }) if o == oid && len == bytes.len())
    };
    assert!(refused(KeyType::Integer, OID_INT4, &[0; 8]));
    assert!(refused(KeyType::Integer, 0, &[0; 3]));
    assert!(refused(KeyType::Integer, 1700, &[0; 8]));
    assert!(refused(KeyType::Integer, OID_TEXT, b"42"));
    assert!(refused(KeyType::Text, OID_INT4, &[0; 4]));
    assert!(refused(KeyType::Text, OID_TEXT, &[0xff, 0xfe]));
    assert!(refused(KeyType::Uuid, OID_UUID, &[0; 15]));
    assert!(refused(KeyType::Date, OID_TIMESTAMP, &[0; 4]));
    assert!(refused(KeyType::Timestamp, OID_TIMESTAMPTZ, &[0; 8]));
    assert!(refused(KeyType::TimestampTz, OID_TIMESTAMP, &[0; 8]));
    let text = KeyValue::from_binary(KeyType::Text, OID_VARCHAR, "clé".as_bytes());
    assert_eq!(text, Ok(KeyValue::Text("clé".into())));
    let date = KeyValue::from_binary(KeyType::Date, OID_DATE, &9497i32.to_be_bytes());
    assert_eq!(date, Ok(KeyValue::Date(9497)));
    let infinite = KeyValue::from_binary(KeyType::Timestamp, 0, &i64::MAX.to_be_bytes());
    assert!(matches!(infinite, Err(KeyError::Invalid { .. })));
}

#[test]
fn errors_repeat_at_most_64_characters() {
    let long = "é".repeat(100);
    match KeyValue::parse_text(KeyType::Integer, &long) {
        Err(KeyError::Invalid { text, .. }) => assert_eq!(text, "é".repeat(64)),
        other => panic!("{other:?}"),
    }
    let message = KeyValue::parse_text(KeyType::Date, "x")
        .unwrap_err()
        .to_string();
    assert_eq!(message, "\"x\" is not a valid date shard key");
}

fn any_key_type() -> impl Strategy<Value = KeyType> {
    proptest::sample::select(ALL_TYPES.to_vec())
}

proptest! {
    #[test]
    fn parsing_never_panics(key_type in any_key_type(), text in "\\PC{0,40}|[-+ 0-9:.TZ]{0,40}") {
        let _ = KeyValue::parse_text(key_type, &text);
    }

    #[test]
    fn decoding_never_panics(
        key_type in any_key_type(),
        oid in prop_oneof![Just(0u32), Just(OID_INT2), Just(OID_INT8), Just(OID_TEXT), any::<u32>()],
        bytes in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        if let Ok(value) = KeyValue::from_binary(key_type, oid, &bytes) {
            let _ = value.to_string();
        }
    }

    #[test]
    fn integer_display_parses_back(n in any::<i64>()) {
        let value = KeyValue::Integer(n);
        prop_assert_eq!(KeyValue::parse_text(KeyType::Integer, &value.to_string()), Ok(value));
    }

    #[test]
    fn timestamp_display_parses_back(micros in -730_119 * MICROS_PER_DAY..2_921_940 * MICROS_PER_DAY) {
        let value = KeyValue::Timestamp(micros);
        prop_assert_eq!(KeyValue::parse_text(KeyType::Timestamp, &value.to_string()), Ok(value));
        let date = KeyValue::Date(i32::try_from(micros.div_euclid(MICROS_PER_DAY)).unwrap_or(0));
        prop_assert_eq!(KeyValue::parse_text(KeyType::Date, &date.to_string()), Ok(date));
    }
}
