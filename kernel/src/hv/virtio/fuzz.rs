//! Fuzz entry point for the virtio device side: arbitrary bytes are a
//! hostile guest's RAM (rings, descriptors, request headers) plus the queue
//! layout its driver programs. The transport and virtio-blk must never
//! panic: they serve requests within guest RAM or mark the device
//! NEEDS_RESET. (Rings and buffers may overlap in a hostile guest's RAM, so
//! the ring contents afterwards prove nothing; the unit test checks that a
//! well-formed seed is served.)

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;
use storage::mem::MemBlockDevice;

use super::blk::{Backend, Blk};
use super::pci::VirtioPci;
use super::{F_VERSION_1, status};
use crate::hv::memory::GuestMemory;
use crate::hv::pci::{MsiQueue, PciFunction};

/// Guest RAM the input is copied into.
const RAM: usize = 64 << 10;
/// The transport's BAR layout (see `pci.rs`).
const COMMON: u64 = 0x0000;
const NOTIFY: u64 = 0x3000;

fn write(dev: &mut VirtioPci<Blk>, irq: &mut MsiQueue, offset: u64, size: usize, value: u64) {
    dev.bar_write(0, offset, &value.to_le_bytes()[..size], irq);
}

/// Input: `[size_log2, desc_hi, avail_hi, used_hi, kicks, ram...]`; ring
/// addresses are `hi << 8` inside the 64 KiB of RAM (or beyond it).
pub fn fuzz_virtqueue(data: &[u8]) {
    run(data);
}

/// Runs the input; returns guest RAM afterwards and the device status.
fn run(data: &[u8]) -> Option<(Vec<u8>, u8)> {
    let [size_log2, desc, avail, used, kicks, rest @ ..] = data else {
        return None;
    };
    let mut ram = vec![0u8; RAM];
    let n = rest.len().min(RAM);
    ram[..n].copy_from_slice(&rest[..n]);
    let mut mem = GuestMemory::new(&mut ram);
    let disk = Arc::new(Mutex::new(
        Box::new(MemBlockDevice::new(512, 64)) as Box<dyn storage::BlockDevice + Send>
    ));
    let mut dev = VirtioPci::new(Blk::new(
        Backend::Inline(disk),
        size_log2 & 0x80 != 0,
        "fuzz",
    ))?;
    let mut irq = MsiQueue::default();
    let ok = u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    write(&mut dev, &mut irq, COMMON + 0x14, 1, 3);
    write(&mut dev, &mut irq, COMMON + 0x08, 4, 1);
    write(&mut dev, &mut irq, COMMON + 0x0c, 4, F_VERSION_1 >> 32);
    write(&mut dev, &mut irq, COMMON + 0x14, 1, ok);
    write(
        &mut dev,
        &mut irq,
        COMMON + 0x18,
        2,
        1u64 << (size_log2 & 0xf).min(15),
    );
    for (at, hi) in [(0x20, desc), (0x28, avail), (0x30, used)] {
        write(&mut dev, &mut irq, COMMON + at, 4, u64::from(*hi) << 8);
    }
    write(&mut dev, &mut irq, COMMON + 0x1c, 2, 1);
    write(
        &mut dev,
        &mut irq,
        COMMON + 0x14,
        1,
        ok | u64::from(status::DRIVER_OK),
    );
    for _ in 0..(kicks & 7).max(1) {
        write(&mut dev, &mut irq, NOTIFY, 2, 0);
        dev.service(&mut mem, &mut irq);
    }
    let status = dev.status();
    Some((ram, status))
}

/// A well-formed input: a 16-entry queue with one read request of sector 1
/// (header, 512-byte buffer, status), for seeding mutations.
pub fn seed() -> Vec<u8> {
    let mut ram = vec![0u8; 0x6001];
    let mut desc = |i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        let at = 0x1000 + 16 * i;
        ram[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        ram[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        ram[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        ram[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
    };
    desc(0, 0x4000, 16, 1, 1);
    desc(1, 0x5000, 512, 3, 2);
    desc(2, 0x6000, 1, 2, 0);
    ram[0x2002] = 1; // avail idx 1, ring[0] = descriptor 0
    ram[0x4008] = 1; // sector 1
    let mut input = vec![4, 0x10, 0x20, 0x30, 1];
    input.extend_from_slice(&ram);
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_served_and_its_mutations_never_panic() {
        let s = seed();
        let (ram, st) = run(&s).unwrap();
        assert_eq!(st & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(ram[0x6000], 0, "status OK");
        assert_eq!(&ram[0x3002..0x3004], &[1, 0], "used index 1");
        assert_eq!(
            ram[0x3008..0x300c],
            513u32.to_le_bytes(),
            "512 data bytes + status"
        );
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Mutations where they matter: the descriptors, the rings, the header.
        let hot: Vec<usize> = (0..5)
            .chain(5 + 0x1000..5 + 0x1030)
            .chain(5 + 0x2000..5 + 0x2006)
            .chain(5 + 0x4000..5 + 0x4010)
            .collect();
        for _ in 0..3000 {
            let mut m = s.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = hot[(next() % hot.len() as u64) as usize];
                m[at] = next() as u8;
            }
            fuzz_virtqueue(&m);
        }
    }

    #[test]
    fn random_and_crafted_inputs_never_panic() {
        fuzz_virtqueue(&[]);
        // Used ring overlapping the descriptors, avail ring at RAM's end.
        fuzz_virtqueue(&[4, 0x10, 0xff, 0x10, 7]);
        fuzz_virtqueue(&[4, 0x10, 0x20, 0x30, 1]);
        // Rings beyond RAM, a huge queue, a loop in descriptor 0.
        fuzz_virtqueue(&[15, 0xff, 0xff, 0xff, 7, 1, 2, 3]);
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in [64usize, 300, 5000, 20000] {
            for _ in 0..50 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                fuzz_virtqueue(&data);
            }
        }
    }
}
