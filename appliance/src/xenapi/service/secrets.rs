//! `secret` objects, and passwords in a PBD's `device_config` kept in
//! them, as xapi does: a key ending in `password` (`chappassword`,
//! `incoming_chappassword`) is stored (`SR.create`, `PBD.create`,
//! `PBD.set_device_config`) as `<key>_secret` holding the uuid of
//! a secret with the value, so `PBD.get_record` and events do not show
//! CHAP secrets. A client may also create the secret itself and pass
//! `chappassword_secret`. The secrets of a PBD go with it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::srs::field_index;
use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::default_record;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::SECRET;
use crate::xenapi::value::Value;

/// What a key holding a secret's uuid ends with.
const SECRET_SUFFIX: &str = "_secret";

/// Whether `uuid` is written as a lowercase UUID (`8-4-4-4-12` hex digits).
fn is_uuid(uuid: &str) -> bool {
    let b = uuid.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

impl XenApi {
    fn insert_secret(
        &mut self,
        uuid: &str,
        value: &str,
        other_config: Value,
        platform: &mut dyn Platform,
    ) -> String {
        let (reference, _) = new_id(platform);
        let mut fields = default_record(&SECRET, uuid);
        for (name, v) in [("value", Value::str(value)), ("other_config", other_config)] {
            if let Some(slot) = fields.get_mut(field_index(&SECRET, name)) {
                *slot = v;
            }
        }
        self.db.insert(&SECRET, reference.clone(), fields);
        reference
    }

    /// `secret.create({value, other_config})`.
    pub(super) fn secret_create(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(record) = args else {
            return Err(ApiError::field_type("args"));
        };
        let value = record
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::field_type("value"))?;
        let other_config = match record.get("other_config") {
            None => Value::Struct(BTreeMap::new()),
            Some(v @ Value::Struct(_)) => v.clone(),
            Some(_) => return Err(ApiError::field_type("other_config")),
        };
        let (_, uuid) = new_id(platform);
        Ok(Value::String(self.insert_secret(
            &uuid,
            value,
            other_config,
            platform,
        )))
    }

    /// `secret.introduce(uuid, value, other_config)`: a secret with a uuid
    /// the caller chose (a pool member copying its master's).
    pub(super) fn secret_introduce(
        &mut self,
        uuid: &str,
        value: &str,
        other_config: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if !is_uuid(uuid) {
            return Err(ApiError::invalid_value("uuid", uuid));
        }
        if self.secret_by_uuid(uuid).is_some() {
            return Err(ApiError::new("UUID_ALREADY_EXISTS", &["secret", uuid]));
        }
        let other_config = match other_config {
            Value::Struct(_) => other_config.clone(),
            _ => Value::Struct(BTreeMap::new()),
        };
        Ok(Value::String(self.insert_secret(
            uuid,
            value,
            other_config,
            platform,
        )))
    }

    pub(super) fn secret_destroy(&mut self, secret: &str) -> Result<Value, ApiError> {
        self.db
            .remove(&SECRET, secret)
            .ok_or_else(|| ApiError::handle_invalid("secret", secret))?;
        Ok(Value::str(""))
    }

    fn secret_by_uuid(&self, uuid: &str) -> Option<String> {
        self.db
            .objects(SECRET.name)
            .find(|(_, o)| o.field(0).as_str() == Some(uuid))
            .map(|(r, _)| r.clone())
    }

    /// The password a `device_config` gives for `key`: the value of `key`
    /// itself, else that of the secret `<key>_secret` names.
    pub(super) fn config_password(
        &self,
        config: &BTreeMap<String, Value>,
        key: &str,
    ) -> Result<Option<String>, ApiError> {
        if let Some(v) = config.get(key).and_then(Value::as_str) {
            return Ok(Some(String::from(v)));
        }
        let name = format!("{key}{SECRET_SUFFIX}");
        let Some(uuid) = config.get(&name).and_then(Value::as_str) else {
            return Ok(None);
        };
        let secret = self
            .secret_by_uuid(uuid.trim())
            .ok_or_else(|| ApiError::uuid_invalid("secret", uuid))?;
        Ok(self
            .field(&SECRET, &secret, "value")
            .as_str()
            .map(String::from))
    }

    /// `config` as a PBD stores it: each non-empty `...password` value moves
    /// into a new secret, named by `...password_secret`.
    pub(super) fn hide_passwords(
        &mut self,
        config: BTreeMap<String, Value>,
        platform: &mut dyn Platform,
    ) -> BTreeMap<String, Value> {
        let mut stored = BTreeMap::new();
        for (key, value) in config {
            match value.as_str() {
                Some(password) if key.ends_with("password") && !password.is_empty() => {
                    let (_, uuid) = new_id(platform);
                    let empty = Value::Struct(BTreeMap::new());
                    self.insert_secret(&uuid, password, empty, platform);
                    stored.insert(format!("{key}{SECRET_SUFFIX}"), Value::String(uuid));
                }
                _ => {
                    stored.insert(key, value);
                }
            }
        }
        stored
    }

    /// `PBD.set_device_config(self, value)`: a new way to reach the SR (new
    /// CHAP credentials, another portal), used from the next plug on; its
    /// passwords are kept in new secrets and the old ones go.
    pub(super) fn pbd_set_device_config(
        &mut self,
        pbd: &str,
        value: Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        use crate::xenapi::schema::PBD;
        if !self.db.contains("PBD", pbd) {
            return Err(ApiError::handle_invalid("PBD", pbd));
        }
        let Value::Struct(config) = value else {
            return Err(ApiError::field_type("value"));
        };
        let old = self.field(&PBD, pbd, "device_config");
        let config = self.hide_passwords(config, platform);
        self.set(&PBD, pbd, "device_config", Value::Struct(config));
        self.drop_config_secrets(&old);
        Ok(Value::str(""))
    }

    /// Destroys the secrets a stored `device_config` names (its PBD goes).
    pub(super) fn drop_config_secrets(&mut self, config: &Value) {
        let Value::Struct(config) = config else {
            return;
        };
        let secrets: Vec<String> = config
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("password{SECRET_SUFFIX}")))
            .filter_map(|(_, v)| v.as_str())
            .filter_map(|uuid| self.secret_by_uuid(uuid))
            .collect();
        for secret in secrets {
            self.db.remove(&SECRET, &secret);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_uuid;

    #[test]
    fn uuids_are_lowercase_and_dashed() {
        assert!(is_uuid("0f6a33a4-6f4e-4c3b-9d0e-2f1c8a7b6e5d"));
        assert!(!is_uuid("0F6A33A4-6F4E-4C3B-9D0E-2F1C8A7B6E5D"));
        assert!(!is_uuid("0f6a33a46f4e4c3b9d0e2f1c8a7b6e5d"));
        assert!(!is_uuid(""));
    }
}
