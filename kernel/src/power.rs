//! Power-off and reset through ACPI, and the QEMU `isa-debug-exit` port.

use core::time::Duration;

use crate::acpi::Register;
use crate::arch::x86_64::cpu;
use crate::{mem, time};

const SLP_EN: u16 = 1 << 13;
const SCI_EN: u16 = 1;
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Value written to `isa-debug-exit` on a panic or fatal exception; QEMU then
/// exits with status `(0x11 << 1) | 1 = 35`.
pub const EXIT_FATAL: u32 = 0x11;

static PLATFORM: spin::Once<crate::acpi::Platform> = spin::Once::new();

pub(crate) fn set_platform(p: crate::acpi::Platform) {
    PLATFORM.call_once(|| p);
}

fn read16(r: Register) -> u16 {
    match r {
        // SAFETY: the FADT names this port as an ACPI fixed-hardware register.
        Register::Io(port) => unsafe { cpu::inw(port) },
        Register::Memory(addr) => {
            let v = mem::paging::map_mmio(addr, 2);
            // SAFETY: as above, a memory-mapped fixed-hardware register.
            unsafe { core::ptr::read_volatile(v as *const u16) }
        }
        Register::PciConfig(..) => 0,
    }
}

fn write(r: Register, value: u16) {
    match r {
        // SAFETY: the FADT names this port as an ACPI fixed-hardware register.
        Register::Io(port) => unsafe { cpu::outw(port, value) },
        Register::Memory(addr) => {
            let v = mem::paging::map_mmio(addr, 2);
            // SAFETY: as above, a memory-mapped fixed-hardware register.
            unsafe { core::ptr::write_volatile(v as *mut u16, value) }
        }
        Register::PciConfig(dev, func, off) => {
            crate::pci::write_config_byte(0, dev, func, off, value as u8)
        }
    }
}

/// Puts the chipset in ACPI mode if firmware left it in legacy mode.
fn enable_acpi_mode(p: &crate::acpi::Platform) {
    let Some(pm1a) = p.pm1a_control else { return };
    if read16(pm1a) & SCI_EN != 0 || p.smi_command == 0 || p.acpi_enable == 0 {
        return;
    }
    if let Ok(port) = u16::try_from(p.smi_command) {
        // SAFETY: writing ACPI_ENABLE to SMI_CMD is the FADT-defined handshake.
        unsafe { cpu::outb(port, p.acpi_enable) };
        for _ in 0..300 {
            if read16(pm1a) & SCI_EN != 0 {
                break;
            }
            time::spin_for(Duration::from_millis(10));
        }
    }
}

/// Turns the machine off (ACPI S5). Returns only if that failed.
pub fn poweroff() {
    let Some(p) = PLATFORM.get() else {
        log::error!("power: cannot power off: no ACPI tables");
        return;
    };
    let (Some(pm1a), Some((typ_a, typ_b))) = (p.pm1a_control, p.s5_sleep_type) else {
        log::error!("power: cannot power off: no PM1a control register or no \\_S5 in the DSDT");
        return;
    };
    log::info!("power: off (ACPI S5)");
    enable_acpi_mode(p);
    let keep = |v: u16| v & !(0x7 << 10 | SLP_EN);
    write(pm1a, keep(read16(pm1a)) | (u16::from(typ_a) << 10) | SLP_EN);
    if let Some(pm1b) = p.pm1b_control {
        write(pm1b, keep(read16(pm1b)) | (u16::from(typ_b) << 10) | SLP_EN);
    }
    time::spin_for(Duration::from_secs(2));
    log::error!("power: the machine did not power off");
}

/// Resets the machine: the FADT reset register, then the PCI reset port, then
/// the keyboard controller. Returns only if all failed.
pub fn reboot() {
    log::info!("power: reboot");
    if let Some((reg, value)) = PLATFORM.get().and_then(|p| p.reset) {
        match reg {
            // SAFETY: the FADT names this port as the reset register.
            Register::Io(port) => unsafe { cpu::outb(port, value) },
            other => write(other, u16::from(value)),
        }
        time::spin_for(Duration::from_millis(500));
    }
    // SAFETY: 0xcf9 is the PC reset-control port; 0x06 requests a hard reset.
    unsafe { cpu::outb(0xcf9, 0x06) };
    time::spin_for(Duration::from_millis(500));
    // SAFETY: 0xfe on the 8042 command port pulses the CPU reset line.
    unsafe { cpu::outb(0x64, 0xfe) };
    time::spin_for(Duration::from_millis(500));
    log::error!("power: the machine did not reset");
}

/// Tells QEMU's `isa-debug-exit` device to exit with `(code << 1) | 1`.
/// Without that device the write is ignored.
pub fn debug_exit(code: u32) {
    // SAFETY: port 0xf4 is either QEMU's debug-exit device or unused.
    unsafe { cpu::outl(DEBUG_EXIT_PORT, code) };
}
