//! The guest's PCI bus: a host bridge at 00:00.0, configuration space through
//! the legacy ports 0xcf8/0xcfc and through ECAM (declared in the MCFG), and
//! 32-bit memory BARs placed in a hole below 4 GiB that the guest's E820 and
//! RAM leave free. Each function is a plain struct behind [`PciFunction`]:
//! config space plus BAR reads and writes, unit-tested without a VM.

pub mod config;
pub mod msix;

use alloc::boxed::Box;
use alloc::vec::Vec;

pub use config::{Bar, ConfigSpace};
pub use msix::Msix;

use super::memory::GuestMemory;

/// Legacy configuration mechanism #1.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
pub const CONFIG_DATA: u16 = 0xcfc;
/// ECAM for bus 0 (1 MiB: 32 devices × 8 functions × 4 KiB), reserved in E820.
pub const ECAM_BASE: u64 = 0xe000_0000;
pub const ECAM_SIZE: u64 = 1 << 20;
/// Where BARs go: from 3 GiB up to the ECAM window. Guest RAM must end below.
pub const MMIO_BASE: u64 = 0xc000_0000;
pub const MMIO_END: u64 = ECAM_BASE;
/// Device numbers on bus 0.
pub const SLOTS: usize = 32;

/// An MSI write a function makes: an address in the LAPIC window and a data word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

impl MsiMessage {
    /// Destination APIC ID (bits 19:12 of the address).
    pub fn destination(&self) -> u32 {
        ((self.address >> 12) & 0xff) as u32
    }
    /// Logical destination mode (address bit 2).
    pub fn logical(&self) -> bool {
        self.address & (1 << 2) != 0
    }
    pub fn vector(&self) -> u8 {
        self.data as u8
    }
    /// Delivery mode (data bits 10:8): 0 fixed, 1 lowest priority.
    pub fn delivery_mode(&self) -> u32 {
        (self.data >> 8) & 7
    }
}

/// Where a function's interrupts go.
pub trait InterruptSink {
    fn msi(&mut self, message: MsiMessage);
}

/// Messages collected while the bus is borrowed, delivered afterwards.
#[derive(Debug, Default)]
pub struct MsiQueue(pub Vec<MsiMessage>);

impl InterruptSink for MsiQueue {
    fn msi(&mut self, message: MsiMessage) {
        self.0.push(message);
    }
}

/// One PCI function as the bus sees it.
pub trait PciFunction: Send {
    fn config(&self) -> &ConfigSpace;
    fn config_mut(&mut self) -> &mut ConfigSpace;

    /// A guest write to config space (`data` is 1, 2 or 4 bytes within one dword).
    /// Functions with side effects of config writes (MSI-X unmasking) override it.
    fn config_write(&mut self, offset: u16, data: &[u8], _irq: &mut dyn InterruptSink) {
        self.config_mut().write(offset, data);
    }

    /// A guest read of config space (`data` is 1, 2 or 4 bytes within one dword).
    /// Functions whose config reads have effects (a window into a BAR) override it.
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config().read(offset, data);
    }

    /// A read of `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);

    /// A write inside BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], irq: &mut dyn InterruptSink);

    /// Whether BAR writes queued work that needs guest memory (a virtqueue notify).
    fn has_work(&self) -> bool {
        false
    }

    /// Runs the queued work over guest memory.
    fn service(&mut self, _mem: &mut GuestMemory<'_>, _irq: &mut dyn InterruptSink) {}
}

/// The host bridge at 00:00.0: identifies the bus, decodes nothing itself.
#[derive(Debug)]
pub struct HostBridge {
    config: ConfigSpace,
}

/// Red Hat's PCI vendor ID, which QEMU's generic host bridge also uses.
pub const VENDOR_REDHAT_QUMRANET: u16 = 0x1af4;
const VENDOR_REDHAT: u16 = 0x1b36;
const DEVICE_GENERIC_HOST_BRIDGE: u16 = 0x0008;
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge {
            config: ConfigSpace::new(
                VENDOR_REDHAT,
                DEVICE_GENERIC_HOST_BRIDGE,
                CLASS_HOST_BRIDGE,
                0,
            ),
        }
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _: usize, _: u64, _: &[u8], _: &mut dyn InterruptSink) {}
}

