//! Keeping the object database in the configuration store on the state
//! partition, so objects survive a reboot or a power cut.
//!
//! Each object is one record, `<class>/<ref>` → its fields by name (encoded
//! with `codec`): a later schema reads an older record field by field, with
//! defaults for fields it added. Sessions and tasks live only in memory, as
//! does `host_metrics` (rebuilt at boot from the running host). The schema
//! version is recorded; a store written by a newer schema is not opened.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::codec;
use super::db::{Db, Object, default_record, empty_value};
use super::schema::{self, Class};
use super::value::Value;

/// The record format this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Classes never written to the store.
const TRANSIENT: &[&str] = &["session", "task", "host_metrics"];

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// Where the database lives: the configuration store on a block device
/// (image), or on a file (hosted).
pub trait StateStore {
    /// Every record, and the schema version they were written with.
    fn records(&self) -> (u32, Vec<(String, Vec<u8>)>);
    /// Writes `changes` and the schema version atomically and durably.
    fn commit(&mut self, changes: Vec<Change>, schema_version: u32) -> Result<(), String>;
}

pub fn persistent(class: &str) -> bool {
    !TRANSIENT.contains(&class)
}

fn key(class: &str, reference: &str) -> String {
    format!("{class}/{reference}")
}

/// The record of `object`: its fields by name.
pub fn encode(class: &Class, object: &Object) -> Vec<u8> {
    let fields: BTreeMap<String, Value> = class
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| (String::from(f.name), object.field(i).clone()))
        .collect();
    codec::encode(&Value::Struct(fields))
}

/// The fields of a record of `class`, in declaration order: defaults for
/// fields the record lacks or holds with the wrong kind.
pub fn decode(class: &Class, bytes: &[u8]) -> Result<Vec<Value>, String> {
    let Value::Struct(mut stored) = codec::decode(bytes).map_err(|e| format!("{e}"))? else {
        return Err(String::from("a record is not a struct"));
    };
    let uuid = stored
        .get("uuid")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_default();
    let mut fields = default_record(class, &uuid);
    for (slot, f) in fields.iter_mut().zip(class.fields) {
        if let Some(v) = stored.remove(f.name)
            && (v.kind() == slot.kind() || v.kind() == empty_value(&f.ty).kind())
        {
            *slot = v;
        }
    }
    Ok(fields)
}

/// The store changes for the `dirty` objects of `db`.
pub fn changes(db: &Db, dirty: BTreeSet<(&'static str, String)>) -> Vec<Change> {
    dirty
        .into_iter()
        .filter(|(class, _)| persistent(class))
        .filter_map(|(name, reference)| {
            let class = schema::class(name)?;
            Some(match db.get(class, &reference) {
                Some(object) => Change::Put {
                    key: key(name, &reference),
                    value: encode(class, object),
                },
                None => Change::Delete {
                    key: key(name, &reference),
                },
            })
        })
        .collect()
}

/// Every persistent object of `db`, as store changes (the first snapshot).
pub fn snapshot(db: &Db) -> Vec<Change> {
    let mut out = Vec::new();
    for class in schema::CLASSES.iter().filter(|c| persistent(c.name)) {
        for (reference, object) in db.objects(class.name) {
            out.push(Change::Put {
                key: key(class.name, reference),
                value: encode(class, object),
            });
        }
    }
    out
}

/// Why a store's contents cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Written by a newer build: not touched, so an older image cannot
    /// damage data it does not understand.
    NewerSchema(u32),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NewerSchema(v) => write!(
                f,
                "the database has schema version {v}; this build reads up to {SCHEMA_VERSION}"
            ),
        }
    }
}

/// Loads `records` into a fresh database. Records of unknown or transient
/// classes, and records that do not decode, are skipped and counted.
pub fn load(
    schema_version: u32,
    records: Vec<(String, Vec<u8>)>,
) -> Result<(Db, usize), LoadError> {
    if schema_version > SCHEMA_VERSION {
        return Err(LoadError::NewerSchema(schema_version));
    }
    let mut db = Db::new();
    let mut skipped = 0;
    for (k, bytes) in records {
        let Some((name, reference)) = k.split_once('/') else {
            skipped += 1;
            continue;
        };
        let class = schema::class(name).filter(|c| persistent(c.name));
        match class.map(|c| (c, decode(c, &bytes))) {
            Some((class, Ok(fields))) => db.insert(class, String::from(reference), fields),
            Some((_, Err(e))) => {
                log::warn!("db: record {k} skipped: {e}");
                skipped += 1;
            }
            None => skipped += 1,
        }
    }
    // Loading is not a change to write back.
    db.take_dirty();
    Ok((db, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenapi::schema::{HOST, POOL, SESSION};

    #[test]
    fn objects_round_trip_and_transient_classes_stay_out() {
        let mut db = Db::new();
        let mut pool = default_record(&POOL, "u-pool");
        let (i, _) = POOL.field("name_label").unwrap();
        pool[i] = Value::str("lab");
        db.insert(&POOL, "OpaqueRef:p".into(), pool.clone());
        db.insert(
            &SESSION,
            "OpaqueRef:s".into(),
            default_record(&SESSION, "u-s"),
        );
        let changes = changes(&db, db.clone_dirty());
        assert_eq!(changes.len(), 1, "{changes:?}");
        let records: Vec<(String, Vec<u8>)> = changes
            .into_iter()
            .map(|c| match c {
                Change::Put { key, value } => (key, value),
                Change::Delete { key } => (key, Vec::new()),
            })
            .collect();
        let (loaded, skipped) = load(SCHEMA_VERSION, records).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(loaded.get(&POOL, "OpaqueRef:p").unwrap().fields, pool);
    }

    #[test]
    fn old_records_get_defaults_and_bad_ones_are_skipped() {
        let mut partial = BTreeMap::new();
        partial.insert(String::from("uuid"), Value::str("u-host"));
        partial.insert(String::from("name_label"), Value::str("xen1"));
        partial.insert(String::from("no_such_field"), Value::Int(1));
        // a field of the wrong kind keeps its default
        partial.insert(String::from("API_version_major"), Value::str("two"));
        let records = vec![
            (
                String::from("host/OpaqueRef:h"),
                codec::encode(&Value::Struct(partial)),
            ),
            (String::from("host/OpaqueRef:bad"), vec![0xff, 1, 2]),
            (String::from("nonsense"), vec![]),
            (String::from("no_such_class/x"), codec::encode(&Value::Nil)),
        ];
        let (db, skipped) = load(1, records).unwrap();
        assert_eq!(skipped, 3);
        let host = db.get(&HOST, "OpaqueRef:h").unwrap();
        let (i, _) = HOST.field("name_label").unwrap();
        assert_eq!(host.fields[i], Value::str("xen1"));
        let (j, _) = HOST.field("API_version_major").unwrap();
        assert_eq!(host.fields[j], default_record(&HOST, "u-host")[j]);
        assert_eq!(
            load(SCHEMA_VERSION + 1, Vec::new()).err(),
            Some(LoadError::NewerSchema(SCHEMA_VERSION + 1))
        );
    }
}
