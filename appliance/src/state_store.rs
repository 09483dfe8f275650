//! The XenAPI database's home: the storage crate's configuration store on a
//! block device (the state disk in the image, a file when hosted).
//!
//! On a keel disk (the GPT layout of `host_config::disk_layout`) the store
//! lives in the state partition, which upgrades never touch; any other disk
//! is used whole. A region is only ever formatted when it is blank (its
//! first blocks all zero). A region holding anything else that is not our
//! store is refused, so a host never destroys a disk it was not meant to own.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use storage::BlockDevice;
use storage::config_store::{Batch, ConfigStore, StoreError};
use storage::journal::JournalError;
use storage::region::Region;

use crate::xenapi::{Change, StateStore};

/// Blocks that must be zero for a region to count as blank.
const BLANK_PROBE_BLOCKS: u64 = 8;
/// GPT entries read at most (the standard array).
const MAX_GPT_ENTRIES: u32 = 128;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The keel state partition of `dev`'s GPT, if it has one (512-byte blocks
/// only: the layout is in 512-byte sectors). Every field is bounds-checked:
/// the table may be damaged or hostile.
pub fn state_partition(dev: &mut impl BlockDevice) -> Option<Region> {
    if dev.block_size() != 512 || dev.num_blocks() < 34 {
        return None;
    }
    let mut header = [0u8; 512];
    dev.read_blocks(1, &mut header).ok()?;
    if header.get(..8) != Some(b"EFI PART") {
        return None;
    }
    let entries_lba = u64_at(&header, 72)?;
    let count = u32_at(&header, 80)?.min(MAX_GPT_ENTRIES);
    let size = u32_at(&header, 84)?;
    if !(128..=512).contains(&size) || !size.is_power_of_two() {
        return None;
    }
    let bytes = u64::from(count) * u64::from(size);
    let blocks = bytes.div_ceil(512);
    let mut table = vec![0u8; (blocks * 512) as usize];
    dev.read_blocks(entries_lba, &mut table).ok()?;
    let wanted = host_config::disk_layout::TYPE_KEEL_STATE.to_bytes();
    table
        .chunks_exact(size as usize)
        .take(count as usize)
        .find(|e| e.get(..16) == Some(&wanted[..]))
        .and_then(|e| {
            let first = u64_at(e, 32)?;
            let last = u64_at(e, 40)?;
            let region = Region {
                start_lba: first,
                blocks: last.checked_sub(first)?.checked_add(1)?,
            };
            region.check(dev).ok()?;
            Some(region)
        })
}

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
    /// In a keel disk's state partition (else on the whole device).
    partition: bool,
}

fn is_blank(dev: &mut impl BlockDevice, region: Region) -> Result<bool, String> {
    let blocks = BLANK_PROBE_BLOCKS.min(region.blocks);
    let mut buf = vec![0u8; (blocks * u64::from(dev.block_size())) as usize];
    dev.read_blocks(region.start_lba, &mut buf)
        .map_err(|e| format!("reading the state disk: {e}"))?;
    Ok(buf.iter().all(|&b| b == 0))
}

impl<D: BlockDevice> BlockStore<D> {
    /// Where the store goes on `dev`: its keel state partition, else all of it.
    pub fn region(dev: &mut D) -> (Region, bool) {
        match state_partition(dev) {
            Some(r) => (r, true),
            None => (
                Region {
                    start_lba: 0,
                    blocks: dev.num_blocks(),
                },
                false,
            ),
        }
    }

    /// Opens an existing store on `dev` (see [`Self::region`]); the device
    /// comes back if it holds none (blank or foreign).
    pub fn open(mut dev: D) -> Result<Self, (D, String)> {
        let (region, partition) = Self::region(&mut dev);
        match ConfigStore::open(&mut dev, region) {
            Ok(store) => Ok(BlockStore {
                dev,
                store,
                partition,
            }),
            Err(e) => Err((dev, format!("{e}"))),
        }
    }

