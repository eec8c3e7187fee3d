//! Part of the merge stage (pure): the text output of float4 and float8 (float4out,
//! float8out) with PostgreSQL's default `extra_float_digits = 1`.
//!
//! Owns the format of PostgreSQL 12+'s shortest output (utils/adt/float.c through
//! common/d2s.c and f2s.c, Ryu built without STRICTLY_SHORTEST): the fewest digits strictly
//! between the midpoints to the neighbouring floats, the nearest such (ties to even); fixed
//! notation for decimal exponents from -4 up to 15 (float8) or 6 (float4), else `1e+20`
//! with at least two exponent digits; `NaN`, `Infinity`, `-Infinity`. Most floats take
//! Rust's own shortest digits, which are Ryu's there; `exact` computes the others. It never
//! prints digits PostgreSQL would not (checked against PostgreSQL 15 on 340,000 floats), and
//! it assumes the session's extra_float_digits is the default.

mod exact;

use std::io::Write;

use bytes::BufMut;

use super::encode::write_integer;

/// A float's shortest decimal: ASCII digits without leading or trailing zeros, and the
/// power of ten of the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shortest {
    digits: [u8; 20],
    len: usize,
    exponent: i32,
}

impl Shortest {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// A finite, positive float as `mantissa` × 2^`exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binary {
    mantissa: u64,
    exponent: i32,
    /// A power of two: the float below is half as far as the one above.
    narrow_below: bool,
}

impl Binary {
    /// From IEEE fields: `fraction`, the biased exponent, and the format's sizes.
    fn new(fraction: u64, biased: i32, fraction_bits: u32, bias: i32) -> Binary {
        let lowest = 1 - bias - fraction_bits as i32;
        if biased == 0 {
            return Binary {
                mantissa: fraction,
                exponent: lowest,
                narrow_below: false,
            };
        }
        Binary {
            mantissa: (1 << fraction_bits) | fraction,
            exponent: lowest + biased - 1,
            narrow_below: fraction == 0 && biased > 1,
        }
    }
}

/// float8out's text.
pub(super) fn write_float8(value: f64, out: &mut impl BufMut) {
    let bits = value.to_bits();
    let binary = Binary::new(
        bits & ((1 << 52) - 1),
        (bits >> 52) as i32 & 0x7ff,
        52,
        1023,
    );
    write_float(value, binary, format_args!("{:e}", value.abs()), 15, out);
}

/// float4out's text.
pub(super) fn write_float4(value: f32, out: &mut impl BufMut) {
    let bits = value.to_bits();
    let fraction = u64::from(bits & ((1 << 23) - 1));
    let binary = Binary::new(fraction, (bits >> 23) as i32 & 0xff, 23, 127);
    write_float(
        value.into(),
        binary,
        format_args!("{:e}", value.abs()),
        6,
        out,
    );
}

/// Writes a float (`value`, widened, for its sign and specials; `binary` and `formatted`,
/// its `{:e}` form, for its digits) with exponents in `-4..fixed_below` in fixed notation.
fn write_float(
    value: f64,
    binary: Binary,
    formatted: std::fmt::Arguments<'_>,
    fixed_below: i32,
    out: &mut impl BufMut,
) {
    if value.is_nan() {
        return out.put_slice(b"NaN");
    }
    if value.is_infinite() {
        let text: &[u8] = if value < 0.0 {
            b"-Infinity"
        } else {
            b"Infinity"
        };
        return out.put_slice(text);
    }
    let digits = shortest(binary, formatted);
    write_decimal(&digits, value.is_sign_negative(), fixed_below, out);
}

/// PostgreSQL's digits for `binary`, whose `{:e}` form is `formatted`.
fn shortest(binary: Binary, formatted: std::fmt::Arguments<'_>) -> Shortest {
    if exact::needed(binary) {
        exact::shortest(binary)
    } else {
        rust_shortest(formatted)
    }
}

