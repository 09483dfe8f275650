//! virtio-blk (virtio 1.x §5.2) over a [`DiskChannel`]: read, write, flush,
//! get-id, write-zeroes and discard, with many requests in flight. The
//! device takes every chain the guest made available, checks it
//! ([`request`]), merges adjacent reads (or writes) into one channel
//! request ([`group`]), submits up to the channel's depth and returns; the
//! completions, in any order, are copied into the guest's buffers when the
//! channel's notify wakes the VM's device task ([`VirtioDevice::pending`]).
//! A plain [`BlockDevice`] (a RAM disk) is served through a channel of its
//! own, inline, so there is one device model.
//!
//! The guest's sectors are 512 bytes; a backend with larger blocks is
//! advertised through `blk_size`, and requests it cannot serve whole get an
//! I/O error, never a partial write. Read-only attach (`VIRTIO_BLK_F_RO`)
//! is for ISOs.

mod group;
mod request;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::fmt;
use core::num::NonZeroU32;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use storage::BlockDevice;
use storage::channel::{DiskChannel, DiskGeometry, DiskRequest, Notify, SubmitError, serve_from};

use self::group::{Group, answer};
use self::request::{Disk, Parsed, S_OK};
use super::queue::{Queue, QueueError};
use super::{ID_BLOCK, VirtioDevice};
use crate::hv::memory::GuestMemory;

/// Feature bits (§5.2.3).
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_DISCARD: u64 = 1 << 13;
pub const F_WRITE_ZEROES: u64 = 1 << 14;

const SECTOR: u64 = 512;
const HEADER: usize = 16;
const ID_BYTES: usize = 20;
/// Data segments a request may carry (the queue's 256 descriptors less header and status).
const SEG_MAX: u32 = 254;
/// The largest transfer served, and the largest channel request merged
/// requests make; Linux's default request limit is 1280 KiB.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Bytes of reads and writes in flight at most (more waits in the device):
/// what a guest can make the host hold at once.
pub const MAX_IN_FLIGHT_BYTES: u64 = 16 << 20;
/// Sectors one write-zeroes request may cover (it moves through memory as
/// zeros, so it is bounded like a write).
const MAX_WRITE_ZEROES_SECTORS: u32 = (MAX_REQUEST_BYTES / SECTOR) as u32;
/// Sectors one discard may cover (1 GiB; it moves no data).
const MAX_DISCARD_SECTORS: u32 = 1 << 21;
/// Requests in flight on the channel of a disk served inline.
const INLINE_DEPTH: usize = 256;
const CLASS_MASS_STORAGE_OTHER: u32 = 0x01_80_00;

/// A disk shared between the device and the host (which may read it back after the VM ends).
pub type SharedDisk = Arc<Mutex<Box<dyn BlockDevice + Send>>>;

/// What serves the device's requests.
#[derive(Clone)]
pub enum Backend {
    /// The serving side runs elsewhere (the appliance's poll loop).
    Channel(Arc<DiskChannel>),
    /// A disk in host memory, served inline by the device task.
    Inline(SharedDisk),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Channel(c) => f.debug_tuple("Channel").field(&c.geometry()).finish(),
            Backend::Inline(_) => f.write_str("Inline"),
        }
    }
}

/// What a disk's device did, for the host's log (kept across guest resets).
#[derive(Debug, Default)]
pub struct BlkStats {
    /// Guest requests completed, and of them failed.
    pub requests: AtomicU64,
    pub failed: AtomicU64,
    /// Channel requests submitted, and guest requests that rode in another's.
    pub submitted: AtomicU64,
    pub merged: AtomicU64,
    /// The most channel requests in flight at once.
    pub max_in_flight: AtomicU64,
    /// Completions for requests a device reset had dropped.
    pub stale: AtomicU64,
}

impl fmt::Display for BlkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write!(
            f,
            "{} requests ({} failed), {} merged into others, {} disk requests, up to {} in flight, {} completed after a reset",
            n(&self.requests),
            n(&self.failed),
            n(&self.merged),
            n(&self.submitted),
            n(&self.max_in_flight),
            n(&self.stale)
        )
    }
}

