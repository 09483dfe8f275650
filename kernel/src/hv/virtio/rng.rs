//! virtio-rng (virtio 1.x §5.4): one queue whose device-writable buffers the
//! device fills from the host's entropy source.

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

use super::queue::{Queue, QueueError};
use super::{BATCH, ID_RNG, VirtioDevice};
use crate::hv::memory::GuestMemory;

const CLASS_OTHER: u32 = 0xff_00_00;
/// Most bytes handed out per buffer (Linux asks for at most a page or so).
const MAX_CHUNK: u64 = 4096;

/// Fills a buffer with random bytes.
pub type EntropySource = Box<dyn FnMut(&mut [u8]) + Send>;

pub struct Rng {
    source: EntropySource,
    pub bytes_served: u64,
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rng({} bytes served)", self.bytes_served)
    }
}

impl Rng {
    pub fn new(source: EntropySource) -> Rng {
        Rng {
            source,
            bytes_served: 0,
        }
    }
}

impl VirtioDevice for Rng {
    fn device_id(&self) -> u16 {
        ID_RNG
    }
    fn class(&self) -> u32 {
        CLASS_OTHER
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process(
        &mut self,
        _index: u16,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        for _ in 0..BATCH.min(queue.size) {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let n = chain.writable_len().min(MAX_CHUNK) as usize;
            let mut buf = vec![0u8; n];
            (self.source)(&mut buf);
            let written = chain.write(mem, 0, &buf)?;
            self.bytes_served += written as u64;
            queue.push_used(mem, chain.head, written as u32)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::memory::GuestAddress;
    use crate::hv::pci::{MsiQueue, PciFunction};
    use crate::hv::virtio::pci::VirtioPci;
    use crate::hv::virtio::pci::tests::Bus;
    use crate::hv::virtio::queue::driver::TestDriver;
    use crate::hv::virtio::{BATCH, F_VERSION_1};

    #[test]
    fn buffers_are_filled_from_the_source() {
        let mut ram = vec![0u8; 0x20000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut counter = 0u8;
        let source: EntropySource = Box::new(move |buf: &mut [u8]| {
            for b in buf {
                counter = counter.wrapping_add(7);
                *b = counter;
            }
        });
        let mut dev = VirtioPci::new(Rng::new(source)).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        let mut d = TestDriver::new(8, 0x1000);
        bus.bring_up(&mut mem, F_VERSION_1, &[&d]);
        d.add(&mut mem, &[(0x8000, 16, true)]);
        d.add(&mut mem, &[(0x9000, 64 << 10, true)]);
        bus.kick(&mut mem, 0);
        assert_eq!(TestDriver::used(&mem, &d.queue, 0), (2, 0, 16));
        assert_eq!(
            TestDriver::used(&mem, &d.queue, 1).2,
            4096,
            "capped per buffer"
        );
        let mut got = [0u8; 3];
        mem.read(GuestAddress(0x8000), &mut got).unwrap();
        assert_eq!(got, [7, 14, 21]);
        assert_eq!(bus.irq.0.len(), 1);
    }

    #[test]
    fn a_full_ring_is_served_in_batches() {
        let mut ram = vec![0u8; 0x20000];
        let mut mem = GuestMemory::new(&mut ram);
        let source: EntropySource = Box::new(|buf: &mut [u8]| buf.fill(1));
        let mut dev = VirtioPci::new(Rng::new(source)).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        let mut d = TestDriver::new(32, 0x1000);
        bus.bring_up(&mut mem, F_VERSION_1, &[&d]);
        for i in 0..20 {
            d.add(&mut mem, &[(0x8000 + 16 * i, 16, true)]);
        }
        bus.kick(&mut mem, 0);
        assert_eq!(TestDriver::used(&mem, &d.queue, 0).0, BATCH);
        assert!(bus.dev.has_work(), "the rest waits for the next call");
        bus.dev.service(&mut mem, &mut bus.irq);
        assert_eq!(TestDriver::used(&mem, &d.queue, 0).0, 20);
        assert!(!bus.dev.has_work());
        assert_eq!(bus.irq.0.len(), 2, "an interrupt per batch");
    }
}
