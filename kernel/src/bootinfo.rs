//! What the boot loader tells us: memory map, modules, command line, RSDP.
//! Parsed from PVH `hvm_start_info` (QEMU `-kernel`) or the multiboot2
//! information structure (GRUB). Parsing reads physical memory only through a
//! caller-supplied reader, checks every length, and never panics, so it is
//! tested on the host with a fake memory.

use crate::le::{u32_at, u64_at};
use heapless::{String, Vec};

pub const MAX_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 8;
pub const MAX_CMDLINE: usize = 1024;

const PVH_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_ACPI: u32 = 3;
const E820_NVS: u32 = 4;
const E820_BAD: u32 = 5;

/// Kind of a physical memory range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Bad,
}

impl MemKind {
    fn from_e820(t: u32) -> MemKind {
        match t {
            E820_RAM => MemKind::Usable,
            E820_ACPI => MemKind::AcpiReclaimable,
            E820_NVS => MemKind::AcpiNvs,
            E820_BAD => MemKind::Bad,
            _ => MemKind::Reserved,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    pub start: u64,
    pub len: u64,
    pub kind: MemKind,
}

/// A boot module (the host config, later the state of an upgrade trial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Multiboot2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub protocol: Protocol,
    pub memory: Vec<MemRegion, MAX_REGIONS>,
    pub modules: Vec<Module, MAX_MODULES>,
    pub cmdline: String<MAX_CMDLINE>,
    /// Physical address of the ACPI RSDP, if the loader gave one.
    pub rsdp: Option<u64>,
    /// Physical range of the boot information itself (reserved until parsed).
    pub info_range: (u64, u64),
}

/// Why the boot information could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    Unreadable(u64),
    BadMagic(u32),
    NoMemoryMap,
    Malformed(&'static str),
}

/// Reads physical memory: fills `buf` from `phys`, or returns false when the
/// range is not readable.
pub trait PhysRead {
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool;
}

fn read_array<const N: usize>(mem: &impl PhysRead, phys: u64) -> Result<[u8; N], BootInfoError> {
    let mut b = [0u8; N];
    if mem.read(phys, &mut b) {
        Ok(b)
    } else {
        Err(BootInfoError::Unreadable(phys))
    }
}

/// Reads a NUL-terminated string of at most `MAX_CMDLINE - 1` bytes; invalid
/// UTF-8 is replaced byte by byte with '?'.
fn read_cstr(mem: &impl PhysRead, phys: u64) -> String<MAX_CMDLINE> {
    let mut out = String::new();
    let mut chunk = [0u8; 64];
    let mut at = phys;
    while out.len() < MAX_CMDLINE - 1 {
        if !mem.read(at, &mut chunk[..1]) {
            break;
        }
        let c = chunk[0];
        if c == 0 {
            break;
        }
        let ch = if c.is_ascii() && !c.is_ascii_control() {
            c as char
        } else {
            ' '
        };
        if out.push(ch).is_err() {
            break;
        }
        at += 1;
    }
    out
}

/// Parses PVH `hvm_start_info` (version ≥ 1, which carries the memory map).
pub fn parse_pvh(mem: &impl PhysRead, info: u64) -> Result<BootInfo, BootInfoError> {
    let si: [u8; 56] = read_array(mem, info)?;
    let magic = u32_at(&si, 0).unwrap_or(0);
    if magic != PVH_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    let version = u32_at(&si, 4).unwrap_or(0);
    let nr_modules = u32_at(&si, 12).unwrap_or(0);
    let modlist = u64_at(&si, 16).unwrap_or(0);
    let cmdline = u64_at(&si, 24).unwrap_or(0);
    let rsdp = u64_at(&si, 32).unwrap_or(0);
    let memmap = u64_at(&si, 40).unwrap_or(0);
    let memmap_entries = u32_at(&si, 48).unwrap_or(0);
    if version < 1 || memmap == 0 || memmap_entries == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }

    let mut bi = BootInfo {
        protocol: Protocol::Pvh,
        memory: Vec::new(),
        modules: Vec::new(),
        cmdline: String::new(),
        rsdp: (rsdp != 0).then_some(rsdp),
        info_range: (info, 56),
    };
    for i in 0..u64::from(memmap_entries).min(MAX_REGIONS as u64) {
        let e: [u8; 24] = read_array(mem, memmap + i * 24)?;
        let region = MemRegion {
            start: u64_at(&e, 0).unwrap_or(0),
            len: u64_at(&e, 8).unwrap_or(0),
            kind: MemKind::from_e820(u32_at(&e, 16).unwrap_or(0)),
        };
        let _ = bi.memory.push(region);
    }
    for i in 0..u64::from(nr_modules).min(MAX_MODULES as u64) {
        let e: [u8; 32] = read_array(mem, modlist + i * 32)?;
        let module = Module {
            start: u64_at(&e, 0).unwrap_or(0),
            len: u64_at(&e, 8).unwrap_or(0),
        };
        if module.len > 0 {
            let _ = bi.modules.push(module);
        }
    }
    if cmdline != 0 {
        bi.cmdline = read_cstr(mem, cmdline);
    }
    Ok(bi)
}

