//! `message.create`, `message.destroy` and `message.get_since`: messages
//! (alerts about an object) are pure database objects, so these are real.

use alloc::string::String;

use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::{default_record, record};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::MESSAGE;
use crate::xenapi::value::{Value, format_datetime};

/// The database class a message's `cls` names, where this host has it.
fn object_class(cls: &str) -> Option<&'static str> {
    match cls {
        "VM" => Some("VM"),
        "Host" => Some("host"),
        "SR" => Some("SR"),
        "Pool" => Some("pool"),
        "VDI" => Some("VDI"),
        _ => None,
    }
}

/// A datetime as its digits `YYYYMMDDHHMMSS`, so that the forms clients
/// send (`20240101T00:00:00Z`, `2024-01-01T00:00:00Z`) compare in order.
/// Times are taken as UTC.
fn sortable(datetime: &str) -> String {
    datetime
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

impl XenApi {
    /// A new message about the object `obj_uuid` of class `cls`; the object
    /// must exist (`UUID_INVALID` otherwise), as xapi checks.
    pub(super) fn create_message(
        &mut self,
        name: &str,
        priority: i64,
        cls: &str,
        obj_uuid: &str,
        body: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if let Some(class) = object_class(cls) {
            let exists = self
                .db
                .objects(class)
                .any(|(_, o)| o.field(0).as_str() == Some(obj_uuid));
            if !exists {
                return Err(ApiError::uuid_invalid(class, obj_uuid));
            }
        }
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&MESSAGE, &uuid);
        let now = format_datetime(self.unix_now(platform));
        for (field, value) in [
            ("name", Value::str(name)),
            ("priority", Value::Int(priority)),
            ("cls", Value::str(cls)),
            ("obj_uuid", Value::str(obj_uuid)),
            ("timestamp", Value::DateTime(now)),
            ("body", Value::str(body)),
        ] {
            if let Some(slot) = MESSAGE.field(field).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&MESSAGE, reference.clone(), fields);
        Ok(Value::String(reference))
    }

    pub(super) fn destroy_message(&mut self, message: &str) -> Result<Value, ApiError> {
        self.db
            .remove(&MESSAGE, message)
            .ok_or_else(|| ApiError::handle_invalid("message", message))?;
        Ok(Value::str(""))
    }

    /// The messages stamped after `since`, as `{ref: record}`.
    pub(super) fn messages_since(&self, since: &str) -> Value {
        let since = sortable(since);
        let stamp = MESSAGE.field("timestamp").map_or(usize::MAX, |(i, _)| i);
        Value::Struct(
            self.db
                .objects(MESSAGE.name)
                .filter(|(_, o)| sortable(o.field(stamp).as_str().unwrap_or("")) > since)
                .map(|(r, o)| (r.clone(), record(&MESSAGE, o)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::sortable;

    #[test]
    fn datetimes_compare_in_any_form() {
        assert_eq!(sortable("20240101T00:00:00Z"), "20240101000000");
        assert_eq!(sortable("2024-01-01T00:00:00Z"), "20240101000000");
        assert!(sortable("20240101T00:00:01Z") > sortable("2024-01-01T00:00:00Z"));
        assert_eq!(sortable(""), "");
    }
}
