//! Power loss for tests: a device that lands only the first `budget` bytes
//! written through it, tears the write that crosses the budget after its
//! last allowed byte, and drops every write after that. Reopening the inner
//! device afterwards is what a host sees after the power comes back.

use crate::block::{BlockDevice, BlockError};
use crate::mem::MemBlockDevice;

#[derive(Debug, Clone)]
pub struct CrashDevice {
    pub inner: MemBlockDevice,
    /// Bytes that may still land; `None`: no crash planned.
    budget: Option<u64>,
    /// Bytes written so far (landed or not).
    pub written: u64,
    /// Start offsets (in bytes written) of every write call, to aim crashes.
    pub write_starts: alloc::vec::Vec<u64>,
    pub crashed: bool,
}

impl CrashDevice {
    pub fn new(inner: MemBlockDevice, budget: Option<u64>) -> Self {
        CrashDevice {
            inner,
            budget,
            written: 0,
            write_starts: alloc::vec::Vec::new(),
            crashed: false,
        }
    }
}

impl BlockDevice for CrashDevice {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        crate::block::check_request(self, lba, buf.len())?;
        self.write_starts.push(self.written);
        self.written += buf.len() as u64;
        if self.crashed {
            return Err(BlockError::Io);
        }
        let Some(budget) = self.budget.as_mut() else {
            return self.inner.write_blocks(lba, buf);
        };
        if (buf.len() as u64) <= *budget {
            *budget -= buf.len() as u64;
            return self.inner.write_blocks(lba, buf);
        }
        // The torn write: its first `budget` bytes land.
        let start = lba as usize * self.inner.block_size() as usize;
        let n = *budget as usize;
        self.inner.bytes_mut()[start..start + n].copy_from_slice(&buf[..n]);
        *budget = 0;
        self.crashed = true;
        Err(BlockError::Io)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        if self.crashed {
            Err(BlockError::Io)
        } else {
            Ok(())
        }
    }
}