/// Why a function could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// All 32 device numbers are taken.
    BusFull,
    /// The BAR hole has no room left for this function's BARs.
    NoBarSpace,
}

impl core::fmt::Display for PciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PciError::BusFull => write!(f, "the guest's PCI bus has no free device number"),
            PciError::NoBarSpace => write!(f, "the guest's PCI MMIO hole is full"),
        }
    }
}

/// Bus 0 and the functions on it (function 0 of each device number).
pub struct PciBus {
    /// The last value written to 0xcf8.
    address: u32,
    slots: Vec<Box<dyn PciFunction>>,
    /// The next free address in the BAR hole.
    next_bar: u64,
}

impl Default for PciBus {
    fn default() -> Self {
        PciBus {
            address: 0,
            slots: alloc::vec![Box::new(HostBridge::default()) as Box<dyn PciFunction>],
            next_bar: MMIO_BASE,
        }
    }
}

impl core::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PciBus({} functions)", self.slots.len())
    }
}

impl PciBus {
    /// Plugs `function` into the next device number and places its BARs in
    /// the hole, as firmware would; returns the device number.
    pub fn add(&mut self, mut function: Box<dyn PciFunction>) -> Result<u8, PciError> {
        if self.slots.len() >= SLOTS {
            return Err(PciError::BusFull);
        }
        let mut next = self.next_bar;
        for i in 0..config::BARS {
            let size = function.config().bar(i).size;
            if size == 0 {
                continue;
            }
            let at = next.next_multiple_of(size);
            if at + size > MMIO_END {
                return Err(PciError::NoBarSpace);
            }
            function.config_mut().set_bar_address(i, at as u32);
            next = at + size;
        }
        self.next_bar = next;
        self.slots.push(function);
        Ok((self.slots.len() - 1) as u8)
    }

    pub fn function(&mut self, device: u8) -> Option<&mut (dyn PciFunction + 'static)> {
        self.slots.get_mut(usize::from(device)).map(|f| &mut **f)
    }

    /// Config read of `size` bytes at `offset` of bus 0, device `dev`, function `func`.
    fn config_read(&mut self, bus: u8, dev: u8, func: u8, offset: u16, size: u8) -> u32 {
        let all_ones = if size >= 4 {
            u32::MAX
        } else {
            (1u32 << (size * 8)) - 1
        };
        let Some(f) = self.slots.get_mut(usize::from(dev)) else {
            return all_ones;
        };
        if bus != 0 || func != 0 || !fits_dword(offset, size) {
            return all_ones;
        }
        let mut b = [0u8; 4];
        f.config_read(offset, &mut b[..usize::from(size)]);
        u32::from_le_bytes(b)
    }

    fn config_write(
        &mut self,
        target: (u8, u8, u8),
        offset: u16,
        size: u8,
        value: u32,
        irq: &mut dyn InterruptSink,
    ) {
        let (bus, dev, func) = target;
        let Some(f) = self.slots.get_mut(usize::from(dev)) else {
            return;
        };
        if bus != 0 || func != 0 || !fits_dword(offset, size) {
            return;
        }
        f.config_write(offset, &value.to_le_bytes()[..usize::from(size)], irq);
    }

    /// A port access, if it is one of the configuration ports (`None` otherwise).
    pub fn io(
        &mut self,
        port: u16,
        size: u8,
        write: Option<u32>,
        irq: &mut dyn InterruptSink,
    ) -> Option<u32> {
        match (port, write) {
            (CONFIG_ADDRESS, Some(v)) if size == 4 => {
                self.address = v & 0x80ff_fffc;
                Some(0)
            }
            (CONFIG_ADDRESS, None) if size == 4 => Some(self.address),
            (CONFIG_DATA..=0xcff, _) => {
                let enabled = self.address & (1 << 31) != 0;
                let bus = (self.address >> 16) as u8;
                let dev = ((self.address >> 11) & 0x1f) as u8;
                let func = ((self.address >> 8) & 7) as u8;
                let offset = (self.address & 0xfc) as u16 + (port - CONFIG_DATA);
                match write {
                    Some(_) if !enabled => Some(0),
                    None if !enabled => Some(u32::MAX),
                    Some(v) => {
                        self.config_write((bus, dev, func), offset, size, v, irq);
                        Some(0)
                    }
                    None => Some(self.config_read(bus, dev, func, offset, size)),
                }
            }
            _ => None,
        }
    }

