//! The object database: records of the declared classes, kept in memory;
//! `persist` writes the changed ones to the configuration store. Every
//! change bumps a generation counter; an object remembers when it was
//! created and last changed, and deletions are remembered for a while, which
//! is all `event.from` needs. Changed objects are also collected as dirty,
//! for the next write to the store.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::schema::{Class, Default, Ty};
use super::value::{EPOCH, Value};

/// The null reference.
pub const NULL_REF: &str = "OpaqueRef:NULL";

/// Deletions remembered for `event.from`; a client further behind than this
/// misses `del` events (and sees the object gone from `get_all_records`).
const DELETIONS_KEPT: usize = 4096;

/// One object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Field values, in the class declaration's order.
    pub fields: Vec<Value>,
    /// Generation at creation and at the last change.
    pub created: u64,
    pub modified: u64,
}

impl Object {
    pub fn field(&self, index: usize) -> &Value {
        self.fields.get(index).unwrap_or(&Value::Nil)
    }
}

/// An object that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub class: &'static str,
    pub reference: String,
    pub created: u64,
    pub deleted: u64,
}

#[derive(Debug, Default)]
pub struct Db {
    tables: BTreeMap<&'static str, BTreeMap<String, Object>>,
    generation: u64,
    deleted: VecDeque<Deleted>,
    /// (class, reference) of objects created, changed or removed since the
    /// last `take_dirty`.
    dirty: BTreeSet<(&'static str, String)>,
}

impl Db {
    pub fn new() -> Self {
        Db::default()
    }

    /// The generation of the latest change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn bump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    pub fn insert(&mut self, class: &'static Class, reference: String, fields: Vec<Value>) {
        let generation = self.bump();
        self.dirty.insert((class.name, reference.clone()));
        self.tables.entry(class.name).or_default().insert(
            reference,
            Object {
                fields,
                created: generation,
                modified: generation,
            },
        );
    }

    pub fn get(&self, class: &Class, reference: &str) -> Option<&Object> {
        self.tables.get(class.name)?.get(reference)
    }

    pub fn contains(&self, class: &str, reference: &str) -> bool {
        self.tables
            .get(class)
            .is_some_and(|t| t.contains_key(reference))
    }

    /// Changes an object through `change`; a change that reports `true` is
    /// recorded as a modification. `None` if there is no such object.
    pub fn update<R>(
        &mut self,
        class: &Class,
        reference: &str,
        change: impl FnOnce(&mut Vec<Value>) -> (bool, R),
    ) -> Option<R> {
        let next = self.generation + 1;
        let object = self.tables.get_mut(class.name)?.get_mut(reference)?;
        let (changed, result) = change(&mut object.fields);
        if changed {
            object.modified = next;
            self.generation = next;
            self.dirty.insert((class.name, String::from(reference)));
        }
        Some(result)
    }

    /// Sets one field; records a modification only when the value changes.
    pub fn set_field(
        &mut self,
        class: &Class,
        reference: &str,
        index: usize,
        value: Value,
    ) -> bool {
        self.update(class, reference, |fields| match fields.get_mut(index) {
            Some(slot) if *slot != value => {
                *slot = value;
                (true, ())
            }
            _ => (false, ()),
        })
        .is_some()
    }

    /// Marks an object modified without changing it (`event.inject`).
    pub fn touch(&mut self, class: &Class, reference: &str) -> bool {
        self.update(class, reference, |_| (true, ())).is_some()
    }

    pub fn remove(&mut self, class: &'static Class, reference: &str) -> Option<Object> {
        let object = self.tables.get_mut(class.name)?.remove(reference)?;
        let deleted = self.bump();
        self.dirty.insert((class.name, String::from(reference)));
        if self.deleted.len() >= DELETIONS_KEPT {
            self.deleted.pop_front();
        }
        self.deleted.push_back(Deleted {
            class: class.name,
            reference: String::from(reference),
            created: object.created,
            deleted,
        });
        Some(object)
    }

