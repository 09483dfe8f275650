//! The SR superblock and the lease record, at the start of the device.
//!
//! ```text
//! byte 0       superblock copy 0 (4 KiB)
//! byte 4096    superblock copy 1
//! byte 8192    lease record (4 KiB): the host that may write the SR
//! byte 65536   the metadata journal (two areas)
//! data_offset  the data clusters (aligned to the cluster size)
//! ```
//! The superblock is written at format only; two copies so one damaged
//! sector does not lose the SR. Its generation says which copy is newer if
//! they ever differ (a later in-place SR upgrade writes copy 0, then 1).

use crate::iscsi::crc32c::crc32c;
use crate::journal::header_bytes::{u32_at, u64_at};

pub const MAGIC: [u8; 8] = *b"KEELSR\r\n";
pub const VERSION: u32 = 1;
/// Size of every fixed structure at the start of the device.
pub const SECTOR: u64 = 4096;
pub const SUPERBLOCK_COPIES: [u64; 2] = [0, SECTOR];
pub const LEASE_OFFSET: u64 = 2 * SECTOR;
pub const JOURNAL_OFFSET: u64 = 64 * 1024;
const LEN: usize = 128;

/// What an SR holds (the XenAPI `SR.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrType {
    /// A host disk.
    Local,
    /// A LUN shared by the hosts of a pool.
    Iscsi,
    /// An ISO library: read-only VDIs written once, found by name.
    Iso,
}

impl SrType {
    fn code(self) -> u32 {
        match self {
            SrType::Local => 1,
            SrType::Iscsi => 2,
            SrType::Iso => 3,
        }
    }
    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(SrType::Local),
            2 => Some(SrType::Iscsi),
            3 => Some(SrType::Iso),
            _ => None,
        }
    }
    /// The XenAPI name.
    pub fn name(self) -> &'static str {
        match self {
            SrType::Local => "local",
            SrType::Iscsi => "iscsi",
            SrType::Iso => "iso",
        }
    }
}

/// The SR's geometry and identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub sr_type: SrType,
    pub generation: u64,
    pub uuid: [u8; 16],
    pub cluster_size: u32,
    pub block_size: u32,
    pub journal_len: u64,
    pub data_offset: u64,
    pub clusters: u64,
}

impl Superblock {
    pub fn encode(&self, sector: &mut [u8]) {
        sector.fill(0);
        if sector.len() < LEN {
            return;
        }
        sector[0..8].copy_from_slice(&MAGIC);
        sector[8..12].copy_from_slice(&VERSION.to_le_bytes());
        sector[12..16].copy_from_slice(&self.sr_type.code().to_le_bytes());
        sector[16..24].copy_from_slice(&self.generation.to_le_bytes());
        sector[24..40].copy_from_slice(&self.uuid);
        sector[40..44].copy_from_slice(&self.cluster_size.to_le_bytes());
        sector[44..48].copy_from_slice(&self.block_size.to_le_bytes());
        sector[48..56].copy_from_slice(&JOURNAL_OFFSET.to_le_bytes());
        sector[56..64].copy_from_slice(&self.journal_len.to_le_bytes());
        sector[64..72].copy_from_slice(&self.data_offset.to_le_bytes());
        sector[72..80].copy_from_slice(&self.clusters.to_le_bytes());
        sector[80..88].copy_from_slice(&LEASE_OFFSET.to_le_bytes());
        let crc = crc32c(&sector[..LEN - 4]);
        sector[LEN - 4..LEN].copy_from_slice(&crc.to_le_bytes());
    }

