//! The time values a query names: ISO 8601 durations (`PT10M`), RFC 3339 instants, and
//! `start/end` ranges of them.
//!
//! **Decision:** a [`Duration`] has a fixed length in milliseconds. Years (`PnY`) and months
//! (`PnM` before `T`) are rejected rather than approximated, because a month is 28 to 31 days and
//! a window that silently means "30 days" would disagree with what the user wrote. Days are 24
//! hours and weeks 7 days (queries run in UTC, so there are no daylight-saving days). Only the
//! seconds may have a fraction (`PT0.5S`), to millisecond precision; designators may be written
//! in either case. Weeks stand alone (`P1W`), as ISO 8601 writes them.
//!
//! This module parses; it does not own the clock (an executor turns `Last(d)` into a range
//! using the `now` it is given) or the wider timestamp formats of [`crate::time`].

use std::fmt;

use crate::time::Timestamp;

const MILLIS_PER_SECOND: u64 = 1_000;
const MILLIS_PER_MINUTE: u64 = 60 * MILLIS_PER_SECOND;
const MILLIS_PER_HOUR: u64 = 60 * MILLIS_PER_MINUTE;
const MILLIS_PER_DAY: u64 = 24 * MILLIS_PER_HOUR;
const MILLIS_PER_WEEK: u64 = 7 * MILLIS_PER_DAY;

/// A positive length of time, parsed from ISO 8601 (`P1D`, `PT10M`, `P2DT12H`, `P1W`,
/// `PT0.25S`). Invariant: longer than zero and at most `i64::MAX` milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

/// Why a duration did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration starts with 'P', as in PT10M or P1D")]
    MissingP,
    #[error("a duration needs at least one number and unit after 'P', as in P1D")]
    Empty,
    #[error("'T' must be followed by hours, minutes or seconds, as in PT5H")]
    EmptyTime,
    #[error("expected a number before '{found}'")]
    MissingNumber { found: char },
    #[error("expected a unit after {number}")]
    MissingUnit { number: String },
    #[error("'{unit}' is not a duration unit here (use W or D, then T and H, M or S)")]
    UnknownUnit { unit: char },
    #[error("'{unit}' is out of order or repeated (write units as PnDTnHnMnS)")]
    OutOfOrder { unit: char },
    #[error(
        "{unit} have no fixed length, so they are not accepted; use days (P30D) or weeks (P4W)"
    )]
    CalendarUnit { unit: &'static str },
    #[error("weeks cannot be combined with other units; write P1W or P7DT12H")]
    WeeksCombined,
    #[error("only seconds may have a fraction, as in PT1.5S")]
    FractionNotOnSeconds,
    #[error("seconds have at most 3 decimals (milliseconds)")]
    FractionTooPrecise,
    #[error("the duration is zero; a window must be longer than that")]
    Zero,
    #[error("the duration is too long")]
    TooLong,
}