    /// Whether `gpa` is in the PCI windows (ECAM or the BAR hole): accesses
    /// there never crash the guest; nothing decoded reads as all ones.
    pub fn decodes(gpa: u64) -> bool {
        (MMIO_BASE..ECAM_BASE + ECAM_SIZE).contains(&gpa)
    }

    /// Which function and BAR decode `gpa`, and the offset inside that BAR.
    fn bar_at(&self, gpa: u64, size: u8) -> Option<(usize, usize, u64)> {
        self.slots.iter().enumerate().find_map(|(slot, f)| {
            let c = f.config();
            if !c.memory_enabled() {
                return None;
            }
            (0..config::BARS).find_map(|i| {
                let bar = c.bar(i);
                let base = u64::from(c.bar_address(i)?);
                let offset = gpa.checked_sub(base)?;
                (offset + u64::from(size) <= bar.size).then_some((slot, i, offset))
            })
        })
    }

    /// A read of guest-physical `gpa` in the PCI windows.
    pub fn mmio_read(&mut self, gpa: u64, size: u8) -> u64 {
        let size = size.min(8);
        if (ECAM_BASE..ECAM_BASE + ECAM_SIZE).contains(&gpa) {
            let (dev, func, offset) = ecam_split(gpa);
            if size > 4 {
                return u64::MAX;
            }
            return u64::from(self.config_read(0, dev, func, offset, size));
        }
        let mut b = [0u8; 8];
        b[..usize::from(size)].fill(0xff);
        if let Some((slot, bar, offset)) = self.bar_at(gpa, size) {
            self.slots[slot].bar_read(bar, offset, &mut b[..usize::from(size)]);
        }
        u64::from_le_bytes(b)
    }

    /// A write to guest-physical `gpa` in the PCI windows.
    pub fn mmio_write(&mut self, gpa: u64, size: u8, value: u64, irq: &mut dyn InterruptSink) {
        let size = size.min(8);
        if (ECAM_BASE..ECAM_BASE + ECAM_SIZE).contains(&gpa) {
            let (dev, func, offset) = ecam_split(gpa);
            if size <= 4 {
                self.config_write((0, dev, func), offset, size, value as u32, irq);
            }
            return;
        }
        if let Some((slot, bar, offset)) = self.bar_at(gpa, size) {
            let bytes = value.to_le_bytes();
            self.slots[slot].bar_write(bar, offset, &bytes[..usize::from(size)], irq);
        }
    }

    pub fn has_work(&self) -> bool {
        self.slots.iter().any(|f| f.has_work())
    }

    /// Runs every function's queued work.
    pub fn service(&mut self, mem: &mut GuestMemory<'_>, irq: &mut dyn InterruptSink) {
        for f in self.slots.iter_mut().filter(|f| f.has_work()) {
            f.service(mem, irq);
        }
    }
}

fn fits_dword(offset: u16, size: u8) -> bool {
    matches!(size, 1 | 2 | 4) && (offset % 4) + u16::from(size) <= 4
}

