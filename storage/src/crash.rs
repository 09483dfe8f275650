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

/// Power loss with a volatile write cache: writes since the last flush may
/// land in any order, so at the crash each of their blocks independently
/// reaches the medium or not. The crash happens at write number `crash_at`
/// (that write is cached too, and may land in part).
#[derive(Debug, Clone)]
pub struct CacheCrashDevice {
    /// What the medium holds (what a reopen after the crash sees).
    pub durable: MemBlockDevice,
    /// What reads see before the crash (the cache over the medium).
    current: MemBlockDevice,
    pending: alloc::vec::Vec<(u64, alloc::vec::Vec<u8>)>,
    writes_left: usize,
    seed: u64,
    pub crashed: bool,
}

impl CacheCrashDevice {
    pub fn new(inner: MemBlockDevice, crash_at: usize, seed: u64) -> Self {
        CacheCrashDevice {
            durable: inner.clone(),
            current: inner,
            pending: alloc::vec::Vec::new(),
            writes_left: crash_at,
            seed: seed | 1,
            crashed: false,
        }
    }

    fn coin(&mut self) -> bool {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed & 1 == 1
    }

    fn crash(&mut self) {
        let bs = self.durable.block_size() as usize;
        for (lba, data) in core::mem::take(&mut self.pending) {
            for (i, block) in data.chunks(bs).enumerate() {
                if self.coin() {
                    let _ = self.durable.write_blocks(lba + i as u64, block);
                }
            }
        }
        self.crashed = true;
    }
}

impl BlockDevice for CacheCrashDevice {
    fn block_size(&self) -> u32 {
        self.current.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.current.num_blocks()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.current.read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.crashed {
            return Err(BlockError::Io);
        }
        self.current.write_blocks(lba, buf)?;
        self.pending.push((lba, buf.to_vec()));
        if self.writes_left == 0 {
            self.crash();
            return Err(BlockError::Io);
        }
        self.writes_left -= 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        if self.crashed {
            return Err(BlockError::Io);
        }
        for (lba, data) in core::mem::take(&mut self.pending) {
            self.durable.write_blocks(lba, &data)?;
        }
        Ok(())
    }
}
