//! The operations every class gets from its declared fields.

use alloc::string::String;

use super::XenApi;
use crate::xenapi::db::{self, NULL_REF, record};
use crate::xenapi::dispatch::Generic;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::Class;
use crate::xenapi::value::Value;

impl XenApi {
    pub(super) fn object_ref<'a>(&self, args: &'a [Value]) -> &'a str {
        args.first().and_then(Value::as_str).unwrap_or(NULL_REF)
    }

    pub(super) fn generic(
        &mut self,
        class: &'static Class,
        g: Generic,
        args: &[Value],
    ) -> Result<Value, ApiError> {
        let this = self.object_ref(args);
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Nil);
        let void = Ok(Value::str(""));
        match g {
            Generic::GetAll => Ok(Value::Array(
                self.db
                    .objects(class.name)
                    .map(|(r, _)| Value::str(r))
                    .collect(),
            )),
            Generic::GetAllRecords => Ok(Value::Struct(
                self.db
                    .objects(class.name)
                    .map(|(r, o)| (r.clone(), record(class, o)))
                    .collect(),
            )),
            Generic::GetRecord => self.with_object(class, this, |o| record(class, o)),
            Generic::GetByUuid => {
                let uuid = arg(0);
                self.db
                    .objects(class.name)
                    .find(|(_, o)| *o.field(0) == uuid)
                    .map(|(r, _)| Value::str(r))
                    .ok_or_else(|| ApiError::uuid_invalid(class.name, uuid.as_str().unwrap_or("")))
            }
            Generic::GetByNameLabel => {
                let label = arg(0);
                let index = class.field("name_label").map_or(usize::MAX, |(i, _)| i);
                Ok(Value::Array(
                    self.db
                        .objects(class.name)
                        .filter(|(_, o)| *o.field(index) == label)
                        .map(|(r, _)| Value::str(r))
                        .collect(),
                ))
            }
            Generic::Get(i) => self.with_object(class, this, |o| o.field(i).clone()),
            Generic::Set(i) => {
                self.db.set_field(class, this, i, arg(1));
                void
            }
            Generic::AddToMap(i) => {
                let key = String::from(arg(1).as_str().unwrap_or(""));
                let value = arg(2);
                let uuid = self.with_object(class, this, |o| o.field(0).clone())?;
                let added = self
                    .db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Struct(map)) if !map.contains_key(&key) => {
                            map.insert(key.clone(), value);
                            (true, true)
                        }
                        _ => (false, false),
                    });
                if added == Some(true) {
                    return void;
                }
                let field = class.fields.get(i).map_or("", |f| f.name);
                Err(ApiError::map_duplicate_key(
                    class.name,
                    field,
                    uuid.as_str().unwrap_or(""),
                    &key,
                ))
            }
            Generic::RemoveFromMap(i) => {
                let key = String::from(arg(1).as_str().unwrap_or(""));
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Struct(map)) => (map.remove(&key).is_some(), ()),
                        _ => (false, ()),
                    });
                void
            }
            Generic::AddToSet(i) => {
                let value = arg(1);
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Array(items)) if !items.contains(&value) => {
                            items.push(value);
                            (true, ())
                        }
                        _ => (false, ()),
                    });
                void
            }
            Generic::RemoveFromSet(i) => {
                let value = arg(1);
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Array(items)) => {
                            let before = items.len();
                            items.retain(|v| *v != value);
                            (items.len() != before, ())
                        }
                        _ => (false, ()),
                    });
                void
            }
        }
    }

    pub(super) fn with_object(
        &self,
        class: &Class,
        reference: &str,
        f: impl FnOnce(&db::Object) -> Value,
    ) -> Result<Value, ApiError> {
        self.db
            .get(class, reference)
            .map(f)
            .ok_or_else(|| ApiError::handle_invalid(class.name, reference))
    }
}
