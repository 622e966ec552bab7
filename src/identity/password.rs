//! Passwords: the strength rule, Argon2id hashing off the async threads, one-time passwords.
//!
//! Hashing is deliberately expensive (OWASP's Argon2id parameters: 19 MiB, two passes, one
//! lane), so it never runs on a runtime worker and never runs more often at once than there
//! are cores: a [`Hasher`] holds a semaphore, and a flood of sign-ins queues on it (holding
//! no memory but its place in the queue) while other requests go on being served.

use super::email::Email;
use crate::keyring::SecretString;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password accepted: long enough for any passphrase, short enough that nobody can
/// make the server hash megabytes.
pub const MAX_CHARS: usize = 1024;

/// The 30,000 most common passwords of the Xato corpus, as shipped in Dropbox's zxcvbn
/// (`frequency_lists.js`, MIT licence); see the README.
static COMMON_TEXT: &str = include_str!("common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_TEXT.lines().filter(|l| !l.is_empty()).collect());

/// How many entries the embedded list has.
pub fn common_count() -> usize {
    COMMON.len()
}

/// A password as typed. Prints `[redacted]`; wiped when dropped.
pub struct Password(SecretString);

impl Password {
    pub fn new(s: String) -> Self {
        Self(SecretString::new(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a new password was refused, said so the person can choose a better one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weak {
    #[error("the password must be at least {MIN_CHARS} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_CHARS} characters long")]
    TooLong,
    #[error("the password is one of the most common passwords; choose another (a few unrelated words work well)")]
    Common,
    #[error("the password is a common password with digits or symbols added; choose another (a few unrelated words work well)")]
    CommonWithAffix,
    #[error("the password uses too few different characters")]
    Repetitive,
    #[error("the password contains your e-mail address")]
    ContainsEmail,
}

/// Checks a new password against the rule: length, the common list (also with digits or
/// symbols stuck on either end), variety, and the account's own address.
///
/// # Errors
/// The first rule it breaks.
pub fn check_strength(pw: &Password, email: Option<&Email>) -> Result<(), Weak> {
    let s = pw.expose();
    let n = s.chars().count();
    if n < MIN_CHARS {
        return Err(Weak::TooShort);
    }
    if n > MAX_CHARS {
        return Err(Weak::TooLong);
    }
    let lower = s.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err(Weak::Common);
    }
    let core = lower.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if core.chars().count() >= 4 && COMMON.contains(core) {
        return Err(Weak::CommonWithAffix);
    }
    let distinct: HashSet<char> = lower.chars().collect();
    if distinct.len() < 5 {
        return Err(Weak::Repetitive);
    }
    if let Some(email) = email {
        let local = email.as_str().split('@').next().unwrap_or_default();
        if local.chars().count() >= 4 && lower.contains(local) {
            return Err(Weak::ContainsEmail);
        }
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a hash could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashFailed(pub String);

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a password. Blocking and
/// slow: call it from a blocking thread or through a [`Hasher`].
///
/// # Errors
/// The random source failed.
pub fn hash_blocking(pw: &Password) -> Result<String, HashFailed> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| HashFailed("no randomness".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashFailed(e.to_string()))?;
    argon2()
        .hash_password(pw.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashFailed(e.to_string()))
}

/// A hash of a password nobody has, verified against when an account does not exist or has
/// no password, so that "no such account" takes as long as "wrong password".
static DUMMY: LazyLock<Option<String>> =
    LazyLock::new(|| hash_blocking(&Password::new("strongroom dummy password".into())).ok());

/// Whether `pw` matches `phc`. With no stored hash, spends the same time and says no. A
/// malformed stored hash says no (and the caller logs it). Blocking and slow.
pub fn verify_blocking(pw: &Password, phc: Option<&str>) -> bool {
    let (phc, real) = match phc {
        Some(p) => (p, true),
        None => match DUMMY.as_deref() {
            Some(d) => (d, false),
            None => return false,
        },
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // Checked in full either way, then the answer for a missing account is forced to no.
    let ok = argon2()
        .verify_password(pw.expose().as_bytes(), &parsed)
        .is_ok();
    ok && real
}

/// Runs hashing on blocking threads, at most as many at once as there are cores, with a
/// bounded queue: past [`QUEUE_PER_PERMIT`] waiters per permit, a sign-in is answered "busy"
/// at once instead of waiting behind a flood it cannot get through in time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<tokio::sync::Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    max_waiting: usize,
}

/// Sign-ins that may wait for each hashing permit.
pub const QUEUE_PER_PERMIT: usize = 32;

/// Decrements the queue count when a waiter leaves it, however it leaves.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Default for Hasher {
    /// One hash at a time per core, less one core kept for everything else: a flood of
    /// sign-ins then slows only sign-ins.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_permits(cores.saturating_sub(1).max(1))
    }
}

impl Hasher {
    pub fn with_permits(n: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(n.max(1))),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max_waiting: n.max(1) * QUEUE_PER_PERMIT,
        }
    }

    /// [`verify_blocking`] if the queue has room: `None` means busy, nothing was checked.
    pub async fn verify_bounded(&self, pw: Password, phc: Option<String>) -> Option<bool> {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let queued = Waiting(&self.waiting);
        let permit = self.permits.acquire().await.ok()?;
        drop(queued);
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&pw, phc.as_deref()))
            .await
            .unwrap_or(false);
        drop(permit);
        Some(ok)
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _permit = self.permits.acquire().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }

    /// [`verify_blocking`], queued behind the semaphore.
    pub async fn verify(&self, pw: Password, phc: Option<String>) -> bool {
        self.run(move || verify_blocking(&pw, phc.as_deref()))
            .await
            .unwrap_or(false)
    }

    /// [`hash_blocking`], queued behind the semaphore.
    ///
    /// # Errors
    /// As [`hash_blocking`].
    pub async fn hash(&self, pw: Password) -> Result<String, HashFailed> {
        self.run(move || hash_blocking(&pw))
            .await
            .unwrap_or_else(|| Err(HashFailed("hashing task stopped".into())))
    }
}