/// Reads `{:e}`'s `d.ddde-x` (Rust's shortest round-trip digits).
fn rust_shortest(formatted: std::fmt::Arguments<'_>) -> Shortest {
    // 40 bytes hold any float's shortest form.
    let mut buf = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let len = match cursor.write_fmt(formatted) {
        Ok(()) => cursor.position() as usize,
        Err(_) => 0,
    };
    let text = &buf[..len];
    let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let exponent = std::str::from_utf8(&text[(e + 1).min(text.len())..])
        .ok()
        .and_then(|t| t.parse::<i32>().ok())
        .unwrap_or(0);
    let mut shortest = Shortest {
        digits: [0; 20],
        len: 0,
        exponent,
    };
    for &b in text[..e].iter().filter(|b| b.is_ascii_digit()).take(20) {
        shortest.digits[shortest.len] = b;
        shortest.len += 1;
    }
    shortest
}

/// Writes the digits in fixed notation for exponents in `-4..fixed_below`, else scientific.
fn write_decimal(shortest: &Shortest, negative: bool, fixed_below: i32, out: &mut impl BufMut) {
    if negative {
        out.put_u8(b'-');
    }
    if (-4..fixed_below).contains(&shortest.exponent) {
        write_fixed(shortest.digits(), shortest.exponent, out);
    } else {
        write_scientific(shortest.digits(), shortest.exponent, out);
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
            // Shortest candidates halfway between two (ties to even) or on a midpoint
            // (excluded), where Rust's own digits differ.
            (
                f64::from_bits(0x3e60_0000_0000_0000),
                "2.9802322387695312e-08",
            ),
            (f64::from_bits(0x4085_4387_a000_0000), "680.4412231445312"),
            (f64::from_bits(0x4021_d5d2_0000_0000), "8.917617797851562"),
            (f64::from_bits(0x42bc_ab08_3137_fa90), "31520902428666.562"),
            (
                f64::from_bits(0x4315_7a81_abfa_679d),
                "1.5114179664020232e+15",
            ),
            (
                f64::from_bits(0xc360_a158_7355_453a),
                "-3.7448007132260816e+16",
            ),
            (
                f64::from_bits(0x4361_5a17_5b54_8fe0),
                "3.9073047736778496e+16",
            ),
            (2f64.powi(52), "4.503599627370496e+15"),
            (6311156624302188.0 * 8.0, "5.0489252994417504e+16"),
            (2f64.powi(60), "1.152921504606847e+18"),
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
            (f32::from_bits(0xc809_df48), "-141181.12"),
            (f32::from_bits(0x4a4f_6c39), "3.3984142e+06"),
            (f32::from_bits(0x4cf1_68b2), "1.26567824e+08"),
            (f32::from_bits(0x4d3e_b700), "1.9997901e+08"),
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

        #[test]
        fn float4_text_reads_back_as_the_same_value(bits in proptest::num::u32::ANY) {
            let value = f32::from_bits(bits);
            let text = float4(value);
            let back: f32 = text.parse().unwrap();
            proptest::prop_assert!(back.to_bits() == value.to_bits() || value.is_nan());
        }

        /// The exact digits read back as the float, are never shorter than Rust's (whose
        /// candidates include the midpoints) and are at most 17.
        #[test]
        fn exact_digits_are_shortest(mantissa in 1u64..(1 << 53), exponent in -80i32..80) {
            let value = mantissa as f64 * 2f64.powi(exponent);
            let bits = value.to_bits();
            let binary = Binary::new(bits & ((1 << 52) - 1), (bits >> 52) as i32 & 0x7ff, 52, 1023);
            let exact = exact::shortest(binary);
            let rust = rust_shortest(format_args!("{value:e}"));
            proptest::prop_assert!(rust.len <= exact.len && exact.len <= 17);
            let back: f64 = float8(value).parse().unwrap();
            proptest::prop_assert_eq!(back, value);
        }
    }
}
