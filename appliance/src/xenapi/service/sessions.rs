//! Sessions: root login, use, idle expiry and logout.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::{MAX_SESSIONS, SESSION_IDLE_TIMEOUT, XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::auth::AuthError;
use crate::xenapi::db::default_record;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::SESSION;
use crate::xenapi::value::{Value, format_datetime};

impl XenApi {
    /// Whether `handle` is a live session (and marks it used), for HTTP
    /// handlers outside the RPC that authenticate xapi's way: a
    /// `session_id` in the query string.
    pub fn session_valid(&mut self, handle: &str, now: Duration) -> bool {
        self.check_session(handle, now).is_ok()
    }

    pub(super) fn check_session(&mut self, handle: &str, now: Duration) -> Result<(), ApiError> {
        match self.sessions.get_mut(handle) {
            Some(last) if now.saturating_sub(*last) < SESSION_IDLE_TIMEOUT => {
                *last = now;
                Ok(())
            }
            Some(_) => {
                self.end_session(handle);
                Err(ApiError::session_invalid(handle))
            }
            None => Err(ApiError::session_invalid(handle)),
        }
    }

    pub(super) fn end_session(&mut self, handle: &str) {
        self.sessions.remove(handle);
        self.db.remove(&SESSION, handle);
    }

    pub(super) fn login(
        &mut self,
        user: &str,
        password: &str,
        originator: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let now = platform.now();
        match self.auth.check(user, password, now) {
            Ok(()) => {}
            Err(AuthError::RateLimited { retry_after }) => {
                let message = format!(
                    "Too many failed logins; try again in {} s",
                    retry_after.as_secs().max(1)
                );
                return Err(ApiError::authentication_failed(user, &message));
            }
            Err(AuthError::NoPassword | AuthError::Rejected) => {
                return Err(ApiError::authentication_failed(
                    user,
                    "Authentication failure",
                ));
            }
        }
        self.expire_sessions(now);
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&SESSION, &uuid);
        let started = Value::DateTime(format_datetime(self.unix_now(platform)));
        for (name, value) in [
            ("this_host", Value::String(self.refs.host.clone())),
            ("last_active", started.clone()),
            ("validation_time", started),
            ("originator", Value::str(originator)),
        ] {
            if let Some(slot) = SESSION.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&SESSION, reference.clone(), fields);
        self.sessions.insert(reference.clone(), now);
        Ok(Value::String(reference))
    }

    /// Drops idle sessions, and the least recently used beyond the limit.
    pub(super) fn expire_sessions(&mut self, now: Duration) {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, last)| now.saturating_sub(**last) >= SESSION_IDLE_TIMEOUT)
            .map(|(r, _)| r.clone())
            .collect();
        for r in idle {
            self.end_session(&r);
        }
        while self.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, last)| **last)
                .map(|(r, _)| r.clone())
            else {
                break;
            };
            self.end_session(&oldest);
        }
    }
}
