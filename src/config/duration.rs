//! Human-written durations (`500ms`, `5s`, `10m`, `1h`) for the config stage.
//!
//! Owns the text form of a duration: parsing it, formatting a `Duration` back into it, and the
//! [`HumanDuration`] serde type the raw config structs hold. Deserializing never fails on a bad
//! duration: the text is kept and parsed during validation, so a bad value is reported with
//! its YAML path alongside every other problem. Pure; never reads the clock.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration could not be parsed. Messages name the accepted units, so an operator can fix
/// the value from the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("duration is empty; write a number and a unit such as 500ms, 5s, 10m or 1h")]
    Empty,
    /// A bare number: the unit is ambiguous.
    #[error("duration {0:?} has no unit; write it as {0}ms, {0}s, {0}m or {0}h")]
    MissingUnit(String),
    /// The text does not start with a whole number.
    #[error("duration {0:?} must start with a whole number (write 1500ms, not 1.5s)")]
    Number(String),
    /// A unit other than ms, s, m or h.
    #[error("duration {text:?} has unknown unit {unit:?}; use ms, s, m or h")]
    Unit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// Too large to represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `<whole number><unit>` where unit is `ms`, `s`, `m` or `h`, e.g. `500ms`, `10m`.
///
/// Whitespace around the value and between number and unit is ignored. Fractions and compound
/// forms (`1h30m`) are rejected rather than guessed at: write `90m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim();
    if digits.is_empty() || unit.starts_with('.') {
        return Err(DurationError::Number(trimmed.to_owned()));
    }
    let overflow = || DurationError::Overflow(trimmed.to_owned());
    let number: u64 = digits.parse().map_err(|_| overflow())?;
    let seconds_per = match unit {
        "" => return Err(DurationError::MissingUnit(trimmed.to_owned())),
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(DurationError::Unit {
                text: trimmed.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    number
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(overflow)
}

/// Formats a duration in the largest unit that represents it exactly (`1h`, `90m`, `5s`,
/// `1500ms`), so config written by tools reads like config written by hand.
///
/// Precision below a millisecond is dropped: the config has no finer unit. Everything
/// [`parse_duration`] returns formats back to an equal value.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = millis / 1000;
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// A duration as written in a config file, kept as text until validation parses it.
///
/// Keeping the text lets a bad value (`5x`, or a bare `5`) become a validation problem with its
/// YAML path instead of aborting deserialization, and lets tools write durations back out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration(String);

impl HumanDuration {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text; see [`parse_duration`].
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl From<Duration> for HumanDuration {
    /// The canonical text for `duration`; see [`format_duration`].
    fn from(duration: Duration) -> Self {
        Self(format_duration(duration))
    }
}

impl From<&str> for HumanDuration {
    /// Text to be parsed later; any text is accepted here.
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarText)
    }
}

/// Accepts any scalar as text: `timeout: 5` becomes `"5"`, which validation then reports as
/// missing a unit, rather than serde's less helpful "expected a string".
struct ScalarText;

impl Visitor<'_> for ScalarText {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 500ms, 5s, 10m or 1h")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(HumanDuration(text.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Ok(HumanDuration(number.to_string()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Ok(HumanDuration(number.to_string()))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        Ok(HumanDuration(number.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 2 s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::Number("1.5s".into()))
        );
        assert_eq!(
            parse_duration("-5s"),
            Err(DurationError::Number("-5s".into()))
        );
        assert_eq!(parse_duration("s"), Err(DurationError::Number("s".into())));
        let unit = parse_duration("5d").unwrap_err();
        assert_eq!(
            unit.to_string(),
            r#"duration "5d" has unknown unit "d"; use ms, s, m or h"#
        );
        assert!(matches!(
            parse_duration("1h30m"),
            Err(DurationError::Unit { .. })
        ));
        let huge = "99999999999999999999s";
        assert_eq!(
            parse_duration(huge),
            Err(DurationError::Overflow(huge.into()))
        );
        let too_many_hours = format!("{}h", u64::MAX / 60);
        assert!(matches!(
            parse_duration(&too_many_hours),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }

    #[test]
    fn keeps_any_scalar_as_text_and_serializes_it_back() {
        let parsed: Vec<HumanDuration> = serde_yaml::from_str("[5s, 5, 1.5, -1]").unwrap();
        let texts: Vec<&str> = parsed.iter().map(HumanDuration::as_str).collect();
        assert_eq!(texts, ["5s", "5", "1.5", "-1"]);
        let written =
            serde_yaml::to_string(&HumanDuration::from(Duration::from_secs(600))).unwrap();
        assert_eq!(written.trim(), "10m");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_round_trips(millis in 0u64..=u64::MAX / 1_000_000) {
            let duration = Duration::from_millis(millis);
            proptest::prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".*") {
            let _ = parse_duration(&text);
        }
    }
}
