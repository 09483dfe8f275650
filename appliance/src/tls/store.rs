//! The host's TLS identity in the configuration store, beside the XenAPI
//! database: one record under [`RECORD_KEY`], made at first boot and read
//! back at every later one, so the certificate (and its fingerprint an
//! operator pinned) stays the same across reboots.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::cert::{Identity, Subject};
use crate::xenapi::persist::SCHEMA_VERSION;
use crate::xenapi::{Change, StateStore};

/// The record's key. Not `<class>/<ref>` of any XenAPI class; the database
/// never sees it (see [`HideIdentity`]).
pub const RECORD_KEY: &str = "tls/identity";

/// Where the identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the store.
    Stored,
    /// Made now and written to the store.
    Generated,
}

/// The stored identity, or a new one (then stored) when there is none or
/// the stored one is unreadable.
pub fn load_or_generate(
    store: &mut dyn StateStore,
    subject: &Subject<'_>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<(Identity, Origin), String> {
    let (version, records) = store.records();
    let stored = records.iter().find(|(k, _)| k == RECORD_KEY);
    if let Some((_, bytes)) = stored {
        match Identity::from_record(bytes) {
            Ok(identity) => return Ok((identity, Origin::Stored)),
            Err(e) => log::error!("tls: {e}; making a new certificate"),
        }
    }
    let identity = Identity::generate(subject, random).map_err(|e| alloc::format!("{e}"))?;
    // A blank store gets the version the database is about to write; an
    // existing one keeps its own (the database migrates it when it attaches).
    let version = if records.is_empty() {
        SCHEMA_VERSION
    } else {
        version
    };
    store.commit(
        alloc::vec![Change::Put {
            key: String::from(RECORD_KEY),
            value: identity.to_record(),
        }],
        version,
    )?;
    Ok((identity, Origin::Generated))
}

/// The store as the XenAPI database sees it: without the identity record
/// (so a store holding only that is still blank to it).
pub struct HideIdentity(pub Box<dyn StateStore>);

impl StateStore for HideIdentity {
    fn records(&self) -> (u32, Vec<(String, Vec<u8>)>) {
        let (version, mut records) = self.0.records();
        records.retain(|(k, _)| k != RECORD_KEY);
        (version, records)
    }

    fn commit(&mut self, changes: Vec<Change>, schema_version: u32) -> Result<(), String> {
        self.0.commit(changes, schema_version)
    }
}

impl core::fmt::Debug for HideIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HideIdentity")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[derive(Default)]
    struct MemStore {
        version: u32,
        records: BTreeMap<String, Vec<u8>>,
    }

    impl StateStore for MemStore {
        fn records(&self) -> (u32, Vec<(String, Vec<u8>)>) {
            let all = self.records.iter().map(|(k, v)| (k.clone(), v.clone()));
            (self.version, all.collect())
        }
        fn commit(&mut self, changes: Vec<Change>, version: u32) -> Result<(), String> {
            for c in changes {
                match c {
                    Change::Put { key, value } => self.records.insert(key, value),
                    Change::Delete { key } => self.records.remove(&key),
                };
            }
            self.version = version;
            Ok(())
        }
    }

    #[test]
    fn made_once_then_read_back_and_hidden_from_the_database() {
        let subject = Subject {
            hostname: "h",
            address: None,
            unix_now: None,
        };
        let mut n = 0u8;
        let mut random = |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_add(1);
                *b = n;
            }
        };
        let mut store = MemStore::default();
        let (first, origin) = load_or_generate(&mut store, &subject, &mut random).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert_eq!(store.version, SCHEMA_VERSION);
        let (again, origin) = load_or_generate(&mut store, &subject, &mut random).unwrap();
        assert_eq!((origin, &again), (Origin::Stored, &first));
        let hidden = HideIdentity(Box::new(store));
        assert!(hidden.records().1.is_empty());

        // A damaged record is replaced, not trusted.
        let mut store = MemStore::default();
        store
            .records
            .insert(RECORD_KEY.into(), alloc::vec![1, 2, 3]);
        store.version = 1;
        let (new, origin) = load_or_generate(&mut store, &subject, &mut random).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert_ne!(new, first);
        assert_eq!(store.records.get(RECORD_KEY), Some(&new.to_record()));
    }
}
