//! Part of the merge stage (pure): the text output of float4 and float8 (float4out,
//! float8out) with PostgreSQL's default `extra_float_digits = 1`.
//!
//! Owns the format of PostgreSQL 12+'s shortest-exact output (utils/adt/float.c through
//! common/d2s.c and f2s.c): the fewest digits that read back as the same value, in fixed
//! notation for decimal exponents from -4 up to 15 (float8) or 6 (float4), else as `1e+20`,
//! with at least two exponent digits; `NaN`, `Infinity`, `-Infinity`. It never allocates.

use std::io::Write;

use bytes::BufMut;

use super::encode::write_integer;

/// float8out's text.
pub(super) fn write_float8(value: f64, out: &mut impl BufMut) {
    match special(
        value.is_nan(),
        value.is_infinite(),
        value.is_sign_negative(),
    ) {
        Some(text) => out.put_slice(text),
        None => write_shortest(format_args!("{value:e}"), 15, out),
    }
}

/// float4out's text.
pub(super) fn write_float4(value: f32, out: &mut impl BufMut) {
    match special(
        value.is_nan(),
        value.is_infinite(),
        value.is_sign_negative(),
    ) {
        Some(text) => out.put_slice(text),
        None => write_shortest(format_args!("{value:e}"), 6, out),
    }
}

fn special(nan: bool, infinite: bool, negative: bool) -> Option<&'static [u8]> {
    match (nan, infinite, negative) {
        (true, ..) => Some(b"NaN"),
        (false, true, false) => Some(b"Infinity"),
        (false, true, true) => Some(b"-Infinity"),
        (false, false, _) => None,
    }
}

/// Writes a finite float formatted by `{:e}` (Rust's shortest round-trip digits, as Ryu
/// finds them: `-d.ddde-x`), decimal exponents in `-4..fixed_below` in fixed notation.
fn write_shortest(formatted: std::fmt::Arguments<'_>, fixed_below: i32, out: &mut impl BufMut) {
    // 40 bytes hold any float's shortest form.
    let mut buf = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if cursor.write_fmt(formatted).is_err() {
        return out.put_slice(b"NaN");
    }
    let len = cursor.position() as usize;
    let text = &buf[..len];
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let exponent = std::str::from_utf8(&text[(e + 1).min(text.len())..])
        .ok()
        .and_then(|t| t.parse::<i32>().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 20];
    let mut count = 0;
    for &b in text[..e]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .take(digits.len())
    {
        digits[count] = b;
        count += 1;
    }
    if negative {
        out.put_u8(b'-');
    }
    let digits = &digits[..count];
    if (-4..fixed_below).contains(&exponent) {
        write_fixed(digits, exponent, out);
    } else {
        write_scientific(digits, exponent, out);
    }
}

/// `123.45`, `0.00012`, `1200`: the digits with the point where the exponent puts it.
fn write_fixed(digits: &[u8], exponent: i32, out: &mut impl BufMut) {
    if exponent < 0 {
        out.put_slice(b"0.");
        (1..-exponent).for_each(|_| out.put_u8(b'0'));
        return out.put_slice(digits);
    }
    let whole = exponent as usize + 1;
    if digits.len() <= whole {
        out.put_slice(digits);
        (digits.len()..whole).for_each(|_| out.put_u8(b'0'));
    } else {
        out.put_slice(&digits[..whole]);
        out.put_u8(b'.');
        out.put_slice(&digits[whole..]);
    }
}

/// `1.5e-05`, `1e+20`: one digit before the point, a signed exponent of two digits or more.
fn write_scientific(digits: &[u8], exponent: i32, out: &mut impl BufMut) {
    let (first, rest) = digits.split_at(digits.len().min(1));
    out.put_slice(first);
    if !rest.is_empty() {
        out.put_u8(b'.');
        out.put_slice(rest);
    }
    out.put_u8(b'e');
    out.put_u8(if exponent < 0 { b'-' } else { b'+' });
    if exponent.unsigned_abs() < 10 {
        out.put_u8(b'0');
    }
    write_integer(exponent.unsigned_abs().into(), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float8(value: f64) -> String {
        let mut out = Vec::new();
        write_float8(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn float4(value: f32) -> String {
        let mut out = Vec::new();
        write_float4(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Each pair is `SELECT x::float8` on PostgreSQL 15.
    #[test]
    fn float8_text_is_postgres_output() {
        let cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1.5e-5, "1.5e-05"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (100.0, "100"),
        ];
        for &(value, text) in cases {
            assert_eq!(float8(value), text, "{value:e}");
        }
    }

    /// Each pair is `SELECT x::float4` on PostgreSQL 15.
    #[test]
    fn float4_text_is_postgres_output() {
        let cases: &[(f32, &str)] = &[
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (1.5e-5, "1.5e-05"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
        ];
        for &(value, text) in cases {
            assert_eq!(float4(value), text, "{value:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn float8_text_reads_back_as_the_same_value(bits in proptest::num::u64::ANY) {
            let value = f64::from_bits(bits);
            let text = float8(value);
            let back: f64 = text.parse().unwrap();
            proptest::prop_assert!(back.to_bits() == value.to_bits() || value.is_nan());
        }
    }
}
