//! Root password checks for `session.login_with_password`, with failed-login
//! rate limiting and a cache of the last successful verification.
//!
//! PBKDF2 at 100 000 iterations takes seconds on the image's soft-float
//! SHA-256 under emulation. After one successful verification the
//! appliance remembers a keyed SHA-256 of the password (the key is random
//! per boot), so later logins with the same password cost one hash. A
//! wrong password always goes through PBKDF2, after the rate limit.

use core::time::Duration;

use sha2::{Digest, Sha256};

/// Consecutive failures allowed before logins are refused for a while.
pub const FREE_FAILURES: u32 = 3;
/// Longest lockout after repeated failures.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(60);

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No root password was provisioned: API logins are impossible.
    NoPassword,
    /// Wrong user or password.
    Rejected,
    /// Too many failures; try again after this much time.
    RateLimited { retry_after: Duration },
}

/// The root account's credentials and the state around checking them.
#[derive(Debug)]
pub struct Auth {
    /// PHC string of the root password hash in force, if any.
    hash: Option<alloc::string::String>,
    /// The hash the host config provisioned (a changed password is kept
    /// only while the host config still provisions this one).
    provisioned: Option<alloc::string::String>,
    cache_key: [u8; 32],
    verified: Option<[u8; 32]>,
    failures: u32,
    locked_until: Duration,
}

impl Auth {
    pub fn new(hash: Option<alloc::string::String>, cache_key: [u8; 32]) -> Self {
        Auth {
            provisioned: hash.clone(),
            hash,
            cache_key,
            verified: None,
            failures: 0,
            locked_until: Duration::ZERO,
        }
    }

    /// Checks `user`/`password` at time `now`.
    pub fn check(&mut self, user: &str, password: &str, now: Duration) -> Result<(), AuthError> {
        if now < self.locked_until {
            return Err(AuthError::RateLimited {
                retry_after: self.locked_until - now,
            });
        }
        let Some(hash) = &self.hash else {
            return Err(AuthError::NoPassword);
        };
        let fingerprint = self.fingerprint(password);
        let ok = user == "root"
            && (self.verified == Some(fingerprint)
                || host_config::verify_password(hash, password).unwrap_or(false));
        if ok {
            self.verified = Some(fingerprint);
            self.failures = 0;
            return Ok(());
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures > FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES - 1).min(6);
            let lockout = Duration::from_secs(1u64 << doublings).min(MAX_LOCKOUT);
            self.locked_until = now + lockout;
        }
        Err(AuthError::Rejected)
    }

    /// The hash in force.
    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// The hash the host config provisioned.
    pub fn provisioned(&self) -> Option<&str> {
        self.provisioned.as_deref()
    }

    /// Puts `hash` in force (a changed password); the cache of the last
    /// verified password is dropped.
    pub fn set_hash(&mut self, hash: alloc::string::String) {
        self.hash = Some(hash);
        self.verified = None;
    }

    fn fingerprint(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let hash = host_config::hash_password("secret", [7; 16], 1_000);
        Auth::new(Some(hash), [1; 32])
    }

    #[test]
    fn right_and_wrong_passwords() {
        let mut a = auth();
        assert_eq!(a.check("root", "secret", Duration::ZERO), Ok(()));
        // Cached now: a second login is cheap and still correct.
        assert_eq!(a.check("root", "secret", Duration::ZERO), Ok(()));
        assert_eq!(
            a.check("root", "Secret", Duration::ZERO),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            a.check("admin", "secret", Duration::ZERO),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn no_password_means_no_login() {
        let mut a = Auth::new(None, [0; 32]);
        assert_eq!(
            a.check("root", "", Duration::ZERO),
            Err(AuthError::NoPassword)
        );
    }

    #[test]
    fn failures_lock_out_with_growing_delays() {
        let mut a = auth();
        let t = Duration::from_secs(100);
        for _ in 0..FREE_FAILURES {
            assert_eq!(a.check("root", "x", t), Err(AuthError::Rejected));
        }
        assert_eq!(a.check("root", "x", t), Err(AuthError::Rejected));
        // Locked for 1 s, even for the right password.
        assert_eq!(
            a.check("root", "secret", t),
            Err(AuthError::RateLimited {
                retry_after: Duration::from_secs(1)
            })
        );
        let t = t + Duration::from_secs(1);
        assert_eq!(a.check("root", "x", t), Err(AuthError::Rejected));
        assert_eq!(
            a.check("root", "x", t),
            Err(AuthError::RateLimited {
                retry_after: Duration::from_secs(2)
            })
        );
        let t = t + Duration::from_secs(2);
        assert_eq!(a.check("root", "secret", t), Ok(()));
        assert_eq!(a.failures, 0);
    }
}
