//! The XenAPI database's home: the storage crate's configuration store on a
//! block device (the state disk in the image, a file when hosted).
//!
//! A device is only ever formatted when it is blank (its first blocks all
//! zero). A device holding anything else that is not our store is refused,
//! so a host never destroys a disk it was not meant to own.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use storage::BlockDevice;
use storage::config_store::{Batch, ConfigStore, StoreError};
use storage::journal::JournalError;
use storage::region::Region;

use crate::xenapi::{Change, StateStore};

/// Blocks that must be zero for a device to count as blank.
const BLANK_PROBE_BLOCKS: u64 = 8;

/// How the store was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An existing store.
    Existing,
    /// The device was blank and now holds an empty store.
    Formatted,
}

/// The configuration store on `D`.
#[derive(Debug)]
pub struct BlockStore<D: BlockDevice> {
    dev: D,
    store: ConfigStore,
}

fn is_blank(dev: &mut impl BlockDevice) -> Result<bool, String> {
    let blocks = BLANK_PROBE_BLOCKS.min(dev.num_blocks());
    let mut buf = vec![0u8; (blocks * u64::from(dev.block_size())) as usize];
    dev.read_blocks(0, &mut buf)
        .map_err(|e| format!("reading the state disk: {e}"))?;
    Ok(buf.iter().all(|&b| b == 0))
}

impl<D: BlockDevice> BlockStore<D> {
    /// Opens an existing store on the whole of `dev`; the device comes
    /// back if it holds none (blank or foreign).
    pub fn open(mut dev: D) -> Result<Self, (D, String)> {
        let region = Region {
            start_lba: 0,
            blocks: dev.num_blocks(),
        };
        match ConfigStore::open(&mut dev, region) {
            Ok(store) => Ok(BlockStore { dev, store }),
            Err(e) => Err((dev, format!("{e}"))),
        }
    }

    /// Opens the store on the whole of `dev`, or formats a blank `dev`
    /// (`id` must be random: it tells this store's blocks from stale ones).
    /// On error the device comes back untouched (beyond reads).
    pub fn open_or_format(mut dev: D, id: u64) -> Result<(Self, Opened), (D, String)> {
        let region = Region {
            start_lba: 0,
            blocks: dev.num_blocks(),
        };
        match ConfigStore::open(&mut dev, region) {
            Ok(store) => Ok((BlockStore { dev, store }, Opened::Existing)),
            Err(StoreError::Journal(JournalError::NotFormatted)) => match is_blank(&mut dev) {
                Ok(true) => match ConfigStore::format(&mut dev, region, id) {
                    Ok(store) => Ok((BlockStore { dev, store }, Opened::Formatted)),
                    Err(e) => Err((dev, format!("formatting the state disk: {e}"))),
                },
                Ok(false) => Err((
                    dev,
                    String::from(
                        "the disk holds data that is not a keel state store; it is left untouched",
                    ),
                )),
                Err(e) => Err((dev, e)),
            },
            Err(e) => Err((dev, format!("the state store does not open: {e}"))),
        }
    }

    /// Gives the device back.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Records in the store.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

impl<D: BlockDevice> StateStore for BlockStore<D> {
    fn records(&self) -> (u32, Vec<(String, Vec<u8>)>) {
        let records = self
            .store
            .with_prefix("")
            .map(|(k, v)| (String::from(k), v.to_vec()))
            .collect();
        (self.store.schema_version(), records)
    }

    fn commit(&mut self, changes: Vec<Change>, schema_version: u32) -> Result<(), String> {
        let mut batch = Batch::new();
        if self.store.schema_version() != schema_version {
            batch.schema_version(schema_version);
        }
        for c in &changes {
            match c {
                Change::Put { key, value } => batch.put(key, value),
                Change::Delete { key } => batch.delete(key),
            };
        }
        self.store
            .commit(&mut self.dev, batch)
            .map_err(|e| format!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::mem::MemBlockDevice;

    #[test]
    fn formats_only_a_blank_disk_and_reopens_what_it_wrote() {
        let disk = MemBlockDevice::new(512, 4096);
        let (mut s, how) = BlockStore::open_or_format(disk, 7).unwrap();
        assert_eq!(how, Opened::Formatted);
        s.commit(
            vec![Change::Put {
                key: "pool/OpaqueRef:p".into(),
                value: vec![1, 2, 3],
            }],
            1,
        )
        .unwrap();
        let (s, how) = BlockStore::open_or_format(s.into_device(), 8).unwrap();
        assert_eq!(how, Opened::Existing);
        assert_eq!(
            s.records(),
            (1, vec![("pool/OpaqueRef:p".into(), vec![1, 2, 3])])
        );

        let mut foreign = MemBlockDevice::new(512, 4096);
        foreign.write_blocks(0, &[0x55; 512]).unwrap();
        let Err((mut foreign, e)) = BlockStore::open_or_format(foreign, 9) else {
            panic!("a foreign disk was accepted");
        };
        assert!(e.contains("left untouched"), "{e}");
        let mut check = [0u8; 512];
        foreign.read_blocks(0, &mut check).unwrap();
        assert_eq!(check, [0x55; 512]);
    }
}