impl Duration {
    /// Parses ISO 8601 `PnW` or `PnDTnHnMnS` (any non-empty subset, in that order).
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let chars: Vec<char> = text.chars().collect();
        let Some((first, rest)) = chars.split_first() else {
            return Err(DurationError::MissingP);
        };
        if !first.eq_ignore_ascii_case(&'P') {
            return Err(DurationError::MissingP);
        }
        if rest.is_empty() {
            return Err(DurationError::Empty);
        }
        // Units in the order they may appear; `rank` only ever increases.
        const DATE_UNITS: [(char, u64); 2] = [('W', MILLIS_PER_WEEK), ('D', MILLIS_PER_DAY)];
        const TIME_UNITS: [(char, u64); 3] = [
            ('H', MILLIS_PER_HOUR),
            ('M', MILLIS_PER_MINUTE),
            ('S', MILLIS_PER_SECOND),
        ];
        let mut total: u64 = 0;
        let mut in_time = false;
        let mut n_time_parts = 0;
        let mut rank = 0;
        let mut saw_weeks = false;
        let mut n_parts = 0;
        let mut idx = 0;
        while idx < rest.len() {
            let c = rest[idx].to_ascii_uppercase();
            if c == 'T' {
                if in_time {
                    return Err(DurationError::OutOfOrder { unit: 'T' });
                }
                in_time = true;
                idx += 1;
                continue;
            }
            let number_start = idx;
            while idx < rest.len() && (rest[idx].is_ascii_digit() || rest[idx] == '.') {
                idx += 1;
            }
            let number: String = rest[number_start..idx].iter().collect();
            if number.is_empty() {
                return Err(DurationError::MissingNumber { found: rest[idx] });
            }
            let Some(unit) = rest.get(idx).map(char::to_ascii_uppercase) else {
                return Err(DurationError::MissingUnit { number });
            };
            idx += 1;
            let units: &[(char, u64)] = if in_time { &TIME_UNITS } else { &DATE_UNITS };
            let Some(unit_idx) = units.iter().position(|(name, _)| *name == unit) else {
                return Err(match (in_time, unit) {
                    (false, 'Y') => DurationError::CalendarUnit { unit: "years" },
                    (false, 'M') => DurationError::CalendarUnit { unit: "months" },
                    (true, 'Y') => DurationError::CalendarUnit { unit: "years" },
                    _ => DurationError::UnknownUnit { unit },
                });
            };
            let unit_rank = unit_idx + if in_time { DATE_UNITS.len() } else { 0 } + 1;
            if unit_rank <= rank {
                return Err(DurationError::OutOfOrder { unit });
            }
            rank = unit_rank;
            let unit_millis = units[unit_idx].1;
            let part = if unit == 'S' && in_time {
                seconds_to_millis(&number)?
            } else {
                if number.contains('.') {
                    return Err(DurationError::FractionNotOnSeconds);
                }
                let count: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
                count
                    .checked_mul(unit_millis)
                    .ok_or(DurationError::TooLong)?
            };
            saw_weeks |= unit == 'W' && !in_time;
            n_parts += 1;
            if in_time {
                n_time_parts += 1;
            }
            total = total.checked_add(part).ok_or(DurationError::TooLong)?;
        }
        if in_time && n_time_parts == 0 {
            return Err(DurationError::EmptyTime);
        }
        if n_parts == 0 {
            return Err(DurationError::Empty);
        }
        if saw_weeks && n_parts > 1 {
            return Err(DurationError::WeeksCombined);
        }
        if total == 0 {
            return Err(DurationError::Zero);
        }
        if total > i64::MAX as u64 {
            return Err(DurationError::TooLong);
        }
        Ok(Duration { millis: total })
    }

    pub fn as_millis(self) -> u64 {
        self.millis
    }
}

/// `digits[.d{1,3}]` seconds as milliseconds.
fn seconds_to_millis(number: &str) -> Result<u64, DurationError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(DurationError::MissingUnit {
            number: number.to_owned(),
        });
    }
    if fraction.len() > 3 {
        return Err(DurationError::FractionTooPrecise);
    }
    let seconds: u64 = whole.parse().map_err(|_| DurationError::TooLong)?;
    let millis: u64 = format!("{fraction:0<3}").parse().unwrap_or(0);
    seconds
        .checked_mul(MILLIS_PER_SECOND)
        .and_then(|total| total.checked_add(millis))
        .ok_or(DurationError::TooLong)
}

impl fmt::Display for Duration {
    /// The canonical form: days, then hours, minutes and seconds (`P1W` prints as `P7D`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.millis / MILLIS_PER_DAY;
        let hours = self.millis % MILLIS_PER_DAY / MILLIS_PER_HOUR;
        let minutes = self.millis % MILLIS_PER_HOUR / MILLIS_PER_MINUTE;
        let seconds = self.millis % MILLIS_PER_MINUTE / MILLIS_PER_SECOND;
        let millis = self.millis % MILLIS_PER_SECOND;
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if hours + minutes + seconds + millis > 0 {
            f.write_str("T")?;
            if hours > 0 {
                write!(f, "{hours}H")?;
            }
            if minutes > 0 {
                write!(f, "{minutes}M")?;
            }
            match (seconds, millis) {
                (0, 0) => {}
                (seconds, 0) => write!(f, "{seconds}S")?,
                (seconds, millis) => {
                    let fraction = format!("{millis:03}");
                    write!(f, "{seconds}.{}S", fraction.trim_end_matches('0'))?
                }
            }
        }
        Ok(())
    }
}

/// An explicit time range, `'2021-06-13T13:00:00Z/2021-06-13T15:30:00Z'`: from `start`
/// (inclusive) to `end` (exclusive). Invariant: `start < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeRange {
    start: Timestamp,
    end: Timestamp,
}

/// Why a time range or timestamp did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("a time range is two RFC 3339 times separated by '/', as in 2021-06-13T13:00:00Z/2021-06-13T15:30:00Z")]
    NotARange,
    #[error("'{text}' is not an RFC 3339 time such as 2021-06-13T13:00:00Z")]
    NotATimestamp { text: String },
    #[error("'{text}' is not a valid date and time")]
    OutOfRange { text: String },
    #[error("the range ends before it starts")]
    EndNotAfterStart,
}

