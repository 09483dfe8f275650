//! Legacy PCI interrupts (INTx) of the virtio devices, so an idle boot CPU
//! sleeps until a NIC has something for it instead of waking on a short
//! timer to look.
//!
//! The chipsets we run on (Q35/ICH9 and its kin) wire PCI INTA..INTD of every
//! slot to the PIRQ lines, which reach the I/O APIC at GSIs 16..23. Rather
//! than parse the ACPI `_PRT` (AML) to learn which device uses which line,
//! all eight lines are routed, level-triggered, to one vector on the boot
//! CPU, and any of them means "look at every device". The handler masks the
//! lines (a level-triggered line stays asserted until the device is
//! acknowledged, which the driver side does later); `idle` acknowledges every
//! device by reading its virtio ISR status (which deasserts its INTx) after
//! waking and unmasks the lines again before the next sleep. A wake-up that
//! races with the acknowledgement only costs one extra round of polling.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;

use crate::arch::x86_64::{apic, ioapic};

/// The I/O APIC inputs the PCI interrupt lines arrive on.
pub const PCI_GSIS: core::ops::RangeInclusive<u32> = 16..=23;

/// Mapped ISR status registers of the virtio devices (reading one clears it
/// and deasserts the device's INTx).
static ISRS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Whether the lines are routed (an I/O APIC with inputs 16..23 exists).
static ROUTED: AtomicBool = AtomicBool::new(false);
/// Interrupts taken; the first one proves the routing works.
static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Whether the first interrupt was reported.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Remembers the (mapped) ISR status register of a virtio device.
pub fn register_isr(virt: u64) {
    ISRS.lock().push(virt);
}

/// Routes the PCI lines to `vector` on the calling (boot) CPU, masked.
pub fn init(vector: u8) {
    if ISRS.lock().is_empty() {
        return;
    }
    let routed = PCI_GSIS
        .clone()
        .all(|gsi| ioapic::route_level_low(gsi, vector, apic::id()));
    ROUTED.store(routed, Ordering::Release);
    if routed {
        log::info!(
            "intx: PCI lines (GSI 16..23) routed to vector {vector:#x} for {} virtio devices",
            ISRS.lock().len()
        );
    } else {
        log::warn!("intx: no I/O APIC input for GSIs 16..23; NICs are polled");
    }
}

/// The interrupt handler: masks the lines until `acknowledge`.
pub fn on_interrupt() {
    for gsi in PCI_GSIS {
        ioapic::set_masked(gsi, true);
    }
    TAKEN.fetch_add(1, Ordering::Relaxed);
}

/// Whether a PCI interrupt has arrived since boot (so sleeping long is safe).
pub fn proven() -> bool {
    ROUTED.load(Ordering::Acquire) && TAKEN.load(Ordering::Relaxed) > 0
}

/// Interrupts taken since boot.
pub fn count() -> u64 {
    TAKEN.load(Ordering::Relaxed)
}

/// Before sleeping: lets the lines interrupt again.
pub fn arm() {
    if ROUTED.load(Ordering::Acquire) {
        for gsi in PCI_GSIS {
            ioapic::set_masked(gsi, false);
        }
    }
}

/// After waking: masks the lines and acknowledges every device, so the
/// caller's polling sees everything that raised an interrupt.
pub fn acknowledge() {
    if !ROUTED.load(Ordering::Acquire) {
        return;
    }
    for gsi in PCI_GSIS {
        ioapic::set_masked(gsi, true);
    }
    if TAKEN.load(Ordering::Relaxed) > 0 && !ANNOUNCED.swap(true, Ordering::Relaxed) {
        log::info!("intx: first PCI interrupt taken: devices wake the boot CPU");
    }
    for &isr in ISRS.lock().iter() {
        // SAFETY: `isr` is the mapped ISR status byte of a virtio-pci device
        // (`register_isr`, from its ISR capability); reading it has no effect
        // but clearing the device's interrupt status, which no one else reads.
        let _ = unsafe { core::ptr::read_volatile(isr as *const u8) };
    }
}
