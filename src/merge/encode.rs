//! Part of the merge stage (pure): the values the merge computes (COUNT, SUM, AVG, bool_and
//! and bool_or finals) in the client's format for the column's type.
//!
//! Owns PostgreSQL's output functions for those result types (int8out, numeric_out,
//! float4out and float8out through `float`, boolout) and passes binary values through as
//! they are. It never converts between types: Merger::new refuses a column whose type is
//! not the aggregate's result type.

use bytes::BufMut;

use super::MergeError;
use super::float::{write_float4, write_float8};
use super::numeric::NumericView;
use super::value::{self, SqlType};

/// Appends a value of type `ty`, given in binary, in the text format or (`binary`) as it is.
pub(super) fn write_value(
    ty: SqlType,
    bytes: &[u8],
    binary: bool,
    out: &mut impl BufMut,
) -> Result<(), MergeError> {
    if binary {
        out.put_slice(bytes);
        return Ok(());
    }
    match ty {
        SqlType::Int8 => write_integer(value::int8(bytes)?, out),
        SqlType::Numeric => NumericView::decode(bytes)?.write_text(out),
        SqlType::Float4 => write_float4(value::float4(bytes)?, out),
        SqlType::Float8 => write_float8(value::float8(bytes)?, out),
        SqlType::Bool => out.put_u8(if value::boolean(bytes)? { b't' } else { b'f' }),
        other => {
            return Err(MergeError::Contract(format!(
                "the merge computes no {} values",
                other.name()
            )));
        }
    }
    Ok(())
}

/// int8out: the decimal digits, a minus sign for negative values.
pub(super) fn write_integer(value: i64, out: &mut impl BufMut) {
    // 20 digits hold any i64's magnitude.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ty: SqlType, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_value(ty, bytes, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_postgres_output() {
        assert_eq!(
            text(SqlType::Int8, &i64::MIN.to_be_bytes()),
            "-9223372036854775808"
        );
        assert_eq!(text(SqlType::Int8, &0i64.to_be_bytes()), "0");
        assert_eq!(text(SqlType::Float8, &0.1f64.to_be_bytes()), "0.1");
        assert_eq!(text(SqlType::Float4, &1e6f32.to_be_bytes()), "1e+06");
        assert_eq!(text(SqlType::Bool, &[1]), "t");
        assert_eq!(text(SqlType::Bool, &[0]), "f");
        // 1.50: ndigits 2, weight 0, positive, dscale 2, digits [1, 5000].
        let numeric = [0, 2, 0, 0, 0, 0, 0, 2, 0, 1, 0x13, 0x88];
        assert_eq!(text(SqlType::Numeric, &numeric), "1.50");
    }

    #[test]
    fn binary_is_passed_through() {
        let mut out = Vec::new();
        write_value(SqlType::Int8, &7i64.to_be_bytes(), true, &mut out).unwrap();
        assert_eq!(out, 7i64.to_be_bytes());
    }

    #[test]
    fn malformed_values_are_errors() {
        let mut out = Vec::new();
        assert!(write_value(SqlType::Int8, &[1, 2], false, &mut out).is_err());
        assert!(write_value(SqlType::Numeric, &[0, 1], false, &mut out).is_err());
        assert!(write_value(SqlType::Text, b"x", false, &mut out).is_err());
    }
}
