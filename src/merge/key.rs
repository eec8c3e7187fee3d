//! Part of the merge stage (pure): the keys of GROUP BY and DISTINCT, and the bound on what
//! the merge buffers.
//!
//! Owns turning a row's key columns into bytes that are equal exactly when PostgreSQL's `=`
//! says the values are (numeric 1.0 = 1.00, float -0 = 0 and NaN = NaN, bpchar without its
//! trailing spaces, NULL equal to NULL as GROUP BY and DISTINCT treat it), and numbering the
//! distinct keys. It never keeps a key past the buffer's bound.

use std::collections::HashMap;

use super::frame::Row;
use super::value::SqlType;
use super::{Buffered, MergeError};

/// Bytes counted for each stored key or group besides its own bytes (map entry, allocation).
pub(super) const ENTRY_OVERHEAD: usize = 64;

/// Bytes the merge may hold for one statement; past them it fails with 54000.
#[derive(Debug)]
pub(super) struct Budget {
    used: usize,
    limit: usize,
    what: Buffered,
}

impl Budget {
    /// A budget of `limit` bytes for `what`.
    pub(super) fn new(limit: usize, what: Buffered) -> Budget {
        Budget {
            used: 0,
            limit,
            what,
        }
    }

    /// Counts `bytes` more; an error once the total passes the limit.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), MergeError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(MergeError::BufferExceeded {
                what: self.what,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Gives back `bytes` counted before (a replaced value).
    pub(super) fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }
}

/// Numbers the distinct keys of rows, in order of first appearance.
#[derive(Debug)]
pub(super) struct KeyIndex {
    /// Hidden column and type of each key part.
    columns: Vec<(usize, SqlType)>,
    numbers: HashMap<Box<[u8]>, usize>,
    scratch: Vec<u8>,
}

impl KeyIndex {
    /// An index over the hidden `columns` (with their types).
    pub(super) fn new(columns: Vec<(usize, SqlType)>) -> KeyIndex {
        KeyIndex {
            columns,
            numbers: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The number of the row's key (0 for the first key seen) and whether it is new; a new
    /// key is charged to `budget`.
    pub(super) fn classify(
        &mut self,
        row: &Row<'_>,
        budget: &mut Budget,
    ) -> Result<(usize, bool), MergeError> {
        self.scratch.clear();
        for &(column, ty) in &self.columns {
            match row.hidden(column)? {
                None => self.scratch.push(0),
                Some(bytes) => {
                    self.scratch.push(1);
                    ty.decode(bytes)?.write_key(&mut self.scratch);
                }
            }
        }
        if let Some(&number) = self.numbers.get(self.scratch.as_slice()) {
            return Ok((number, false));
        }
        budget.charge(self.scratch.len() + ENTRY_OVERHEAD)?;
        let number = self.numbers.len();
        self.numbers.insert(self.scratch.as_slice().into(), number);
        Ok((number, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::frame::Layout;
    use crate::merge::tests::{description, row};

    fn classify_all(oid: u32, values: &[Option<&[u8]>]) -> Vec<usize> {
        let ty = SqlType::from_oid(oid).unwrap();
        let layout = Layout::parse(&description(&[(oid, 1)]), 1).unwrap();
        let mut index = KeyIndex::new(vec![(0, ty)]);
        let mut budget = Budget::new(usize::MAX, Buffered::Distinct);
        values
            .iter()
            .map(|value| {
                let frame = row(&[*value]);
                let row = Row::parse(&frame, &layout).unwrap();
                index.classify(&row, &mut budget).unwrap().0
            })
            .collect()
    }

    fn numeric(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        crate::merge::numeric::Numeric::parse(text)
            .unwrap()
            .write_binary(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn numerics_equal_by_value_share_a_key() {
        let (a, b, c, nan) = (
            numeric("1.0"),
            numeric("1.00"),
            numeric("1.5"),
            numeric("NaN"),
        );
        let values = [
            Some(&a[..]),
            Some(&b),
            Some(&c),
            None,
            Some(&nan),
            None,
            Some(&nan),
        ];
        assert_eq!(classify_all(1700, &values), [0, 0, 1, 2, 3, 2, 3]);
    }

    #[test]
    fn floats_group_negative_zero_with_zero_and_nan_with_nan() {
        let (zero, minus, nan, other_nan) = (
            0f64.to_be_bytes(),
            (-0f64).to_be_bytes(),
            f64::NAN.to_be_bytes(),
            f64::from_bits(0x7ff8_0000_0000_0001).to_be_bytes(),
        );
        let values = [Some(&zero[..]), Some(&minus), Some(&nan), Some(&other_nan)];
        assert_eq!(classify_all(701, &values), [0, 0, 1, 1]);
    }

    #[test]
    fn bpchar_ignores_trailing_spaces_and_text_does_not() {
        let values: [Option<&[u8]>; 3] = [Some(b"ab"), Some(b"ab  "), Some(b"ab ")];
        assert_eq!(classify_all(1042, &values), [0, 0, 0]);
        assert_eq!(classify_all(25, &values), [0, 1, 2]);
    }

    #[test]
    fn a_key_past_the_budget_is_refused_with_54000() {
        let layout = Layout::parse(&description(&[(23, 1)]), 1).unwrap();
        let mut index = KeyIndex::new(vec![(0, SqlType::Int4)]);
        let mut budget = Budget::new(ENTRY_OVERHEAD * 2 + 40, Buffered::GroupBy);
        let mut outcome = Ok((0, true));
        for i in 0..3i32 {
            let frame = row(&[Some(&i.to_be_bytes())]);
            outcome = index.classify(&Row::parse(&frame, &layout).unwrap(), &mut budget);
        }
        let error = outcome.unwrap_err();
        assert_eq!(error.report().code, "54000");
        assert!(error.to_string().contains("GROUP BY"), "{error}");
    }
}
