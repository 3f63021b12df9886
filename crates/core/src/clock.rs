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
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

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
    pub fn plus_seconds(&self, seconds: i64) -> Timestamp {
        let max = 253_402_300_799; // 9999-12-31T23:59:59
        Timestamp(self.0.saturating_add(seconds).min(max))
    }

    fn datetime(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .map(|dt| dt.to_offset(UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Construction guarantees the range, so formatting cannot fail in practice.
        match self
            .datetime()
            .and_then(|dt| dt.format(TIMESTAMP_FORMAT).ok())
        {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{}", self.0),
        }
    }
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
        let d = time::Date::parse(s, DATE_FORMAT).map_err(|_| ClockError::BadDate(s.to_owned()))?;
        if (0..=9999).contains(&d.year()) {
            Ok(Date(d))
        } else {
            Err(ClockError::BadDate(s.to_owned()))
        }
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
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
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
