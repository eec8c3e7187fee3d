//! Part of the merge stage (pure): owned numerics and the arithmetic that combines partial
//! results, as PostgreSQL 15's numeric.c computes it.
//!
//! Owns exact addition (numeric_add: the sum's dscale is the larger of the inputs'), and the
//! division AVG's final function performs (numeric_div of a sum by a count, at the scale
//! select_div_scale picks, rounded half away from zero). It never rounds a sum and never
//! divides by anything but a positive count.

use std::cmp::Ordering;

use bytes::BufMut;

use super::{
    NBASE, NumericView, Parts, SIGN_NAN, SIGN_NEGATIVE, SIGN_NEGATIVE_INFINITY, SIGN_POSITIVE,
    SIGN_POSITIVE_INFINITY, Special, compare, compare_magnitudes,
};
use crate::merge::MergeError;

/// For division, at least this many significant digits (NUMERIC_MIN_SIG_DIGITS).
const MIN_SIG_DIGITS: i32 = 16;
/// Largest display scale a division picks (NUMERIC_MAX_DISPLAY_SCALE).
const MAX_DISPLAY_SCALE: i32 = 1000;

/// A numeric value the merge computes.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::merge) enum Numeric {
    /// NaN.
    NaN,
    /// +Infinity or -Infinity.
    Infinite {
        /// -Infinity.
        negative: bool,
    },
    /// A finite value.
    Finite(Decimal),
}

/// A finite numeric: base-10000 digits without leading or trailing zeros (zero: none).
#[derive(Debug, Clone, PartialEq)]
pub(in crate::merge) struct Decimal {
    negative: bool,
    /// Weight (power of 10000) of the first digit.
    weight: i32,
    digits: Vec<u16>,
    dscale: u16,
}

impl Numeric {
    /// An owned copy of a value read from the wire.
    pub(in crate::merge) fn from_view(view: &NumericView<'_>) -> Numeric {
        match view.special {
            Special::NaN => Numeric::NaN,
            Special::PositiveInfinity => Numeric::Infinite { negative: false },
            Special::NegativeInfinity => Numeric::Infinite { negative: true },
            Special::Finite => Numeric::Finite(Decimal::normalized(
                view.negative,
                view.weight,
                view.digits().collect(),
                view.dscale,
            )),
        }
    }

    /// An integer as numeric (int8_numeric), scale 0.
    pub(in crate::merge) fn from_i128(value: i128) -> Numeric {
        let mut rest = value.unsigned_abs();
        let mut digits = Vec::new();
        while rest > 0 {
            digits.push((rest % u128::from(NBASE)) as u16);
            rest /= u128::from(NBASE);
        }
        digits.reverse();
        let weight = digits.len() as i32 - 1;
        Numeric::Finite(Decimal::normalized(value < 0, weight, digits, 0))
    }

    /// numeric_add: exact; NaN absorbs, opposite infinities give NaN.
    pub(in crate::merge) fn add(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (Numeric::Infinite { negative: a }, Numeric::Infinite { negative: b }) if a != b => {
                Numeric::NaN
            }
            (Numeric::Infinite { .. }, _) => self.clone(),
            (_, Numeric::Infinite { .. }) => other.clone(),
            (Numeric::Finite(a), Numeric::Finite(b)) => Numeric::Finite(a.add(b)),
        }
    }

    /// numeric_div by a positive count, as AVG's final function divides its sum.
    pub(in crate::merge) fn div_count(&self, count: u64) -> Numeric {
        match self {
            Numeric::Finite(value) => Numeric::Finite(value.div_count(count)),
            special => special.clone(),
        }
    }

    /// PostgreSQL's order between this value and one read from the wire.
    pub(in crate::merge) fn compare_view(&self, other: &NumericView<'_>) -> Ordering {
        compare(self, other)
    }

    /// Appends numeric_send's binary format.
    pub(in crate::merge) fn write_binary(&self, out: &mut impl BufMut) -> Result<(), MergeError> {
        let (sign, weight, dscale, digits): (u16, i32, u16, &[u16]) = match self {
            Numeric::NaN => (SIGN_NAN, 0, 0, &[]),
            Numeric::Infinite { negative: false } => (SIGN_POSITIVE_INFINITY, 0, 0, &[]),
            Numeric::Infinite { negative: true } => (SIGN_NEGATIVE_INFINITY, 0, 0, &[]),
            Numeric::Finite(d) if d.negative => (SIGN_NEGATIVE, d.weight, d.dscale, &d.digits),
            Numeric::Finite(d) => (SIGN_POSITIVE, d.weight, d.dscale, &d.digits),
        };
        let overflow = || MergeError::OutOfRange("value overflows numeric format");
        let weight = i16::try_from(weight).map_err(|_| overflow())?;
        let ndigits = u16::try_from(digits.len()).map_err(|_| overflow())?;
        out.put_u16(ndigits);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(dscale);
        digits.iter().for_each(|&d| out.put_u16(d));
        Ok(())
    }
}

