//! A block device that runs synchronous code (an [`crate::sr::Sr`]
//! operation) against a device reached asynchronously (an iSCSI LUN driven
//! from a poll loop).
//!
//! The operation runs against blocks fetched beforehand. A read of a block
//! not fetched yet fails and records the miss; the caller then fetches the
//! missing range and runs the operation again from the start (it is
//! deterministic given the device's content, and nothing it wrote reached
//! the device). When an attempt completes without a miss, its writes and
//! flushes, in order, are what the caller sends to the device: writes
//! between two flushes in any order, every write before a flush durable
//! before any write after it (the order the SR's crash safety relies on).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::block::{BlockDevice, BlockError, check_request};

/// One step of what an attempt did to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    Write { lba: u64, data: Vec<u8> },
    Flush,
}

/// The blocks fetched so far, by LBA.
#[derive(Debug, Default, Clone)]
pub struct BlockCache {
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl BlockCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `data` (whole blocks of `block_size`) read at `lba`.
    pub fn insert(&mut self, lba: u64, block_size: u32, data: &[u8]) {
        let bs = block_size as usize;
        if bs == 0 {
            return;
        }
        for (i, block) in data.chunks_exact(bs).enumerate() {
            self.blocks.insert(lba + i as u64, block.to_vec());
        }
    }

    pub fn contains(&self, lba: u64) -> bool {
        self.blocks.contains_key(&lba)
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Applies what a completed attempt wrote (once it reached the device).
    pub fn apply(&mut self, block_size: u32, log: &[Staged]) {
        for step in log {
            if let Staged::Write { lba, data } = step {
                self.insert(*lba, block_size, data);
            }
        }
    }
}

/// A device over a [`BlockCache`] for one attempt of an operation.
#[derive(Debug)]
pub struct StagedDevice<'a> {
    cache: &'a BlockCache,
    block_size: u32,
    num_blocks: u64,
    /// What this attempt wrote, on top of the cache.
    overlay: BTreeMap<u64, Vec<u8>>,
    log: Vec<Staged>,
    /// The first block read that the cache did not hold.
    miss: Option<u64>,
}

impl<'a> StagedDevice<'a> {
    pub fn new(cache: &'a BlockCache, block_size: u32, num_blocks: u64) -> Self {
        StagedDevice {
            cache,
            block_size,
            num_blocks,
            overlay: BTreeMap::new(),
            log: Vec::new(),
            miss: None,
        }
    }

    /// The first block the attempt needed and the cache lacked: the
    /// attempt's result is void, fetch from there and run it again.
    pub fn miss(&self) -> Option<u64> {
        self.miss
    }

    /// What the attempt did, in order.
    pub fn into_log(self) -> Vec<Staged> {
        self.log
    }
}

impl BlockDevice for StagedDevice<'_> {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        if self.miss.is_some() {
            return Err(BlockError::Io);
        }
        let bs = self.block_size as usize;
        for (i, out) in buf.chunks_exact_mut(bs).enumerate() {
            let at = lba + i as u64;
            let block = self.overlay.get(&at).or_else(|| self.cache.blocks.get(&at));
            match block {
                Some(b) if b.len() == bs => out.copy_from_slice(b),
                _ => {
                    self.miss = Some(at);
                    return Err(BlockError::Io);
                }
            }
        }
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let bs = self.block_size as usize;
        for (i, block) in buf.chunks_exact(bs).enumerate() {
            self.overlay.insert(lba + i as u64, block.to_vec());
        }
        // Adjacent writes merge into one request.
        if let Some(Staged::Write { lba: last, data }) = self.log.last_mut()
            && *last + (data.len() / bs) as u64 == lba
            && data.len() + buf.len() <= MAX_MERGED
        {
            data.extend_from_slice(buf);
            return Ok(());
        }
        self.log.push(Staged::Write {
            lba,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if !matches!(self.log.last(), Some(Staged::Flush) | None) {
            self.log.push(Staged::Flush);
        }
        Ok(())
    }
}

