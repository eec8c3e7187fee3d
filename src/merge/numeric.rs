//! Part of the merge stage (pure): PostgreSQL's `numeric`, as the merge reads, combines and
//! prints it (utils/adt/numeric.c of PostgreSQL 15).
//!
//! Owns the binary format (`numeric_send`: ndigits, weight, sign, dscale, base-10000 digits;
//! sign 0xC000 NaN, 0xD000 +Infinity, 0xF000 -Infinity), comparison by value (1.0 = 1.00,
//! -Infinity < finite < +Infinity < NaN), the text output (`get_str_from_var`), and in
//! `arith` the exact sums and averages of partial results. It must never round a value
//! PostgreSQL would keep exact, nor panic on bytes a backend sent.

mod arith;
mod parse;

use std::cmp::Ordering;

use bytes::BufMut;

use super::MergeError;
pub(super) use arith::Numeric;

/// Base of numeric's digits: each holds four decimal digits.
const NBASE: u16 = 10_000;

const SIGN_POSITIVE: u16 = 0x0000;
const SIGN_NEGATIVE: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_POSITIVE_INFINITY: u16 = 0xD000;
const SIGN_NEGATIVE_INFINITY: u16 = 0xF000;

/// What kind of numeric a value is, in PostgreSQL's sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Special {
    NegativeInfinity,
    Finite,
    PositiveInfinity,
    NaN,
}

/// A numeric read in place from its binary format, leading and trailing zero digits skipped.
#[derive(Debug, Clone, Copy)]
pub(super) struct NumericView<'a> {
    special: Special,
    negative: bool,
    /// Weight (power of 10000) of the first significant digit.
    weight: i32,
    dscale: u16,
    /// The significant base-10000 digits, two big-endian bytes each.
    digits: &'a [u8],
}

/// The parts of a numeric that comparison reads, shared by borrowed and owned numerics.
trait Parts {
    fn special(&self) -> Special;
    fn negative(&self) -> bool;
    fn weight(&self) -> i32;
    /// Significant digits, most significant first; empty for zero.
    fn digits(&self) -> impl Iterator<Item = u16> + '_;
}

impl<'a> NumericView<'a> {
    /// Reads `numeric_send`'s format; every digit must be below 10000.
    pub(super) fn decode(bytes: &'a [u8]) -> Result<NumericView<'a>, MergeError> {
        let bad = || MergeError::Malformed("numeric value");
        let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        if bytes.len() < 8 {
            return Err(bad());
        }
        let (ndigits, weight, sign, dscale) = (word(0), word(2) as i16, word(4), word(6));
        let mut digits = &bytes[8..];
        if digits.len() != usize::from(ndigits) * 2 || digits_of(digits).any(|d| d >= NBASE) {
            return Err(bad());
        }
        let (special, negative) = match sign {
            SIGN_POSITIVE => (Special::Finite, false),
            SIGN_NEGATIVE => (Special::Finite, true),
            SIGN_NAN => (Special::NaN, false),
            SIGN_POSITIVE_INFINITY => (Special::PositiveInfinity, false),
            SIGN_NEGATIVE_INFINITY => (Special::NegativeInfinity, true),
            _ => return Err(bad()),
        };
        let mut weight = i32::from(weight);
        while let [0, 0, rest @ ..] = digits {
            digits = rest;
            weight -= 1;
        }
        while let [rest @ .., 0, 0] = digits {
            digits = rest;
        }
        if digits.is_empty() {
            weight = 0;
        }
        Ok(NumericView {
            special,
            negative,
            weight,
            dscale,
            digits,
        })
    }

    /// PostgreSQL's order (cmp_numerics).
    pub(super) fn compare(&self, other: &NumericView<'_>) -> Ordering {
        compare(self, other)
    }

    /// Appends numeric_out's text: all `dscale` fraction digits, "NaN", "Infinity".
    pub(super) fn write_text(&self, out: &mut impl BufMut) {
        match self.special {
            Special::NaN => return out.put_slice(b"NaN"),
            Special::PositiveInfinity => return out.put_slice(b"Infinity"),
            Special::NegativeInfinity => return out.put_slice(b"-Infinity"),
            Special::Finite => {}
        }
        if self.negative && !self.digits.is_empty() {
            out.put_u8(b'-');
        }
        if self.weight < 0 {
            out.put_u8(b'0');
        } else {
            // The first digit without its leading zeros.
            let first = four_digits(self.digit_at(self.weight));
            let skip = first.iter().take(3).take_while(|&&d| d == b'0').count();
            out.put_slice(&first[skip..]);
            for weight in (0..self.weight).rev() {
                out.put_slice(&four_digits(self.digit_at(weight)));
            }
        }
        if self.dscale == 0 {
            return;
        }
        out.put_u8(b'.');
        let mut left = usize::from(self.dscale);
        let mut weight = -1;
        while left > 0 {
            let shown = left.min(4);
            out.put_slice(&four_digits(self.digit_at(weight))[..shown]);
            left -= shown;
            weight -= 1;
        }
    }

    /// Appends a key equal for two numerics exactly when they compare equal.
    pub(super) fn write_key(&self, out: &mut impl BufMut) {
        out.put_u8(self.special as u8);
        if self.special != Special::Finite || self.digits.is_empty() {
            return;
        }
        out.put_u8(u8::from(self.negative));
        out.put_i32(self.weight);
        out.put_u32(self.digits.len() as u32);
        out.put_slice(self.digits);
    }

    /// The nearest float8 (numeric_float8: through the text form).
    pub(super) fn to_f64(self) -> f64 {
        let mut text = Vec::new();
        self.write_text(&mut text);
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn digit_at(&self, weight: i32) -> u16 {
        let index = self.weight - weight;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.digits.get(i * 2..i * 2 + 2))
            .map_or(0, |d| u16::from_be_bytes([d[0], d[1]]))
    }
}

impl Parts for NumericView<'_> {
    fn special(&self) -> Special {
        self.special
    }
    fn negative(&self) -> bool {
        self.negative
    }
    fn weight(&self) -> i32 {
        self.weight
    }
    fn digits(&self) -> impl Iterator<Item = u16> + '_ {
        digits_of(self.digits)
    }
}

fn digits_of(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .map(|d| u16::from_be_bytes([d[0], d[1]]))
}

fn four_digits(digit: u16) -> [u8; 4] {
    let d = |n: u16| b'0' + (digit / n % 10) as u8;
    [d(1000), d(100), d(10), d(1)]
}

fn compare(a: &impl Parts, b: &impl Parts) -> Ordering {
    match a.special().cmp(&b.special()) {
        Ordering::Equal if a.special() == Special::Finite => compare_finite(a, b),
        order => order,
    }
}

fn compare_finite(a: &impl Parts, b: &impl Parts) -> Ordering {
    let (sa, sb) = (signum(a), signum(b));
    match sa.cmp(&sb) {
        Ordering::Equal if sa == 0 => Ordering::Equal,
        Ordering::Equal if sa > 0 => compare_magnitudes(a, b),
        Ordering::Equal => compare_magnitudes(b, a),
        order => order,
    }
}

fn signum(p: &impl Parts) -> i8 {
    match (p.digits().next(), p.negative()) {
        (None, _) => 0,
        (Some(_), true) => -1,
        (Some(_), false) => 1,
    }
}

/// Compares absolute values of two nonzero finite numerics.
fn compare_magnitudes(a: &impl Parts, b: &impl Parts) -> Ordering {
    a.weight()
        .cmp(&b.weight())
        .then_with(|| a.digits().cmp(b.digits()))
}

#[cfg(test)]
mod tests;
