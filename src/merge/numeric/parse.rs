//! Part of the merge stage (pure): numeric_in, the text input of PostgreSQL 15's numeric,
//! for the constants HAVING compares with.
//!
//! Owns the accepted syntax: surrounding white space, a sign, digits with one optional point,
//! an exponent, and NaN / Infinity / inf in any case. It never accepts what PostgreSQL 15
//! rejects (no underscores, no hexadecimal: those came in PostgreSQL 16).

use super::Numeric;
use super::arith::Decimal;

/// Largest display scale a numeric stores (NUMERIC_DSCALE_MAX).
const MAX_DSCALE: i64 = 0x3FFF;
/// Exponents beyond this make weights numeric's binary format cannot hold.
const MAX_EXPONENT: i64 = 4 * i16::MAX as i64;

impl Numeric {
    /// numeric_in; `None` where PostgreSQL reports invalid input (or an overflowing value).
    pub(in crate::merge) fn parse(text: &str) -> Option<Numeric> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Some(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => {
                return Some(Numeric::Infinite { negative: false });
            }
            "-infinity" | "-inf" => return Some(Numeric::Infinite { negative: true }),
            _ => {}
        }
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], exponent(&unsigned[at + 1..])?),
            None => (unsigned, 0),
        };
        let (digits, fraction) = mantissa_digits(mantissa)?;
        let dscale = (fraction - exponent).max(0);
        if dscale > MAX_DSCALE {
            return None;
        }
        let exp10 = i32::try_from(exponent - fraction).ok()?;
        Some(Numeric::Finite(Decimal::from_decimal_digits(
            negative,
            &digits,
            exp10,
            dscale as u16,
        )))
    }
}

fn exponent(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|e: &i64| e.abs() <= MAX_EXPONENT)
}

/// The digit values of `123.45` and how many follow the point; at least one digit.
fn mantissa_digits(text: &str) -> Option<(Vec<u8>, i64)> {
    let mut digits = Vec::with_capacity(text.len());
    let mut fraction: Option<i64> = None;
    for byte in text.bytes() {
        match (byte, fraction.as_mut()) {
            (b'0'..=b'9', count) => {
                digits.push(byte - b'0');
                if let Some(count) = count {
                    *count += 1;
                }
            }
            (b'.', None) => fraction = Some(0),
            _ => return None,
        }
    }
    (!digits.is_empty()).then_some((digits, fraction.unwrap_or(0)))
}
