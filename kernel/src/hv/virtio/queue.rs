//! Split virtqueues (virtio 1.x §2.7), device side, over the checked
//! guest-memory API. Everything the guest wrote is validated before use: ring
//! addresses and sizes when the queue is enabled, each descriptor's index,
//! address and length when a chain is walked, chain length against the queue
//! size (so a loop ends), and the available index against runaway jumps. A
//! violation is a [`QueueError`]: the device stops and asks for a reset.

use alloc::vec::Vec;
use core::fmt;

use crate::hv::memory::{GuestAddress, GuestMemory, OutOfBounds};

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const DESC_BYTES: u64 = 16;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest queue a device here offers.
pub const MAX_QUEUE_SIZE: u16 = 256;
/// No MSI-X vector.
pub const NO_VECTOR: u16 = 0xffff;

/// How the guest broke the queue protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// A ring or buffer outside guest RAM.
    Memory(OutOfBounds),
    /// The rings are not aligned or the size is not a power of two.
    BadLayout,
    /// A descriptor index beyond the table.
    BadIndex(u16),
    /// A chain longer than the queue (a loop).
    ChainTooLong,
    /// A readable descriptor after a writable one.
    ReadAfterWrite,
    /// Indirect descriptors, which were not offered.
    Indirect,
    /// The available index moved by more than the queue size.
    AvailRunaway { last: u16, now: u16 },
    /// A chain the device type cannot make sense of.
    Malformed(&'static str),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Memory(e) => write!(f, "{e}"),
            QueueError::BadLayout => write!(
                f,
                "misaligned rings or a queue size that is not a power of two"
            ),
            QueueError::BadIndex(i) => write!(f, "descriptor index {i} is beyond the table"),
            QueueError::ChainTooLong => {
                write!(f, "a descriptor chain is longer than the queue (a loop)")
            }
            QueueError::ReadAfterWrite => {
                write!(f, "a device-readable descriptor follows a writable one")
            }
            QueueError::Indirect => write!(f, "an indirect descriptor, which was not negotiated"),
            QueueError::Malformed(why) => write!(f, "{why}"),
            QueueError::AvailRunaway { last, now } => {
                write!(f, "the available index jumped from {last} to {now}")
            }
        }
    }
}

impl From<OutOfBounds> for QueueError {
    fn from(e: OutOfBounds) -> Self {
        QueueError::Memory(e)
    }
}

/// One buffer of a chain, already checked to lie in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: GuestAddress,
    pub len: u32,
    pub writable: bool,
}

/// A chain taken from the available ring: the device-readable buffers, then
/// the device-writable ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Descriptor>,
    pub writable: Vec<Descriptor>,
}

impl Chain {
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|d| u64::from(d.len)).sum()
    }
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|d| u64::from(d.len)).sum()
    }

    /// Copies up to `buf.len()` bytes of the readable buffers from byte `skip` on; returns the count.
    pub fn read(
        &self,
        mem: &GuestMemory<'_>,
        skip: u64,
        buf: &mut [u8],
    ) -> Result<usize, OutOfBounds> {
        copy_segments(&self.readable, skip, buf.len(), |addr, at, n| {
            mem.read(addr, &mut buf[at..at + n])
        })
    }

    /// Appends up to `len` bytes of the readable buffers from byte `skip`
    /// on to `out`; returns the count.
    pub fn append_to(
        &self,
        mem: &GuestMemory<'_>,
        skip: u64,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, OutOfBounds> {
        copy_segments(&self.readable, skip, len, |addr, _, n| {
            mem.append_to(addr, n, out)
        })
    }

    /// Writes `data` into the writable buffers from byte `skip` on; returns the count.
    pub fn write(
        &self,
        mem: &mut GuestMemory<'_>,
        skip: u64,
        data: &[u8],
    ) -> Result<usize, OutOfBounds> {
        copy_segments(&self.writable, skip, data.len(), |addr, at, n| {
            mem.write(addr, &data[at..at + n])
        })
    }
}

