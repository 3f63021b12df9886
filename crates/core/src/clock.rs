//! Points in time and calendar days, in UTC, at the precision CRM.COM writes them.

use std::fmt;

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A UTC instant to the second, written `YYYY-MM-DDTHH:MM:SS` (CRM.COM's form: no zone
/// suffix, no fraction). Held as seconds since the Unix epoch so both backends store and
/// compare it as a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("'{0}' is not a UTC timestamp of the form YYYY-MM-DDTHH:MM:SS")]
    BadTimestamp(String),
    #[error("'{0}' is not a date of the form YYYY-MM-DD")]
    BadDate(String),
    #[error("{0} seconds since 1970 is out of range")]
    OutOfRange(i64),
}

const TIMESTAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Seconds since 1970-01-01T00:00:00 UTC. Only years 0000–9999 are representable, so
    /// every value prints in the fixed-width form and sorts correctly as text.
    pub fn from_unix(seconds: i64) -> Result<Self, ClockError> {
        let dt = OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|_| ClockError::OutOfRange(seconds))?;
        if (0..=9999).contains(&dt.year()) {
            Ok(Timestamp(seconds))
        } else {
            Err(ClockError::OutOfRange(seconds))
        }
    }

    pub fn unix(&self) -> i64 {
        self.0
    }

    pub fn parse(s: &str) -> Result<Self, ClockError> {
        let bad = || ClockError::BadTimestamp(s.to_owned());
        let dt = PrimitiveDateTime::parse(s, TIMESTAMP_FORMAT).map_err(|_| bad())?;
        Self::from_unix(dt.assume_utc().unix_timestamp()).map_err(|_| bad())
    }

    /// This instant plus `seconds`, saturating at the end of the representable range.
    #[must_use]
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        let max = 253_402_300_799; // 9999-12-31T23:59:59
        Timestamp(self.0.saturating_add(seconds).min(max))
    }

    fn datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .map(|dt| dt.to_offset(UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand rather than through `time`'s formatter: every charge of every
        // page prints several of these, and construction guarantees years 0000–9999.
        let days = self.0.div_euclid(86_400);
        let second_of_day = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00";
        put_digits(&mut out[0..4], year.clamp(0, 9999) as u64);
        put_digits(&mut out[5..7], u64::from(month));
        put_digits(&mut out[8..10], u64::from(day));
        put_digits(&mut out[11..13], (second_of_day / 3600) as u64);
        put_digits(&mut out[14..16], (second_of_day / 60 % 60) as u64);
        put_digits(&mut out[17..19], (second_of_day % 60) as u64);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `value` as zero-padded decimal digits filling `out`.
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Reads exactly the ASCII digits of `s`.
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// Where the server reads the time. Production uses [`SystemClock`]; tests hand the
/// server a [`ManualClock`] and move it, so an expiry is reproduced by turning the clock
/// rather than by sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(start.unix()))
    }

    /// Moves the clock forward (or back, with a negative number) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A calendar day (`YYYY-MM-DD`), such as a charge's `paid_through_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date(time::Date);

impl Date {
    pub fn parse(s: &str) -> Result<Self, ClockError> {
        let bad = || ClockError::BadDate(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let (year, month, day) = (
            digits(&b[0..4]).ok_or_else(bad)?,
            digits(&b[5..7]).ok_or_else(bad)?,
            digits(&b[8..10]).ok_or_else(bad)?,
        );
        let month = time::Month::try_from(month as u8).map_err(|_| bad())?;
        time::Date::from_calendar_date(year as i32, month, day as u8)
            .map(Date)
            .map_err(|_| bad())
    }

    pub fn from_ymd(year: i32, month: u8, day: u8) -> Result<Self, ClockError> {
        let month = time::Month::try_from(month)
            .map_err(|_| ClockError::BadDate(format!("{year}-{month}-{day}")))?;
        time::Date::from_calendar_date(year, month, day)
            .map(Date)
            .map_err(|_| ClockError::BadDate(format!("{year}-{month}-{day}")))
    }

    /// The day this instant falls on, in UTC.
    pub fn of(ts: Timestamp) -> Option<Self> {
        ts.datetime().map(|dt| Date(dt.date()))
    }

    pub fn year(&self) -> i32 {
        self.0.year()
    }
    pub fn month(&self) -> u8 {
        self.0.month().into()
    }
    pub fn day(&self) -> u8 {
        self.0.day()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = *b"0000-00-00";
        put_digits(&mut out[0..4], self.0.year().clamp(0, 9999) as u64);
        put_digits(&mut out[5..7], u64::from(u8::from(self.0.month())));
        put_digits(&mut out[8..10], u64::from(self.0.day()));
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_in_crm_com_form_and_parse_back() {
        let ts = Timestamp::parse("2026-11-26T14:31:05").expect("valid");
        assert_eq!(ts.to_string(), "2026-11-26T14:31:05");
        assert_eq!(
            Timestamp::from_unix(0).expect("epoch").to_string(),
            "1970-01-01T00:00:00"
        );
    }

    #[test]
    fn timestamps_with_zones_or_fractions_are_refused() {
        for bad in [
            "2026-11-26T14:31:05Z",
            "2026-11-26 14:31:05",
            "2026-11-26T14:31:05.5",
            "2026-02-30T00:00:00",
            "2026-11-26",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn hand_written_formatting_agrees_with_the_time_crate(seconds in 0_i64..253_402_300_799) {
            let ts = Timestamp::from_unix(seconds).expect("in range");
            let expected = OffsetDateTime::from_unix_timestamp(seconds)
                .expect("in range")
                .format(TIMESTAMP_FORMAT)
                .expect("formats");
            proptest::prop_assert_eq!(ts.to_string(), expected.as_str());
            proptest::prop_assert_eq!(Timestamp::parse(&expected), Ok(ts));
            let day = Date::of(ts).expect("a day");
            proptest::prop_assert_eq!(day.to_string(), expected[..10].to_owned());
            proptest::prop_assert_eq!(Date::parse(&expected[..10]), Ok(day));
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Timestamp::parse("2026-11-26T10:00:00").expect("valid");
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(7200);
        assert_eq!(clock.now().to_string(), "2026-11-26T12:00:00");
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            Date::parse("2026-12-31").expect("valid").to_string(),
            "2026-12-31"
        );
        for bad in [
            "2026-13-01",
            "2026-02-29",
            "26-01-01",
            "2026-1-1",
            "2026-01-01T00:00:00",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert!(Date::parse("2028-02-29").is_ok());
    }
}
