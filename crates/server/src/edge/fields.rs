//! One reader for the fields of a JSON object: a request body, or one item of a batch.
//! Every complaint names the field and says what is wrong in the contract's words; a
//! request-level complaint becomes `400 INVALID_PARAMETER` with the field as its
//! `description`, an item's becomes that item's failure.

use std::fmt;

use chargegate_core::clock::Timestamp;
use chargegate_core::money::{Currency, Money};
use serde_json::{Map, Value};

use crate::edge::error::ApiError;

/// What is wrong with a field: the end of a sentence that starts with the field's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Absent or `null`.
    Missing,
    NotString,
    NotObject,
    NotNumber,
    /// An empty string where text is wanted.
    Empty,
    /// Longer than this many characters.
    TooLong(usize),
    /// Holds the NUL character.
    Nul,
    /// Not 1 to this many characters without control characters.
    NotPrintable(usize),
    /// Longer than this many bytes as compact JSON.
    TooLarge(usize),
    /// An amount of 0 or less.
    NotPositive,
    /// A number that is not an amount in the currency: why.
    NotAmount(String),
    NotTimestamp,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("is mandatory"),
            Problem::NotString => f.write_str("must be a string"),
            Problem::NotObject => f.write_str("must be a JSON object"),
            Problem::NotNumber => f.write_str("must be a JSON number"),
            Problem::Empty => f.write_str("must not be empty"),
            Problem::TooLong(max) => write!(f, "must be at most {max} characters"),
            Problem::Nul => f.write_str("must not contain the NUL character"),
            Problem::NotPrintable(max) => {
                write!(
                    f,
                    "must be 1 to {max} characters without control characters"
                )
            }
            Problem::TooLarge(max) => write!(f, "must be at most {max} bytes as compact JSON"),
            Problem::NotPositive => f.write_str("must be greater than 0"),
            Problem::NotAmount(why) => f.write_str(why),
            Problem::NotTimestamp => f.write_str("must be a UTC time written YYYY-MM-DDTHH:MM:SS"),
        }
    }
}

/// A field and what is wrong with it. Shown, it is the sentence `<field> <problem>`
/// (`<field>: <why>` for an amount that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: Problem,
}

impl FieldError {
    pub fn new(field: &str, problem: Problem) -> FieldError {
        FieldError {
            field: field.to_owned(),
            problem,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::NotAmount(why) => write!(f, "{}: {why}", self.field),
            problem => write!(f, "{} {problem}", self.field),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::invalid_parameter(e.field.clone(), e.to_string())
    }
}

/// The fields of one JSON object. `null` reads as absent everywhere.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The value of `name`, unless absent or `null`.
    pub fn get(self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A mandatory string, as given.
    pub fn string(self, name: &str) -> Result<&'a str, FieldError> {
        self.optional_string(name)?
            .ok_or_else(|| FieldError::new(name, Problem::Missing))
    }