pub struct Blk {
    channel: Arc<DiskChannel>,
    inline: Option<SharedDisk>,
    disk: Disk,
    serial: [u8; ID_BYTES],
    /// Submitted, by tag.
    in_flight: BTreeMap<u64, Group>,
    in_flight_bytes: u64,
    /// Taken from the ring and not submitted yet (the channel was full), oldest first.
    waiting: VecDeque<Group>,
    /// Guest requests taken and not yet used.
    outstanding: usize,
    stats: Arc<BlkStats>,
}

impl fmt::Debug for Blk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blk")
            .field("disk", &self.disk)
            .field("in_flight", &self.in_flight.len())
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Blk {
    /// A device over `backend`; `read_only` also holds when the backend refuses writes.
    /// `serial` is what GET_ID answers (cut to 20 bytes).
    pub fn new(backend: Backend, read_only: bool, serial: &str) -> Blk {
        let (channel, inline) = match backend {
            Backend::Channel(c) => (c, None),
            Backend::Inline(disk) => {
                let channel = {
                    let d = disk.lock();
                    let c = DiskChannel::new(
                        DiskGeometry {
                            block_size: d.block_size().max(1),
                            num_blocks: d.num_blocks(),
                            read_only: d.read_only(),
                        },
                        INLINE_DEPTH,
                    );
                    if d.supports_discard() {
                        c.with_discard(1)
                    } else {
                        c
                    }
                };
                (Arc::new(channel), Some(disk))
            }
        };
        let g = channel.geometry();
        let block_size = NonZeroU32::new(g.block_size).unwrap_or(NonZeroU32::MIN);
        let read_only = read_only || g.read_only;
        let discard_sectors = channel
            .discard_alignment()
            .filter(|_| !read_only)
            .map_or(0, |a| {
                u32::try_from(u64::from(a) * u64::from(block_size.get()) / SECTOR)
                    .unwrap_or(u32::MAX)
                    .max(1)
            });
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Blk {
            disk: Disk {
                block_size,
                capacity_sectors: g.num_blocks.saturating_mul(u64::from(block_size.get())) / SECTOR,
                read_only,
                discard_sectors,
            },
            channel,
            inline,
            serial: id,
            in_flight: BTreeMap::new(),
            in_flight_bytes: 0,
            waiting: VecDeque::new(),
            outstanding: 0,
            stats: Arc::new(BlkStats::default()),
        }
    }

    /// Counts into `stats` (the VM's, kept across guest resets).
    pub fn with_stats(mut self, stats: Arc<BlkStats>) -> Self {
        self.stats = stats;
        self
    }

    /// `wake` is called when a completion arrives (wakes the device task).
    pub fn with_notify(self, wake: Arc<dyn Notify>) -> Self {
        if self.inline.is_none() {
            self.channel.set_completion_notify(Some(wake));
        }
        self
    }

    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }

    /// Whether the next waiting group may go to the channel now.
    fn room(&self) -> bool {
        let Some(next) = self.waiting.front() else {
            return false;
        };
        self.channel.in_flight() < self.channel.depth()
            && (self.in_flight.is_empty()
                || self.in_flight_bytes + next.bytes() <= MAX_IN_FLIGHT_BYTES)
    }

    /// Completes what the channel finished. Returns whether a chain was used.
    fn collect(
        &mut self,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        while let Some(c) = self.channel.completion() {
            let Some(group) = self.in_flight.remove(&c.tag) else {
                // Submitted before a device reset: its chains are gone.
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.in_flight_bytes -= group.bytes();
            self.finish(group, c.result, queue, mem)?;
            used = true;
        }
        Ok(used)
    }

    fn finish(
        &mut self,
        group: Group,
        result: Result<alloc::vec::Vec<u8>, storage::BlockError>,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<(), QueueError> {
        let parts = group.parts.len();
        self.outstanding = self.outstanding.saturating_sub(parts);
        let failed = group.complete(result, queue, mem)?;
        self.stats
            .requests
            .fetch_add(parts as u64, Ordering::Relaxed);
        self.stats.failed.fetch_add(failed, Ordering::Relaxed);
        Ok(())
    }

    /// Submits waiting groups while the channel has room. Returns whether
    /// a chain was used (a request the channel refused).
    fn submit(&mut self, queue: &mut Queue, mem: &mut GuestMemory<'_>) -> Result<bool, QueueError> {
        let mut used = false;
        while self.room() {
            let Some(group) = self.waiting.pop_front() else {
                break;
            };
            let op = group.op(mem, self.disk.block_size)?;
            let tag = self.channel.new_tag();
            match self.channel.submit(DiskRequest { tag, op }) {
                Ok(()) => {
                    self.in_flight_bytes += group.bytes();
                    self.stats.submitted.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .merged
                        .fetch_add(group.parts.len() as u64 - 1, Ordering::Relaxed);
                    self.in_flight.insert(tag, group);
                    self.stats
                        .max_in_flight
                        .fetch_max(self.in_flight.len() as u64, Ordering::Relaxed);
                }
                Err(SubmitError::Full(_)) => {
                    // Not expected (room() checked): try after a completion.
                    self.waiting.push_front(group);
                    break;
                }
                Err(SubmitError::Closed(_)) => {
                    self.finish(group, Err(storage::BlockError::Io), queue, mem)?;
                    used = true;
                }
                Err(SubmitError::Invalid(_, e)) => {
                    self.finish(group, Err(e), queue, mem)?;
                    used = true;
                }
            }
        }
        Ok(used)
    }

    /// Takes the chains the guest made available (up to a ring's worth
    /// outstanding), answering at once what needs no disk and grouping the rest.
    fn take(&mut self, queue: &mut Queue, mem: &mut GuestMemory<'_>) -> Result<bool, QueueError> {
        let mut used = false;
        while self.outstanding < usize::from(queue.size) {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            match self.disk.parse(&chain, mem)? {
                Parsed::Status(status) => {
                    answer(queue, mem, &chain, status, 0)?;
                    self.count_now(status);
                    used = true;
                }
                Parsed::Id => {
                    let n = (chain.writable_len().saturating_sub(1) as usize).min(ID_BYTES);
                    let n = chain.write(mem, 0, &self.serial[..n])?;
                    answer(queue, mem, &chain, S_OK, n as u64)?;
                    self.count_now(S_OK);
                    used = true;
                }
                Parsed::Disk(kind) => {
                    self.outstanding += 1;
                    let bs = self.disk.block_size;
                    let chain = match self.waiting.back_mut() {
                        Some(g) => match g.merge(chain, kind, bs) {
                            Ok(()) => continue,
                            Err(chain) => chain,
                        },
                        None => chain,
                    };
                    self.waiting.push_back(Group::new(chain, kind));
                }
            }
        }
        Ok(used)
    }

    fn count_now(&self, status: u8) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if status != S_OK {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The configuration structure's bytes (capacity, seg_max, blk_size,
    /// the discard and write-zeroes limits).
    fn config_bytes(&self) -> [u8; 60] {
        let mut c = [0u8; 60];
        c[0..8].copy_from_slice(&self.disk.capacity_sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&self.disk.block_size.get().to_le_bytes());
        if self.disk.discard() {
            c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
            c[40..44].copy_from_slice(&1u32.to_le_bytes());
            c[44..48].copy_from_slice(&self.disk.discard_sectors.to_le_bytes());
        }
        c[48..52].copy_from_slice(&MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&1u32.to_le_bytes());
        c
    }
}

impl VirtioDevice for Blk {
    fn device_id(&self) -> u16 {
        ID_BLOCK
    }
    fn class(&self) -> u32 {
        CLASS_MASS_STORAGE_OTHER
    }
    fn features(&self) -> u64 {
        let writable = if self.disk.read_only {
            F_RO
        } else {
            F_WRITE_ZEROES | if self.disk.discard() { F_DISCARD } else { 0 }
        };
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | writable
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_window(&self.config_bytes(), offset, data);
    }
    fn process(
        &mut self,
        _index: u16,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = self.collect(queue, mem)?;
        used |= self.take(queue, mem)?;
        used |= self.submit(queue, mem)?;
        if let Some(disk) = self.inline.clone() {
            // Served here and now; each round frees the room the next needs.
            loop {
                serve_from(&self.channel, &mut **disk.lock());
                used |= self.collect(queue, mem)?;
                if self.waiting.is_empty() {
                    break;
                }
                used |= self.submit(queue, mem)?;
            }
        }
        Ok(used)
    }
    fn pending(&self) -> u64 {
        u64::from(self.channel.has_completions() || self.room())
    }
    fn reset(&mut self) {
        // What is in flight completes into nothing: `collect` drops
        // completions whose tag it no longer knows.
        self.in_flight.clear();
        self.in_flight_bytes = 0;
        self.waiting.clear();
        self.outstanding = 0;
    }
}
