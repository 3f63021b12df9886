//! Exact money: an integer count of a currency's minor units. There is no float anywhere
//! between a CSV cell and a JSON response, so `9.99` stays `9.99`.

use std::fmt;

/// ISO-4217 codes chargegate accepts, with their minor-unit digits. Current codes plus a
/// few recently withdrawn ones (ANG, CUC, HRK, SLL, ZWL) that historic charges may carry.
/// Codes without minor units (gold, SDR, test codes) are not money Netflix bills in.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2),
    ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2),
    ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2),
    ("COU", 2), ("CRC", 2), ("CUC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0),
    ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2),
    ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2),
    ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HRK", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0),
    ("JMD", 2), ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0),
    ("KPW", 2), ("KRW", 0), ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2),
    ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2),
    ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2),
    ("MWK", 2), ("MXN", 2), ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2),
    ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2),
    ("RSD", 2), ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2),
    ("SEK", 2), ("SGD", 2), ("SHP", 2), ("SLE", 2), ("SLL", 2), ("SOS", 2), ("SRD", 2),
    ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2),
    ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2),
    ("UAH", 2), ("UGX", 0), ("USD", 2), ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4),
    ("UZS", 2), ("VED", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0),
    ("XCD", 2), ("XCG", 2), ("XOF", 0), ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2),
    ("ZWG", 2), ("ZWL", 2),
];

/// An ISO-4217 currency code in upper case, known to chargegate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not an ISO-4217 currency code (three upper-case letters, e.g. EUR)")]
    UnknownCurrency(String),
    #[error("'{0}' is not a decimal amount (digits, optionally one '.' and more digits)")]
    NotDecimal(String),
    #[error("'{amount}' has more decimals than {currency} allows ({allowed})")]
    TooPrecise {
        amount: String,
        currency: Currency,
        allowed: u8,
    },
    #[error("'{0}' is too large")]
    TooLarge(String),
}

impl Currency {
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        // Codes compare as three packed bytes: every charge read carries two of them.
        let packed = |code: &str| -> Option<u32> {
            match code.as_bytes() {
                &[a, b, c] => Some(u32::from_be_bytes([0, a, b, c])),
                _ => None,
            }
        };
        let wanted = packed(s).ok_or_else(|| MoneyError::UnknownCurrency(s.to_owned()))?;
        CURRENCIES
            .binary_search_by(|(code, _)| packed(code).cmp(&Some(wanted)))
            .map(|i| {
                let (code, minor_units) = CURRENCIES[i];
                Currency { code, minor_units }
            })
            .map_err(|_| MoneyError::UnknownCurrency(s.to_owned()))
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An exact amount of one currency, held as an integer count of its minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    /// Parses a plain decimal (`9.99`, `12.5`, `10`). Signs, exponents, thousands
    /// separators and more decimals than the currency has are refused; trailing zeros
    /// beyond them (`9.990`) are accepted because the value is still exact.
    pub fn parse(s: &str, currency: Currency) -> Result<Self, MoneyError> {
        let not_decimal = || MoneyError::NotDecimal(s.to_owned());
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
            || (s.contains('.') && frac_part.is_empty())
        {
            return Err(not_decimal());
        }
        let allowed = usize::from(currency.minor_units);
        let significant = frac_part.trim_end_matches('0');
        if significant.len() > allowed {
            return Err(MoneyError::TooPrecise {
                amount: s.to_owned(),
                currency,
                allowed: currency.minor_units,
            });
        }
        let too_large = || MoneyError::TooLarge(s.to_owned());
        let mut minor: i64 = 0;
        for b in int_part.bytes() {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        for i in 0..allowed {
            let digit = significant.as_bytes().get(i).map_or(0, |b| b - b'0');
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit)))
                .ok_or_else(too_large)?;
        }
        Ok(Money { minor, currency })
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// The amount as the shortest exact decimal: `9.99`, `12.5`, `10`, `0.001`. This is
    /// the text chargegate writes as a JSON number.
    pub fn to_decimal_string(&self) -> String {
        use std::fmt::Write as _;
        let digits = u32::from(self.currency.minor_units);
        let scale = 10u64.pow(digits);
        let abs = self.minor.unsigned_abs();
        let mut out = String::with_capacity(24);
        if self.minor < 0 {
            out.push('-');
        }
        let _ = write!(out, "{}", abs / scale);
        let mut frac = abs % scale;
        if frac == 0 {
            return out;
        }
        // The fraction's digits, most significant first, without trailing zeros.
        let mut width = digits;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        out.push('.');
        for position in (0..width).rev() {
            let digit = (frac / 10u64.pow(position)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        out
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).expect("known currency")
    }

    #[test]
    fn currency_table_is_sorted_so_binary_search_works() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(cur("EUR").minor_units(), 2);
        assert_eq!(cur("JPY").minor_units(), 0);
        assert_eq!(cur("KWD").minor_units(), 3);
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("ABC").is_err());
    }

    #[test]
    fn amounts_print_as_the_shortest_exact_decimal() {
        let eur = cur("EUR");
        for (text, printed) in [
            ("9.99", "9.99"),
            ("12.5", "12.5"),
            ("12.50", "12.5"),
            ("10", "10"),
            ("0.1", "0.1"),
            ("0.01", "0.01"),
            ("1234567.89", "1234567.89"),
            ("9.990", "9.99"),
        ] {
            assert_eq!(
                Money::parse(text, eur).expect(text).to_decimal_string(),
                printed
            );
        }
        assert_eq!(
            Money::parse("1500", cur("JPY"))
                .expect("yen")
                .to_decimal_string(),
            "1500"
        );
        assert_eq!(
            Money::parse("1.005", cur("KWD"))
                .expect("dinar")
                .to_decimal_string(),
            "1.005"
        );
    }

    #[test]
    fn malformed_or_over_precise_amounts_are_refused() {
        let eur = cur("EUR");
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1,5", "1.2.3", " 1", "abc",
        ] {
            assert_eq!(
                Money::parse(bad, eur),
                Err(MoneyError::NotDecimal(bad.into())),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Money::parse("9.999", eur),
            Err(MoneyError::TooPrecise { allowed: 2, .. })
        ));
        assert!(matches!(
            Money::parse("1.5", cur("JPY")),
            Err(MoneyError::TooPrecise { allowed: 0, .. })
        ));
        assert!(matches!(
            Money::parse("99999999999999999999", eur),
            Err(MoneyError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_back_the_same_amount(minor in 0i64..=i64::MAX / 10) {
            for code in ["EUR", "JPY", "KWD", "CLF"] {
                let m = Money::from_minor(minor, cur(code));
                prop_assert_eq!(Money::parse(&m.to_decimal_string(), cur(code)), Ok(m));
            }
        }
    }
}
