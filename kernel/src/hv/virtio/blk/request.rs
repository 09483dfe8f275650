//! A guest's block request as read from its chain when it is taken from the
//! available ring: the header is read once and checked against the disk,
//! and the chain's descriptors (addresses and lengths, already checked to
//! lie in guest RAM) are kept, so a guest that rewrites its descriptor
//! table while the request is in flight changes nothing the device uses.

use core::num::NonZeroU32;

use super::{HEADER, MAX_DISCARD_SECTORS, MAX_REQUEST_BYTES, MAX_WRITE_ZEROES_SECTORS, SECTOR};
use crate::hv::memory::GuestMemory;
use crate::hv::virtio::queue::{Chain, QueueError};

/// Request types and status values (§5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// A discard or write-zeroes range: sector u64, num_sectors u32, flags u32.
pub const RANGE_BYTES: usize = 16;

/// What the disk is, as the parser checks requests against it.
#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub block_size: NonZeroU32,
    pub capacity_sectors: u64,
    pub read_only: bool,
    /// Discards aligned to this many sectors (0: no discard).
    pub discard_sectors: u32,
}

/// What one chain asks of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `len` bytes from backend block `lba` into the writable buffers.
    Read {
        lba: u64,
        len: u64,
    },
    /// `len` bytes of the readable buffers (after the header) to `lba`.
    Write {
        lba: u64,
        len: u64,
    },
    /// `len` zero bytes to `lba`.
    Zeroes {
        lba: u64,
        len: u64,
    },
    Flush,
    Discard {
        lba: u64,
        blocks: u64,
    },
}

/// A parsed chain: either work for the disk, or answered at once.
#[derive(Debug)]
pub enum Parsed {
    Disk(Kind),
    /// GET_ID: the serial's bytes go into the writable buffers.
    Id,
    /// Answered without the disk: this status.
    Status(u8),
}

impl Disk {
    /// Whether the disk serves discard.
    pub fn discard(&self) -> bool {
        self.discard_sectors != 0
    }

    /// The first backend block of `len` bytes at `sector`, if they are
    /// whole blocks inside the disk.
    fn blocks(&self, sector: u64, len: u64) -> Option<u64> {
        let bs = u64::from(self.block_size.get());
        let offset = sector.checked_mul(SECTOR)?;
        let end = offset.checked_add(len)?;
        let whole = len > 0 && offset.is_multiple_of(bs) && len.is_multiple_of(bs);
        (whole && end <= self.capacity_sectors.saturating_mul(SECTOR)).then_some(offset / bs)
    }

    /// Reads the chain's header (and range, for discard and write-zeroes)
    /// and checks them. `Err` only for a chain without a status byte, a
    /// protocol violation; every bad request otherwise gets a status.
    pub fn parse(&self, chain: &Chain, mem: &GuestMemory<'_>) -> Result<Parsed, QueueError> {
        let writable = chain.writable_len();
        if writable == 0 {
            return Err(QueueError::Malformed(
                "a block request without a status byte",
            ));
        }
        let mut header = [0u8; HEADER];
        if chain.read(mem, 0, &mut header)? < HEADER {
            return Ok(Parsed::Status(S_IOERR));
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let ioerr = Ok(Parsed::Status(S_IOERR));
        Ok(match kind {
            T_IN => {
                let len = writable - 1;
                match self.blocks(sector, len) {
                    Some(lba) if len <= MAX_REQUEST_BYTES => Parsed::Disk(Kind::Read { lba, len }),
                    _ => return ioerr,
                }
            }
            T_OUT => {
                let len = chain.readable_len().saturating_sub(HEADER as u64);
                match self.blocks(sector, len) {
                    Some(lba) if len <= MAX_REQUEST_BYTES && !self.read_only => {
                        Parsed::Disk(Kind::Write { lba, len })
                    }
                    _ => return ioerr,
                }
            }
            // A read-only disk has nothing to make durable.
            T_FLUSH if self.read_only => Parsed::Status(S_OK),
            T_FLUSH => Parsed::Disk(Kind::Flush),
            T_GET_ID => Parsed::Id,
            T_WRITE_ZEROES | T_DISCARD => {
                if self.read_only {
                    return ioerr;
                }
                if kind == T_DISCARD && !self.discard() {
                    return Ok(Parsed::Status(S_UNSUPP));
                }
                // One range (`max_*_seg` is 1).
                let mut range = [0u8; RANGE_BYTES];
                if chain.readable_len() != (HEADER + RANGE_BYTES) as u64
                    || chain.read(mem, HEADER as u64, &mut range)? != RANGE_BYTES
                {
                    return Ok(Parsed::Status(S_UNSUPP));
                }
                let sector = u64::from_le_bytes(range[0..8].try_into().unwrap_or_default());
                let sectors = u32::from_le_bytes(range[8..12].try_into().unwrap_or_default());
                let max = if kind == T_DISCARD {
                    MAX_DISCARD_SECTORS
                } else {
                    MAX_WRITE_ZEROES_SECTORS
                };
                if sectors == 0 || sectors > max {
                    return ioerr;
                }
                let len = u64::from(sectors) * SECTOR;
                let Some(lba) = self.blocks(sector, len) else {
                    return ioerr;
                };
                if kind == T_DISCARD {
                    let blocks = len / u64::from(self.block_size.get());
                    Parsed::Disk(Kind::Discard { lba, blocks })
                } else {
                    Parsed::Disk(Kind::Zeroes { lba, len })
                }
            }
            _ => Parsed::Status(S_UNSUPP),
        })
    }
}

impl Kind {
    /// Bytes the request moves through host memory.
    pub fn bytes(&self) -> u64 {
        match self {
            Kind::Read { len, .. } | Kind::Write { len, .. } | Kind::Zeroes { len, .. } => *len,
            Kind::Flush | Kind::Discard { .. } => 0,
        }
    }
}
