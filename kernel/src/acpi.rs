//! Firmware tables: CPUs and I/O APICs (MADT), PCI ECAM (MCFG), the PM timer,
//! sleep and reset registers (FADT), and the S5 sleep type (DSDT).

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::address::{AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use crate::acpi_s5;
use crate::mem::paging;

/// Maps firmware tables through the direct map.
#[derive(Debug, Clone, Copy)]
struct Mapper;

impl AcpiHandler for Mapper {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = paging::map_mmio(phys as u64, size as u64);
        // SAFETY: `virt` is the direct-map address of `phys`, which `map_mmio`
        // made reachable; the caller guarantees a valid `T` lives there.
        unsafe {
            PhysicalMapping::new(
                phys,
                NonNull::new_unchecked(virt as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// A register the FADT describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    Io(u16),
    Memory(u64),
    /// PCI config space of bus 0: (device, function, offset).
    PciConfig(u8, u8, u16),
}

fn register(g: &GenericAddress) -> Option<Register> {
    if g.address == 0 {
        return None;
    }
    match g.address_space {
        AddressSpace::SystemIo => u16::try_from(g.address).ok().map(Register::Io),
        AddressSpace::SystemMemory => Some(Register::Memory(g.address)),
        AddressSpace::PciConfigSpace => Some(Register::PciConfig(
            ((g.address >> 32) & 0x1f) as u8,
            ((g.address >> 16) & 0x7) as u8,
            (g.address & 0xffff) as u16,
        )),
        _ => None,
    }
}

/// What the kernel needs from the firmware tables.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// APIC IDs of enabled (or online-capable) processors, in MADT order.
    pub cpus: Vec<u32>,
    pub local_apic_phys: u64,
    /// (physical address, first GSI)
    pub io_apics: Vec<(u64, u32)>,
    /// (ISA IRQ, GSI, MPS INTI flags)
    pub isa_overrides: Vec<(u8, u32, u16)>,
    pub has_8259: bool,
    /// (physical base, first bus, last bus) of PCI segment 0.
    pub ecam: Option<(u64, u8, u8)>,
    pub pm_timer: Option<(u16, bool)>,
    pub pm1a_control: Option<Register>,
    pub pm1b_control: Option<Register>,
    pub smi_command: u32,
    pub acpi_enable: u8,
    pub reset: Option<(Register, u8)>,
    pub s5_sleep_type: Option<(u8, u8)>,
}

/// Why the tables could not be read.
#[derive(Debug)]
pub enum AcpiError {
    NoRsdp,
    Tables(acpi::AcpiError),
}

/// Reads the tables rooted at the RSDP at `rsdp` (physical).
pub fn discover(rsdp: Option<u64>) -> Result<Platform, AcpiError> {
    let rsdp = rsdp.ok_or(AcpiError::NoRsdp)?;
    // SAFETY: the boot loader handed us this RSDP address; the crate validates
    // its signature and checksum before following it.
    let tables =
        unsafe { AcpiTables::from_rsdp(Mapper, rsdp as usize) }.map_err(AcpiError::Tables)?;
    let mut p = Platform::default();

    if let Ok(madt) = tables.find_table::<Madt>() {
        p.local_apic_phys = u64::from(madt.get().local_apic_address);
        p.has_8259 = madt.get().supports_8259();
        for entry in madt.get().entries() {
            match entry {
                MadtEntry::LocalApic(e) if e.flags & 0b11 != 0 => p.cpus.push(u32::from(e.apic_id)),
                MadtEntry::LocalX2Apic(e) if e.flags & 0b11 != 0 => {
                    let id = e.x2apic_id;
                    if !p.cpus.contains(&id) {
                        p.cpus.push(id);
                    }
                }
                MadtEntry::IoApic(e) => p
                    .io_apics
                    .push((u64::from(e.io_apic_address), e.global_system_interrupt_base)),
                MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => {
                    p.isa_overrides
                        .push((e.irq, e.global_system_interrupt, e.flags))
                }
                MadtEntry::LocalApicAddressOverride(e) => p.local_apic_phys = e.local_apic_address,
                _ => {}
            }
        }
    }

    if let Ok(mcfg) = tables.find_table::<Mcfg>() {
        p.ecam = mcfg
            .entries()
            .iter()
            .find(|e| e.pci_segment_group == 0)
            .map(|e| (e.base_address, e.bus_number_start, e.bus_number_end));
    }

    if let Ok(fadt) = tables.find_table::<Fadt>() {
        if let Ok(Some(t)) = fadt.pm_timer_block()
            && let Some(Register::Io(port)) = register(&t)
        {
            p.pm_timer = Some((port, { fadt.flags }.pm_timer_is_32_bit()));
        }
        p.pm1a_control = fadt.pm1a_control_block().ok().as_ref().and_then(register);
        p.pm1b_control = fadt
            .pm1b_control_block()
            .ok()
            .flatten()
            .as_ref()
            .and_then(register);
        p.smi_command = fadt.smi_cmd_port;
        p.acpi_enable = fadt.acpi_enable;
        if { fadt.flags }.supports_system_reset_via_fadt()
            && let Ok(r) = fadt.reset_register()
        {
            p.reset = register(&r).map(|reg| (reg, fadt.reset_value));
        }
        if let Ok(dsdt) = fadt.dsdt_address() {
            p.s5_sleep_type = read_s5(dsdt as u64);
        }
    }
    Ok(p)
}

fn read_s5(dsdt: u64) -> Option<(u8, u8)> {
    let base = paging::map_mmio(dsdt, 36);
    // SAFETY: the FADT points at the DSDT; its SDT header (36 bytes) is mapped
    // and its length field is at offset 4.
    let len = unsafe { core::ptr::read_unaligned((base + 4) as *const u32) } as usize;
    if !(36..=16 << 20).contains(&len) {
        return None;
    }
    let base = paging::map_mmio(dsdt, len as u64);
    // SAFETY: the DSDT is `len` bytes of firmware-owned, never-written memory.
    let aml = unsafe { core::slice::from_raw_parts((base + 36) as *const u8, len - 36) };
    acpi_s5::find_s5(aml)
}
