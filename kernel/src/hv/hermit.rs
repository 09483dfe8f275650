//! Starting a Hermit unikernel image the way uhyve does: the image is loaded
//! (a static PIE at `PIE_BASE`, relocated), Hermit's boot information is
//! written in the ABI the `hermit-entry` crate defines, and the boot vCPU
//! enters the image in 64-bit mode with the boot information in RDI and its
//! CPU number (0) in RSI. The console is the emulated UART at 0x3f8.
//!
//! Parsing and loading use our own bounds-checked ELF loader (`elf`), not
//! `hermit_entry::elf`: that loader unwraps and asserts on malformed images,
//! and a bad guest image must never panic the host.

use core::num::{NonZeroU32, NonZeroU64};

use hermit_entry::boot_info::{
    BootInfo, HardwareInfo, LoadInfo, PlatformInfo, RawBootInfo, SerialPortBase, TlsInfo,
};

use super::elf::{self, ElfError};
use super::longmode::{self, LongModeEntry};
use super::memory::{GuestAddress, GuestMemory, OutOfBounds};

/// Where a relocatable image is loaded (above the loader's low memory).
pub const PIE_BASE: u64 = 0x20_0000;
/// Guest-physical address of the boot information.
pub const BOOT_INFO: u64 = 0x9000;
/// Top of the boot stack (in low memory, below the image).
pub const BOOT_STACK_TOP: u64 = 0x8_0000;
/// The entry-version note value this loader speaks (hermit-entry 0.10).
pub const ENTRY_VERSION: u8 = 4;
const COM1: u16 = 0x3f8;

/// What the guest is told about its platform.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    pub cpus: u32,
    /// TSC frequency in kHz.
    pub cpu_khz: u32,
    /// Wall-clock time at boot, seconds since the Unix epoch.
    pub boot_unix_seconds: i64,
}

/// Why a Hermit image could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HermitError {
    Elf(ElfError),
    /// The image has no Hermit entry-version note.
    NotHermit,
    /// The image speaks another entry version.
    EntryVersion(u8),
    Memory(OutOfBounds),
    NoCpus,
    BadClock,
}

impl core::fmt::Display for HermitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HermitError::Elf(e) => write!(f, "{e}"),
            HermitError::NotHermit => {
                write!(f, "not a Hermit image (no HERMIT entry-version note)")
            }
            HermitError::EntryVersion(v) => write!(
                f,
                "Hermit entry version {v}; this host starts version {ENTRY_VERSION}"
            ),
            HermitError::Memory(e) => write!(f, "boot information does not fit: {e}"),
            HermitError::NoCpus => write!(f, "a Hermit guest needs at least one vCPU"),
            HermitError::BadClock => write!(f, "the boot time is out of range"),
        }
    }
}

/// Whether `image` carries a Hermit entry-version note (then `load` applies).
pub fn is_hermit(image: &[u8]) -> bool {
    elf::hermit_entry_version(image).is_some()
}

/// Loads a Hermit image into `mem` and returns how the boot vCPU enters it.
pub fn load(
    image: &[u8],
    mem: &mut GuestMemory<'_>,
    platform: Platform,
) -> Result<LongModeEntry, HermitError> {
    match elf::hermit_entry_version(image) {
        None => return Err(HermitError::NotHermit),
        Some(v) if v != ENTRY_VERSION => return Err(HermitError::EntryVersion(v)),
        Some(_) => {}
    }
    let loaded =
        elf::load_image(image, mem, longmode::LOADER_END, PIE_BASE).map_err(HermitError::Elf)?;
    let boot_info = BootInfo {
        hardware_info: HardwareInfo {
            phys_addr_range: 0..mem.size(),
            serial_port_base: SerialPortBase::new(COM1),
            device_tree: None,
        },
        load_info: LoadInfo {
            kernel_image_addr_range: loaded.start..loaded.end,
            tls_info: loaded.tls.map(|t| TlsInfo {
                start: t.start,
                filesz: t.filesz,
                memsz: t.memsz,
                align: t.align,
            }),
        },
        platform_info: PlatformInfo::Uhyve {
            has_pci: false,
            num_cpus: NonZeroU64::new(u64::from(platform.cpus)).ok_or(HermitError::NoCpus)?,
            cpu_freq: NonZeroU32::new(platform.cpu_khz),
            boot_time: time::OffsetDateTime::from_unix_timestamp(platform.boot_unix_seconds)
                .map_err(|_| HermitError::BadClock)?,
        },
    };
    mem.write_repr(GuestAddress(BOOT_INFO), RawBootInfo::from(boot_info))
        .map_err(HermitError::Memory)?;
    let mut entry =
        longmode::prepare(mem, loaded.entry, BOOT_STACK_TOP).map_err(HermitError::Memory)?;
    entry.rdi = BOOT_INFO;
    entry.rsi = 0;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_layout_is_what_hermit_reads() {
        // hardware (32) + load (48) + platform (tag, then the Uhyve variant: 48).
        assert_eq!(core::mem::size_of::<RawBootInfo>(), 128);
        const { assert!(BOOT_INFO + 128 <= BOOT_STACK_TOP - 0x1000) };
    }

    #[test]
    fn refuses_images_that_are_not_hermit() {
        let mut ram = vec![0u8; 4 << 20];
        let mut m = GuestMemory::new(&mut ram);
        let p = Platform {
            cpus: 1,
            cpu_khz: 1,
            boot_unix_seconds: 0,
        };
        assert_eq!(load(b"junk", &mut m, p), Err(HermitError::NotHermit));
    }
}
