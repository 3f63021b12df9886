//! Values as people type them on the command line and in CSV files, read a little more
//! kindly than the wire contract reads them: currency codes in any case, a `Z` after a
//! UTC time, and an impossible date called what it is.
//!
//! The API itself stays strict (docs/api.md): these readings apply to the operator's own
//! tools only.

use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money, MoneyError};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// An ISO-4217 code in any case: `eur` is `EUR`. A refusal quotes what was typed.
pub(super) fn currency(text: &str) -> Result<Currency, String> {
    Currency::parse(&text.to_ascii_uppercase()).map_err(|e| match e {
        MoneyError::UnknownCurrency(_) => {
            format!("'{text}' is not an ISO-4217 currency code (three letters, e.g. EUR)")
        }
        other => other.to_string(),
    })
}

/// An amount of `currency`, a plain decimal. A comma is not taken for a decimal mark (in
/// `1,000` it is not one), but the refusal says how to write the amount.
pub(super) fn money(text: &str, currency: Currency) -> Result<Money, String> {
    Money::parse(text, currency).map_err(|e| {
        if text.contains(',') {
            format!("{e}; write the decimal mark as '.', without thousands separators")
        } else {
            e.to_string()
        }
    })
}

/// A day, `YYYY-MM-DD`.
pub(super) fn date(text: &str) -> Result<Date, String> {
    Date::parse(text).map_err(|e| match impossible_day(text) {
        Some(why) => format!("'{text}' is an impossible date: {why}"),
        None => e.to_string(),
    })
}

/// A UTC time, `YYYY-MM-DDTHH:MM:SS`, optionally followed by `Z` (which means UTC).
pub(super) fn timestamp(text: &str) -> Result<Timestamp, String> {
    let utc = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    Timestamp::parse(utc).map_err(|_| {
        let day = utc.get(..10).unwrap_or(utc);
        match impossible_day(day) {
            Some(why) => format!("'{text}' has an impossible date: {why}"),
            None => format!(
                "'{text}' is not a UTC time of the form YYYY-MM-DDTHH:MM:SS (a final Z is allowed)"
            ),
        }
    })
}

/// Why `text`, shaped like `YYYY-MM-DD`, names no day of the calendar (`February 2026 has
/// 28 days`); `None` when it is not of that shape (a format error) or is a real day.
fn impossible_day(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    let year: i32 = text.get(0..4)?.parse().ok()?;
    let month: u8 = text.get(5..7)?.parse().ok()?;
    let day: u8 = text.get(8..10)?.parse().ok()?;
    let Some(name) = MONTHS.get(usize::from(month).wrapping_sub(1)) else {
        return Some(format!("there is no month {month}"));
    };
    let days = (28..=31)
        .rev()
        .find(|&d| Date::from_ymd(year, month, d).is_ok())?;
    (day == 0 || day > days).then(|| format!("{name} {year} has {days} days"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_read_in_any_case_and_refusals_quote_what_was_typed() {
        assert_eq!(currency("eur").map(|c| c.code()), Ok("EUR"));
        assert_eq!(currency("Usd").map(|c| c.code()), Ok("USD"));
        let err = currency("euro").expect_err("not a code");
        assert!(err.starts_with("'euro' is not an ISO-4217"), "{err}");
    }

    #[test]
    fn a_decimal_comma_is_refused_with_a_hint() {
        let eur = currency("EUR").expect("EUR");
        assert_eq!(
            money("9.99", eur).map(|m| m.to_string()),
            Ok("9.99 EUR".into())
        );
        let err = money("9,99", eur).expect_err("comma");
        assert!(err.ends_with("write the decimal mark as '.', without thousands separators"));
    }

    #[test]
    fn a_final_z_means_utc() {
        let with_z = timestamp("2026-11-25T06:00:12Z").expect("with Z");
        assert_eq!(with_z, timestamp("2026-11-25T06:00:12").expect("without"));
        assert_eq!(with_z.to_string(), "2026-11-25T06:00:12");
        assert!(timestamp("2026-11-25T06:00:12+02:00").is_err());
    }

    #[test]
    fn impossible_dates_are_told_apart_from_badly_written_ones() {
        assert_eq!(
            date("2026-02-30").expect_err("no such day"),
            "'2026-02-30' is an impossible date: February 2026 has 28 days"
        );
        assert_eq!(
            date("2028-02-30").expect_err("no such day"),
            "'2028-02-30' is an impossible date: February 2028 has 29 days"
        );
        assert_eq!(
            date("2026-13-01").expect_err("no such month"),
            "'2026-13-01' is an impossible date: there is no month 13"
        );
        assert_eq!(
            date("2026-04-00").expect_err("no day 0"),
            "'2026-04-00' is an impossible date: April 2026 has 30 days"
        );
        assert_eq!(
            date("30/02/2026").expect_err("format"),
            "'30/02/2026' is not a date of the form YYYY-MM-DD"
        );
        assert!(date("2026-02-28").is_ok());
        assert_eq!(
            timestamp("2026-02-30T06:00:00Z").expect_err("no such day"),
            "'2026-02-30T06:00:00Z' has an impossible date: February 2026 has 28 days"
        );
        let err = timestamp("2026-11-25 06:00").expect_err("format");
        assert!(err.contains("YYYY-MM-DDTHH:MM:SS"), "{err}");
    }
}
