use std::cmp::Ordering::{self, Equal, Greater, Less};

use super::*;
use crate::merge::tests::{description, numeric};

fn compare(ty: SqlType, a: &[u8], b: &[u8]) -> Ordering {
    ty.decode(a).unwrap().compare(&ty.decode(b).unwrap())
}

fn interval(time: i64, day: i32, month: i32) -> Vec<u8> {
    [
        &time.to_be_bytes()[..],
        &day.to_be_bytes(),
        &month.to_be_bytes(),
    ]
    .concat()
}

#[test]
fn values_order_as_postgres_orders_them() {
    let f = |v: f64| v.to_be_bytes().to_vec();
    let cases: Vec<(SqlType, Vec<u8>, Vec<u8>, Ordering)> = vec![
        (
            SqlType::Int2,
            (-1i16).to_be_bytes().into(),
            1i16.to_be_bytes().into(),
            Less,
        ),
        (
            SqlType::Int4,
            i32::MAX.to_be_bytes().into(),
            i32::MIN.to_be_bytes().into(),
            Greater,
        ),
        (
            SqlType::Oid,
            u32::MAX.to_be_bytes().into(),
            1u32.to_be_bytes().into(),
            Greater,
        ),
        (SqlType::Float8, f(f64::NAN), f(f64::INFINITY), Greater),
        (SqlType::Float8, f(f64::NAN), f(-f64::NAN), Equal),
        (SqlType::Float8, f(-0.0), f(0.0), Equal),
        (SqlType::Float8, f(-1.5), f(-0.5), Less),
        (
            SqlType::Float4,
            1.5f32.to_be_bytes().into(),
            f32::NAN.to_be_bytes().into(),
            Less,
        ),
        (SqlType::Numeric, numeric("1.0"), numeric("1.00"), Equal),
        (
            SqlType::Numeric,
            numeric("NaN"),
            numeric("Infinity"),
            Greater,
        ),
        (
            SqlType::Numeric,
            numeric("-Infinity"),
            numeric("-1e100"),
            Less,
        ),
        (SqlType::Numeric, numeric("-2"), numeric("-10"), Greater),
        (SqlType::Numeric, numeric("0.0001"), numeric("0"), Greater),
        (SqlType::Numeric, numeric("-0.0001"), numeric("0"), Less),
        (
            SqlType::Numeric,
            numeric("10000"),
            numeric("9999.9999"),
            Greater,
        ),
        (SqlType::Text, b"B".to_vec(), b"a".to_vec(), Less),
        (SqlType::Text, b"ab".to_vec(), b"ab ".to_vec(), Less),
        (SqlType::Bpchar, b"ab".to_vec(), b"ab   ".to_vec(), Equal),
        (SqlType::Bytea, vec![0xff], vec![0x00, 0x00], Greater),
        (SqlType::Bool, vec![0], vec![1], Less),
        (
            SqlType::Interval,
            interval(0, 0, 1),
            interval(0, 30, 0),
            Equal,
        ),
        (
            SqlType::Interval,
            interval(86_400_000_000, 0, 0),
            interval(0, 1, 0),
            Equal,
        ),
        (
            SqlType::Interval,
            interval(1, 0, 0),
            interval(0, 0, 0),
            Greater,
        ),
        (
            SqlType::Timestamp,
            i64::MAX.to_be_bytes().into(),
            0i64.to_be_bytes().into(),
            Greater,
        ),
        (
            SqlType::Date,
            i32::MIN.to_be_bytes().into(),
            (-1i32).to_be_bytes().into(),
            Less,
        ),
        (SqlType::Uuid, [1; 16].to_vec(), [2; 16].to_vec(), Less),
    ];
    for (ty, a, b, expected) in cases {
        assert_eq!(compare(ty, &a, &b), expected, "{ty:?} {a:?} {b:?}");
    }
}

#[test]
fn numbers_of_different_types_compare_by_value() {
    let two = SqlType::Int8.decode(&[0, 0, 0, 0, 0, 0, 0, 2]).unwrap();
    let bytes = numeric("2.5");
    let two_and_a_half = SqlType::Numeric.decode(&bytes).unwrap();
    assert_eq!(two.compare(&two_and_a_half), Less);
    assert_eq!(two_and_a_half.compare(&two), Greater);
    assert_eq!(two.compare(&Value::Float(2.0)), Equal);
    assert_eq!(two_and_a_half.compare(&Value::Float(2.4)), Greater);
    let bytes = numeric("2");
    assert_eq!(
        two.compare(&SqlType::Numeric.decode(&bytes).unwrap()),
        Equal
    );
}

#[test]
fn values_of_the_wrong_size_are_malformed() {
    for ty in [
        SqlType::Int2,
        SqlType::Int8,
        SqlType::Float8,
        SqlType::Uuid,
        SqlType::Bool,
    ] {
        assert!(
            matches!(ty.decode(&[1, 2, 3]), Err(MergeError::Malformed(_))),
            "{ty:?}"
        );
    }
}

#[test]
fn types_know_their_oid_name_and_family() {
    assert_eq!(SqlType::from_oid(1700), Some(SqlType::Numeric));
    assert_eq!(SqlType::from_oid(3802), None);
    assert_eq!(SqlType::Int8.name(), "bigint");
    assert_eq!(SqlType::Bpchar.family(), SqlType::Text.family());
    assert_eq!(SqlType::Float4.family(), SqlType::Int2.family());
    assert_ne!(SqlType::Date.family(), SqlType::Timestamp.family());
}

#[test]
fn hidden_type_names_the_column_of_an_unknown_type() {
    let layout = Layout::parse(&description(&[(25, 0), (3802, 1)]), 1).unwrap();
    let error = hidden_type(&layout, 0, "a GROUP BY key").unwrap_err();
    assert_eq!(
        error.to_string(),
        "column \"c1\" of type oid 3802 cannot be a GROUP BY key across shards"
    );
    assert!(matches!(
        hidden_type(&layout, 1, "x"),
        Err(MergeError::Contract(_))
    ));
}

proptest::proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
    ) {
        for &(_, ty, _) in TYPES.iter() {
            if let Ok(value) = ty.decode(&bytes) {
                let _ = value.compare(&value);
                value.write_key(&mut Vec::new());
            }
        }
    }

    #[test]
    fn equal_keys_exactly_when_values_compare_equal(
        a in proptest::num::f64::ANY,
        b in proptest::sample::select(vec![0.0, -0.0, f64::NAN, 1.0, f64::INFINITY]),
    ) {
        let (a, b) = (Value::Float(a), Value::Float(b));
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        a.write_key(&mut ka);
        b.write_key(&mut kb);
        proptest::prop_assert_eq!(ka == kb, a.compare(&b) == Equal);
    }
}