    /// Why a sector is not a superblock.
    pub fn decode(sector: &[u8]) -> Result<Superblock, SuperblockError> {
        let s = sector.get(..LEN).ok_or(SuperblockError::NotAnSr)?;
        if s[0..8] != MAGIC {
            return Err(SuperblockError::NotAnSr);
        }
        if u32_at(s, LEN - 4) != crc32c(&s[..LEN - 4]) {
            return Err(SuperblockError::Damaged);
        }
        let version = u32_at(s, 8);
        if version != VERSION {
            return Err(SuperblockError::Version(version));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&s[24..40]);
        let sb = Superblock {
            sr_type: SrType::from_code(u32_at(s, 12)).ok_or(SuperblockError::Damaged)?,
            generation: u64_at(s, 16),
            uuid,
            cluster_size: u32_at(s, 40),
            block_size: u32_at(s, 44),
            journal_len: u64_at(s, 56),
            data_offset: u64_at(s, 64),
            clusters: u64_at(s, 72),
        };
        let sane = u64_at(s, 48) == JOURNAL_OFFSET
            && u64_at(s, 80) == LEASE_OFFSET
            && sb.cluster_size.is_power_of_two()
            && sb.block_size != 0
            && SECTOR.is_multiple_of(u64::from(sb.block_size))
            && JOURNAL_OFFSET
                .checked_add(sb.journal_len)
                .is_some_and(|end| end <= sb.data_offset)
            && sb.data_offset.is_multiple_of(u64::from(sb.cluster_size))
            && sb
                .clusters
                .checked_mul(u64::from(sb.cluster_size))
                .and_then(|b| b.checked_add(sb.data_offset))
                .is_some();
        if !sane {
            return Err(SuperblockError::Damaged);
        }
        Ok(sb)
    }
}

/// Why the superblock could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuperblockError {
    /// No SR magic: not formatted as an SR.
    NotAnSr,
    /// Both copies fail their checksum or hold impossible values.
    Damaged,
    /// Written by a newer (or unknown) format version.
    Version(u32),
}

/// Who may write the SR. Pool-level locking (coming later) takes the lease
/// before writing metadata and renews it; today format writes a free lease
/// and open reports the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// The holding host's uuid; all zero when free.
    pub host: [u8; 16],
    /// Bumped by every take-over, so a host that lost the lease sees it.
    pub generation: u64,
    /// Expiry on the pool's clock (seconds), set by the holder.
    pub expires_at: u64,
}

const LEASE_MAGIC: [u8; 8] = *b"KEELLEAS";

impl Lease {
    pub fn encode(&self, sector: &mut [u8]) {
        sector.fill(0);
        if sector.len() < 64 {
            return;
        }
        sector[0..8].copy_from_slice(&LEASE_MAGIC);
        sector[8..24].copy_from_slice(&self.host);
        sector[24..32].copy_from_slice(&self.generation.to_le_bytes());
        sector[32..40].copy_from_slice(&self.expires_at.to_le_bytes());
        let crc = crc32c(&sector[..60]);
        sector[60..64].copy_from_slice(&crc.to_le_bytes());
    }

    /// `None` when the record is damaged.
    pub fn decode(sector: &[u8]) -> Option<Lease> {
        let s = sector.get(..64)?;
        if s[0..8] != LEASE_MAGIC || u32_at(s, 60) != crc32c(&s[..60]) {
            return None;
        }
        let mut host = [0u8; 16];
        host.copy_from_slice(&s[8..24]);
        Some(Lease {
            host,
            generation: u64_at(s, 24),
            expires_at: u64_at(s, 32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> Superblock {
        Superblock {
            sr_type: SrType::Iscsi,
            generation: 1,
            uuid: [7; 16],
            cluster_size: 1 << 20,
            block_size: 512,
            journal_len: 1 << 20,
            data_offset: 2 << 20,
            clusters: 100,
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let mut s = [0u8; 4096];
        sb().encode(&mut s);
        assert_eq!(Superblock::decode(&s), Ok(sb()));
        for bit in 64..LEN * 8 {
            let mut c = s;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::decode(&c).is_err(), "bit {bit}");
        }
        assert_eq!(
            Superblock::decode(&[0u8; 4096]),
            Err(SuperblockError::NotAnSr)
        );
        let mut l = [0u8; 4096];
        let lease = Lease {
            host: [3; 16],
            generation: 4,
            expires_at: 5,
        };
        lease.encode(&mut l);
        assert_eq!(Lease::decode(&l), Some(lease));
        l[9] ^= 1;
        assert_eq!(Lease::decode(&l), None);
    }
}
