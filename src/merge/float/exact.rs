//! Part of the merge stage (pure): PostgreSQL's shortest digits of the floats where they
//! can differ from Rust's, computed with exact integers.
//!
//! Owns Ryu's result as PostgreSQL builds it (d2s.c without STRICTLY_SHORTEST): among the
//! decimals strictly between the midpoints to the neighbouring floats, those with the
//! fewest significant digits, and of those the nearest to the float, ties to even. Rust's
//! digits may differ only where a candidate sits on a midpoint or halfway between two
//! others, which needs a float of few binary fraction digits (see [`needed`]). It never
//! rounds.

use super::{Binary, Shortest};

/// Limbs of a natural number in base 10^9, least significant first.
type Natural = Vec<u32>;

const LIMB: u64 = 1_000_000_000;

/// Whether `binary` needs the exact digits. With its odd part m·2^e, e < -26, the float has
/// more than 18 significant digits (m·5^-e ≥ 5^27 > 10^18) and so do the midpoints to its
/// neighbours: no shortest candidate (17 digits at most) sits on a midpoint or halfway
/// between two others, and any algorithm giving the nearest shortest digits agrees.
pub(super) fn needed(binary: Binary) -> bool {
    binary.mantissa != 0 && binary.exponent + binary.mantissa.trailing_zeros() as i32 >= -26
}

/// PostgreSQL's digits for `binary`.
pub(super) fn shortest(binary: Binary) -> Shortest {
    let Binary {
        mantissa: m,
        exponent: e,
        narrow_below,
    } = binary;
    // Times 10^scale, the float and the midpoints to its neighbours are integers.
    let scale = (2 - e).max(0);
    let at = |multiple: u64, halvings: i32| scaled(multiple, scale, e + scale - halvings);
    let high = decimal(at(2 * m + 1, 1));
    let width = high.len();
    let value = padded(decimal(at(m, 0)), width);
    let low = match narrow_below {
        true => decimal(at(4 * m - 1, 2)),
        false => decimal(at(2 * m - 1, 1)),
    };
    let low = padded(low, width);
    // The largest power of ten with a multiple strictly inside (low, high).
    let power = (0..width)
        .rev()
        .find(|&k| multiple_inside(&low, &high, k))
        .unwrap_or(0);
    let keep = width - power;
    let mut digits = value[..keep].to_vec();
    if rounds_up(&value[keep..], digits.last().copied()) {
        increment(&mut digits);
    }
    if compare_scaled(&digits, &low, keep).is_le() {
        increment(&mut digits);
    } else if compare_scaled(&digits, &high, keep).is_ge() {
        decrement(&mut digits);
    }
    finish(&digits, power as i32 - scale)
}

/// `multiple` × 5^`fives` × 2^`twos` (`twos` ≥ 0 at every call).
fn scaled(multiple: u64, fives: i32, twos: i32) -> Natural {
    let mut natural = Natural::new();
    let mut rest = multiple;
    while rest > 0 {
        natural.push((rest % LIMB) as u32);
        rest /= LIMB;
    }
    // Factors below 2^34 keep limb × factor + carry within u64.
    let mut fives = fives.max(0);
    while fives > 0 {
        let step = fives.min(14);
        multiply(&mut natural, 5u64.pow(step as u32));
        fives -= step;
    }
    let mut twos = twos.max(0);
    while twos > 0 {
        let step = twos.min(33);
        multiply(&mut natural, 1 << step);
        twos -= step;
    }
    natural
}

fn multiply(natural: &mut Natural, factor: u64) {
    let mut carry = 0;
    for limb in natural.iter_mut() {
        let product = u64::from(*limb) * factor + carry;
        *limb = (product % LIMB) as u32;
        carry = product / LIMB;
    }
    while carry > 0 {
        natural.push((carry % LIMB) as u32);
        carry /= LIMB;
    }
}

/// Decimal digit values, most significant first, without leading zeros.
fn decimal(natural: Natural) -> Vec<u8> {
    let mut digits = Vec::with_capacity(natural.len() * 9);
    for limb in natural.iter().rev() {
        let mut nine = [0u8; 9];
        let mut rest = *limb;
        for digit in nine.iter_mut().rev() {
            *digit = (rest % 10) as u8;
            rest /= 10;
        }
        digits.extend_from_slice(&nine);
    }
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.split_off(leading)
}

fn padded(digits: Vec<u8>, width: usize) -> Vec<u8> {
    let mut out = vec![0; width.saturating_sub(digits.len())];
    out.extend(digits);
    out
}

/// Whether (⌊low / 10^k⌋ + 1) × 10^k < high (both `width` digits).
fn multiple_inside(low: &[u8], high: &[u8], k: usize) -> bool {
    let keep = low.len() - k;
    let mut candidate = low[..keep].to_vec();
    increment(&mut candidate);
    compare_scaled(&candidate, high, keep).is_lt()
}

/// `digits` × 10^(len - keep) against `number` (len digits).
fn compare_scaled(digits: &[u8], number: &[u8], keep: usize) -> std::cmp::Ordering {
    if digits.len() > keep {
        return std::cmp::Ordering::Greater;
    }
    let rest_nonzero = number[keep..].iter().any(|&d| d != 0);
    digits.cmp(&number[..keep]).then(if rest_nonzero {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Equal
    })
}

/// Whether dropping `rest` rounds the kept digits (last one `last`) up: past half, or
/// exactly half with an odd last digit.
fn rounds_up(rest: &[u8], last: Option<u8>) -> bool {
    match rest.split_first() {
        None => false,
        Some((&first, tail)) if first == 5 && tail.iter().all(|&d| d == 0) => {
            last.is_some_and(|d| d % 2 == 1)
        }
        Some((&first, _)) => first >= 5,
    }
}

/// Adds one; a carry out of the first digit adds a digit.
fn increment(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit < 9 {
            *digit += 1;
            return;
        }
        *digit = 0;
    }
    digits.insert(0, 1);
}

fn decrement(digits: &mut [u8]) {
    for digit in digits.iter_mut().rev() {
        if *digit > 0 {
            *digit -= 1;
            return;
        }
        *digit = 9;
    }
}

/// The digits of `digits` × 10^`power` as ASCII, with the exponent of the first.
fn finish(digits: &[u8], power: i32) -> Shortest {
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    let significant = &digits[leading..];
    let exponent = power + significant.len() as i32 - 1;
    let trailing = significant.iter().rev().take_while(|&&d| d == 0).count();
    let mut shortest = Shortest {
        digits: [0; 20],
        len: 0,
        exponent,
    };
    for &d in significant[..significant.len() - trailing].iter().take(20) {
        shortest.digits[shortest.len] = b'0' + d;
        shortest.len += 1;
    }
    shortest
}