    /// Opens the store on the whole of `dev`, or formats a blank `dev`
    /// (`id` must be random: it tells this store's blocks from stale ones).
    /// On error the device comes back untouched (beyond reads).
    pub fn open_or_format(mut dev: D, id: u64) -> Result<(Self, Opened), (D, String)> {
        let (region, partition) = Self::region(&mut dev);
        match ConfigStore::open(&mut dev, region) {
            Ok(store) => Ok((
                BlockStore {
                    dev,
                    store,
                    partition,
                },
                Opened::Existing,
            )),
            Err(StoreError::Journal(JournalError::NotFormatted)) => {
                match is_blank(&mut dev, region) {
                    Ok(true) => match ConfigStore::format(&mut dev, region, id) {
                        Ok(store) => Ok((
                            BlockStore {
                                dev,
                                store,
                                partition,
                            },
                            Opened::Formatted,
                        )),
                        Err(e) => Err((dev, format!("formatting the state disk: {e}"))),
                    },
                    Ok(false) => Err((
                        dev,
                        String::from(
                            "the disk holds data that is not a keel state store; it is left untouched",
                        ),
                    )),
                    Err(e) => Err((dev, e)),
                }
            }
            Err(e) => Err((dev, format!("the state store does not open: {e}"))),
        }
    }

    /// Where on its device the store is.
    pub fn location(&self) -> &'static str {
        if self.partition {
            "its keel state partition"
        } else {
            "the whole disk"
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

    /// A disk with a GPT whose second entry is a keel state partition at
    /// blocks 2048..4095.
    fn keel_disk() -> MemBlockDevice {
        let mut disk = MemBlockDevice::new(512, 8192);
        let mut header = [0u8; 512];
        header[..8].copy_from_slice(b"EFI PART");
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        disk.write_blocks(1, &header).unwrap();
        let mut entries = vec![0u8; 128 * 128];
        entries[..16].copy_from_slice(&host_config::disk_layout::TYPE_ESP.to_bytes());
        let e = &mut entries[128..256];
        e[..16].copy_from_slice(&host_config::disk_layout::TYPE_KEEL_STATE.to_bytes());
        e[32..40].copy_from_slice(&2048u64.to_le_bytes());
        e[40..48].copy_from_slice(&4095u64.to_le_bytes());
        disk.write_blocks(2, &entries).unwrap();
        disk
    }

    #[test]
    fn a_keel_disk_keeps_the_store_in_its_state_partition() {
        let mut disk = keel_disk();
        // Other partitions hold data: only the state partition may change.
        disk.write_blocks(100, &[0xaa; 512]).unwrap();
        assert_eq!(
            state_partition(&mut disk),
            Some(Region {
                start_lba: 2048,
                blocks: 2048
            })
        );
        let before = disk.bytes().to_vec();
        let (mut s, how) = BlockStore::open_or_format(disk, 3).unwrap();
        assert_eq!(how, Opened::Formatted);
        s.commit(
            vec![Change::Put {
                key: "k".into(),
                value: vec![9],
            }],
            1,
        )
        .unwrap();
        let disk = s.into_device();
        let (start, end) = (2048 * 512, 4096 * 512);
        assert_eq!(disk.bytes()[..start], before[..start]);
        assert_eq!(disk.bytes()[end..], before[end..]);
        let s = BlockStore::open(disk).unwrap();
        assert_eq!(s.records().1, vec![("k".into(), vec![9])]);
    }

    #[test]
    fn damaged_gpt_fields_are_ignored_not_trusted() {
        let good = keel_disk();
        for at in [72usize, 80, 84] {
            for v in [0u32, 3, 0xffff_ffff] {
                let mut disk = good.clone();
                let mut header = [0u8; 512];
                disk.read_blocks(1, &mut header).unwrap();
                header[at..at + 4].copy_from_slice(&v.to_le_bytes());
                disk.write_blocks(1, &header).unwrap();
                let _ = state_partition(&mut disk);
            }
        }
        // A partition past the end of the disk is not used.
        let mut disk = good.clone();
        let mut entries = vec![0u8; 512];
        disk.read_blocks(2, &mut entries).unwrap();
        entries[128 + 40..128 + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        disk.write_blocks(2, &entries).unwrap();
        assert_eq!(state_partition(&mut disk), None);
    }
}
