use super::*;

fn parse(text: &str) -> Numeric {
    Numeric::parse(text).unwrap_or_else(|| panic!("{text:?} does not parse"))
}

fn text(value: &Numeric) -> String {
    let mut bytes = Vec::new();
    value.write_binary(&mut bytes).unwrap();
    let mut out = Vec::new();
    NumericView::decode(&bytes).unwrap().write_text(&mut out);
    String::from_utf8(out).unwrap()
}

/// Each pair is `SELECT 'input'::numeric` on PostgreSQL 15.
#[test]
fn input_and_output_are_postgres_text() {
    let cases = [
        ("1e-5", "0.00001"),
        ("1.5e3", "1500"),
        ("-0.001", "-0.001"),
        ("0.000", "0.000"),
        ("10000", "10000"),
        ("  +12.50  ", "12.50"),
        ("1.23e-2", "0.0123"),
        (".5", "0.5"),
        ("5.", "5"),
        ("-0", "0"),
        ("12345678.90123", "12345678.90123"),
        ("nan", "NaN"),
        ("-inf", "-Infinity"),
        ("+Infinity", "Infinity"),
        ("000123.4500", "123.4500"),
    ];
    for (input, output) in cases {
        assert_eq!(text(&parse(input)), output, "{input}");
    }
}

#[test]
fn input_postgres_15_rejects_is_refused() {
    for input in [
        "", " ", ".", "1.2.3", "1e", "e5", "abc", "1_000", "0x10", "--1", "1 2", "1e+",
    ] {
        assert_eq!(Numeric::parse(input), None, "{input:?}");
    }
}

/// Each triple is `SELECT a + b` on PostgreSQL 15.
#[test]
fn sums_are_exact_with_the_larger_scale() {
    let cases = [
        ("1.5", "2.25", "3.75"),
        ("0.1", "-0.1", "0.0"),
        ("99999999.99", "0.01", "100000000.00"),
        ("-5.5", "2", "-3.5"),
        (
            "1e20",
            "1e-20",
            "100000000000000000000.00000000000000000001",
        ),
        ("Infinity", "1", "Infinity"),
        ("Infinity", "-Infinity", "NaN"),
        ("NaN", "1", "NaN"),
        ("10000", "-1", "9999"),
        ("-0.0001", "-9999.9999", "-10000.0000"),
    ];
    for (a, b, sum) in cases {
        assert_eq!(text(&parse(a).add(&parse(b))), sum, "{a} + {b}");
    }
}

/// Each triple is `SELECT a::numeric / count` (numeric_div, as AVG's final function
/// divides) on PostgreSQL 15.
#[test]
fn averages_divide_at_select_div_scale_rounding_half_away_from_zero() {
    let cases = [
        ("3", 2, "1.5000000000000000"),
        ("1", 3, "0.33333333333333333333"),
        ("2", 3, "0.66666666666666666667"),
        ("5", 3, "1.6666666666666667"),
        ("60", 3, "20.0000000000000000"),
        ("100003", 2, "50001.500000000000"),
        ("0.001", 3, "0.00033333333333333333"),
        ("1e-20", 7, "0.0000000000000000000014285714285714285714"),
        ("123456789.123456789", 3, "41152263.041152263000"),
        ("-1", 3, "-0.33333333333333333333"),
        ("-5", 2, "-2.5000000000000000"),
        ("999999999999", 1_000_000_000_000, "0.99999999999900000000"),
        ("5", 100_000, "0.000050000000000000000000"),
        ("9999", 9999, "1.00000000000000000000"),
        ("10000", 10000, "1.00000000000000000000"),
        ("7", 123_456_789, "0.000000056700000515970005"),
        ("2.0", 4, "0.50000000000000000000"),
        ("0", 3, "0.00000000000000000000"),
        ("12345678901234567891", 2, "6172839450617283946"),
        ("Infinity", 3, "Infinity"),
        ("-Infinity", 5, "-Infinity"),
        ("NaN", 3, "NaN"),
    ];
    for (sum, count, average) in cases {
        assert_eq!(
            text(&parse(sum).div_count(count)),
            average,
            "{sum} / {count}"
        );
    }
}

