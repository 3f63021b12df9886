//! Web API keys: machine credentials that log in as their user (CRM.COM binds keys to
//! users). A key is shown once, when it is made; the server keeps only its SHA-256 and
//! its prefix, the first [`PREFIX_CHARS`] characters, by which people tell keys apart.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::text::{OperatorCode, Username};

/// Random bytes in a key: 256 bits, well above the contract's 128.
pub const KEY_BYTES: usize = 32;

/// What every key chargegate makes starts with, so a leaked one is recognisable.
pub const KEY_MARK: &str = "cgk_";

/// Characters of a key shown as its prefix.
pub const PREFIX_CHARS: usize = 8;

/// Longest key accepted at login: longer ones cannot be ours (nor a CRM.COM key).
pub const MAX_KEY_CHARS: usize = 256;

/// A key as handed to its owner. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new key: [`KEY_MARK`] and the bytes in lower-case hex.
    pub fn from_random_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self::marked(KEY_MARK, bytes)
    }

    /// A new key starting with `mark` (connector keys carry their own, `cgc_`).
    pub fn marked(mark: &str, bytes: [u8; KEY_BYTES]) -> Self {
        let mut s = String::with_capacity(mark.len() + KEY_BYTES * 2);
        s.push_str(mark);
        s.push_str(&crate::token::hex(&bytes));
        ApiKey(s)
    }

    /// A key as a client presents it. Anything printable up to [`MAX_KEY_CHARS`] may be
    /// a key (keys carried over from CRM.COM have their own shape); the rest cannot be
    /// and is refused without touching the database.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_KEY_CHARS
            && !s.chars().any(|c| c.is_control() || c.is_whitespace());
        ok.then(|| ApiKey(s.to_owned()))
    }

    /// A key carried over from elsewhere (CRM.COM's keys are 32 hexadecimal characters),
    /// accepted only when it is not obviously guessable; see [`WeakKey`] for the rules.
    pub fn import(s: &str) -> Result<Self, WeakKey> {
        let chars: Vec<char> = s.chars().collect();
        if chars.is_empty() {
            return Err(WeakKey::Empty);
        }
        if chars.len() > MAX_KEY_CHARS {
            return Err(WeakKey::TooLong);
        }
        if chars.iter().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(WeakKey::Spaces);
        }
        if chars.len() < MIN_IMPORTED_KEY_CHARS {
            return Err(WeakKey::TooShort(chars.len()));
        }
        let mut distinct = chars.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < MIN_DISTINCT_CHARS {
            return Err(WeakKey::FewCharacters(distinct.len()));
        }
        if let Some(period) =
            (1..=chars.len() / 2).find(|&p| chars.iter().skip(p).zip(&chars).all(|(a, b)| a == b))
        {
            return Err(WeakKey::Repeats(period));
        }
        // Steps between neighbours that go one up or one down `0-9a-z` (any case).
        let rank = |c: &char| "0123456789abcdefghijklmnopqrstuvwxyz".find(c.to_ascii_lowercase());
        let steps = chars
            .windows(2)
            .filter(|w| match (rank(&w[0]), rank(&w[1])) {
                (Some(a), Some(b)) => a.abs_diff(b) == 1,
                _ => false,
            })
            .count();
        if steps * 2 >= chars.len() - 1 {
            return Err(WeakKey::Run);
        }
        Ok(ApiKey(s.to_owned()))
    }

    /// The only form the database keeps. A key carries 256 random bits, so a plain
    /// SHA-256 is enough: no preimage can be guessed.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The first [`PREFIX_CHARS`] characters, safe to show.
    pub fn prefix(&self) -> String {
        self.0.chars().take(PREFIX_CHARS).collect()
    }

    /// The secret itself, for the one moment it is shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Fewest characters of an imported key.
pub const MIN_IMPORTED_KEY_CHARS: usize = 16;

/// Fewest different characters in an imported key.
pub const MIN_DISTINCT_CHARS: usize = 6;

