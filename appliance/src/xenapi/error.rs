//! XenAPI errors: a code and string parameters, exactly as clients match them.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// A XenAPI failure: `ErrorDescription = [code, params...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub params: Vec<String>,
}

impl ApiError {
    pub fn new(code: &str, params: &[&str]) -> Self {
        ApiError {
            code: code.to_string(),
            params: params.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// `[code, params...]` as the wire carries it.
    pub fn description(&self) -> Vec<String> {
        let mut all = vec![self.code.clone()];
        all.extend(self.params.iter().cloned());
        all
    }

    pub fn session_invalid(handle: &str) -> Self {
        Self::new("SESSION_INVALID", &[handle])
    }

    pub fn authentication_failed(user: &str, message: &str) -> Self {
        Self::new("SESSION_AUTHENTICATION_FAILED", &[user, message])
    }

    pub fn handle_invalid(class: &str, reference: &str) -> Self {
        Self::new("HANDLE_INVALID", &[class, reference])
    }

    pub fn uuid_invalid(class: &str, uuid: &str) -> Self {
        Self::new("UUID_INVALID", &[class, uuid])
    }

    pub fn method_unknown(name: &str) -> Self {
        Self::new("MESSAGE_METHOD_UNKNOWN", &[name])
    }

    pub fn parameter_count_mismatch(name: &str, expected: usize, received: usize) -> Self {
        Self::new(
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            &[name, &format!("{expected}"), &format!("{received}")],
        )
    }

    /// A parameter of the wrong type (xapi's `FIELD_TYPE_ERROR [name]`).
    pub fn field_type(name: &str) -> Self {
        Self::new("FIELD_TYPE_ERROR", &[name])
    }

    /// The call exists in the XenAPI but this host cannot carry it out yet.
    pub fn not_implemented(name: &str) -> Self {
        Self::new("NOT_IMPLEMENTED", &[name])
    }

    pub fn map_duplicate_key(class: &str, field: &str, uuid: &str, key: &str) -> Self {
        Self::new("MAP_DUPLICATE_KEY", &[class, field, uuid, key])
    }

    pub fn invalid_value(field: &str, value: &str) -> Self {
        Self::new("INVALID_VALUE", &[field, value])
    }

    pub fn event_token(token: &str) -> Self {
        Self::new("EVENT_FROM_TOKEN_PARSE_FAILURE", &[token])
    }

    pub fn internal(message: &str) -> Self {
        Self::new("INTERNAL_ERROR", &[message])
    }
}
