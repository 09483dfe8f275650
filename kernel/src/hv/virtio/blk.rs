//! virtio-blk (virtio 1.x §5.2) over the storage crate's [`BlockDevice`]:
//! read, write, flush and get-id, many requests per notify, read-only
//! attach (`VIRTIO_BLK_F_RO`) for ISOs. The guest's sectors are 512 bytes;
//! a backend with larger blocks is advertised through `blk_size`, and
//! requests it cannot serve whole get an I/O error, never a partial write.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use storage::BlockDevice;

use super::queue::{Chain, Queue, QueueError};
use super::{BATCH, ID_BLOCK, VirtioDevice};
use crate::hv::memory::GuestMemory;

/// Feature bits (§5.2.3).
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_WRITE_ZEROES: u64 = 1 << 14;

/// Request types and status values (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_WRITE_ZEROES: u32 = 13;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

const SECTOR: u64 = 512;
const HEADER: usize = 16;
const ID_BYTES: usize = 20;
/// Data segments a request may carry (the queue's 256 descriptors less header and status).
const SEG_MAX: u32 = 254;
/// The largest transfer served; Linux's default request limit is 1280 KiB.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Sectors one write-zeroes request may cover.
const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 16;
/// The bounce buffer's size: requests move through it in pieces, so a
/// request costs no allocation.
const SCRATCH_BYTES: usize = 64 << 10;
/// A write-zeroes range: sector u64, num_sectors u32, flags u32.
const ZEROES_RANGE: usize = 16;
const CLASS_MASS_STORAGE_OTHER: u32 = 0x01_80_00;

/// A disk shared between the device and the host (which may read it back after the VM ends).
pub type SharedDisk = Arc<Mutex<Box<dyn BlockDevice + Send>>>;

pub struct Blk {
    disk: SharedDisk,
    read_only: bool,
    block_size: u32,
    capacity_sectors: u64,
    serial: [u8; ID_BYTES],
    /// Bounce buffer between the disk and guest RAM (a multiple of the block size).
    scratch: Vec<u8>,
    /// Requests served and failed, for the host's log.
    pub served: u64,
    pub failed: u64,
}

impl fmt::Debug for Blk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blk")
            .field("read_only", &self.read_only)
            .field("block_size", &self.block_size)
            .field("capacity_sectors", &self.capacity_sectors)
            .finish()
    }
}

impl Blk {
    /// A device over `disk`; `read_only` also holds when the backend refuses writes.
    /// `serial` is what GET_ID answers (cut to 20 bytes).
    pub fn new(disk: SharedDisk, read_only: bool, serial: &str) -> Blk {
        let (block_size, blocks, backend_ro) = {
            let d = disk.lock();
            (d.block_size().max(1), d.num_blocks(), d.read_only())
        };
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Blk {
            capacity_sectors: blocks.saturating_mul(u64::from(block_size)) / SECTOR,
            disk,
            read_only: read_only || backend_ro,
            block_size,
            scratch: vec![0u8; SCRATCH_BYTES.div_ceil(block_size as usize) * block_size as usize],
            serial: id,
            served: 0,
            failed: 0,
        }
    }

    /// One request: its status and the bytes written into the guest's buffers.
    fn request(&mut self, chain: &Chain, mem: &mut GuestMemory<'_>) -> Result<u32, QueueError> {
        let writable = chain.writable_len();
        if writable == 0 {
            return Err(QueueError::Malformed(
                "a block request without a status byte",
            ));
        }
        let status_at = writable - 1;
        let mut header = [0u8; HEADER];
        let (status, written) = if chain.read(mem, 0, &mut header)? < HEADER {
            (S_IOERR, 0)
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            match kind {
                T_IN => self.read(chain, mem, sector, status_at)?,
                T_OUT => (self.write(chain, mem, sector)?, 0),
                T_FLUSH => {
                    let ok = self.read_only || self.disk.lock().flush().is_ok();
                    (if ok { S_OK } else { S_IOERR }, 0)
                }
                T_WRITE_ZEROES => (self.write_zeroes(chain, mem)?, 0),
                T_GET_ID => {
                    let n = (status_at as usize).min(ID_BYTES);
                    chain.write(mem, 0, &self.serial[..n])?;
                    (S_OK, n as u64)
                }
                _ => (S_UNSUPP, 0),
            }
        };
        chain.write(mem, status_at, &[status])?;
        if status == S_OK {
            self.served += 1;
        } else {
            self.failed += 1;
        }
        Ok(u32::try_from(written + 1).unwrap_or(u32::MAX))
    }