fn ecam_split(gpa: u64) -> (u8, u8, u16) {
    let off = gpa - ECAM_BASE;
    (
        ((off >> 15) & 0x1f) as u8,
        ((off >> 12) & 7) as u8,
        (off & 0xfff) as u16,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function with one 16 KiB BAR that remembers the last write.
    struct Probe {
        config: ConfigSpace,
        last: Option<(usize, u64, Vec<u8>)>,
    }

    impl PciFunction for Probe {
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.config
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (bar as u64 * 0x10 + offset + i as u64) as u8;
            }
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], _: &mut dyn InterruptSink) {
            self.last = Some((bar, offset, data.to_vec()));
        }
    }

    fn probe() -> Box<Probe> {
        let mut config = ConfigSpace::new(0x1234, 0x5678, 0x01_80_00, 0);
        config.set_bar(0, Bar::memory32(0x4000));
        Box::new(Probe { config, last: None })
    }

    fn cf8(dev: u8, offset: u8) -> u32 {
        0x8000_0000 | (u32::from(dev) << 11) | u32::from(offset)
    }

    #[test]
    fn legacy_ports_and_ecam_see_the_same_config_space() {
        let mut bus = PciBus::default();
        let mut irq = MsiQueue::default();
        assert_eq!(bus.add(probe()), Ok(1));
        bus.io(CONFIG_ADDRESS, 4, Some(cf8(1, 0)), &mut irq);
        assert_eq!(bus.io(CONFIG_DATA, 4, None, &mut irq), Some(0x5678_1234));
        assert_eq!(bus.io(CONFIG_DATA + 2, 2, None, &mut irq), Some(0x5678));
        assert_eq!(bus.mmio_read(ECAM_BASE + (1 << 15), 4), 0x5678_1234);
        // The host bridge at 00:00.0; nothing at 00:05.0 or on bus 1.
        assert_eq!(bus.mmio_read(ECAM_BASE + 0xa, 2), 0x0600);
        assert_eq!(bus.mmio_read(ECAM_BASE + (5 << 15), 4), 0xffff_ffff);
        bus.io(CONFIG_ADDRESS, 4, Some(cf8(1, 0) | (1 << 16)), &mut irq);
        assert_eq!(bus.io(CONFIG_DATA, 4, None, &mut irq), Some(u32::MAX));
        // Config cycles with the enable bit clear read all ones.
        bus.io(CONFIG_ADDRESS, 4, Some(0), &mut irq);
        assert_eq!(bus.io(CONFIG_DATA, 2, None, &mut irq), Some(u32::MAX));
        // Other ports are not the bus's.
        assert_eq!(bus.io(0x3f8, 1, None, &mut irq), None);
    }

    #[test]
    fn bars_are_sized_placed_and_decoded_only_when_enabled() {
        let mut bus = PciBus::default();
        let mut irq = MsiQueue::default();
        bus.add(probe()).unwrap();
        bus.add(probe()).unwrap();
        let bar0 = |bus: &mut PciBus, dev: u64| bus.mmio_read(ECAM_BASE + (dev << 15) + 0x10, 4);
        assert_eq!(bar0(&mut bus, 1), MMIO_BASE);
        assert_eq!(bar0(&mut bus, 2), MMIO_BASE + 0x4000);
        // Sizing: all ones in, the size mask out; then the address back.
        bus.mmio_write(ECAM_BASE + (1 << 15) + 0x10, 4, 0xffff_ffff, &mut irq);
        assert_eq!(bar0(&mut bus, 1), 0xffff_c000);
        bus.mmio_write(ECAM_BASE + (1 << 15) + 0x10, 4, 0xd000_0000, &mut irq);
        assert_eq!(bar0(&mut bus, 1), 0xd000_0000);
        // Memory decoding is off until the command register enables it.
        assert_eq!(bus.mmio_read(0xd000_0004, 4), 0xffff_ffff);
        bus.mmio_write(ECAM_BASE + (1 << 15) + 4, 2, 0x0002, &mut irq);
        assert_eq!(bus.mmio_read(0xd000_0004, 2), 0x0504);
        // An access straddling the BAR's end is not decoded.
        assert_eq!(bus.mmio_read(0xd000_3ffe, 4), 0xffff_ffff);
        assert!(PciBus::decodes(0xd000_0000) && !PciBus::decodes(0xbfff_ffff));
    }

    #[test]
    fn a_full_bus_or_hole_is_refused() {
        let mut bus = PciBus::default();
        for _ in 1..SLOTS {
            bus.add(probe()).unwrap();
        }
        assert_eq!(bus.add(probe()).err(), Some(PciError::BusFull));
        let mut bus = PciBus::default();
        let mut big = probe();
        big.config.set_bar(0, Bar::memory32(0x2000_0000));
        bus.add(big).unwrap();
        assert_eq!(bus.add(probe()).err(), Some(PciError::NoBarSpace));
    }
}