impl Parts for Numeric {
    fn special(&self) -> Special {
        match self {
            Numeric::NaN => Special::NaN,
            Numeric::Infinite { negative: false } => Special::PositiveInfinity,
            Numeric::Infinite { negative: true } => Special::NegativeInfinity,
            Numeric::Finite(_) => Special::Finite,
        }
    }
    fn negative(&self) -> bool {
        matches!(self, Numeric::Finite(d) if d.negative)
    }
    fn weight(&self) -> i32 {
        match self {
            Numeric::Finite(d) => d.weight,
            _ => 0,
        }
    }
    fn digits(&self) -> impl Iterator<Item = u16> + '_ {
        let digits: &[u16] = match self {
            Numeric::Finite(d) => &d.digits,
            _ => &[],
        };
        digits.iter().copied()
    }
}

impl Decimal {
    /// Drops leading and trailing zero digits; zero is positive with weight 0 (strip_var).
    fn normalized(negative: bool, weight: i32, mut digits: Vec<u16>, dscale: u16) -> Decimal {
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        let significant = digits.iter().rposition(|&d| d != 0).map_or(0, |i| i + 1);
        digits.truncate(significant);
        let zero = digits.is_empty();
        Decimal {
            negative: negative && !zero,
            weight: if zero { 0 } else { weight - leading as i32 },
            digits,
            dscale,
        }
    }

    /// `digits` (0 to 9 each, most significant first) times 10^`exp10`.
    pub(super) fn from_decimal_digits(
        negative: bool,
        digits: &[u8],
        exp10: i32,
        dscale: u16,
    ) -> Decimal {
        let top = exp10 + digits.len() as i32 - 1;
        let (high, low) = (top.div_euclid(4), exp10.div_euclid(4));
        let mut base = vec![0u16; (high - low + 1).max(0) as usize];
        for (i, &digit) in digits.iter().enumerate() {
            let power = top - i as i32;
            let slot = (high - power.div_euclid(4)) as usize;
            base[slot] += u16::from(digit) * 10u16.pow(power.rem_euclid(4) as u32);
        }
        Decimal::normalized(negative, high, base, dscale)
    }

    /// The decimal digits of the stored base-10000 digits, and the power of ten of the last.
    fn decimal_digits(&self) -> (Vec<u8>, i32) {
        let digits = self
            .digits
            .iter()
            .flat_map(|&d| [d / 1000, d / 100 % 10, d / 10 % 10, d % 10])
            .map(|d| d as u8)
            .collect();
        (digits, self.low() * 4)
    }

