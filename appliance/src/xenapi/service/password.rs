//! `session.change_password`: the root password changed through the API,
//! kept in the state store beside the database so it survives reboots and
//! image upgrades.
//!
//! The host config provisions the first password (its hash). A changed
//! one is stored with the provisioned hash it replaced and stays in force
//! only while the host config still provisions that hash: an operator who
//! writes a new host config (a forgotten password reset from the boot
//! medium) gets the new config's password.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::auth::AuthError;
use crate::xenapi::error::ApiError;
use crate::xenapi::value::Value;

/// The store key of the changed password (an internal record, see
/// [`super::INTERNAL_PREFIX`]).
const STORE_KEY: &str = "keel/root_password";

/// `provisioned hash` `\n` `hash in force`.
fn encode(provisioned: Option<&str>, hash: &str) -> Vec<u8> {
    let mut out = Vec::from(provisioned.unwrap_or("").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hash.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<(&str, &str)> {
    core::str::from_utf8(bytes).ok()?.split_once('\n')
}

impl XenApi {
    /// `session.change_password(old_pwd, new_pwd)` for root (the only
    /// account): the old password is checked (and rate limited) as a login
    /// is; sessions stay valid.
    pub(super) fn change_password(
        &mut self,
        old: &str,
        new: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let rejected = |why: &str| ApiError::new("CHANGE_PASSWORD_REJECTED", &[why]);
        match self.auth.check("root", old, platform.now()) {
            Ok(()) => {}
            Err(AuthError::RateLimited { .. }) => {
                return Err(rejected("Too many failed attempts; try again later"));
            }
            Err(AuthError::NoPassword | AuthError::Rejected) => {
                return Err(rejected("Authentication failure"));
            }
        }
        if new.is_empty() {
            return Err(rejected("The new password is empty"));
        }
        let iterations = self
            .auth
            .hash()
            .and_then(|h| host_config::PasswordHash::parse(h).ok())
            .map_or(host_config::DEFAULT_PBKDF2_ITERATIONS, |h| h.iterations);
        let mut salt = [0u8; host_config::password::SALT_LEN];
        platform.fill_random(&mut salt);
        let hash = host_config::hash_password(new, salt, iterations);
        let record = encode(self.auth.provisioned(), &hash);
        self.save_internal(STORE_KEY, Some(record), "the password")?;
        self.auth.set_hash(hash);
        log::info!("auth: the root password was changed through the API");
        Ok(Value::str(""))
    }

    /// Puts the stored changed password (the store's record `STORE_KEY`,
    /// taken out with the other internal records) in force if it still
    /// applies.
    pub(super) fn restore_password(&mut self, internal: &BTreeMap<String, Vec<u8>>) {
        let Some(value) = internal.get(STORE_KEY) else {
            return;
        };
        match decode(value) {
            Some((provisioned, hash))
                if provisioned == self.auth.provisioned().unwrap_or("")
                    && host_config::PasswordHash::parse(hash).is_ok() =>
            {
                self.auth.set_hash(String::from(hash));
                log::info!("auth: the root password changed through the API is in force");
            }
            Some(_) => log::warn!(
                "auth: the host config provisions another root password than the one the API changed; the host config's is in force"
            ),
            None => log::warn!("auth: the stored root password is damaged; ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn records_round_trip() {
        let bytes = encode(Some("$pbkdf2-sha256$a"), "$pbkdf2-sha256$b");
        assert_eq!(
            decode(&bytes),
            Some(("$pbkdf2-sha256$a", "$pbkdf2-sha256$b"))
        );
        assert_eq!(decode(&encode(None, "h")), Some(("", "h")));
        assert_eq!(decode(b"no newline"), None);
        assert_eq!(decode(&[0xff, b'\n']), None);
    }
}
