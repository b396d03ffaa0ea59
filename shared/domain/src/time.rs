//! Points in time as the domain sees them: a UTC instant handed in by the caller.
//!
//! The domain never reads a clock. Components take `SystemTime::now()` at the edge and pass a
//! [`Timestamp`] in, so every time-dependent decision is a pure function that tests can pin
//! down. This module also owns the two textual forms the API uses; it does not parse them yet.

use std::fmt::Write as _;

/// A UTC instant with millisecond precision, counted from the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_millis: i64,
}

impl Timestamp {
    pub fn from_unix_millis(unix_millis: i64) -> Timestamp {
        Timestamp { unix_millis }
    }

    pub fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2025-11-26T12:47:05.120Z`.
    pub fn to_rfc3339(self) -> String {
        let civil = Civil::from_unix_millis(self.unix_millis);
        let mut out = String::with_capacity(24);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            civil.year,
            civil.month,
            civil.day,
            civil.hour,
            civil.minute,
            civil.second,
            civil.millis
        );
        out
    }

    /// RFC 1123 (the HTTP date format), e.g. `Wed, 26 Nov 2025 12:47:05 GMT`. IoT Central's
    /// OpenAPI document declares its error `time` in this format.
    pub fn to_rfc1123(self) -> String {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let civil = Civil::from_unix_millis(self.unix_millis);
        // 1970-01-01 was a Thursday, hence the table's order.
        let weekday = WEEKDAYS[civil.days_since_epoch.rem_euclid(7) as usize];
        let month = MONTHS[(civil.month - 1) as usize];
        let mut out = String::with_capacity(29);
        let _ = write!(
            out,
            "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
            civil.day, civil.year, civil.hour, civil.minute, civil.second
        );
        out
    }
}

/// A broken-down UTC date and time in the proleptic Gregorian calendar.
struct Civil {
    days_since_epoch: i64,
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Civil {
    fn from_unix_millis(unix_millis: i64) -> Civil {
        let days_since_epoch = unix_millis.div_euclid(86_400_000);
        let millis_of_day = unix_millis.rem_euclid(86_400_000) as u32;
        let (year, month, day) = date_from_days(days_since_epoch);
        Civil {
            days_since_epoch,
            year,
            month,
            day,
            hour: millis_of_day / 3_600_000,
            minute: millis_of_day / 60_000 % 60,
            second: millis_of_day / 1_000 % 60,
            millis: millis_of_day % 1_000,
        }
    }
}

/// Converts days since 1970-01-01 to (year, month 1..=12, day 1..=31).
///
/// Counts in 400-year eras that start on March 1st, so the leap day is the last day of a
/// year and every era has the same 146,097 days (Howard Hinnant's `civil_from_days`).
fn date_from_days(days_since_epoch: i64) -> (i64, u32, u32) {
    let days = days_since_epoch + 719_468; // Shift the epoch to 0000-03-01.
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    fn check(unix_millis: i64, rfc3339: &str, rfc1123: &str) {
        let timestamp = Timestamp::from_unix_millis(unix_millis);
        assert_eq!(timestamp.to_rfc3339(), rfc3339, "rfc3339 of {unix_millis}");
        assert_eq!(timestamp.to_rfc1123(), rfc1123, "rfc1123 of {unix_millis}");
    }

    #[test]
    fn formats_known_instants() {
        check(
            0,
            "1970-01-01T00:00:00.000Z",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        );
        check(
            -1,
            "1969-12-31T23:59:59.999Z",
            "Wed, 31 Dec 1969 23:59:59 GMT",
        );
        check(
            951_782_400_000,
            "2000-02-29T00:00:00.000Z",
            "Tue, 29 Feb 2000 00:00:00 GMT",
        );
        check(
            1_709_251_199_999,
            "2024-02-29T23:59:59.999Z",
            "Thu, 29 Feb 2024 23:59:59 GMT",
        );
        check(
            1_764_161_225_120,
            "2025-11-26T12:47:05.120Z",
            "Wed, 26 Nov 2025 12:47:05 GMT",
        );
        check(
            4_102_444_800_000,
            "2100-01-01T00:00:00.000Z",
            "Fri, 01 Jan 2100 00:00:00 GMT",
        );
    }
}