/// Largest write merged from adjacent ones.
pub const MAX_MERGED: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemBlockDevice as MemDevice;
    use crate::sr::{DEFAULT_CLUSTER_SIZE, Sr, SrType};

    /// Runs `op` the way the appliance does: attempt, fetch what was
    /// missing from `dev`, attempt again; then apply the log to `dev`.
    fn run<T>(
        dev: &mut MemDevice,
        cache: &mut BlockCache,
        op: impl Fn(&mut StagedDevice<'_>) -> T,
    ) -> (T, usize) {
        let (bs, n) = (dev.block_size(), dev.num_blocks());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut staged = StagedDevice::new(cache, bs, n);
            let r = op(&mut staged);
            match staged.miss() {
                Some(lba) => {
                    let blocks = (n - lba).min(256);
                    let mut buf = vec![0u8; (blocks * u64::from(bs)) as usize];
                    dev.read_blocks(lba, &mut buf).unwrap();
                    cache.insert(lba, bs, &buf);
                }
                None => {
                    let log = staged.into_log();
                    for step in &log {
                        match step {
                            Staged::Write { lba, data } => dev.write_blocks(*lba, data).unwrap(),
                            Staged::Flush => dev.flush().unwrap(),
                        }
                    }
                    cache.apply(bs, &log);
                    return (r, attempts);
                }
            }
        }
    }

    #[test]
    fn an_sr_formatted_and_changed_through_staging_opens_directly() {
        let mut dev = MemDevice::new(512, 64 * 1024 * 1024 / 512);
        let mut cache = BlockCache::new();
        let uuid = [7u8; 16];
        let (r, _) = run(&mut dev, &mut cache, |d| {
            Sr::format(d, SrType::Iscsi, uuid, DEFAULT_CLUSTER_SIZE)
                .and_then(|sr| sr.close())
                .map(|_| ())
        });
        r.unwrap();
        // A fresh cache: the open must fetch what it reads.
        let mut cache = BlockCache::new();
        let (r, attempts) = run(&mut dev, &mut cache, |d| {
            let mut sr = Sr::open(d)?;
            sr.create_vdi([9u8; 16], "disk", 8 << 20)?;
            sr.close().map(|_| ())
        });
        r.unwrap();
        assert!(attempts > 1, "the open read blocks it had to fetch");
        let sr = Sr::open(&mut dev).unwrap();
        assert_eq!(sr.superblock().uuid, uuid);
        let vdis = sr.vdis();
        assert_eq!(vdis.len(), 1);
        assert_eq!(vdis[0].name, "disk");
        assert_eq!(vdis[0].virtual_size, 8 << 20);
    }

    #[test]
    fn a_miss_voids_the_attempt_and_later_reads_fail_too() {
        let cache = BlockCache::new();
        let mut d = StagedDevice::new(&cache, 512, 16);
        let mut buf = [0u8; 512];
        assert_eq!(d.read_blocks(3, &mut buf), Err(BlockError::Io));
        assert_eq!(d.miss(), Some(3));
        d.write_blocks(4, &buf).unwrap();
        assert_eq!(d.read_blocks(4, &mut buf), Err(BlockError::Io));
        assert_eq!(d.miss(), Some(3));
    }

    #[test]
    fn adjacent_writes_merge_and_flushes_order_them() {
        let cache = BlockCache::new();
        let mut d = StagedDevice::new(&cache, 512, 16);
        let a = [1u8; 512];
        d.write_blocks(0, &a).unwrap();
        d.write_blocks(1, &a).unwrap();
        d.flush().unwrap();
        d.flush().unwrap();
        d.write_blocks(2, &a).unwrap();
        let mut back = [0u8; 512];
        d.read_blocks(1, &mut back).unwrap();
        assert_eq!(back, a);
        let log = d.into_log();
        assert_eq!(log.len(), 3);
        assert!(matches!(&log[0], Staged::Write { lba: 0, data } if data.len() == 1024));
        assert_eq!(log[1], Staged::Flush);
    }
}
