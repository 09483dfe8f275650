//! A block device in memory: the reference device for unit tests of the
//! on-disk formats (journal, SR), and a scratch disk for the appliance.

use alloc::vec;
use alloc::vec::Vec;

use crate::block::{BlockDevice, BlockError, check_request};

/// `blocks` blocks of `block_size` bytes, zero-filled at creation.
#[derive(Debug, Clone)]
pub struct MemBlockDevice {
    data: Vec<u8>,
    block_size: u32,
}

impl MemBlockDevice {
    /// A zeroed device; `block_size` is clamped to at least 1.
    pub fn new(block_size: u32, blocks: u64) -> Self {
        let block_size = block_size.max(1);
        let len = usize::try_from(blocks.saturating_mul(u64::from(block_size))).unwrap_or(0);
        MemBlockDevice {
            data: vec![0; len],
            block_size,
        }
    }

    /// The device's bytes (tests flip bits in them).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Mutable access to the device's bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    fn range(&self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, BlockError> {
        check_request(self, lba, len)?;
        // check_request bounded lba + len by the device size, which fits in usize.
        let start = lba as usize * self.block_size as usize;
        Ok(start..start + len)
    }
}

impl BlockDevice for MemBlockDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        (self.data.len() / self.block_size as usize) as u64
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let r = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let r = self.range(lba, buf.len())?;
        self.data[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        true
    }
    /// Discarded blocks read back as zeros.
    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let len =
            usize::try_from(blocks.saturating_mul(u64::from(self.block_size))).map_err(|_| {
                BlockError::OutOfRange {
                    lba,
                    blocks,
                    capacity: self.num_blocks(),
                }
            })?;
        let r = self.range(lba, len)?;
        self.data[r].fill(0);
        Ok(())
    }
}