    /// The objects created, changed or removed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<(&'static str, String)> {
        core::mem::take(&mut self.dirty)
    }

    #[cfg(test)]
    pub fn clone_dirty(&self) -> BTreeSet<(&'static str, String)> {
        self.dirty.clone()
    }

    /// The objects of `class`, by reference.
    pub fn objects(&self, class: &str) -> impl Iterator<Item = (&String, &Object)> {
        self.tables.get(class).into_iter().flat_map(|t| t.iter())
    }

    pub fn count(&self, class: &str) -> usize {
        self.tables.get(class).map_or(0, BTreeMap::len)
    }

    /// Deletions after generation `since`, oldest first.
    pub fn deletions_since(&self, since: u64) -> impl Iterator<Item = &Deleted> {
        self.deleted.iter().filter(move |d| d.deleted > since)
    }
}

/// A new record of `class` with every field at its default and `uuid` set.
pub fn default_record(class: &Class, uuid: &str) -> Vec<Value> {
    class
        .fields
        .iter()
        .map(|f| {
            if f.name == "uuid" {
                return Value::str(uuid);
            }
            match f.default {
                Default::Empty => empty_value(&f.ty),
                Default::Str(s) => Value::str(s),
                Default::Int(i) => Value::Int(i),
                Default::Bool(b) => Value::Bool(b),
                Default::Float(x) => Value::Double(x),
            }
        })
        .collect()
}

/// The empty value of a type.
pub fn empty_value(ty: &Ty) -> Value {
    match ty {
        Ty::String => Value::str(""),
        Ty::Enum(values) => Value::str(values.first().copied().unwrap_or("")),
        Ty::Int => Value::Int(0),
        Ty::Float => Value::Double(0.0),
        Ty::Bool => Value::Bool(false),
        Ty::DateTime => Value::DateTime(String::from(EPOCH)),
        Ty::Ref(_) => Value::str(NULL_REF),
        Ty::Set(_) => Value::Array(Vec::new()),
        Ty::Map(..) | Ty::Record => Value::Struct(BTreeMap::new()),
    }
}

/// The whole record as a struct.
pub fn record(class: &Class, object: &Object) -> Value {
    Value::Struct(
        class
            .fields
            .iter()
            .zip(&object.fields)
            .map(|(f, v)| (String::from(f.name), v.clone()))
            .collect(),
    )
}

/// A lowercase version-4 UUID from 16 random bytes.
pub fn uuid_from(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenapi::schema::{HOST_METRICS, PIF, TASK};

    #[test]
    fn uuids_are_lowercase_v4() {
        let u = uuid_from([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_from([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn defaults_follow_the_declaration() {
        let pif = default_record(&PIF, "u");
        let (vlan, _) = PIF.field("VLAN").unwrap();
        assert_eq!(pif[vlan], Value::Int(-1));
        let (network, _) = PIF.field("network").unwrap();
        assert_eq!(pif[network], Value::str(NULL_REF));
        let task = default_record(&TASK, "u");
        let (status, _) = TASK.field("status").unwrap();
        assert_eq!(task[status], Value::str("pending"));
        assert_eq!(task[0], Value::str("u"));
    }

    #[test]
    fn generations_track_changes() {
        let mut db = Db::new();
        db.insert(
            &HOST_METRICS,
            String::from("r"),
            default_record(&HOST_METRICS, "u"),
        );
        assert_eq!(db.generation(), 1);
        assert!(db.set_field(&HOST_METRICS, "r", 1, Value::Int(5)));
        assert_eq!(db.generation(), 2);
        // Same value: no change recorded.
        assert!(db.set_field(&HOST_METRICS, "r", 1, Value::Int(5)));
        assert_eq!(db.generation(), 2);
        assert!(!db.set_field(&HOST_METRICS, "nope", 1, Value::Int(5)));
        assert!(db.touch(&HOST_METRICS, "r"));
        assert_eq!(db.get(&HOST_METRICS, "r").unwrap().modified, 3);
        db.remove(&HOST_METRICS, "r").unwrap();
        assert_eq!(db.deletions_since(3).count(), 1);
        assert_eq!(db.count("host_metrics"), 0);
    }
}
