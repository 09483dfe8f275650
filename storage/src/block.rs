//! The narrow interface between the storage layer and block devices.

use core::fmt;

/// Why a block operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The range `[lba, lba + blocks)` is beyond the device's end.
    OutOfRange {
        lba: u64,
        blocks: u64,
        capacity: u64,
    },
    /// The buffer length is not a non-zero multiple of the block size.
    Misaligned { len: usize, block_size: u32 },
    /// The device is read-only.
    ReadOnly,
    /// The device reported an I/O error.
    Io,
    /// The device does not do this operation (a discard on a disk that
    /// cannot reclaim space).
    Unsupported,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::OutOfRange {
                lba,
                blocks,
                capacity,
            } => write!(
                f,
                "blocks {lba}..{} are beyond the device end ({capacity} blocks)",
                lba.saturating_add(*blocks)
            ),
            BlockError::Misaligned { len, block_size } => {
                write!(
                    f,
                    "buffer of {len} bytes is not a multiple of the {block_size}-byte block"
                )
            }
            BlockError::ReadOnly => write!(f, "device is read-only"),
            BlockError::Io => write!(f, "I/O error"),
            BlockError::Unsupported => write!(f, "the device does not support this operation"),
        }
    }
}

impl core::error::Error for BlockError {}

/// A random-access device of fixed-size blocks.
pub trait BlockDevice {
    /// Size of one block in bytes (512 or 4096).
    fn block_size(&self) -> u32;

    /// Number of blocks.
    fn num_blocks(&self) -> u64;

    /// Whether writes are refused.
    fn read_only(&self) -> bool {
        false
    }

    /// Reads `buf.len() / block_size` blocks starting at `lba`.
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Writes `buf.len() / block_size` blocks starting at `lba`.
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), BlockError>;

    /// Whether [`BlockDevice::discard`] does anything.
    fn supports_discard(&self) -> bool {
        false
    }

    /// Tells the device `blocks` blocks from `lba` hold nothing the caller
    /// needs: it may reclaim them (later reads return zeros or the old
    /// data). Devices that cannot say [`BlockError::Unsupported`].
    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let _ = (lba, blocks);
        Err(BlockError::Unsupported)
    }
}

/// Checks a request against a device's geometry; drivers call this first so
/// every implementation rejects bad requests the same way. Returns the number
/// of blocks the request covers.
pub fn check_request(
    dev: &(impl BlockDevice + ?Sized),
    lba: u64,
    len: usize,
) -> Result<u64, BlockError> {
    let block_size = dev.block_size();
    if len == 0 || !len.is_multiple_of(block_size as usize) {
        return Err(BlockError::Misaligned { len, block_size });
    }
    let blocks = (len / block_size as usize) as u64;
    check_range(lba, blocks, dev.num_blocks())?;
    Ok(blocks)
}

/// Checks that `blocks` blocks from `lba` lie within `capacity` blocks.
pub fn check_range(lba: u64, blocks: u64, capacity: u64) -> Result<(), BlockError> {
    match lba.checked_add(blocks) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BlockError::OutOfRange {
            lba,
            blocks,
            capacity,
        }),
    }
}

impl<B: BlockDevice + ?Sized> BlockDevice for alloc::boxed::Box<B> {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn num_blocks(&self) -> u64 {
        (**self).num_blocks()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn supports_discard(&self) -> bool {
        (**self).supports_discard()
    }
    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        (**self).discard(lba, blocks)
    }
}

impl<B: BlockDevice + ?Sized> BlockDevice for &mut B {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn num_blocks(&self) -> u64 {
        (**self).num_blocks()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn supports_discard(&self) -> bool {
        (**self).supports_discard()
    }
    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        (**self).discard(lba, blocks)
    }
}