/// Walks `segments` from byte `skip` for up to `len` bytes, calling
/// `copy(guest address, offset in the caller's buffer, count)`.
fn copy_segments(
    segments: &[Descriptor],
    mut skip: u64,
    len: usize,
    mut copy: impl FnMut(GuestAddress, usize, usize) -> Result<(), OutOfBounds>,
) -> Result<usize, OutOfBounds> {
    let mut done = 0usize;
    for d in segments {
        if done == len {
            break;
        }
        let dlen = u64::from(d.len);
        if skip >= dlen {
            skip -= dlen;
            continue;
        }
        let n = ((dlen - skip) as usize).min(len - done);
        copy(GuestAddress(d.addr.0 + skip), done, n)?;
        skip = 0;
        done += n;
    }
    Ok(done)
}

/// One virtqueue's registers and the device's position in its rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub size: u16,
    pub ready: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub msix_vector: u16,
    last_avail: u16,
    next_used: u16,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            size: MAX_QUEUE_SIZE,
            ready: false,
            desc: 0,
            driver: 0,
            device: 0,
            msix_vector: NO_VECTOR,
            last_avail: 0,
            next_used: 0,
        }
    }
}

impl Queue {
    /// Checks the layout the driver programmed before the queue goes live:
    /// a power-of-two size, aligned rings, all three inside guest RAM.
    pub fn validate(&self, mem: &GuestMemory<'_>) -> Result<(), QueueError> {
        let n = u64::from(self.size);
        if !self.size.is_power_of_two()
            || self.size > MAX_QUEUE_SIZE
            || !self.desc.is_multiple_of(16)
            || !self.driver.is_multiple_of(2)
            || !self.device.is_multiple_of(4)
        {
            return Err(QueueError::BadLayout);
        }
        for (addr, len) in [
            (self.desc, DESC_BYTES * n),
            (self.driver, 6 + 2 * n),
            (self.device, 6 + 8 * n),
        ] {
            check_range(mem, GuestAddress(addr), len)?;
        }
        Ok(())
    }

    fn avail_idx(&self, mem: &GuestMemory<'_>) -> Result<u16, OutOfBounds> {
        read_u16(mem, self.driver + 2)
    }

    /// Whether the driver put buffers the device has not taken yet.
    pub fn has_available(&self, mem: &GuestMemory<'_>) -> Result<bool, QueueError> {
        Ok(self.ready && self.avail_idx(mem)? != self.last_avail)
    }

