//! Argon2id password hashing, kept off the async executor and bounded in parallelism.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// Verifies login passwords. Each Argon2 check takes ~20 MiB and tens of milliseconds of
/// one core, so checks run on the blocking pool, at most `parallelism` at a time: a login
/// flood queues instead of exhausting memory or starving request handling.
pub struct Passwords {
    /// A hash of a random password, checked against when the user does not exist so that
    /// unknown and known users take the same time to refuse.
    dummy_hash: String,
    permits: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes a password into an Argon2id PHC string (default parameters: m=19 MiB, t=2, p=1).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash is not a valid PHC string");
            false
        }
    }
}

impl Passwords {
    pub fn new(parallelism: usize) -> Result<Self, PasswordError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| PasswordError::Random(e.to_string()))?;
        let dummy: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Passwords {
            dummy_hash: hash(&dummy)?,
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
        })
    }

    /// Whether `password` matches `hash`; with no hash (no such user) a dummy check runs
    /// and the answer is `false`.
    pub async fn verify(&self, hash: Option<String>, password: String) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&hash, &password))
            .await
            .unwrap_or(false);
        known && ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = hash("demo").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        let p = Passwords::new(2).expect("passwords");
        assert!(p.verify(Some(h.clone()), "demo".into()).await);
        assert!(!p.verify(Some(h), "Demo".into()).await);
        assert!(!p.verify(None, "demo".into()).await);
        assert!(!p.verify(Some("not a hash".into()), "demo".into()).await);
    }
}
