//! What the console's pages and handlers both speak of: the signed-in session and the
//! forms' contents.

use chargegate_core::charge::StatusGroup;
use chargegate_core::console::SessionRecord;
use chargegate_core::token::TokenHash;
use serde::Deserialize;

/// A signed-in request.
pub(crate) struct Signed {
    pub record: SessionRecord,
    pub(crate) hash: TokenHash,
    /// The token every changing form of this session carries.
    pub csrf: String,
}

/// What the sign-in form remembers between attempts (never the password).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub organisation: String,
    #[serde(default)]
    pub csrf: String,
}

/// The charge table's filter, as the query string carries it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChargeFilter {
    /// `all` (or empty), `pending`, `processed`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub customer: String,
    #[serde(default)]
    pub number: String,
    /// 1-based.
    #[serde(default)]
    pub page: Option<u64>,
}

impl ChargeFilter {
    pub(crate) fn group(&self) -> Option<StatusGroup> {
        match self.status.as_str() {
            "pending" => Some(StatusGroup::NotProcessed),
            "processed" => Some(StatusGroup::Processed),
            _ => None,
        }
    }
}