mod mb2 {
    pub const CMDLINE: u32 = 1;
    pub const MODULE: u32 = 3;
    pub const MMAP: u32 = 6;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
    pub const END: u32 = 0;
}

/// Parses the multiboot2 boot information structure at `info`.
pub fn parse_multiboot2(mem: &impl PhysRead, info: u64) -> Result<BootInfo, BootInfoError> {
    let head: [u8; 8] = read_array(mem, info)?;
    let total = u64::from(u32_at(&head, 0).unwrap_or(0));
    if !(16..=1 << 20).contains(&total) {
        return Err(BootInfoError::Malformed(
            "multiboot2 total_size out of range",
        ));
    }
    let mut bi = BootInfo {
        protocol: Protocol::Multiboot2,
        memory: Vec::new(),
        modules: Vec::new(),
        cmdline: String::new(),
        rsdp: None,
        info_range: (info, total),
    };
    let end = info + total;
    let mut at = info + 8;
    while at + 8 <= end {
        let tag: [u8; 8] = read_array(mem, at)?;
        let ty = u32_at(&tag, 0).unwrap_or(0);
        let size = u64::from(u32_at(&tag, 4).unwrap_or(0));
        if ty == mb2::END {
            break;
        }
        if size < 8 || at + size > end {
            return Err(BootInfoError::Malformed(
                "multiboot2 tag overruns the structure",
            ));
        }
        match ty {
            mb2::CMDLINE => bi.cmdline = read_cstr(mem, at + 8),
            mb2::MODULE if size >= 16 => {
                let m: [u8; 16] = read_array(mem, at)?;
                let s = u64::from(u32_at(&m, 8).unwrap_or(0));
                let e = u64::from(u32_at(&m, 12).unwrap_or(0));
                if e > s {
                    let _ = bi.modules.push(Module {
                        start: s,
                        len: e - s,
                    });
                }
            }
            mb2::MMAP if size >= 16 => {
                let h: [u8; 16] = read_array(mem, at)?;
                let entry_size = u64::from(u32_at(&h, 8).unwrap_or(0));
                if entry_size < 24 {
                    return Err(BootInfoError::Malformed("multiboot2 mmap entry too small"));
                }
                let mut e_at = at + 16;
                while e_at + 24 <= at + size {
                    let e: [u8; 24] = read_array(mem, e_at)?;
                    let region = MemRegion {
                        start: u64_at(&e, 0).unwrap_or(0),
                        len: u64_at(&e, 8).unwrap_or(0),
                        kind: MemKind::from_e820(u32_at(&e, 16).unwrap_or(0)),
                    };
                    let _ = bi.memory.push(region);
                    e_at += entry_size;
                }
            }
            // The tag holds a copy of the RSDP: its address is usable as the RSDP address.
            mb2::ACPI_NEW => bi.rsdp = Some(at + 8),
            mb2::ACPI_OLD if bi.rsdp.is_none() => bi.rsdp = Some(at + 8),
            _ => {}
        }
        at += (size + 7) & !7;
    }
    if bi.memory.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(bi)
}

