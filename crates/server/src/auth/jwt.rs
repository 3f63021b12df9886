//! Tokens shaped like CRM.COM's since R12: JWTs signed with HS256, whose claims name the
//! user (`usr`), the operator (`org`, and `oun` for its one business unit), when the token
//! was issued and expires (`iat`, `exp`: Unix seconds written as strings, as in CRM.COM's
//! examples) and a random id (`jti`, 256 bits: the token's unguessable part).
//!
//! A signature only says the token was made by a server of this database. It never lets
//! anyone in by itself: the database must also know the token (it keeps a hash of the
//! whole string) and not have released, expired or otherwise revoked it, exactly as for
//! the opaque tokens issued before. The signature lets a server turn away forged or
//! tampered tokens without a lookup, and lets a rotation retire a secret.
//!
//! Secrets live in the database (`token_secrets`), so every server sharing it signs and
//! checks alike, a restart logs nobody out, and a fresh install needs no configuration:
//! the first login makes the first secret. `chargegate token-secret rotate` adds a new
//! generation; the newest signs, and an older one still vouches for the tokens it signed
//! before it was replaced (which expire within a token lifetime of the rotation).

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chargegate_core::Store;
use chargegate_core::clock::Timestamp;
use chargegate_core::store::{StoreResult, TokenSecret};
use chargegate_core::token::{TOKEN_BYTES, Token};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header of every token, byte for byte as CRM.COM writes it.
pub const HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// How long after a rotation a token signed with the replaced secret is still taken as
/// signed in time: a server that read the secrets just before the rotation may sign with
/// the old one for a moment.
pub const ROTATION_SLACK_SECONDS: i64 = 60;

/// A token's claims. `exp` and `iat` are strings of Unix seconds, as in CRM.COM's
/// examples; clients read `exp` to know when to log in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub usr: String,
    pub org: String,
    pub oun: String,
    pub exp: String,
    pub iat: String,
    pub jti: String,
}

impl Claims {
    /// Claims of a token issued `now` that expires at `expires_at`, with a fresh random
    /// `jti`.
    pub fn new(
        username: &str,
        operator: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Claims {
            usr: username.to_owned(),
            org: operator.to_owned(),
            // chargegate has one business unit per operator: the operator itself.
            oun: operator.to_owned(),
            exp: expires_at.unix().to_string(),
            iat: now.unix().to_string(),
            jti: chargegate_core::token::hex(&bytes),
        })
    }
}

