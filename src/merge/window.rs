//! Part of the merge stage (pure): OFFSET and LIMIT, applied once to the merged rows.
//!
//! Owns reading the counts (literals, or Bind parameters in text or binary as int2, int4 or
//! int8) and PostgreSQL's rules for them: NULL means no limit (or no offset), a negative
//! count is an error. It never sees rows, only counts them in their final order.

use super::plan::Count;
use super::{MergeError, ParamValue};

/// Which clause a count belongs to, for its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// LIMIT.
    Limit,
    /// OFFSET.
    Offset,
}

impl std::fmt::Display for Clause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Clause::Limit => "LIMIT",
            Clause::Offset => "OFFSET",
        })
    }
}

/// The part of the merged rows the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Window {
    skip: u64,
    left: Option<u64>,
}

impl Window {
    /// Resolves the plan's counts against the Bind parameters.
    pub(super) fn new(
        offset: Option<Count>,
        limit: Option<Count>,
        params: &[ParamValue<'_>],
    ) -> Result<Window, MergeError> {
        Ok(Window {
            skip: resolve(offset, Clause::Offset, params)?.unwrap_or(0),
            left: resolve(limit, Clause::Limit, params)?,
        })
    }

    /// Whether the LIMIT is reached: no later row is sent.
    pub(super) fn done(&self) -> bool {
        self.left == Some(0)
    }

    /// Takes the next merged row: true if the client gets it, false if OFFSET skips it or
    /// the LIMIT is reached.
    pub(super) fn admit(&mut self) -> bool {
        if self.done() {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        if let Some(left) = self.left.as_mut() {
            *left -= 1;
        }
        true
    }
}

/// A count's value; `None` for no clause or a NULL parameter.
fn resolve(
    count: Option<Count>,
    clause: Clause,
    params: &[ParamValue<'_>],
) -> Result<Option<u64>, MergeError> {
    let value = match count {
        None => return Ok(None),
        Some(Count::Value(value)) => return Ok(Some(value)),
        Some(Count::Param(number)) => {
            let param = number
                .checked_sub(1)
                .and_then(|i| params.get(i))
                .ok_or(MergeError::NoParameter(number))?;
            param_int8(param, number)?
        }
    };
    match value {
        Some(value) => u64::try_from(value)
            .map(Some)
            .map_err(|_| MergeError::Negative(clause)),
        None => Ok(None),
    }
}

/// A parameter read as int8, as PostgreSQL reads LIMIT $n.
fn param_int8(param: &ParamValue<'_>, number: usize) -> Result<Option<i64>, MergeError> {
    let Some(bytes) = param.value else {
        return Ok(None);
    };
    if !param.binary {
        return parse_int8(bytes).map(Some);
    }
    let bad = || MergeError::BadBinaryParameter(number);
    let value = match (param.oid, bytes.len()) {
        (20 | 0, 8) => i64::from_be_bytes(bytes.try_into().map_err(|_| bad())?),
        (23 | 0, 4) => i32::from_be_bytes(bytes.try_into().map_err(|_| bad())?).into(),
        (21 | 0, 2) => i16::from_be_bytes(bytes.try_into().map_err(|_| bad())?).into(),
        (0 | 20 | 21 | 23, _) => return Err(bad()),
        (oid, _) => {
            return Err(MergeError::Unsupported(format!(
                "a binary LIMIT or OFFSET parameter of type oid {oid}"
            )));
        }
    };
    Ok(Some(value))
}

/// int8in: white space around an optionally signed decimal integer.
pub(super) fn parse_int8(bytes: &[u8]) -> Result<i64, MergeError> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MergeError::InvalidInput {
            type_name: "bigint",
            text: text.into_owned(),
        });
    }
    trimmed.parse().map_err(|_| MergeError::ValueOutOfRange {
        type_name: "bigint",
        text: text.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> ParamValue<'_> {
        ParamValue {
            oid: 0,
            binary: false,
            value: Some(value.as_bytes()),
        }
    }

    fn window(offset: Option<Count>, limit: Option<Count>, params: &[ParamValue<'_>]) -> Window {
        Window::new(offset, limit, params).unwrap()
    }

    #[test]
    fn offset_skips_then_limit_counts() {
        let mut w = window(Some(Count::Value(2)), Some(Count::Value(2)), &[]);
        let admitted: Vec<bool> = (0..6).map(|_| w.admit()).collect();
        assert_eq!(admitted, [false, false, true, true, false, false]);
        assert!(w.done());
    }

    #[test]
    fn limit_zero_is_done_at_once_and_no_limit_never_is() {
        assert!(window(None, Some(Count::Value(0)), &[]).done());
        let mut w = window(None, None, &[]);
        assert!((0..100).all(|_| w.admit()));
        assert!(!w.done());
    }

    #[test]
    fn params_in_text_and_binary_of_each_width() {
        let eight = 7i64.to_be_bytes();
        let four = 7i32.to_be_bytes();
        let two = 7i16.to_be_bytes();
        let params = [
            text(" 7 "),
            ParamValue {
                oid: 20,
                binary: true,
                value: Some(&eight),
            },
            ParamValue {
                oid: 0,
                binary: true,
                value: Some(&four),
            },
            ParamValue {
                oid: 21,
                binary: true,
                value: Some(&two),
            },
        ];
        for n in 1..=4 {
            let w = window(None, Some(Count::Param(n)), &params);
            assert_eq!(w.left, Some(7), "parameter {n}");
        }
    }

    #[test]
    fn null_limit_is_no_limit_and_null_offset_no_offset() {
        let params = [ParamValue {
            oid: 20,
            binary: true,
            value: None,
        }];
        let w = window(Some(Count::Param(1)), Some(Count::Param(1)), &params);
        assert_eq!(
            w,
            Window {
                skip: 0,
                left: None
            }
        );
    }

    #[test]
    fn bad_counts_are_postgres_errors() {
        let cases: &[(&str, Clause, &str)] = &[
            ("-1", Clause::Limit, "2201W"),
            ("-5", Clause::Offset, "2201X"),
            ("ten", Clause::Limit, "22P02"),
            ("99999999999999999999", Clause::Limit, "22003"),
        ];
        for &(value, clause, code) in cases {
            let params = [text(value)];
            let count = Some(Count::Param(1));
            let error = match clause {
                Clause::Limit => Window::new(None, count, &params),
                Clause::Offset => Window::new(count, None, &params),
            }
            .unwrap_err();
            assert_eq!(error.report().code, code, "{value}");
        }
        let negative = Window::new(None, Some(Count::Param(1)), &[text("-1")]).unwrap_err();
        assert_eq!(negative.report().message, "LIMIT must not be negative");
        let missing = Window::new(None, Some(Count::Param(2)), &[text("1")]).unwrap_err();
        assert_eq!(missing, MergeError::NoParameter(2));
        let three = [1u8, 2, 3];
        let odd = [ParamValue {
            oid: 20,
            binary: true,
            value: Some(&three),
        }];
        let bad = Window::new(None, Some(Count::Param(1)), &odd).unwrap_err();
        assert_eq!(bad.report().code, "22P03");
    }
}
