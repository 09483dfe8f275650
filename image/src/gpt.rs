//! GUID partition table writer (UEFI 2.10 §5.3): protective MBR, primary
//! header and entry array at the start, backup entry array and header at
//! the end. Written here rather than by `sgdisk` so every byte is fixed by
//! the inputs (GUIDs come from the caller, nothing from the clock).

use alloc::vec;
use alloc::vec::Vec;

use crate::crc32::crc32;
use crate::disk_layout::{Guid, Partition, SECTOR_BYTES};

/// Entries in the array (the minimum the spec allows, and what everyone uses).
pub const ENTRY_COUNT: usize = 128;
/// Bytes per entry.
pub const ENTRY_BYTES: usize = 128;
/// Sectors the entry array occupies.
pub const ENTRY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_BYTES) as u64 / SECTOR_BYTES;
/// First LBA a partition may use: after the MBR, the header and the array.
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRY_SECTORS;

const HEADER_BYTES: usize = 92;
const SECTOR: usize = SECTOR_BYTES as usize;

/// Why a table cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    TooManyPartitions(usize),
    /// A partition lies outside the usable area or overlaps another.
    BadExtent {
        number: u32,
    },
    /// A name is longer than the 36 UTF-16 units GPT holds.
    NameTooLong {
        number: u32,
    },
}

impl core::fmt::Display for GptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyPartitions(n) => write!(f, "{n} partitions, GPT holds {ENTRY_COUNT}"),
            Self::BadExtent { number } => {
                write!(
                    f,
                    "partition {number} is outside the disk or overlaps another"
                )
            }
            Self::NameTooLong { number } => {
                write!(f, "partition {number}'s name exceeds 36 UTF-16 units")
            }
        }
    }
}

/// One partition plus its unique GUID.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub partition: Partition,
    pub unique_guid: Guid,
}

/// The sectors of a partitioned disk that belong to the table.
#[derive(Debug, Clone)]
pub struct Table {
    /// LBA 0 to `FIRST_USABLE_LBA - 1`: protective MBR, header, entries.
    pub primary: Vec<u8>,
    /// The last `ENTRY_SECTORS + 1` sectors: entries, then the backup header.
    pub backup: Vec<u8>,
    /// Where `backup` starts.
    pub backup_lba: u64,
}

/// Builds the table for a disk of `disk_sectors` sectors.
pub fn build(disk_guid: Guid, entries: &[Entry], disk_sectors: u64) -> Result<Table, GptError> {
    if entries.len() > ENTRY_COUNT {
        return Err(GptError::TooManyPartitions(entries.len()));
    }
    let last_lba = disk_sectors.saturating_sub(1);
    let last_usable = last_lba.saturating_sub(ENTRY_SECTORS + 1);
    let mut array = vec![0u8; ENTRY_COUNT * ENTRY_BYTES];
    let mut end = FIRST_USABLE_LBA;
    for (slot, entry) in entries.iter().enumerate() {
        let p = entry.partition;
        if p.sectors == 0 || p.first_lba < end || p.last_lba() > last_usable {
            return Err(GptError::BadExtent { number: p.number });
        }
        end = p.first_lba + p.sectors;
        let at = &mut array[slot * ENTRY_BYTES..(slot + 1) * ENTRY_BYTES];
        at[0..16].copy_from_slice(&p.type_guid.to_bytes());
        at[16..32].copy_from_slice(&entry.unique_guid.to_bytes());
        at[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        at[40..48].copy_from_slice(&p.last_lba().to_le_bytes());
        // Attributes (48..56) stay zero.
        let mut units = p.name.encode_utf16();
        for unit_at in at[56..128].chunks_exact_mut(2) {
            if let Some(unit) = units.next() {
                unit_at.copy_from_slice(&unit.to_le_bytes());
            }
        }
        if units.next().is_some() {
            return Err(GptError::NameTooLong { number: p.number });
        }
    }
    let array_crc = crc32(&array);
    let backup_array_lba = last_lba - ENTRY_SECTORS;
    let header = |my_lba: u64, alternate_lba: u64, array_lba: u64| {
        let mut h = vec![0u8; SECTOR];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&FIRST_USABLE_LBA.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_bytes());
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_BYTES as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32(&h[..HEADER_BYTES]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };

    let mut primary = protective_mbr(disk_sectors);
    primary.extend_from_slice(&header(1, last_lba, 2));
    primary.extend_from_slice(&array);
    let mut backup = array;
    backup.extend_from_slice(&header(last_lba, 1, backup_array_lba));
    Ok(Table {
        primary,
        backup,
        backup_lba: backup_array_lba,
    })
}

/// LBA 0: one partition of type 0xEE covering the disk, so MBR-only tools
/// see the disk as in use. Boot code (bytes 0..440) is left zero for the
/// caller (GRUB's `boot.img` on a BIOS-bootable disk).
fn protective_mbr(disk_sectors: u64) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR];
    let entry = &mut mbr[0x1BE..0x1CE];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xEE;
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk_layout::{DISK_SECTORS, PARTITIONS};

    fn entries() -> Vec<Entry> {
        PARTITIONS
            .iter()
            .map(|p| Entry {
                partition: *p,
                unique_guid: Guid::from_hash([p.number as u8; 16]),
            })
            .collect()
    }

    #[test]
    fn headers_and_checksums() {
        let t = build(Guid::from_hash([1; 16]), &entries(), DISK_SECTORS).expect("table");
        assert_eq!(t.primary.len(), FIRST_USABLE_LBA as usize * SECTOR);
        assert_eq!(t.backup.len(), (ENTRY_SECTORS as usize + 1) * SECTOR);
        assert_eq!(&t.primary[510..512], &[0x55, 0xAA]);
        assert_eq!(t.primary[0x1BE + 4], 0xEE);
        let h = &t.primary[SECTOR..2 * SECTOR];
        assert_eq!(&h[0..8], b"EFI PART");
        let mut zeroed = h[..HEADER_BYTES].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(crc32(&zeroed).to_le_bytes(), h[16..20]);
        let array = &t.primary[2 * SECTOR..];
        assert_eq!(crc32(array).to_le_bytes(), h[88..92]);
        // Entry 2 is the ESP, named in UTF-16LE.
        let esp = &array[ENTRY_BYTES..2 * ENTRY_BYTES];
        assert_eq!(&esp[56..60], &[b'E', 0, b'F', 0]);
        // The backup header points back at the primary one.
        let b = &t.backup[t.backup.len() - SECTOR..];
        assert_eq!(&b[0..8], b"EFI PART");
        assert_eq!(b[32..40], 1u64.to_le_bytes());
        assert_eq!(b[24..32], (DISK_SECTORS - 1).to_le_bytes());
        assert_eq!(t.backup_lba + ENTRY_SECTORS + 1, DISK_SECTORS);
    }

    #[test]
    fn overlapping_partitions_are_refused() {
        let mut e = entries();
        e[1].partition.first_lba = e[0].partition.first_lba;
        assert!(matches!(
            build(Guid::from_hash([1; 16]), &e, DISK_SECTORS),
            Err(GptError::BadExtent { number: 2 })
        ));
        assert!(matches!(
            build(Guid::from_hash([1; 16]), &entries(), 1000),
            Err(GptError::BadExtent { .. })
        ));
    }
}
