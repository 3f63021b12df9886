//! Identifiers that travel as strings: each has one `parse` constructor that enforces its
//! bounds, so a value of these types is always valid.

use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    Control,
    #[error("must contain only letters, digits, '-', '_' and '.'")]
    Charset,
    #[error("must not contain the NUL character")]
    Nul,
}

fn check_len(s: &str, max: usize) -> Result<(), TextError> {
    if s.is_empty() {
        return Err(TextError::Empty);
    }
    // The contract counts characters, not bytes: a 64-character number in Greek letters
    // is as valid as one in ASCII.
    if s.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    Ok(())
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, check = $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            pub fn parse(s: impl Into<String>) -> Result<Self, TextError> {
                let s = s.into();
                check_len(&s, Self::MAX_CHARS)?;
                let check: fn(&str) -> Result<(), TextError> = $check;
                check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Any text a database can store: PostgreSQL's text cannot hold NUL, and both backends
/// must answer alike, so NUL is refused here, at the edge, for every identifier.
fn any_text(s: &str) -> Result<(), TextError> {
    if s.contains('\0') {
        Err(TextError::Nul)
    } else {
        Ok(())
    }
}

fn no_control(s: &str) -> Result<(), TextError> {
    if s.chars().any(char::is_control) {
        Err(TextError::Control)
    } else {
        Ok(())
    }
}

fn code_charset(s: &str) -> Result<(), TextError> {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(TextError::Charset)
    }
}

bounded_text!(
    /// A charge number as issued by chargegate (e.g. `I00002706`), unique across the server.
    ChargeNumber, max = 64, check = any_text
);
bounded_text!(
    /// The operator's own identifier of its customer (`billing_system_customer_identifier`).
    CustomerId, max = 128, check = any_text
);
bounded_text!(
    /// An operator's reconciliation reference for one decision or acknowledgement.
    ReferenceNumber, max = 128, check = any_text
);
bounded_text!(
    /// An operator's short code, which clients send as CRM.COM's `organisation`.
    OperatorCode, max = 32, check = code_charset
);
bounded_text!(
    /// A user's login name, unique within its operator.
    Username, max = 128, check = no_control
);

impl ChargeNumber {
    /// The number chargegate assigns to the `n`th charge it numbers itself: `I` and eight
    /// digits, the shape CRM.COM uses.
    pub fn generated(n: u32) -> Option<Self> {
        (n <= 99_999_999).then(|| Self(format!("I{n:08}")))
    }

    /// The sequence number of a number of the generated shape, if it has that shape.
    pub fn generated_sequence(&self) -> Option<u32> {
        let digits = self.0.strip_prefix('I')?;
        if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_characters_not_bytes() {
        let greek = "α".repeat(64);
        assert!(ChargeNumber::parse(greek.clone()).is_ok());
        assert_eq!(
            ChargeNumber::parse(format!("{greek}α")),
            Err(TextError::TooLong { max: 64 })
        );
    }

    #[test]
    fn the_nul_character_is_refused_in_every_identifier() {
        assert_eq!(ChargeNumber::parse("I1\0"), Err(TextError::Nul));
        assert_eq!(CustomerId::parse("\0c"), Err(TextError::Nul));
        assert_eq!(ReferenceNumber::parse("R\0-1"), Err(TextError::Nul));
        assert_eq!(Username::parse("de\0mo"), Err(TextError::Control));
        assert_eq!(OperatorCode::parse("p\0ci"), Err(TextError::Charset));
    }

    #[test]
    fn empty_identifiers_are_refused() {
        assert_eq!(CustomerId::parse(""), Err(TextError::Empty));
        assert_eq!(ReferenceNumber::parse(""), Err(TextError::Empty));
    }

    #[test]
    fn operator_codes_are_restricted_to_a_safe_charset() {
        assert!(OperatorCode::parse("pci").is_ok());
        assert!(OperatorCode::parse("pci-cy_2.0").is_ok());
        assert_eq!(OperatorCode::parse("p ci"), Err(TextError::Charset));
    }

    #[test]
    fn generated_numbers_have_crm_com_shape_and_round_trip() {
        let n = ChargeNumber::generated(2706).expect("in range");
        assert_eq!(n.as_str(), "I00002706");
        assert_eq!(n.generated_sequence(), Some(2706));
        assert_eq!(ChargeNumber::generated(100_000_000), None);
        let other = ChargeNumber::parse("X00002706").expect("valid");
        assert_eq!(other.generated_sequence(), None);
    }
}