    fn zero(dscale: u16) -> Decimal {
        Decimal::normalized(false, 0, Vec::new(), dscale)
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Weight of the last digit.
    fn low(&self) -> i32 {
        self.weight - self.digits.len() as i32 + 1
    }

    fn digit_at(&self, weight: i32) -> u16 {
        usize::try_from(self.weight - weight)
            .ok()
            .and_then(|i| self.digits.get(i).copied())
            .unwrap_or(0)
    }

    fn add(&self, other: &Decimal) -> Decimal {
        let dscale = self.dscale.max(other.dscale);
        if self.is_zero() || other.is_zero() {
            let nonzero = if self.is_zero() { other } else { self };
            return Decimal {
                dscale,
                ..nonzero.clone()
            };
        }
        if self.negative == other.negative {
            return Decimal::combine(self, other, false, dscale);
        }
        match compare_magnitudes(self, other) {
            Ordering::Equal => Decimal::zero(dscale),
            Ordering::Greater => Decimal::combine(self, other, true, dscale),
            Ordering::Less => Decimal::combine(other, self, true, dscale),
        }
    }

    /// |a| + |b|, or |a| - |b| when `subtract` (|a| ≥ |b|), with a's sign.
    fn combine(a: &Decimal, b: &Decimal, subtract: bool, dscale: u16) -> Decimal {
        let (low, high) = (a.low().min(b.low()), a.weight.max(b.weight) + 1);
        let mut digits = Vec::with_capacity((high - low + 1) as usize);
        let mut carry = 0i32;
        for weight in low..=high {
            let b_digit = i32::from(b.digit_at(weight));
            let mut d = i32::from(a.digit_at(weight)) + carry;
            d += if subtract { -b_digit } else { b_digit };
            carry = if d >= i32::from(NBASE) {
                1
            } else {
                -i32::from(d < 0)
            };
            digits.push((d - carry * i32::from(NBASE)) as u16);
        }
        digits.reverse();
        Decimal::normalized(a.negative, high, digits, dscale)
    }

    /// self / count at select_div_scale's scale, rounded half away from zero (div_var with
    /// round = true: the digits past the scale decide, as the exact quotient's would).
    fn div_count(&self, count: u64) -> Decimal {
        let rscale = self.div_scale(count);
        let (digits, exp10) = self.decimal_digits();
        let top = exp10 + digits.len() as i32 - 1;
        // One guard digit past the scale, and a leading zero to take a rounding carry.
        let last = -i32::from(rscale) - 1;
        let mut quotient = Vec::new();
        let mut rest = 0u128;
        for power in (last..=top + 1).rev() {
            let index = usize::try_from(top - power).ok().filter(|_| power >= exp10);
            let digit = index.and_then(|i| digits.get(i)).copied().unwrap_or(0);
            rest = rest * 10 + u128::from(digit);
            quotient.push((rest / u128::from(count)) as u8);
            rest %= u128::from(count);
        }
        if quotient.pop().is_some_and(|guard| guard >= 5) {
            round_up(&mut quotient);
        }
        Decimal::from_decimal_digits(self.negative, &quotient, last + 1, rscale)
    }

    /// select_div_scale for self / count: enough digits for 16 significant ones, no fewer
    /// than the dividend's scale, at most 1000.
    fn div_scale(&self, count: u64) -> u16 {
        let (weight1, first1) = (self.weight, self.digits.first().copied().unwrap_or(0));
        let (mut weight2, mut first2) = (0, count);
        while first2 >= u64::from(NBASE) {
            first2 /= u64::from(NBASE);
            weight2 += 1;
        }
        let mut qweight = weight1 - weight2;
        if u64::from(first1) <= first2 {
            qweight -= 1;
        }
        let rscale = (MIN_SIG_DIGITS - qweight * 4).max(i32::from(self.dscale));
        rscale.clamp(0, MAX_DISPLAY_SCALE) as u16
    }
}

impl Parts for Decimal {
    fn special(&self) -> Special {
        Special::Finite
    }
    fn negative(&self) -> bool {
        self.negative
    }
    fn weight(&self) -> i32 {
        self.weight
    }
    fn digits(&self) -> impl Iterator<Item = u16> + '_ {
        self.digits.iter().copied()
    }
}

/// Adds one unit in the last place of decimal `digits` (the first digit takes any carry).
fn round_up(digits: &mut [u8]) {
    for digit in digits.iter_mut().rev() {
        if *digit < 9 {
            *digit += 1;
            return;
        }
        *digit = 0;
    }
}