impl BootInfo {
    /// Bytes of usable RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| r.kind == MemKind::Usable)
            .map(|r| r.len)
            .sum()
    }

    /// One past the highest usable physical address.
    pub fn max_usable(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| r.kind == MemKind::Usable)
            .map(|r| r.start.saturating_add(r.len))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec as StdVec;

    /// Fake physical memory: a flat buffer starting at address 0.
    struct Mem(StdVec<u8>);

    impl PhysRead for Mem {
        fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
            let s = phys as usize;
            match self.0.get(s..s + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn put(m: &mut [u8], at: usize, bytes: &[u8]) {
        m[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn pvh_image() -> Mem {
        let mut m = vec![0u8; 0x2000];
        // start_info at 0x100
        put(&mut m, 0x100, &PVH_MAGIC.to_le_bytes());
        put(&mut m, 0x104, &1u32.to_le_bytes());
        put(&mut m, 0x10c, &1u32.to_le_bytes()); // one module
        put(&mut m, 0x110, &0x400u64.to_le_bytes()); // modlist
        put(&mut m, 0x118, &0x500u64.to_le_bytes()); // cmdline
        put(&mut m, 0x120, &0xe0000u64.to_le_bytes()); // rsdp
        put(&mut m, 0x128, &0x600u64.to_le_bytes()); // memmap
        put(&mut m, 0x130, &2u32.to_le_bytes());
        put(&mut m, 0x400, &0x1000_0000u64.to_le_bytes());
        put(&mut m, 0x408, &123u64.to_le_bytes());
        put(&mut m, 0x500, b"keel.selftest=panic loglevel=debug\0");
        put(&mut m, 0x600, &0u64.to_le_bytes());
        put(&mut m, 0x608, &0x9fc00u64.to_le_bytes());
        put(&mut m, 0x610, &1u32.to_le_bytes());
        put(&mut m, 0x618, &0x10_0000u64.to_le_bytes());
        put(&mut m, 0x620, &0x7ff0_0000u64.to_le_bytes());
        put(&mut m, 0x628, &1u32.to_le_bytes());
        Mem(m)
    }

    #[test]
    fn pvh_start_info_parses() {
        let bi = parse_pvh(&pvh_image(), 0x100).unwrap();
        assert_eq!(bi.protocol, Protocol::Pvh);
        assert_eq!(bi.memory.len(), 2);
        assert_eq!(bi.memory[1].start, 0x10_0000);
        assert_eq!(bi.usable_bytes(), 0x9fc00 + 0x7ff0_0000);
        assert_eq!(bi.max_usable(), 0x8000_0000);
        assert_eq!(
            bi.modules.as_slice(),
            &[Module {
                start: 0x1000_0000,
                len: 123
            }]
        );
        assert_eq!(bi.cmdline.as_str(), "keel.selftest=panic loglevel=debug");
        assert_eq!(bi.rsdp, Some(0xe0000));
    }

    #[test]
    fn pvh_rejects_bad_magic_and_truncation() {
        let mut m = pvh_image();
        m.0[0x100] ^= 1;
        assert!(matches!(
            parse_pvh(&m, 0x100),
            Err(BootInfoError::BadMagic(_))
        ));
        let m = pvh_image();
        assert!(matches!(
            parse_pvh(&m, 0x1ff0),
            Err(BootInfoError::Unreadable(_))
        ));
        // memory map pointing outside memory
        let mut m = pvh_image();
        put(&mut m.0, 0x128, &0xffff_0000u64.to_le_bytes());
        assert!(parse_pvh(&m, 0x100).is_err());
    }

    fn mb2_image() -> Mem {
        let mut m = vec![0u8; 0x2000];
        let base = 0x800;
        let mut at = base + 8;
        // cmdline tag
        let cmd = b"loglevel=info\0";
        put(&mut m, at, &1u32.to_le_bytes());
        put(&mut m, at + 4, &(8 + cmd.len() as u32).to_le_bytes());
        put(&mut m, at + 8, cmd);
        at += (8 + cmd.len() + 7) & !7;
        // module tag
        put(&mut m, at, &3u32.to_le_bytes());
        put(&mut m, at + 4, &17u32.to_le_bytes());
        put(&mut m, at + 8, &0x20_0000u32.to_le_bytes());
        put(&mut m, at + 12, &0x20_0100u32.to_le_bytes());
        at += 24;
        // mmap tag with one entry
        put(&mut m, at, &6u32.to_le_bytes());
        put(&mut m, at + 4, &40u32.to_le_bytes());
        put(&mut m, at + 8, &24u32.to_le_bytes());
        put(&mut m, at + 16, &0x10_0000u64.to_le_bytes());
        put(&mut m, at + 24, &0x100_0000u64.to_le_bytes());
        put(&mut m, at + 32, &1u32.to_le_bytes());
        at += 40;
        // acpi new
        put(&mut m, at, &15u32.to_le_bytes());
        put(&mut m, at + 4, &44u32.to_le_bytes());
        let rsdp_tag = at;
        at += 48;
        // end
        put(&mut m, at, &0u32.to_le_bytes());
        put(&mut m, at + 4, &8u32.to_le_bytes());
        at += 8;
        put(&mut m, base, &((at - base) as u32).to_le_bytes());
        put(&mut m, 0, &(rsdp_tag as u32).to_le_bytes()); // remember where the tag went
        Mem(m)
    }

    #[test]
    fn multiboot2_parses() {
        let m = mb2_image();
        let rsdp_tag = u32::from_le_bytes(m.0[0..4].try_into().unwrap()) as u64;
        let bi = parse_multiboot2(&m, 0x800).unwrap();
        assert_eq!(bi.protocol, Protocol::Multiboot2);
        assert_eq!(bi.cmdline.as_str(), "loglevel=info");
        assert_eq!(
            bi.modules.as_slice(),
            &[Module {
                start: 0x20_0000,
                len: 0x100
            }]
        );
        assert_eq!(bi.memory.len(), 1);
        assert_eq!(bi.usable_bytes(), 0x100_0000);
        assert_eq!(bi.rsdp, Some(rsdp_tag + 8));
    }

    #[test]
    fn multiboot2_rejects_overrunning_tags_without_panicking() {
        let base = mb2_image();
        for off in 0x800..0x900usize {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut m = Mem(base.0.clone());
                m.0[off] ^= flip;
                let _ = parse_multiboot2(&m, 0x800);
            }
        }
        let mut m = Mem(base.0.clone());
        put(&mut m.0, 0x800 + 8 + 4, &0xffffu32.to_le_bytes());
        assert!(parse_multiboot2(&m, 0x800).is_err());
    }
}
