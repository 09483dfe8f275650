//! PCI configuration access (ECAM from the MCFG when present, else ports
//! 0xcf8/0xcfc) and bus enumeration.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, PciRoot,
};

use crate::arch::x86_64::cpu;
use crate::mem::paging;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Serialises the two-step port mechanism.
static PORT_LOCK: Mutex<()> = Mutex::new(());
/// Virtual base of the ECAM window of bus 0 (0 = use ports).
static ECAM: AtomicU64 = AtomicU64::new(0);

/// Configuration space of PCI segment 0.
#[derive(Debug)]
pub struct Cam {
    ecam: u64,
}

fn port_address(bus: u8, dev: u8, func: u8, offset: u16) -> u32 {
    0x8000_0000
        | (u32::from(bus) << 16)
        | (u32::from(dev & 0x1f) << 11)
        | (u32::from(func & 0x7) << 8)
        | (u32::from(offset) & 0xfc)
}

fn ecam_offset(bus: u8, dev: u8, func: u8, offset: u16) -> u64 {
    (u64::from(bus) << 20)
        | (u64::from(dev & 0x1f) << 15)
        | (u64::from(func & 0x7) << 12)
        | u64::from(offset & 0xffc)
}

impl Cam {
    fn read(&self, bus: u8, dev: u8, func: u8, offset: u16) -> u32 {
        if self.ecam != 0 {
            // SAFETY: `ecam` maps the 256 MiB ECAM window from the MCFG and the
            // offset stays inside it (bus/dev/func/register are masked).
            unsafe {
                core::ptr::read_volatile(
                    (self.ecam + ecam_offset(bus, dev, func, offset)) as *const u32,
                )
            }
        } else {
            let _g = PORT_LOCK.lock();
            // SAFETY: 0xcf8/0xcfc are the PCI configuration mechanism #1 ports.
            unsafe {
                cpu::outl(CONFIG_ADDRESS, port_address(bus, dev, func, offset));
                cpu::inl(CONFIG_DATA)
            }
        }
    }

    fn write(&self, bus: u8, dev: u8, func: u8, offset: u16, value: u32) {
        if self.ecam != 0 {
            // SAFETY: as in `read`.
            unsafe {
                core::ptr::write_volatile(
                    (self.ecam + ecam_offset(bus, dev, func, offset)) as *mut u32,
                    value,
                )
            }
        } else {
            let _g = PORT_LOCK.lock();
            // SAFETY: as in `read`.
            unsafe {
                cpu::outl(CONFIG_ADDRESS, port_address(bus, dev, func, offset));
                cpu::outl(CONFIG_DATA, value);
            }
        }
    }
}

impl ConfigurationAccess for Cam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        self.read(df.bus, df.device, df.function, u16::from(register_offset))
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        self.write(
            df.bus,
            df.device,
            df.function,
            u16::from(register_offset),
            data,
        )
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Cam { ecam: self.ecam }
    }
}

/// Selects ECAM for segment 0 when the MCFG gave one.
pub fn init(ecam: Option<(u64, u8, u8)>) {
    if let Some((base, start, _end)) = ecam {
        // The window of bus 0 (the MCFG base is for `start`).
        let bus0 = base.wrapping_sub(u64::from(start) << 20);
        let v = paging::map_mmio(base, 256 << 20);
        ECAM.store(v.wrapping_sub(base.wrapping_sub(bus0)), Ordering::Relaxed);
    }
}

pub fn cam() -> Cam {
    Cam {
        ecam: ECAM.load(Ordering::Relaxed),
    }
}

/// Writes one byte of configuration space (read-modify-write of the dword).
impl Cam {
    /// Reads the 32-bit configuration register at `offset` (rounded down to 4).
    pub fn read_config(&self, bus: u8, dev: u8, func: u8, offset: u16) -> u32 {
        self.read(bus, dev, func, offset & !3)
    }
}

pub fn write_config_byte(bus: u8, dev: u8, func: u8, offset: u16, value: u8) {
    let c = cam();
    let shift = u32::from(offset & 3) * 8;
    let old = c.read(bus, dev, func, offset & !3);
    c.write(
        bus,
        dev,
        func,
        offset & !3,
        (old & !(0xff << shift)) | (u32::from(value) << shift),
    );
}

/// One function found on the bus.
#[derive(Debug, Clone)]
pub struct Function {
    pub address: DeviceFunction,
    pub info: DeviceFunctionInfo,
}

/// Enumerates buses `0..=last_bus` and logs what is there.
pub fn enumerate(root: &PciRoot<Cam>, last_bus: u8) -> Vec<Function> {
    let mut found = Vec::new();
    for bus in 0..=last_bus {
        for (df, info) in root.enumerate_bus(bus) {
            log::info!(
                "pci {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}",
                df.bus,
                df.device,
                df.function,
                info.vendor_id,
                info.device_id,
                info.class,
                info.subclass
            );
            found.push(Function { address: df, info });
        }
    }
    found
}