    /// An optional string, as given.
    pub fn optional_string(self, name: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FieldError::new(name, Problem::NotString)),
        }
    }

    /// An optional text of 1 to `max` characters without NUL, each fault named on its own
    /// (the subscription methods' fields).
    pub fn text(self, name: &str, max: usize) -> Result<Option<&'a str>, FieldError> {
        let Some(s) = self.optional_string(name)? else {
            return Ok(None);
        };
        let problem = if s.is_empty() {
            Problem::Empty
        } else if s.chars().count() > max {
            Problem::TooLong(max)
        } else if s.contains('\0') {
            Problem::Nul
        } else {
            return Ok(Some(s));
        };
        Err(FieldError::new(name, problem))
    }

    /// An optional text of 1 to `max` characters without control characters, with one
    /// complaint for every fault (the connector's fields).
    pub fn printable(self, name: &str, max: usize) -> Result<Option<&'a str>, FieldError> {
        match self.optional_string(name)? {
            Some(s)
                if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) =>
            {
                Err(FieldError::new(name, Problem::NotPrintable(max)))
            }
            s => Ok(s),
        }
    }

    /// A mandatory [`Fields::printable`] text.
    pub fn mandatory_printable(self, name: &str, max: usize) -> Result<&'a str, FieldError> {
        self.printable(name, max)?
            .ok_or_else(|| FieldError::new(name, Problem::Missing))
    }

    /// An optional JSON object, as compact JSON text of at most `max_bytes`.
    pub fn object_text(self, name: &str, max_bytes: usize) -> Result<Option<String>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > max_bytes {
                    return Err(FieldError::new(name, Problem::TooLarge(max_bytes)));
                }
                Ok(Some(text))
            }
            Some(_) => Err(FieldError::new(name, Problem::NotObject)),
        }
    }

    /// An optional amount greater than 0 in `currency`, written as a JSON number.
    pub fn amount(self, name: &str, currency: Currency) -> Result<Option<Money>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match Money::parse(&n.to_string(), currency) {
                Ok(m) if m.is_positive() => Ok(Some(m)),
                Ok(_) => Err(FieldError::new(name, Problem::NotPositive)),
                Err(e) => Err(FieldError::new(name, Problem::NotAmount(e.to_string()))),
            },
            Some(_) => Err(FieldError::new(name, Problem::NotNumber)),
        }
    }

    /// An optional UTC time written `YYYY-MM-DDTHH:MM:SS`.
    pub fn timestamp(self, name: &str) -> Result<Option<Timestamp>, FieldError> {
        self.optional_string(name)?
            .map(|s| Timestamp::parse(s).map_err(|_| FieldError::new(name, Problem::NotTimestamp)))
            .transpose()
    }
}

/// The string `field` of `item` as given, whatever else is wrong with the item (to echo
/// it beside the item's failure); `None` when `item` is no object or the field no string.
pub fn given<'a>(item: &'a Value, field: &str) -> Option<&'a str> {
    item.get(field).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    fn eur() -> Currency {
        Currency::parse("EUR").expect("a currency")
    }

    fn said(e: FieldError) -> String {
        e.to_string()
    }

    #[test]
    fn a_complaint_is_a_sentence_that_starts_with_the_field() {
        let body = object(json!({"a": 1, "n": null, "e": "", "z": "x\u{0}y", "l": "abcd"}));
        let f = Fields(&body);
        assert_eq!(said(f.string("n").expect_err("refused")), "n is mandatory");
        assert_eq!(
            said(f.string("a").expect_err("refused")),
            "a must be a string"
        );
        assert_eq!(
            said(f.text("e", 3).expect_err("refused")),
            "e must not be empty"
        );
        assert_eq!(
            said(f.text("l", 3).expect_err("refused")),
            "l must be at most 3 characters"
        );
        assert_eq!(
            said(f.text("z", 9).expect_err("refused")),
            "z must not contain the NUL character"
        );
        assert_eq!(
            said(f.printable("z", 9).expect_err("refused")),
            "z must be 1 to 9 characters without control characters"
        );
        assert_eq!(
            said(f.object_text("a", 9).expect_err("refused")),
            "a must be a JSON object"
        );
        assert_eq!(
            said(f.amount("l", eur()).expect_err("refused")),
            "l must be a JSON number"
        );
        assert_eq!(
            said(f.timestamp("l").expect_err("refused")),
            "l must be a UTC time written YYYY-MM-DDTHH:MM:SS"
        );
        assert_eq!(f.text("n", 3), Ok(None));
        assert_eq!(f.text("l", 4), Ok(Some("abcd")));
    }

    #[test]
    fn a_request_level_complaint_names_the_field_as_its_description() {
        let body = object(json!({}));
        let e = ApiError::from(Fields(&body).string("username").expect_err("refused"));
        assert_eq!(e.description, "username");
        assert_eq!(e.message, "username is mandatory");
    }
}
