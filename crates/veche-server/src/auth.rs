//! Secrets: Argon2id hashes for passwords and meeting passcodes, random session tokens of
//! which only a SHA-256 digest is stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Argon2 working memory for one computation (19 MiB with the default parameters).
type Memory = Vec<Block>;

fn new_memory() -> Memory {
    vec![Block::default(); Params::DEFAULT.block_count()]
}

/// Hashes a password or passcode with Argon2id (the crate's default parameters: 19 MiB,
/// 2 passes) and a fresh 16-byte salt, in PHC string form.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    hash_with(secret, &mut new_memory())
}

/// Checks `secret` against a PHC hash; a malformed hash verifies nothing.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    verify_with(secret, hash, &mut new_memory())
}

/// [`hash_secret`] in the given working memory.
fn hash_with(secret: &str, memory: &mut Memory) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let params = Params::DEFAULT;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(secret.as_bytes(), &salt_bytes(&salt)?, &mut out, memory)
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

fn salt_bytes(salt: &SaltString) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 64];
    salt.as_salt()
        .decode_b64(&mut buf)
        .map(<[u8]>::to_vec)
        .map_err(|e| e.to_string())
}

/// [`verify_secret`] in the given working memory (a hash made with more memory than it
/// has gets its own, once).
fn verify_with(secret: &str, hash: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    let done = if params.block_count() <= memory.len() {
        argon.hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, memory)
    } else {
        argon.hash_password_into(secret.as_bytes(), salt, &mut out)
    };
    done.is_ok() && constant_time_eq(&out, expected.as_bytes())
}

/// Password hashing with a bounded number of Argon2 computations at once.
///
/// Each computation needs 19 MiB of Argon2 memory for tens of milliseconds, so without a
/// bound a burst of unauthenticated logins turns into gigabytes of RSS (the only other
/// ceiling being Tokio's 512 blocking threads). A request waits at most `max_wait` for one
/// of `concurrency` permits and then fails with [`HashError::Busy`], which the API answers
/// with 503 and `Retry-After`. The permit travels into the blocking task, so a client that
/// disconnects mid-verification does not free its slot before the memory.
///
/// The working memory is a pool of at most `concurrency` buffers, allocated on first use
/// and reused, never freed: left to the allocator, each freed 19 MiB block stays cached in
/// the arena of whichever thread ran it, and a flood touching many threads kept hundreds
/// of MiB resident. So the memory is `concurrency` × 19 MiB, whatever the load.
///
/// Cheap to clone: the permits and counters are shared.
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

#[derive(Debug)]
struct HasherInner {
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Argon2 working memory, one buffer per computation running (see above).
    memory: Arc<Mutex<Vec<Memory>>>,
    max_wait: Duration,
    /// Verified when there is no hash to check (unknown account), at the same cost.
    dummy_hash: String,
    verifications: AtomicU64,
    busy: AtomicU64,
}

/// Why a hash or verification did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Every permit stayed taken for the whole wait.
    #[error("all {concurrency} password-hashing slots stayed busy for {waited_ms} ms")]
    Busy { concurrency: usize, waited_ms: u128 },
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Default wait for a hashing permit before answering 503.
pub const DEFAULT_HASH_WAIT: Duration = Duration::from_secs(2);