    /// Takes the next available chain, walking and checking its descriptors.
    pub fn pop(&mut self, mem: &GuestMemory<'_>) -> Result<Option<Chain>, QueueError> {
        if !self.ready {
            return Ok(None);
        }
        let now = self.avail_idx(mem)?;
        if now == self.last_avail {
            return Ok(None);
        }
        if now.wrapping_sub(self.last_avail) > self.size {
            return Err(QueueError::AvailRunaway {
                last: self.last_avail,
                now,
            });
        }
        let slot = u64::from(self.last_avail % self.size);
        let head = read_u16(mem, self.driver + 4 + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        self.last_avail = self.last_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    fn walk(&self, mem: &GuestMemory<'_>, head: u16) -> Result<Chain, QueueError> {
        let mut chain = Chain {
            head,
            ..Chain::default()
        };
        let mut index = head;
        for _ in 0..self.size {
            if index >= self.size {
                return Err(QueueError::BadIndex(index));
            }
            let mut raw = [0u8; DESC_BYTES as usize];
            mem.read(
                GuestAddress(self.desc + DESC_BYTES * u64::from(index)),
                &mut raw,
            )?;
            let addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            check_range(mem, GuestAddress(addr), u64::from(len))?;
            let d = Descriptor {
                addr: GuestAddress(addr),
                len,
                writable: flags & DESC_F_WRITE != 0,
            };
            if d.writable {
                chain.writable.push(d);
            } else if chain.writable.is_empty() {
                chain.readable.push(d);
            } else {
                return Err(QueueError::ReadAfterWrite);
            }
            if flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = next;
        }
        Err(QueueError::ChainTooLong)
    }

    /// Returns chain `head` to the driver with `len` bytes written.
    pub fn push_used(
        &mut self,
        mem: &mut GuestMemory<'_>,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(GuestAddress(self.device + 4 + 8 * slot), &elem)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element is in place before the index that publishes it.
        mem.write(GuestAddress(self.device + 2), &self.next_used.to_le_bytes())?;
        Ok(())
    }

    /// Whether the driver wants an interrupt for used buffers.
    pub fn wants_interrupt(&self, mem: &GuestMemory<'_>) -> bool {
        read_u16(mem, self.driver).map_or(true, |f| f & AVAIL_F_NO_INTERRUPT == 0)
    }

    /// Back to reset state, keeping nothing the driver programmed.
    pub fn reset(&mut self) {
        *self = Queue::default();
    }
}

fn read_u16(mem: &GuestMemory<'_>, addr: u64) -> Result<u16, OutOfBounds> {
    let mut b = [0u8; 2];
    mem.read(GuestAddress(addr), &mut b)?;
    Ok(u16::from_le_bytes(b))
}

/// Checks that `[addr, addr + len)` is guest RAM without touching it.
fn check_range(mem: &GuestMemory<'_>, addr: GuestAddress, len: u64) -> Result<(), OutOfBounds> {
    let err = OutOfBounds {
        addr,
        len: usize::try_from(len).unwrap_or(usize::MAX),
        size: mem.size(),
    };
    match addr.0.checked_add(len) {
        Some(end) if end <= mem.size() => Ok(()),
        _ => Err(err),
    }
}

/// A driver's side of a queue in a test's guest memory: lays out rings and
/// publishes chains, as Linux's virtio_ring does.
#[cfg(test)]
pub mod driver {
    use super::*;

    #[derive(Debug)]
    pub struct TestDriver {
        pub queue: Queue,
        next_desc: u16,
        avail: u16,
    }

    impl TestDriver {
        /// Rings at `base` (desc), `base + 0x1000` (avail), `base + 0x2000` (used).
        pub fn new(size: u16, base: u64) -> TestDriver {
            TestDriver {
                queue: Queue {
                    size,
                    ready: true,
                    desc: base,
                    driver: base + 0x1000,
                    device: base + 0x2000,
                    ..Queue::default()
                },
                next_desc: 0,
                avail: 0,
            }
        }

        /// Writes a descriptor at `index`.
        pub fn descriptor(
            mem: &mut GuestMemory<'_>,
            q: &Queue,
            index: u16,
            addr: u64,
            len: u32,
            flags: u16,
            next: u16,
        ) {
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&addr.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&next.to_le_bytes());
            mem.write(GuestAddress(q.desc + 16 * u64::from(index)), &raw)
                .unwrap();
        }

        /// Publishes a chain of (address, length, device-writable) buffers; returns its head.
        pub fn add(&mut self, mem: &mut GuestMemory<'_>, buffers: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc;
            for (i, (addr, len, w)) in buffers.iter().enumerate() {
                let index = self.next_desc;
                let last = i + 1 == buffers.len();
                let flags = if *w { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
                let next = (index + 1) % self.queue.size;
                Self::descriptor(mem, &self.queue, index, *addr, *len, flags, next);
                self.next_desc = next;
            }
            self.publish(mem, head);
            head
        }

        /// Puts `head` in the available ring and bumps the index.
        pub fn publish(&mut self, mem: &mut GuestMemory<'_>, head: u16) {
            let slot = u64::from(self.avail % self.queue.size);
            mem.write(
                GuestAddress(self.queue.driver + 4 + 2 * slot),
                &head.to_le_bytes(),
            )
            .unwrap();
            self.avail = self.avail.wrapping_add(1);
            mem.write(
                GuestAddress(self.queue.driver + 2),
                &self.avail.to_le_bytes(),
            )
            .unwrap();
        }

        /// The used ring's index and its element at `slot`.
        pub fn used(mem: &GuestMemory<'_>, q: &Queue, slot: u16) -> (u16, u32, u32) {
            let idx = read_u16(mem, q.device + 2).unwrap();
            let mut e = [0u8; 8];
            mem.read(GuestAddress(q.device + 4 + 8 * u64::from(slot)), &mut e)
                .unwrap();
            (
                idx,
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::driver::TestDriver;
    use super::*;

    #[test]
    fn chains_are_walked_and_returned() {
        let mut ram = vec![0u8; 0x10000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut d = TestDriver::new(8, 0x1000);
        d.queue.validate(&mem).unwrap();
        mem.write(GuestAddress(0x8000), b"hello, device").unwrap();
        let head = d.add(
            &mut mem,
            &[(0x8000, 5, false), (0x8005, 8, false), (0x9000, 16, true)],
        );
        let mut q = d.queue.clone();
        assert!(q.has_available(&mem).unwrap());
        let chain = q.pop(&mem).unwrap().unwrap();
        assert_eq!(chain.head, head);
        assert_eq!((chain.readable_len(), chain.writable_len()), (13, 16));
        let mut buf = [0u8; 6];
        assert_eq!(chain.read(&mem, 3, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"lo, de");
        assert_eq!(chain.write(&mut mem, 10, b"0123456789").unwrap(), 6);
        let mut out = [0u8; 6];
        mem.read(GuestAddress(0x900a), &mut out).unwrap();
        assert_eq!(&out, b"012345");
        assert_eq!(q.pop(&mem).unwrap(), None);
        q.push_used(&mut mem, head, 16).unwrap();
        assert_eq!(TestDriver::used(&mem, &q, 0), (1, u32::from(head), 16));
        assert!(q.wants_interrupt(&mem));
    }

    #[test]
    fn hostile_rings_are_errors_not_panics() {
        let mut ram = vec![0u8; 0x10000];
        let mut mem = GuestMemory::new(&mut ram);
        // Layout: a ring outside RAM, a size that is not a power of two, misalignment.
        let mut bad = TestDriver::new(8, 0x1000).queue;
        bad.device = 0xfffc;
        assert!(matches!(bad.validate(&mem), Err(QueueError::Memory(_))));
        bad = TestDriver::new(6, 0x1000).queue;
        assert_eq!(bad.validate(&mem), Err(QueueError::BadLayout));
        bad = TestDriver::new(8, 0x1008).queue;
        assert_eq!(bad.validate(&mem), Err(QueueError::BadLayout));

        // A loop: descriptor 0 -> 1 -> 0.
        let mut d = TestDriver::new(8, 0x1000);
        let q = d.queue.clone();
        TestDriver::descriptor(&mut mem, &q, 0, 0x8000, 4, DESC_F_NEXT, 1);
        TestDriver::descriptor(&mut mem, &q, 1, 0x8000, 4, DESC_F_NEXT, 0);
        d.publish(&mut mem, 0);
        let mut q = d.queue.clone();
        assert_eq!(q.pop(&mem), Err(QueueError::ChainTooLong));

        // A buffer outside RAM, and one whose length wraps the address space.
        for (addr, len) in [(0xfff0u64, 32u32), (u64::MAX - 4, 16)] {
            let mut d = TestDriver::new(8, 0x1000);
            d.add(&mut mem, &[(addr, len, true)]);
            assert!(matches!(
                d.queue.clone().pop(&mem),
                Err(QueueError::Memory(_))
            ));
        }
        // A head index beyond the table, a next index beyond it.
        let mut d = TestDriver::new(8, 0x1000);
        d.publish(&mut mem, 9);
        assert_eq!(d.queue.clone().pop(&mem), Err(QueueError::BadIndex(9)));
        let mut d = TestDriver::new(8, 0x1000);
        let q = d.queue.clone();
        TestDriver::descriptor(&mut mem, &q, 0, 0x8000, 4, DESC_F_NEXT, 200);
        d.publish(&mut mem, 0);
        assert_eq!(d.queue.clone().pop(&mem), Err(QueueError::BadIndex(200)));
        // Indirect descriptors were not offered; readable after writable is refused.
        let mut d = TestDriver::new(8, 0x1000);
        let q = d.queue.clone();
        TestDriver::descriptor(&mut mem, &q, 0, 0x8000, 16, DESC_F_INDIRECT, 0);
        d.publish(&mut mem, 0);
        assert_eq!(d.queue.clone().pop(&mem), Err(QueueError::Indirect));
        let mut d = TestDriver::new(8, 0x1000);
        d.add(&mut mem, &[(0x8000, 4, true), (0x8004, 4, false)]);
        assert_eq!(d.queue.clone().pop(&mem), Err(QueueError::ReadAfterWrite));
        // The available index leaps ahead of the ring.
        let d = TestDriver::new(8, 0x1000);
        mem.write(GuestAddress(d.queue.driver + 2), &100u16.to_le_bytes())
            .unwrap();
        assert!(matches!(
            d.queue.clone().pop(&mem),
            Err(QueueError::AvailRunaway { .. })
        ));
    }
}