    /// The first backend block of a guest transfer, if it is whole blocks
    /// inside the disk and no larger than one request may be.
    fn blocks(&self, sector: u64, len: u64) -> Option<u64> {
        (len <= MAX_REQUEST_BYTES).then_some(())?;
        self.blocks_unbounded(sector, len)
    }

    /// The same without the size limit (write-zeroes ranges).
    fn blocks_unbounded(&self, sector: u64, len: u64) -> Option<u64> {
        let bs = u64::from(self.block_size);
        let offset = sector.checked_mul(SECTOR)?;
        let end = offset.checked_add(len)?;
        let whole = len > 0 && offset.is_multiple_of(bs) && len.is_multiple_of(bs);
        (whole && end <= self.capacity_sectors.saturating_mul(SECTOR)).then_some(offset / bs)
    }

    fn read(
        &mut self,
        chain: &Chain,
        mem: &mut GuestMemory<'_>,
        sector: u64,
        len: u64,
    ) -> Result<(u8, u64), QueueError> {
        let Some(lba) = self.blocks(sector, len) else {
            return Ok((S_IOERR, 0));
        };
        let bs = u64::from(self.block_size);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.scratch.len() as u64) as usize;
            let buf = &mut self.scratch[..n];
            if self.disk.lock().read_blocks(lba + done / bs, buf).is_err() {
                return Ok((S_IOERR, 0));
            }
            chain.write(mem, done, buf)?;
            done += n as u64;
        }
        Ok((S_OK, len))
    }

    fn write(
        &mut self,
        chain: &Chain,
        mem: &GuestMemory<'_>,
        sector: u64,
    ) -> Result<u8, QueueError> {
        let len = chain.readable_len().saturating_sub(HEADER as u64);
        let Some(lba) = self.blocks(sector, len) else {
            return Ok(S_IOERR);
        };
        if self.read_only {
            return Ok(S_IOERR);
        }
        let bs = u64::from(self.block_size);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.scratch.len() as u64) as usize;
            let buf = &mut self.scratch[..n];
            chain.read(mem, HEADER as u64 + done, buf)?;
            if self.disk.lock().write_blocks(lba + done / bs, buf).is_err() {
                return Ok(S_IOERR);
            }
            done += n as u64;
        }
        Ok(S_OK)
    }

    /// Zeroes one range (`max_write_zeroes_seg` is 1), in pieces.
    fn write_zeroes(&mut self, chain: &Chain, mem: &GuestMemory<'_>) -> Result<u8, QueueError> {
        if self.read_only {
            return Ok(S_IOERR);
        }
        let mut range = [0u8; ZEROES_RANGE];
        if chain.readable_len() != (HEADER + ZEROES_RANGE) as u64
            || chain.read(mem, HEADER as u64, &mut range)? != ZEROES_RANGE
        {
            return Ok(S_UNSUPP);
        }
        let sector = u64::from_le_bytes(range[0..8].try_into().unwrap_or_default());
        let sectors = u32::from_le_bytes(range[8..12].try_into().unwrap_or_default());
        if sectors == 0 || sectors > MAX_WRITE_ZEROES_SECTORS {
            return Ok(S_IOERR);
        }
        // The whole range is checked before any block is written.
        let Some(lba) = self.blocks_unbounded(sector, u64::from(sectors) * SECTOR) else {
            return Ok(S_IOERR);
        };
        let len = u64::from(sectors) * SECTOR;
        let bs = u64::from(self.block_size);
        self.scratch.fill(0);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.scratch.len() as u64) as usize;
            if self
                .disk
                .lock()
                .write_blocks(lba + done / bs, &self.scratch[..n])
                .is_err()
            {
                return Ok(S_IOERR);
            }
            done += n as u64;
        }
        Ok(S_OK)
    }

    /// The configuration structure's bytes (capacity, seg_max, blk_size,
    /// the write-zeroes limits).
    fn config_bytes(&self) -> [u8; 60] {
        let mut c = [0u8; 60];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&self.block_size.to_le_bytes());
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
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | if self.read_only { F_RO } else { F_WRITE_ZEROES }
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|at| c.get(at).copied())
                .unwrap_or(0);
        }
    }
    fn process(
        &mut self,
        _index: u16,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        // At most a ring's worth per notify; the driver notifies again for more.
        for _ in 0..BATCH.min(queue.size) {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let len = self.request(&chain, mem)?;
            queue.push_used(mem, chain.head, len)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::memory::GuestAddress;
    use crate::hv::pci::MsiQueue;
    use crate::hv::virtio::F_VERSION_1;
    use crate::hv::virtio::pci::VirtioPci;
    use crate::hv::virtio::pci::tests::Bus;
    use crate::hv::virtio::queue::driver::TestDriver;
    use storage::mem::MemBlockDevice;

    fn disk(block_size: u32, blocks: u64) -> SharedDisk {
        let mut d = MemBlockDevice::new(block_size, blocks);
        for (i, b) in d.bytes_mut().iter_mut().enumerate() {
            *b = (i / 512) as u8 ^ (i as u8);
        }
        Arc::new(Mutex::new(Box::new(d)))
    }

    fn header(mem: &mut GuestMemory<'_>, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write(GuestAddress(at), &h).unwrap();
    }

    fn status(mem: &GuestMemory<'_>, at: u64) -> u8 {
        let mut s = [0u8];
        mem.read(GuestAddress(at), &mut s).unwrap();
        s[0]
    }

    const FEATURES: u64 = F_VERSION_1 | F_FLUSH | F_BLK_SIZE | F_SEG_MAX;

    #[test]
    fn reads_writes_flush_and_id_through_the_transport() {
        let shared = disk(512, 64);
        let mut ram = vec![0u8; 0x40000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Blk::new(Arc::clone(&shared), false, "keel-vda")).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        // capacity in 512-byte sectors, blk_size
        assert_eq!(bus.r(0x2000, 4), 64);
        assert_eq!(bus.r(0x2000 + 20, 4), 512);
        let mut d = TestDriver::new(16, 0x1000);
        bus.bring_up(&mut mem, FEATURES, &[&d]);

        // Several requests in flight before one notify: read sectors 2..4
        // split over two buffers, write sector 10, flush, get-id.
        header(&mut mem, 0x8000, T_IN, 2);
        d.add(
            &mut mem,
            &[
                (0x8000, 16, false),
                (0x9000, 700, true),
                (0x9400, 324, true),
                (0x9800, 1, true),
            ],
        );
        header(&mut mem, 0x8100, T_OUT, 10);
        mem.fill(GuestAddress(0xa000), 512, 0x5a).unwrap();
        d.add(
            &mut mem,
            &[(0x8100, 16, false), (0xa000, 512, false), (0x9801, 1, true)],
        );
        header(&mut mem, 0x8200, T_FLUSH, 0);
        d.add(&mut mem, &[(0x8200, 16, false), (0x9802, 1, true)]);
        header(&mut mem, 0x8300, T_GET_ID, 0);
        d.add(
            &mut mem,
            &[(0x8300, 16, false), (0xb000, 20, true), (0x9803, 1, true)],
        );
        bus.kick(&mut mem, 0);

        assert_eq!(TestDriver::used(&mem, &d.queue, 0), (4, 0, 1025));
        assert_eq!(TestDriver::used(&mem, &d.queue, 1).2, 1);
        assert_eq!(TestDriver::used(&mem, &d.queue, 3).2, 21);
        assert_eq!(bus.irq.0.len(), 1, "one interrupt for the batch");
        for s in 0..4 {
            assert_eq!(status(&mem, 0x9800 + s), S_OK);
        }
        let expect = shared.lock().read_blocks(2, &mut [0u8; 1024]).map(|_| ());
        assert_eq!(expect, Ok(()));
        let mut want = vec![0u8; 1024];
        shared.lock().read_blocks(2, &mut want).unwrap();
        let mut got = vec![0u8; 1024];
        mem.read(GuestAddress(0x9000), &mut got[..700]).unwrap();
        mem.read(GuestAddress(0x9400), &mut got[700..]).unwrap();
        assert_eq!(got, want);
        let mut sector10 = vec![0u8; 512];
        shared.lock().read_blocks(10, &mut sector10).unwrap();
        assert_eq!(sector10, vec![0x5a; 512]);
        let mut id = [0u8; 20];
        mem.read(GuestAddress(0xb000), &mut id).unwrap();
        assert_eq!(&id[..8], b"keel-vda");
        assert_eq!(bus.dev.device.served, 4);
    }

    #[test]
    fn bad_requests_get_an_error_status_and_read_only_refuses_writes() {
        let shared = disk(4096, 4); // 32 sectors of 512 bytes
        let mut ram = vec![0u8; 0x60_0000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Blk::new(Arc::clone(&shared), true, "iso")).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        assert_ne!(bus.dev.device.features() & F_RO, 0);
        let mut d = TestDriver::new(16, 0x1000);
        bus.bring_up(&mut mem, FEATURES | F_RO, &[&d]);
        let before = shared.lock().read_blocks(0, &mut [0u8; 4096]);
        assert_eq!(before, Ok(()));
        // past the end; not aligned to the 4 KiB block; a write on a read-only disk;
        // an unknown type; a header shorter than 16 bytes.
        header(&mut mem, 0x8000, T_IN, 32);
        d.add(
            &mut mem,
            &[(0x8000, 16, false), (0x9000, 4096, true), (0xa000, 1, true)],
        );
        header(&mut mem, 0x8100, T_IN, 1);
        d.add(
            &mut mem,
            &[(0x8100, 16, false), (0x9000, 4096, true), (0xa001, 1, true)],
        );
        header(&mut mem, 0x8200, T_OUT, 0);
        d.add(
            &mut mem,
            &[
                (0x8200, 16, false),
                (0x9000, 4096, false),
                (0xa002, 1, true),
            ],
        );
        header(&mut mem, 0x8300, 99, 0);
        d.add(&mut mem, &[(0x8300, 16, false), (0xa003, 1, true)]);
        d.add(&mut mem, &[(0x8400, 8, false), (0xa004, 1, true)]);
        // A read larger than the device serves.
        header(&mut mem, 0x8500, T_IN, 0);
        d.add(
            &mut mem,
            &[
                (0x8500, 16, false),
                (0x10000, (MAX_REQUEST_BYTES + 4096) as u32, true),
                (0xa005, 1, true),
            ],
        );
        bus.kick(&mut mem, 0);
        let got: Vec<u8> = (0..6).map(|i| status(&mem, 0xa000 + i)).collect();
        assert_eq!(got, [S_IOERR, S_IOERR, S_IOERR, S_UNSUPP, S_IOERR, S_IOERR]);
        assert_eq!(TestDriver::used(&mem, &d.queue, 5).0, 6);
        assert_eq!(bus.dev.device.failed, 6);
        // An aligned read works and the device is still healthy.
        header(&mut mem, 0x8600, T_IN, 8);
        d.add(
            &mut mem,
            &[(0x8600, 16, false), (0x9000, 4096, true), (0xa006, 1, true)],
        );
        bus.kick(&mut mem, 0);
        assert_eq!(status(&mem, 0xa006), S_OK);
    }

    #[test]
    fn write_zeroes_zeroes_whole_ranges_only() {
        let shared = disk(4096, 1100); // 8800 sectors: a range spans two 4 MiB pieces
        let mut ram = vec![0u8; 0x40000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Blk::new(Arc::clone(&shared), false, "z")).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        assert_eq!(bus.r(0x2000 + 48, 4), u64::from(MAX_WRITE_ZEROES_SECTORS));
        let mut d = TestDriver::new(16, 0x1000);
        bus.bring_up(&mut mem, FEATURES | F_WRITE_ZEROES, &[&d]);
        let range = |mem: &mut GuestMemory<'_>, at: u64, sector: u64, n: u32| {
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&sector.to_le_bytes());
            r[8..12].copy_from_slice(&n.to_le_bytes());
            mem.write(GuestAddress(at), &r).unwrap();
        };
        // Sectors 8..8200 (two pieces); then a range past the end, untouched.
        header(&mut mem, 0x8000, T_WRITE_ZEROES, 0);
        range(&mut mem, 0x8010, 8, 8192);
        d.add(
            &mut mem,
            &[(0x8000, 16, false), (0x8010, 16, false), (0xa000, 1, true)],
        );
        header(&mut mem, 0x8100, T_WRITE_ZEROES, 0);
        range(&mut mem, 0x8110, 8792, 16);
        d.add(
            &mut mem,
            &[(0x8100, 16, false), (0x8110, 16, false), (0xa001, 1, true)],
        );
        bus.kick(&mut mem, 0);
        assert_eq!(
            (status(&mem, 0xa000), status(&mem, 0xa001)),
            (S_OK, S_IOERR)
        );
        let mut all = vec![0u8; 1100 * 4096];
        shared.lock().read_blocks(0, &mut all).unwrap();
        assert!(all[..4096].iter().any(|b| *b != 0), "block 0 kept");
        assert!(all[4096..8200 * 512].iter().all(|b| *b == 0));
        assert!(all[8200 * 512..8200 * 512 + 4096].iter().any(|b| *b != 0));
        assert!(
            all[8792 * 512..].iter().any(|b| *b != 0),
            "a bad range writes nothing"
        );
    }

    #[test]
    fn a_request_without_status_byte_breaks_the_device_not_the_host() {
        let mut ram = vec![0u8; 0x40000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Blk::new(disk(512, 8), false, "x")).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        let mut d = TestDriver::new(16, 0x1000);
        bus.bring_up(&mut mem, FEATURES, &[&d]);
        header(&mut mem, 0x8000, T_IN, 0);
        d.add(&mut mem, &[(0x8000, 16, false)]);
        bus.kick(&mut mem, 0);
        assert_ne!(
            bus.dev.status() & crate::hv::virtio::status::DEVICE_NEEDS_RESET,
            0
        );
    }
}
