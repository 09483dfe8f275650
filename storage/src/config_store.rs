//! The appliance's configuration store: keyed records (an object's ref to
//! its encoded fields) and a schema version, kept in a [`Journal`].
//!
//! Every [`Batch`] is one journal frame: it is on disk entirely or not at
//! all, and after a power loss at any byte the store opens with exactly the
//! batches whose commit returned (plus, at most, the one in flight if all of
//! it had landed). When the journal area fills, the store compacts: the
//! current records, as `Put`s, become the new journal.
//!
//! Values are opaque bytes; [`ConfigStore::put_value`] and
//! [`ConfigStore::value`] encode typed values with `postcard`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::block::BlockDevice;
use crate::journal::{Journal, JournalError, OpenReport, Recovery};
use crate::region::Region;

/// Snapshot frames are cut at about this many bytes.
const SNAPSHOT_FRAME_BYTES: usize = 64 * 1024;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
    SchemaVersion(u32),
}

/// Changes committed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }
    pub fn put(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    pub fn delete(&mut self, key: &str) -> &mut Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
    pub fn schema_version(&mut self, v: u32) -> &mut Self {
        self.ops.push(Op::SchemaVersion(v));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Journal(JournalError),
    /// An intact frame that does not decode: written by an incompatible
    /// build, or damage the checksum missed.
    BadRecord {
        frame: usize,
    },
    /// A value does not encode or decode as the requested type.
    Value(postcard::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Journal(e) => write!(f, "config store: {e}"),
            StoreError::BadRecord { frame } => {
                write!(
                    f,
                    "config store: journal frame {frame} is not a record batch"
                )
            }
            StoreError::Value(e) => write!(f, "config store value: {e}"),
        }
    }
}

impl core::error::Error for StoreError {}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        StoreError::Journal(e)
    }
}

/// The store. It holds no device: pass the same one to every call.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    journal: Journal,
    records: BTreeMap<String, Vec<u8>>,
    schema_version: u32,
}

impl ConfigStore {
    /// Writes an empty store over `region`. `id` must be random (see
    /// [`Journal::format`]).
    pub fn format(
        dev: &mut (impl BlockDevice + ?Sized),
        region: Region,
        id: u64,
    ) -> Result<Self, StoreError> {
        Ok(ConfigStore {
            journal: Journal::format(dev, region, id)?,
            records: BTreeMap::new(),
            schema_version: 0,
        })
    }

    /// Opens the store; refuses a damaged journal (see [`Self::open_salvage`]).
    pub fn open(dev: &mut (impl BlockDevice + ?Sized), region: Region) -> Result<Self, StoreError> {
        Ok(Self::open_with(dev, region, Recovery::Strict)?.0)
    }

    /// Opens a damaged store with the records before the damage, and
    /// compacts at once so the dropped frames can never come back.
    pub fn open_salvage(
        dev: &mut (impl BlockDevice + ?Sized),
        region: Region,
    ) -> Result<(Self, OpenReport), StoreError> {
        let (mut store, report) = Self::open_with(dev, region, Recovery::Salvage)?;
        if report.salvaged_at.is_some() {
            store.compact(dev)?;
        }
        Ok((store, report))
    }

    fn open_with(
        dev: &mut (impl BlockDevice + ?Sized),
        region: Region,
        recovery: Recovery,
    ) -> Result<(Self, OpenReport), StoreError> {
        let (journal, frames, report) = Journal::open(dev, region, recovery)?;
        let mut store = ConfigStore {
            journal,
            records: BTreeMap::new(),
            schema_version: 0,
        };
        for (i, f) in frames.iter().enumerate() {
            let ops: Vec<Op> =
                postcard::from_bytes(f).map_err(|_| StoreError::BadRecord { frame: i })?;
            store.apply(ops);
        }
        Ok((store, report))
    }

    fn apply(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    self.records.insert(key, value);
                }
                Op::Delete { key } => {
                    self.records.remove(&key);
                }
                Op::SchemaVersion(v) => self.schema_version = v,
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    /// Records whose key starts with `prefix`, in key order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.records
            .range::<str, _>((
                core::ops::Bound::Included(prefix),
                core::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The schema version last committed (0 for a new store).
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// Commits `batch` durably and atomically; on error nothing changed in
    /// memory and, on disk, the batch is either absent or (if it fully
    /// landed before the failure) present at the next open.
    pub fn commit(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        batch: Batch,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let bytes = postcard::to_allocvec(&batch.ops).map_err(StoreError::Value)?;
        match self.journal.append(dev, &bytes) {
            Err(JournalError::Full { .. }) => {
                self.compact_with(dev, Some(&batch.ops))?;
            }
            r => r?,
        }
        self.apply(batch.ops);
        Ok(())
    }

    pub fn put(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(key, value);
        self.commit(dev, b)
    }

    pub fn delete(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        key: &str,
    ) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.delete(key);
        self.commit(dev, b)
    }

    /// Stores `value` encoded with postcard.
    pub fn put_value<T: Serialize>(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(value).map_err(StoreError::Value)?;
        self.put(dev, key, &bytes)
    }

    /// Decodes the record at `key`.
    pub fn value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.get(key)
            .map(|b| postcard::from_bytes(b).map_err(StoreError::Value))
            .transpose()
    }

    /// Rewrites the journal as the current records.
    pub fn compact(&mut self, dev: &mut (impl BlockDevice + ?Sized)) -> Result<(), StoreError> {
        self.compact_with(dev, None)
    }

    /// Compacts; `pending` (a batch not yet applied) goes into the snapshot
    /// as its own last frame, so the batch commits with the compaction.
    fn compact_with(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        pending: Option<&[Op]>,
    ) -> Result<(), StoreError> {
        let mut frames = Vec::new();
        let mut ops = alloc::vec![Op::SchemaVersion(self.schema_version)];
        let mut size = 0;
        for (k, v) in &self.records {
            size += k.len() + v.len() + 8;
            ops.push(Op::Put {
                key: k.clone(),
                value: v.clone(),
            });
            if size >= SNAPSHOT_FRAME_BYTES {
                frames.push(postcard::to_allocvec(&ops).map_err(StoreError::Value)?);
                ops.clear();
                size = 0;
            }
        }
        if !ops.is_empty() {
            frames.push(postcard::to_allocvec(&ops).map_err(StoreError::Value)?);
        }
        if let Some(p) = pending {
            frames.push(postcard::to_allocvec(p).map_err(StoreError::Value)?);
        }
        self.journal.compact(dev, &frames)?;
        Ok(())
    }
}

/// Fuzz entry point: opens a store on arbitrary bytes (one region of
/// 512-byte blocks), strictly and with salvage; must never panic.
pub fn fuzz_config_store(data: &[u8]) {
    let blocks = (data.len() / 512) as u64;
    let mut dev = crate::mem::MemBlockDevice::new(512, blocks);
    dev.bytes_mut()
        .copy_from_slice(&data[..blocks as usize * 512]);
    let region = Region {
        start_lba: 0,
        blocks,
    };
    if let Ok(s) = ConfigStore::open(&mut dev, region) {
        let _ = s.with_prefix("VM/").count();
    }
    let _ = ConfigStore::open_salvage(&mut dev, region);
}

#[cfg(test)]
mod tests;