#[test]
fn binary_format_is_numeric_send() {
    let mut bytes = Vec::new();
    parse("-12345.678").write_binary(&mut bytes).unwrap();
    // ndigits 3, weight 1, negative, dscale 3, digits 1 2345 6780.
    let expected = [0, 3, 0, 1, 0x40, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
    assert_eq!(bytes, expected);
    let mut nan = Vec::new();
    Numeric::NaN.write_binary(&mut nan).unwrap();
    assert_eq!(nan, [0, 0, 0, 0, 0xc0, 0, 0, 0]);
    let mut infinity = Vec::new();
    Numeric::Infinite { negative: true }
        .write_binary(&mut infinity)
        .unwrap();
    assert_eq!(infinity, [0, 0, 0, 0, 0xf0, 0, 0, 0]);
}

#[test]
fn bad_binary_values_are_malformed() {
    let cases: [&[u8]; 4] = [
        &[0, 1, 0, 0, 0, 0, 0, 0],
        &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10],
        &[0, 0, 0, 0, 0x80, 0, 0, 0],
        &[0, 0, 0],
    ];
    for bytes in cases {
        assert!(NumericView::decode(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn unnormalized_digits_from_a_peer_compare_by_value() {
    // 1 as ndigits 3 (0, 1, 0) with weight 1, against 1 as ndigits 1.
    let padded = [0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
    let plain = [0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    let (a, b) = (
        NumericView::decode(&padded).unwrap(),
        NumericView::decode(&plain).unwrap(),
    );
    assert_eq!(a.compare(&b), Ordering::Equal);
    // Zero as ndigits 0 with weight 5 and dscale 1.
    let zero = NumericView::decode(&[0, 0, 0, 5, 0, 0, 0, 1]).unwrap();
    let mut text = Vec::new();
    zero.write_text(&mut text);
    assert_eq!(text, b"0.0");
}

fn decimal(units: i64, scale: u32) -> Numeric {
    let sign = if units < 0 { "-" } else { "" };
    let digits = format!(
        "{:0>width$}",
        units.unsigned_abs(),
        width = scale as usize + 1
    );
    let (whole, fraction) = digits.split_at(digits.len() - scale as usize);
    parse(&format!("{sign}{whole}.{fraction}"))
}

proptest::proptest! {
    /// Numeric add and compare agree with i128 arithmetic on scaled integers.
    #[test]
    fn add_and_compare_agree_with_i128(
        a in -10_000_000_000i64..10_000_000_000,
        b in -10_000_000_000i64..10_000_000_000,
        scale in 0u32..9,
    ) {
        let (x, y) = (decimal(a, scale), decimal(b, scale));
        let sum = i128::from(a) + i128::from(b);
        proptest::prop_assert_eq!(text(&x.add(&y)), text(&decimal(sum as i64, scale)));
        let mut bytes = Vec::new();
        y.write_binary(&mut bytes).unwrap();
        let view = NumericView::decode(&bytes).unwrap();
        proptest::prop_assert_eq!(x.compare_view(&view), a.cmp(&b));
        let whole = Numeric::from_i128(sum);
        proptest::prop_assert_eq!(text(&whole), sum.to_string());
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
        text in "\\PC{0,12}",
    ) {
        if let Ok(view) = NumericView::decode(&bytes) {
            view.write_text(&mut Vec::new());
            view.write_key(&mut Vec::new());
            let _ = (view.compare(&view), view.to_f64());
            let _ = Numeric::from_view(&view).add(&Numeric::from_view(&view)).div_count(3);
        }
        let _ = Numeric::parse(&text);
    }
}