impl TimeRange {
    pub fn parse(text: &str) -> Result<TimeRange, TimeError> {
        let (start, end) = text.split_once('/').ok_or(TimeError::NotARange)?;
        let start = parse_timestamp(start.trim())?;
        let end = parse_timestamp(end.trim())?;
        if end <= start {
            return Err(TimeError::EndNotAfterStart);
        }
        Ok(TimeRange { start, end })
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }
}

/// RFC 3339 with a mandatory offset: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Fractions
/// beyond milliseconds are truncated; leap seconds are refused.
pub(super) fn parse_timestamp(text: &str) -> Result<Timestamp, TimeError> {
    let not_a_timestamp = || TimeError::NotATimestamp {
        text: text.to_owned(),
    };
    let out_of_range = || TimeError::OutOfRange {
        text: text.to_owned(),
    };
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let slice = bytes.get(range)?;
        if slice.is_empty() || !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(slice).ok()?.parse().ok()
    };
    let separators_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return Err(not_a_timestamp());
    }
    let field = |range| digits(range).ok_or_else(not_a_timestamp);
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut idx = 19;
    let mut millis = 0;
    if bytes[idx] == b'.' {
        let fraction_start = idx + 1;
        idx = fraction_start;
        while idx < bytes.len() && bytes[idx].is_ascii_digit() {
            idx += 1;
        }
        let fraction = &text[fraction_start..idx];
        if fraction.is_empty() {
            return Err(not_a_timestamp());
        }
        let first_three: String = fraction.chars().take(3).collect();
        millis = format!("{first_three:0<3}").parse().unwrap_or(0);
    }
    let offset_minutes = match &text[idx..] {
        "Z" | "z" => 0,
        offset if offset.len() == 6 && (offset.starts_with('+') || offset.starts_with('-')) => {
            let offset_bytes = offset.as_bytes();
            if offset_bytes[3] != b':' {
                return Err(not_a_timestamp());
            }
            let hours = field(idx + 1..idx + 3)?;
            let minutes = field(idx + 4..idx + 6)?;
            if hours > 23 || minutes > 59 {
                return Err(out_of_range());
            }
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + minutes)
        }
        _ => return Err(not_a_timestamp()),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(out_of_range()),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(out_of_range());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(Timestamp::from_unix_millis(seconds * 1_000 + millis))
}