/// Why a key offered for import is refused. A key is weak when it has fewer than
/// [`MIN_IMPORTED_KEY_CHARS`] characters, fewer than [`MIN_DISTINCT_CHARS`] different
/// characters (`aaaa…`, `0101…`, a tiny alphabet), repeats a block (`abc1abc1…`), or
/// mostly counts up or down (`0123456789abcdef`, `fedcba98…`: half or more of its
/// neighbouring pairs are one apart in `0-9a-z`). A random 16-character hexadecimal key
/// passes all but about two times in 10 000; a random 32-character one practically always.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakKey {
    #[error("the key is empty")]
    Empty,
    #[error("the key is longer than {MAX_KEY_CHARS} characters")]
    TooLong,
    #[error("the key contains a space or a control character")]
    Spaces,
    #[error("the key is too weak: it has {0} characters, fewer than {MIN_IMPORTED_KEY_CHARS}")]
    TooShort(usize),
    #[error(
        "the key is too weak: it uses only {0} different characters (at least {MIN_DISTINCT_CHARS} are needed)"
    )]
    FewCharacters(usize),
    #[error("the key is too weak: it repeats a block of {0} characters")]
    Repeats(usize),
    #[error("the key is too weak: it mostly counts up or down (like 0123456789abcdef)")]
    Run,
}

/// SHA-256 of a key: what the `api_keys` table keys on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub operator_id: i64,
    pub user_id: i64,
    pub prefix: String,
    pub hash: KeyHash,
    pub name: Option<String>,
    pub created_at: Timestamp,
}

/// A stored key as `key list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub operator: OperatorCode,
    pub username: Username,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What a key login needs to know of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLogin {
    pub key_id: i64,
    pub user_id: i64,
    pub operator_id: i64,
    /// The user's name and operator's code, which the token names (`usr`, `org`).
    pub username: String,
    pub operator_code: String,
    pub revoked: bool,
    pub user_enabled: bool,
}

/// The outcome of `key revoke PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now, with this many tokens issued from it.
    Revoked {
        tokens: u64,
    },
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    NotFound,
    /// More than one key has this prefix; nothing changed.
    Ambiguous(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_are_marked_long_and_show_only_their_prefix() {
        let key = ApiKey::from_random_bytes([0xab; KEY_BYTES]);
        assert!(key.expose().starts_with(KEY_MARK));
        assert_eq!(key.expose().len(), KEY_MARK.len() + 64);
        assert_eq!(key.prefix(), "cgk_abab");
        assert!(!format!("{key:?}").contains(key.expose()));
        assert!(!format!("{:?}", key.hash()).contains(key.expose()));
    }

    #[test]
    fn a_presented_key_hashes_like_the_issued_one() {
        let key = ApiKey::from_random_bytes([7; KEY_BYTES]);
        let presented = ApiKey::parse(key.expose()).expect("well formed");
        assert_eq!(presented.hash(), key.hash());
    }

    #[test]
    fn an_imported_key_must_not_be_obviously_guessable() {
        for good in [
            "3f9a0c5e7d1b2a4c6e8f0a1b3c5d7e9f",
            "9f3c1a7e5b2d8f40",
            "Kx7-pQ2_mZ9vT4wR",
        ] {
            assert!(ApiKey::import(good).is_ok(), "{good}");
        }
        let cases = [
            ("", WeakKey::Empty),
            ("3f9a0c5e7d1b2a4", WeakKey::TooShort(15)),
            ("3f9a0c5e 7d1b2a4c6e8f", WeakKey::Spaces),
            (&"a".repeat(32), WeakKey::FewCharacters(1)),
            ("0101010101010101", WeakKey::FewCharacters(2)),
            ("aabbccddaabbccdd", WeakKey::FewCharacters(4)),
            ("abc123abc123abc123", WeakKey::Repeats(6)),
            ("0123456789abcdef", WeakKey::Run),
            ("FEDCBA9876543210", WeakKey::Run),
            ("abcdefghijklmnopqrstuvwxyz", WeakKey::Run),
        ];
        for (key, why) in cases {
            assert_eq!(ApiKey::import(key), Err(why), "{key}");
        }
        assert_eq!(
            ApiKey::import(&"k1".repeat(MAX_KEY_CHARS)),
            Err(WeakKey::TooLong)
        );
        let imported = ApiKey::import("3f9a0c5e7d1b2a4c6e8f0a1b3c5d7e9f").expect("strong");
        assert_eq!(imported.prefix(), "3f9a0c5e");
        assert_eq!(
            imported.hash(),
            ApiKey::parse("3f9a0c5e7d1b2a4c6e8f0a1b3c5d7e9f")
                .expect("key")
                .hash()
        );
    }

    #[test]
    fn empty_spaced_or_huge_keys_are_refused() {
        assert!(ApiKey::parse("").is_none());
        assert!(ApiKey::parse("a b").is_none());
        assert!(ApiKey::parse("a\u{0}b").is_none());
        assert!(ApiKey::parse(&"k".repeat(MAX_KEY_CHARS + 1)).is_none());
        assert!(ApiKey::parse("0123456789abcdef0123456789abcdef").is_some());
    }
}
