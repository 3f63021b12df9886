//! Session tokens. Since R12 CRM.COM's tokens are JWTs, and clients read their `exp`, so
//! chargegate's are JWT-shaped too (the server signs them, see the server's `jwt`
//! module). The server still keeps only a hash of each token, and a token is good only
//! while the database knows it: a signature alone never lets anyone in.

use std::fmt;

use sha2::{Digest, Sha256};

/// Random bytes behind a token: 256 bits, well above the contract's 128. A JWT carries
/// them as its `jti`; a token of the opaque shape issued before JWTs was made of them.
pub const TOKEN_BYTES: usize = 32;

/// Longest token accepted: a JWT of the longest user name and operator code fits in well
/// under half of it.
pub const MAX_TOKEN_CHARS: usize = 2048;

/// A token as issued to a client, or as a client presents it.
///
/// `Debug` is redacted so a token cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token of the opaque shape issued before tokens were JWTs: `TOKEN_BYTES` random
    /// bytes in lower-case hex.
    pub fn from_random_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        Token(hex(&bytes))
    }

    /// Accepts a string of an issued shape: a JWT (three non-empty base64url segments
    /// joined by dots) or an opaque token of the earlier shape (64 lower-case hex
    /// digits). Anything else cannot be a token of ours and is refused without touching
    /// the database.
    pub fn parse(s: &str) -> Option<Self> {
        let opaque =
            s.len() == TOKEN_BYTES * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let jwt = s.len() <= MAX_TOKEN_CHARS && {
            let mut segments = 0;
            let all_base64url = s.split('.').all(|part| {
                segments += 1;
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            });
            all_base64url && segments == 3
        };
        (opaque || jwt).then(|| Token(s.to_owned()))
    }

    /// Whether this is a token of the opaque shape issued before JWTs (it carries no
    /// signature; the database alone vouches for it).
    pub fn is_opaque(&self) -> bool {
        !self.0.contains('.')
    }

    /// The only form the database sees: SHA-256 of the whole token as issued, signature
    /// included. The token carries 256 random bits, so a plain SHA-256 is enough: nobody
    /// can guess a preimage, and a stolen database yields no usable token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// A value tied to this token for one `purpose` (e.g. the console's CSRF token):
    /// anyone holding the token can compute it, nobody else can, and it reveals nothing
    /// of the token or of its stored hash.
    pub fn derive(&self, purpose: &str) -> String {
        let mut digest = Sha256::new();
        digest.update(purpose.as_bytes());
        digest.update([0u8]);
        digest.update(self.0.as_bytes());
        hex(&digest.finalize())
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

/// Lower-case hexadecimal digits of `bytes`, two per byte.
pub fn hex(bytes: &[u8]) -> String {
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
        assert!(Token::parse("a.b").is_none());
        assert!(Token::parse("a..c").is_none());
        assert!(Token::parse("a.b.c.d").is_none());
        assert!(Token::parse("a.b+.c").is_none());
        assert!(Token::parse("a.b.c=").is_none());
        let long = format!("a.{}.c", "b".repeat(MAX_TOKEN_CHARS));
        assert!(Token::parse(&long).is_none());
    }

    #[test]
    fn jwt_shaped_and_opaque_tokens_parse() {
        let jwt =
            Token::parse("eyJ0eXAiOiJKV1QifQ.eyJ1c3IiOiJkZW1vIn0.c2lnbmF0dXJl_-").expect("jwt");
        assert!(!jwt.is_opaque());
        let opaque = Token::from_random_bytes([1; TOKEN_BYTES]);
        assert!(Token::parse(opaque.expose()).expect("opaque").is_opaque());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let t = Token::from_random_bytes([7; TOKEN_BYTES]);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(!format!("{:?}", t.hash()).contains(t.expose()));
    }
}
