//! Dates and timestamps in PostgreSQL's text forms, as days and microseconds since
//! 2000-01-01 (PostgreSQL's epoch). Part of the config stage; pure.

use std::fmt;

use super::{MICROS_PER_DAY, MICROS_PER_SECOND, UNIX_TO_PG_EPOCH_DAYS, is_pg_space};

pub(super) fn parse_date(text: &str) -> Option<i32> {
    let mut cursor = Cursor(text.trim_matches(is_pg_space).as_bytes());
    let days = cursor.date()?;
    if !cursor.is_empty() {
        return None;
    }
    i32::try_from(days).ok()
}

/// A timestamp as written: local microseconds since 2000-01-01 and the offset, if any.
pub(super) struct WrittenTimestamp {
    /// Microseconds since 2000-01-01 as written (local time).
    pub(super) micros: i64,
    /// Seconds east of UTC.
    pub(super) offset_seconds: Option<i64>,
}

pub(super) fn parse_timestamp(text: &str) -> Option<WrittenTimestamp> {
    let mut cursor = Cursor(text.trim_matches(is_pg_space).as_bytes());
    let days = cursor.date()?;
    let starts_time = matches!(cursor.peek(0), Some(b' ' | b'T' | b't'))
        && cursor.peek(1).is_some_and(|b| b.is_ascii_digit());
    let time = if starts_time {
        cursor.skip(1);
        cursor.time_of_day()?
    } else {
        0
    };
    cursor.skip_spaces();
    let offset_seconds = if cursor.is_empty() {
        None
    } else {
        Some(cursor.utc_offset()?)
    };
    cursor.is_empty().then_some(WrittenTimestamp {
        micros: days * MICROS_PER_DAY + time,
        offset_seconds,
    })
}

/// Reads date/time text left to right; every read checks bounds and consumes only on success.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.0.get(ahead).copied()
    }

    fn skip(&mut self, count: usize) {
        self.0 = self.0.get(count..).unwrap_or_default();
    }

    fn skip_spaces(&mut self) {
        while self.peek(0).is_some_and(|b| is_pg_space(char::from(b))) {
            self.skip(1);
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek(0) == Some(byte);
        if found {
            self.skip(1);
        }
        found
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self
            .0
            .get(..word.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(word.as_bytes()));
        if found {
            self.skip(word.len());
        }
        found
    }

    /// `min..=max` (at most 6) decimal digits: their value and how many there were.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let count = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let (digits, rest) = self.0.split_at_checked(count)?;
        if count < min {
            return None;
        }
        self.0 = rest;
        let value = digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
        Some((value, count))
    }

    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        self.digits(min, max).map(|(value, _)| value)
    }

    /// `YYYY-MM-DD` (years 1 to 9999) as days since 2000-01-01.
    fn date(&mut self) -> Option<i64> {
        let year = self.number(4, 4)?;
        let month = self.eat(b'-').then(|| self.number(1, 2)).flatten()?;
        let day = self.eat(b'-').then(|| self.number(1, 2)).flatten()?;
        let valid = year >= 1
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        valid.then(|| days_from_civil(year, month, day) - UNIX_TO_PG_EPOCH_DAYS)
    }

    /// `HH:MM[:SS[.f{1,6}]]` as microseconds since midnight.
    fn time_of_day(&mut self) -> Option<i64> {
        let hour = self.number(1, 2)?;
        let minute = self.eat(b':').then(|| self.number(2, 2)).flatten()?;
        let (mut second, mut fraction) = (0, 0);
        if self.eat(b':') {
            second = self.number(2, 2)?;
            if self.eat(b'.') {
                let (value, count) = self.digits(1, 6)?;
                fraction = value * 10_i64.pow(6 - u32::try_from(count).ok()?);
            }
        }
        let valid = hour < 24 && minute < 60 && second < 60;
        valid.then(|| ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction)
    }

    /// `Z`, `UTC`, `GMT`, `+HH`, `+HH:MM` or `+HHMM` (either sign) as seconds east of UTC.
    fn utc_offset(&mut self) -> Option<i64> {
        if self.eat_word("z") || self.eat_word("utc") || self.eat_word("gmt") {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.number(1, 2)?;
        let minutes = if self.eat(b':') {
            self.number(2, 2)?
        } else {
            self.number(2, 2).unwrap_or(0)
        };
        // PostgreSQL refuses displacements beyond 15 hours (MAX_TZDISP_HOUR).
        (hours <= 15 && minutes < 60).then(|| sign * (hours * 3600 + minutes * 60))
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01 as (year, month, day) (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

pub(super) fn write_date(f: &mut fmt::Formatter<'_>, days_since_2000: i64) -> fmt::Result {
    let (year, month, day) = civil_from_days(days_since_2000 + UNIX_TO_PG_EPOCH_DAYS);
    write!(f, "{year:04}-{month:02}-{day:02}")
}

pub(super) fn write_timestamp(f: &mut fmt::Formatter<'_>, micros: i64) -> fmt::Result {
    write_date(f, micros.div_euclid(MICROS_PER_DAY))?;
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let seconds = of_day / MICROS_PER_SECOND;
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    write!(f, " {hour:02}:{minute:02}:{second:02}")?;
    let (mut fraction, mut width) = (of_day % MICROS_PER_SECOND, 6);
    if fraction == 0 {
        return Ok(());
    }
    while fraction % 10 == 0 {
        fraction /= 10;
        width -= 1;
    }
    write!(f, ".{fraction:0width$}")
}
