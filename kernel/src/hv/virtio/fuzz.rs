//! Fuzz entry point for the virtio device side: arbitrary bytes are a
//! hostile guest's RAM (rings, descriptors, request headers) plus the queue
//! layout its driver programs. The transport and virtio-blk must never
//! panic; they either serve requests within guest RAM or mark the device
//! NEEDS_RESET; used entries never run ahead of what the driver made available.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;

use spin::Mutex;
use storage::mem::MemBlockDevice;

use super::blk::Blk;
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
    let [size_log2, desc, avail, used, kicks, rest @ ..] = data else {
        return;
    };
    let mut ram = vec![0u8; RAM];
    let n = rest.len().min(RAM);
    ram[..n].copy_from_slice(&rest[..n]);
    let mut mem = GuestMemory::new(&mut ram);
    let disk = Arc::new(Mutex::new(
        Box::new(MemBlockDevice::new(512, 64)) as Box<dyn storage::BlockDevice + Send>
    ));
    let Some(mut dev) = VirtioPci::new(Blk::new(disk, size_log2 & 0x80 != 0, "fuzz")) else {
        return;
    };
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
    // The used index never moves more than one ring's worth per kick
    // (a broken device moves it no further).
    let used_at = usize::from(*used) << 8;
    if let Some(b) = ram.get(used_at + 2..used_at + 4) {
        let used_idx = u16::from_le_bytes([b[0], b[1]]);
        let initial = rest
            .get(used_at + 2..used_at + 4)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        let moved = used_idx.wrapping_sub(initial);
        assert!(
            u32::from(moved) <= 8 * 256,
            "used index ran ahead: {initial} -> {used_idx}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_and_crafted_inputs_never_panic() {
        fuzz_virtqueue(&[]);
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