fn mac(secret: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; 32 bytes cannot be refused.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// The token carrying `claims`, signed with `secret`.
pub fn sign(claims: &Claims, secret: &[u8; 32]) -> Token {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut text = URL_SAFE_NO_PAD.encode(HEADER);
    text.push('.');
    text.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mut m = mac(secret);
    m.update(text.as_bytes());
    let signature = m.finalize().into_bytes();
    text.push('.');
    text.push_str(&URL_SAFE_NO_PAD.encode(signature));
    // Three base64url segments: always a well-formed token.
    Token::parse(&text).unwrap_or_else(|| unreachable!())
}

/// The claims of a JWT-shaped token, without checking its signature.
pub fn claims(token: &Token) -> Option<Claims> {
    let mut parts = token.expose().split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    if header != HEADER.as_bytes() {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Whether `secret` signed `token` (compared in constant time).
fn signed_with(token: &Token, secret: &[u8; 32]) -> bool {
    let Some((signed, signature)) = token.expose().rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(signed.as_bytes());
    m.verify_slice(&signature).is_ok()
}

/// Whether one of `secrets` (oldest generation first) vouches for `token`: the newest
/// for any token, an older one only for tokens issued before its successor existed
/// (give or take [`ROTATION_SLACK_SECONDS`]).
pub fn vouched(token: &Token, secrets: &[TokenSecret]) -> bool {
    let Some(issued) = claims(token).and_then(|c| c.iat.parse::<i64>().ok()) else {
        return false;
    };
    secrets.iter().enumerate().any(|(i, s)| {
        let in_force = secrets
            .get(i + 1)
            .is_none_or(|next| issued < next.created_at.unix() + ROTATION_SLACK_SECONDS);
        in_force && signed_with(token, &s.secret)
    })
}

/// 32 random bytes for a new secret.
pub fn new_secret() -> Result<[u8; 32], getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// The secrets as this server last read them from the database.
#[derive(Debug, Default)]
pub struct Secrets {
    known: RwLock<Arc<Vec<TokenSecret>>>,
}

impl Secrets {
    fn cached(&self) -> Arc<Vec<TokenSecret>> {
        self.known
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the secrets again, making the first one if the database has none yet (two
    /// servers doing so at once agree on whichever was stored first).
    async fn reload(
        &self,
        store: &dyn Store,
        now: Timestamp,
    ) -> StoreResult<Arc<Vec<TokenSecret>>> {
        let mut secrets = store.token_secrets().await?;
        if secrets.is_empty() {
            let secret = new_secret().map_err(|e| {
                chargegate_core::StoreError::Internal(format!(
                    "no randomness for a token secret: {e}"
                ))
            })?;
            store
                .add_token_secret(&TokenSecret {
                    generation: 1,
                    secret,
                    created_at: now,
                })
                .await?;
            secrets = store.token_secrets().await?;
            tracing::info!("made the first token-signing secret");
        }
        let secrets = Arc::new(secrets);
        *self
            .known
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = secrets.clone();
        Ok(secrets)
    }

    /// Signs `claims` with the newest secret, read from the database first so that a
    /// rotation made by another server or by the command line takes effect at once.
    pub async fn sign(
        &self,
        store: &dyn Store,
        claims: &Claims,
        now: Timestamp,
    ) -> StoreResult<Token> {
        let secrets = self.reload(store, now).await?;
        let newest = secrets.last().ok_or_else(|| {
            chargegate_core::StoreError::Internal("no token-signing secret".to_owned())
        })?;
        Ok(sign(claims, &newest.secret))
    }

    /// Whether a secret of this database vouches for `token`. The secrets known here are
    /// tried first; when none does, they are read again once (a server that rotated or
    /// made the first secret may have signed it), which costs a forged token one small
    /// read, as a lookup of an unknown token always did.
    pub async fn vouch(
        &self,
        store: &dyn Store,
        token: &Token,
        now: Timestamp,
    ) -> StoreResult<bool> {
        if vouched(token, &self.cached()) {
            return Ok(true);
        }
        if claims(token).is_none() {
            return Ok(false);
        }
        let secrets = self.reload(store, now).await?;
        Ok(vouched(token, &secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs).expect("time")
    }

    fn secret(generation: i64, byte: u8, created: i64) -> TokenSecret {
        TokenSecret {
            generation,
            secret: [byte; 32],
            created_at: at(created),
        }
    }

    #[test]
    fn a_signed_token_reads_back_its_claims_with_string_times() {
        let claims = Claims::new("demo", "pci", at(1_000), at(8_200)).expect("random");
        let token = sign(&claims, &[7; 32]);
        assert_eq!(self::claims(&token).as_ref(), Some(&claims));
        let payload = token.expose().split('.').nth(1).expect("payload");
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        assert_eq!(json["exp"], "8200");
        assert_eq!(json["iat"], "1000");
        assert_eq!(claims.jti.len(), 64);
        assert!(vouched(&token, &[secret(1, 7, 0)]));
        assert!(!vouched(&token, &[secret(1, 8, 0)]));
    }

    #[test]
    fn a_tampered_token_is_not_vouched_for() {
        let claims = Claims::new("demo", "pci", at(1_000), at(8_200)).expect("random");
        let token = sign(&claims, &[7; 32]);
        let mut other = claims;
        other.usr = "admin".into();
        let forged_payload = sign(&other, &[9; 32]);
        let (head, _) = token.expose().rsplit_once('.').expect("dot");
        let (_, forged_sig) = forged_payload.expose().rsplit_once('.').expect("dot");
        let swapped = Token::parse(&format!("{head}.{forged_sig}")).expect("shape");
        assert!(!vouched(&swapped, &[secret(1, 7, 0)]));
    }

    #[test]
    fn a_replaced_secret_vouches_only_for_tokens_issued_before_its_successor() {
        let ring = [secret(1, 1, 0), secret(2, 2, 5_000)];
        let before = sign(
            &Claims::new("u", "o", at(4_000), at(11_200)).expect("random"),
            &[1; 32],
        );
        let racing = sign(
            &Claims::new("u", "o", at(5_030), at(12_230)).expect("random"),
            &[1; 32],
        );
        let after = sign(
            &Claims::new("u", "o", at(5_100), at(12_300)).expect("random"),
            &[1; 32],
        );
        let new = sign(
            &Claims::new("u", "o", at(5_100), at(12_300)).expect("random"),
            &[2; 32],
        );
        assert!(vouched(&before, &ring));
        assert!(vouched(&racing, &ring));
        assert!(!vouched(&after, &ring));
        assert!(vouched(&new, &ring));
    }
}
