//! Validation of `tables.T.ranges`: bounds parsed with the key's type, sorted, and checked so
//! that no key has two shards and, unless gaps are allowed, every key has one.

use super::{Context, parse_key};
use crate::config::key::KeyType;
use crate::config::raw::RawRange;
use crate::config::tables::{Gaps, KeyRange, RangeSpec, Strategy};
use crate::config::validate::Problems;

pub(super) fn range(
    raw: &crate::config::raw::RawTable,
    key_type: KeyType,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<Strategy> {
    let Some(written) = raw.ranges.as_deref().filter(|r| !r.is_empty()) else {
        problems.add(cx.field("ranges"), "a range table needs at least one range");
        return None;
    };
    let parsed: Vec<Option<KeyRange>> = (written.iter().enumerate())
        .map(|(i, range)| {
            key_range(
                range,
                key_type,
                &cx.field(&format!("ranges[{i}]")),
                cx,
                problems,
            )
        })
        .collect();
    let mut ranges: Vec<KeyRange> = parsed.into_iter().collect::<Option<_>>()?;
    // `None` (unbounded below) sorts first.
    ranges.sort_by(|a, b| a.from.cmp(&b.from));
    let gaps = match raw.allow_gaps {
        Some(true) => Gaps::Allow,
        _ => Gaps::Refuse,
    };
    check_sequence(&ranges, gaps, &cx.field("ranges"), problems);
    Some(Strategy::Range(RangeSpec { ranges, gaps }))
}

fn key_range(
    raw: &RawRange,
    key_type: KeyType,
    path: &str,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> Option<KeyRange> {
    let mut bound = |field: &str, value: &Option<_>| match value {
        None => Some(None),
        Some(value) => problems
            .check(&format!("{path}.{field}"), parse_key(key_type, value))
            .map(Some),
    };
    let from = bound("from", &raw.from);
    let to = bound("to", &raw.to);
    let shard = cx.shard(problems, format!("{path}.shard"), &raw.shard);
    let (from, to) = (from?, to?);
    if let (Some(low), Some(high)) = (&from, &to)
        && low >= high
    {
        problems.add(path, format!("`from` {low} must be below `to` {high}"));
        return None;
    }
    Some(KeyRange {
        from,
        to,
        shard: shard?,
    })
}

/// Sorted ranges must not overlap; with [`Gaps::Refuse`] they must also cover every key,
/// including below the first bound and above the last.
fn check_sequence(ranges: &[KeyRange], gaps: Gaps, path: &str, problems: &mut Problems) {
    let refuse_gaps = gaps == Gaps::Refuse;
    if let Some(first) = ranges.first().and_then(|r| r.from.as_ref())
        && refuse_gaps
    {
        problems.add(
            path,
            format!("keys below {first} have no range (omit the first `from`, or set allow_gaps)"),
        );
    }
    if let Some(last) = ranges.last().and_then(|r| r.to.as_ref())
        && refuse_gaps
    {
        problems.add(
            path,
            format!("keys from {last} up have no range (omit the last `to`, or set allow_gaps)"),
        );
    }
    for pair in ranges.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let Some(b_from) = &b.from else {
            problems.add(path, "only one range may omit `from`");
            continue;
        };
        match &a.to {
            None => problems.add(
                path,
                format!("the range without `to` overlaps the one from {b_from}"),
            ),
            Some(a_to) if a_to > b_from => {
                problems.add(
                    path,
                    format!("ranges overlap: one ends at {a_to}, the next starts at {b_from}"),
                );
            }
            Some(a_to) if a_to < b_from && refuse_gaps => {
                problems.add(
                    path,
                    format!(
                        "keys from {a_to} to {b_from} have no range (set allow_gaps to allow it)"
                    ),
                );
            }
            Some(_) => {}
        }
    }
}
