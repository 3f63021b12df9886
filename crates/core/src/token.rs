//! Session tokens: opaque random strings of which the server keeps only a hash.

use std::fmt;

use sha2::{Digest, Sha256};

/// Random bytes in a token: 256 bits, well above the contract's 128.
pub const TOKEN_BYTES: usize = 32;

/// A token as issued to a client: `TOKEN_BYTES` random bytes in lower-case hex.
///
/// `Debug` is redacted so a token cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn from_random_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        Token(hex(&bytes))
    }

    /// Accepts a string of the issued shape; anything else cannot be a token of ours and
    /// is refused without touching the database.
    pub fn parse(s: &str) -> Option<Self> {
        let well_formed =
            s.len() == TOKEN_BYTES * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        well_formed.then(|| Token(s.to_owned()))
    }

    /// The only form the database sees. The token carries 256 bits of entropy, so a plain
    /// SHA-256 is enough: nobody can guess a preimage, and a stolen database yields no
    /// usable token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The secret itself, for the one response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: what the `tokens` table keys on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate in a debugger and reveals nothing useful.
        write!(f, "TokenHash({}…)", &hex(&self.0)[..8])
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_back_and_hash_stably() {
        let t = Token::from_random_bytes([0xab; TOKEN_BYTES]);
        assert_eq!(t.expose().len(), 64);
        let parsed = Token::parse(t.expose()).expect("well formed");
        assert_eq!(parsed.hash(), t.hash());
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse(&"A".repeat(64)).is_none());
        assert!(Token::parse(&"a".repeat(63)).is_none());
        assert!(Token::parse("{{token}}").is_none());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let t = Token::from_random_bytes([7; TOKEN_BYTES]);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(!format!("{:?}", t.hash()).contains(t.expose()));
    }
}