/// A one-time password to hand to a new account: 20 characters from an alphabet without
/// look-alikes (about 100 bits), in groups of four for reading aloud.
///
/// # Errors
/// The random source failed.
pub fn one_time() -> Result<Password, HashFailed> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut out = String::with_capacity(24);
    let mut drawn = 0;
    while drawn < 20 {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| HashFailed("no randomness".into()))?;
        // Rejection sampling keeps every character equally likely.
        for x in b {
            let limit = (256 / ALPHABET.len()) * ALPHABET.len();
            if usize::from(x) >= limit || drawn == 20 {
                continue;
            }
            if drawn > 0 && drawn % 4 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(x) % ALPHABET.len()]));
            drawn += 1;
        }
    }
    Ok(Password::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_hashing_queue_answers_busy_at_once() {
        use std::sync::atomic::Ordering;
        let h = Hasher::with_permits(1);
        let held = h.permits.clone().acquire_owned().await.unwrap();
        let waiters: Vec<_> = (0..QUEUE_PER_PERMIT)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify_bounded(pw("x"), None).await })
            })
            .collect();
        while h.waiting.load(Ordering::Acquire) < QUEUE_PER_PERMIT {
            tokio::task::yield_now().await;
        }
        // One more finds the queue full: no hash, no wait.
        assert_eq!(h.verify_bounded(pw("x"), None).await, None);
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
        // Waiters that gave up left the queue; the next sign-in gets through.
        assert_eq!(h.waiting.load(Ordering::Acquire), 0);
        drop(held);
        assert_eq!(h.verify_bounded(pw("x"), None).await, Some(false));
    }

    #[test]
    fn the_embedded_list_is_the_full_public_list() {
        assert!(common_count() >= 10_000, "{}", common_count());
        assert!(COMMON.contains("password"));
        assert!(COMMON.contains("123456"));
    }

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        let email = Email::parse("margaret@example.com").unwrap();
        for (p, why) in [
            ("short", Weak::TooShort),
            ("elevenchars", Weak::TooShort),
            ("qazwsxedcrfv", Weak::Common),
            ("LeaveMeAlone", Weak::Common),
            ("1q2w3e4r5t6y", Weak::Common),
            ("Password1234!!", Weak::CommonWithAffix),
            ("!!!sunshine2024", Weak::CommonWithAffix),
            ("aaaaaaaaaaaaaaaa", Weak::Repetitive),
            ("abababababababab", Weak::Repetitive),
            ("my-margaret-rules-9", Weak::ContainsEmail),
        ] {
            assert_eq!(check_strength(&pw(p), Some(&email)), Err(why), "{p}");
        }
        assert_eq!(
            check_strength(&pw(&"x1y2z3".repeat(200)), None),
            Err(Weak::TooLong)
        );
        // Characters, not bytes: twelve accented letters pass the length rule.
        check_strength(&pw("éàüöçñßøåæœí"), None).unwrap();
        check_strength(&pw("correct horse battery staple"), Some(&email)).unwrap();
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_blocking(&pw("correct horse battery staple")).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking(
            &pw("correct horse battery staple"),
            Some(&h)
        ));
        assert!(!verify_blocking(
            &pw("correct horse battery stapl"),
            Some(&h)
        ));
        // Same password, new salt, different hash.
        assert_ne!(
            h,
            hash_blocking(&pw("correct horse battery staple")).unwrap()
        );
        // No account, or a damaged stored hash: no.
        assert!(!verify_blocking(&pw("strongroom dummy password"), None));
        assert!(!verify_blocking(&pw("x"), Some("not a hash")));
    }

    #[test]
    fn one_time_passwords_are_strong_and_distinct() {
        let a = one_time().unwrap();
        let b = one_time().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 24);
        assert_eq!(a.expose().matches('-').count(), 4);
        check_strength(&a, None).unwrap();
        assert_eq!(format!("{a:?}"), "[redacted]");
    }
}
