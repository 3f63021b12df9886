//! Argon2id password hashing, kept off the async executor, bounded in parallelism and in
//! memory.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// Verifies login passwords.
///
/// Each Argon2 check needs its memory cost in working memory (19 MiB with the default
/// parameters) and tens of milliseconds of one core. At most `parallelism` checks run at
/// once, on the blocking pool; a login flood queues instead of exhausting memory or
/// starving request handling. Each running check borrows one of at most `parallelism`
/// working buffers, allocated once and reused: allocating 19 MiB per check from many
/// threads made the allocator keep the memory (a burst of failed logins grew the process
/// by hundreds of MiB that were never returned).
pub struct Passwords {
    /// A hash of a random password, checked against when the user does not exist so that
    /// unknown and known users take the same time to refuse.
    dummy_hash: String,
    permits: Arc<Semaphore>,
    /// Working memory of finished checks, for the next ones. Never more buffers than
    /// permits, since a check takes one only while holding a permit.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
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

/// Whether `password` matches the PHC string `hash`, computing in `memory` (grown when
/// the hash's memory cost needs more, and kept so for the next check).
fn verify_in(hash: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    match compute(hash, password, memory) {
        Ok((computed, expected)) => computed == expected,
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash cannot be checked");
            false
        }
    }
}

/// Argon2 of `password` with the algorithm, version, parameters and salt of `hash`, and
/// the output stored in `hash`. `Output`'s equality is constant-time.
fn compute(
    hash: &str,
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<(Output, Output), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err("the hash has no salt or no output".into());
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .map_err(|e| e.to_string())?;
    let computed = Output::new(&out).map_err(|e| e.to_string())?;
    Ok((computed, expected))
}

impl Passwords {
    pub fn new(parallelism: usize) -> Result<Self, PasswordError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| PasswordError::Random(e.to_string()))?;
        let dummy: String = chargegate_core::token::hex(&random);
        Ok(Passwords {
            dummy_hash: hash(&dummy)?,
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
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
        let buffers = self.buffers.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let mut memory = buffers
                .lock()
                .map(|mut free| free.pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            let ok = verify_in(&hash, &password, &mut memory);
            if let Ok(mut free) = buffers.lock() {
                free.push(memory);
            }
            ok
        })
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

    #[tokio::test]
    async fn hashes_with_other_parameters_verify_too() {
        let params = Params::new(8 * 1024, 1, 1, None).expect("params");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let h = Argon2::new(algorithm, Version::V0x10, params.clone())
                .hash_password(b"pw", &salt)
                .expect("hash")
                .to_string();
            let p = Passwords::new(1).expect("passwords");
            assert!(p.verify(Some(h.clone()), "pw".into()).await, "{h}");
            assert!(!p.verify(Some(h), "px".into()).await);
        }
    }

    #[tokio::test]
    async fn checks_reuse_at_most_one_buffer_per_permit() {
        let p = Arc::new(Passwords::new(2).expect("passwords"));
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let p = p.clone();
            checks.spawn(async move { p.verify(None, "x".into()).await });
        }
        while let Some(ok) = checks.join_next().await {
            assert!(!ok.expect("check"));
        }
        let buffers = p.buffers.lock().expect("lock").len();
        assert!((1..=2).contains(&buffers), "{buffers} buffers");
    }
}