/// One Argon2 computation per CPU the process may run on: more would only queue inside the
/// kernel while each holds its memory.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Hasher {
    /// A hasher allowing `concurrency` (at least 1) computations at once, each request
    /// waiting at most `max_wait` for its turn. Computes the dummy hash once, here.
    pub fn new(concurrency: usize, max_wait: Duration) -> Result<Hasher, HashError> {
        let dummy_hash = hash_secret("veche-dummy-password").map_err(HashError::Failed)?;
        Ok(Hasher {
            inner: Arc::new(HasherInner {
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                concurrency: concurrency.max(1),
                memory: Arc::new(Mutex::new(Vec::new())),
                max_wait,
                dummy_hash,
                verifications: AtomicU64::new(0),
                busy: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        let acquire = Arc::clone(&inner.permits).acquire_owned();
        let permit = match tokio::time::timeout(inner.max_wait, acquire).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => {
                inner.busy.fetch_add(1, Ordering::Relaxed);
                return Err(HashError::Busy {
                    concurrency: inner.concurrency,
                    waited_ms: inner.max_wait.as_millis(),
                });
            }
        };
        let pool = Arc::clone(&inner.memory);
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means a computation panicked; the buffers are fine.
            let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut memory = taken.unwrap_or_else(new_memory);
            let out = f(&mut memory);
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// [`hash_secret`] under the bound.
    pub async fn hash(&self, secret: &str) -> Result<String, HashError> {
        let secret = secret.to_owned();
        self.run(move |memory| hash_with(&secret, memory))
            .await?
            .map_err(HashError::Failed)
    }

    /// [`verify_secret`] under the bound; counted in [`Hasher::verifications`].
    pub async fn verify(&self, secret: &str, hash: &str) -> Result<bool, HashError> {
        let (secret, hash) = (secret.to_owned(), hash.to_owned());
        let ok = self
            .run(move |memory| verify_with(&secret, &hash, memory))
            .await?;
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(ok)
    }

    /// Spends the time and memory of one verification when there is no hash to check
    /// (unknown account, malformed email), so neither timing nor load tells which emails
    /// have accounts. Counted like a verification.
    pub async fn verify_dummy(&self, secret: &str) -> Result<(), HashError> {
        let dummy = self.inner.dummy_hash.clone();
        self.verify(secret, &dummy).await.map(|_| ())
    }

    /// Verifications done (real and dummy) since start.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    /// Requests refused because no permit came free in time.
    pub fn busy_refusals(&self) -> u64 {
        self.inner.busy.load(Ordering::Relaxed)
    }
}

/// A 256-bit random token, URL-safe base64 (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session token: a leaked table cannot be replayed.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// Constant-time comparison for CSRF tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_secret() {
        let h = hash_secret("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse", &h));
        assert!(!verify_secret("correct horsf", &h));
        assert!(!verify_secret("correct horse", "not a hash"));
        // Salted: the same secret hashes differently each time.
        assert_ne!(h, hash_secret("correct horse").unwrap());
    }

    #[test]
    fn hashes_match_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the crate's verifier, and the crate's hashes (existing
        // databases) verify with ours.
        let ours = hash_secret("s3cret").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok()
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret("s3cret", &theirs));
        assert!(!verify_secret("s3creT", &theirs));
        // A hash with more memory than the pool's buffers still verifies.
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"s3cret", &salt)
        .unwrap()
        .to_string();
        assert!(verify_with("s3cret", &big, &mut new_memory()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_beyond_the_bound_waits_then_is_refused() {
        let hasher = Hasher::new(1, Duration::from_millis(1)).unwrap();
        let h = hash_secret("secret").unwrap();
        // Many at once: with one permit and no time to wait, most are refused, every
        // admitted one is counted, and the refusals are counted too.
        let tries = (0..8).map(|_| {
            let (hasher, h) = (hasher.clone(), h.clone());
            tokio::spawn(async move { hasher.verify("secret", &h).await })
        });
        let results: Vec<_> = futures_join(tries).await;
        let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy { .. })))
            .count();
        assert!(ok >= 1 && busy >= 1, "ok {ok} busy {busy}");
        assert_eq!(ok + busy, 8);
        assert_eq!(hasher.verifications(), ok as u64);
        assert_eq!(hasher.busy_refusals(), busy as u64);
        // A patient caller always gets its turn.
        let patient = Hasher::new(1, Duration::from_secs(30)).unwrap();
        assert!(patient.verify("secret", &h).await.unwrap());
        patient.verify_dummy("secret").await.unwrap();
        assert_eq!(patient.verifications(), 2);
    }

    async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for t in tasks.collect::<Vec<_>>() {
            out.push(t.await.unwrap());
        }
        out
    }

    #[test]
    fn tokens_are_long_random_and_digested() {
        let a = new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_token());
        assert_ne!(token_digest(&a), a);
        assert_eq!(token_digest(&a), token_digest(&a));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