/// Days since 1970-01-01 of a proleptic Gregorian date: the inverse of `crate::time`'s
/// `date_from_days`, in the same 400-year eras that start on March 1st.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::{parse_timestamp, Duration, DurationError, TimeError, TimeRange};

    fn check_duration(text: &str, expected: Result<(u64, &str), DurationError>) {
        let actual = Duration::parse(text).map(|d| (d.as_millis(), d.to_string()));
        let expected = expected.map(|(millis, canonical)| (millis, canonical.to_owned()));
        assert_eq!(actual, expected, "duration {text:?}");
    }

    #[test]
    fn durations() {
        const M: u64 = 60_000;
        const H: u64 = 60 * M;
        const D: u64 = 24 * H;
        check_duration("PT10M", Ok((10 * M, "PT10M")));
        check_duration("P1D", Ok((D, "P1D")));
        check_duration("P2DT12H", Ok((2 * D + 12 * H, "P2DT12H")));
        check_duration("P1W", Ok((7 * D, "P7D")));
        check_duration("PT5H", Ok((5 * H, "PT5H")));
        check_duration("PT3H", Ok((3 * H, "PT3H")));
        check_duration("PT90S", Ok((90_000, "PT1M30S")));
        check_duration("PT0.5S", Ok((500, "PT0.5S")));
        check_duration("PT1.25S", Ok((1_250, "PT1.25S")));
        check_duration("PT0.001S", Ok((1, "PT0.001S")));
        check_duration("P1DT1H1M1S", Ok((D + H + M + 1_000, "P1DT1H1M1S")));
        check_duration("pt10m", Ok((10 * M, "PT10M")));
        check_duration("P0DT1H", Ok((H, "PT1H")));
        check_duration("", Err(DurationError::MissingP));
        check_duration("1D", Err(DurationError::MissingP));
        check_duration("P", Err(DurationError::Empty));
        check_duration("PT", Err(DurationError::EmptyTime));
        check_duration("P1DT", Err(DurationError::EmptyTime));
        check_duration("P1Y", Err(DurationError::CalendarUnit { unit: "years" }));
        check_duration("P1M", Err(DurationError::CalendarUnit { unit: "months" }));
        check_duration("P1H", Err(DurationError::UnknownUnit { unit: 'H' }));
        check_duration("PT1D", Err(DurationError::UnknownUnit { unit: 'D' }));
        check_duration("PT1X", Err(DurationError::UnknownUnit { unit: 'X' }));
        check_duration("PT1M1H", Err(DurationError::OutOfOrder { unit: 'H' }));
        check_duration("PT1H1H", Err(DurationError::OutOfOrder { unit: 'H' }));
        check_duration("P1DT1HT1M", Err(DurationError::OutOfOrder { unit: 'T' }));
        check_duration("P1W1D", Err(DurationError::WeeksCombined));
        check_duration("P1.5D", Err(DurationError::FractionNotOnSeconds));
        check_duration("PT1.5M", Err(DurationError::FractionNotOnSeconds));
        check_duration("PT1.2345S", Err(DurationError::FractionTooPrecise));
        check_duration("PT0S", Err(DurationError::Zero));
        check_duration("P0D", Err(DurationError::Zero));
        check_duration("PTM", Err(DurationError::MissingNumber { found: 'M' }));
        check_duration(
            "PT10",
            Err(DurationError::MissingUnit {
                number: "10".to_owned(),
            }),
        );
        check_duration("P99999999999999999999D", Err(DurationError::TooLong));
        check_duration("P999999999999D", Err(DurationError::TooLong));
    }

    fn check_timestamp(text: &str, expected: Result<&str, ()>) {
        let actual = parse_timestamp(text)
            .map(|t| t.to_rfc3339())
            .map_err(|_| ());
        assert_eq!(actual, expected.map(str::to_owned), "timestamp {text:?}");
    }

    #[test]
    fn timestamps() {
        check_timestamp("2021-06-13T13:00:00Z", Ok("2021-06-13T13:00:00.000Z"));
        check_timestamp("2021-06-13t13:00:00z", Ok("2021-06-13T13:00:00.000Z"));
        check_timestamp("2021-09-10T12:59:52.015Z", Ok("2021-09-10T12:59:52.015Z"));
        check_timestamp(
            "2021-09-10T12:59:52.0159999Z",
            Ok("2021-09-10T12:59:52.015Z"),
        );
        check_timestamp("2021-09-10T12:59:52.5Z", Ok("2021-09-10T12:59:52.500Z"));
        check_timestamp("2021-06-13T15:00:00+02:00", Ok("2021-06-13T13:00:00.000Z"));
        check_timestamp("2021-06-13T10:30:00-02:30", Ok("2021-06-13T13:00:00.000Z"));
        check_timestamp("2000-02-29T00:00:00Z", Ok("2000-02-29T00:00:00.000Z"));
        check_timestamp("1969-12-31T23:59:59Z", Ok("1969-12-31T23:59:59.000Z"));
        check_timestamp("2100-02-29T00:00:00Z", Err(()));
        check_timestamp("2021-13-01T00:00:00Z", Err(()));
        check_timestamp("2021-06-31T00:00:00Z", Err(()));
        check_timestamp("2021-06-13T24:00:00Z", Err(()));
        check_timestamp("2021-06-13T23:59:60Z", Err(()));
        check_timestamp("2021-06-13T13:00:00", Err(()));
        check_timestamp("2021-06-13 13:00:00Z", Err(()));
        check_timestamp("2021-06-13T13:00:00.Z", Err(()));
        check_timestamp("2021-06-13T13:00:00+0200", Err(()));
        check_timestamp("2021-06-13", Err(()));
        check_timestamp("yesterday", Err(()));
        check_timestamp("２021-06-13T13:00:00Z", Err(()));
    }

    #[test]
    fn ranges() {
        let range = TimeRange::parse("2021-06-13T13:00:00Z/2021-06-13T15:30:00Z").unwrap();
        assert_eq!(range.start().to_rfc3339(), "2021-06-13T13:00:00.000Z");
        assert_eq!(range.end().to_rfc3339(), "2021-06-13T15:30:00.000Z");
        assert_eq!(
            TimeRange::parse("2021-06-13T15:30:00Z/2021-06-13T13:00:00Z"),
            Err(TimeError::EndNotAfterStart)
        );
        assert_eq!(
            TimeRange::parse("2021-06-13T13:00:00Z/2021-06-13T13:00:00Z"),
            Err(TimeError::EndNotAfterStart)
        );
        assert_eq!(
            TimeRange::parse("2021-06-13T13:00:00Z"),
            Err(TimeError::NotARange)
        );
        assert!(matches!(
            TimeRange::parse("2021-06-13T13:00:00Z/later"),
            Err(TimeError::NotATimestamp { .. })
        ));
    }
}
